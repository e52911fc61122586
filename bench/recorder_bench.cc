// Microbenchmarks of gilscope's hot path: what recording one GIL event costs
// the thread that makes it, and what the interposed pthread functions cost
// every call that is not about a GIL.
//
//   BM_Record              recorder::Record() with a ready time stamp, one
//                          producer thread, a Collector draining in the
//                          background: CPU ns/event is the recorder's cost.
//   BM_Record/threads:2    the same with two producer threads at once (each
//                          has its own ring; shared cache lines would show).
//   BM_RecordWithClock     Record(Stamp()): one event as the hooks write it,
//                          stamp included (recorder_ns_per_event).
//   BM_RecordWithRdtsc     Record(__rdtsc()): the same with a raw TSC stamp.
//   BM_Clock/...           the time stamp alone: stamp (Stamp(), the hot
//                          path's: rdtsc when the CPU has an invariant TSC,
//                          else CLOCK_MONOTONIC; the label says which), now_ns
//                          (NowNs(): ordered and converted to ns, for
//                          everything off the hot path), CLOCK_MONOTONIC
//                          through the vDSO, rdtsc, rdtscp, lfence+rdtsc.
//   BM_FindMiss            hooks::Find() on an address that is no GIL's: the
//                          whole extra cost of every hooked call in a run.
//   BM_MutexPair/...       pthread_mutex_lock + unlock on an unwatched mutex,
//                          glibc's own lock vs gilscope's interposed one,
//                          both called through a pointer as libpython's PLT does.
//   BM_CondSignal/...      the same for pthread_cond_signal (no waiter).
//   BM_SemPair/...         sem_post + sem_wait, never contended (an
//                          uncontended threading.Lock), glibc's vs interposed.
//   BM_GilCycle/watched:.. one release and retake of an uncontended GIL made
//                          of CPython's pthread calls (tests/unit/fake_gil.h):
//                          0 unwatched (--no-hooks), 1 recorded with frames.
//                          The difference is the hooks' cost per os.read() of
//                          release_heavy, less the frame probe.
//   BM_NoDrop              one producer paced at a fixed event rate (default
//                          6.6 M events/s) for a fixed time while a Collector
//                          drains it as a run does (the runner's period, into
//                          an events.raw file): `dropped` must be 0.
//
// Figures are per iteration, and every Record iteration writes one event. The
// CPU column is the cost: the time the producing thread itself spent per event
// (with 2 threads too: Google Benchmark sums both threads' CPU time and both
// threads' iterations). The Time column is wall time; on a loaded machine it
// includes the time the thread waited for a core, and with threads:2 it is
// the mean thread wall time divided by the iterations of both threads.
//
// The executable links gilscope::hooks whole and exports its symbols, exactly
// like the gilscope executable, so the interposers are the process's
// pthread_mutex_lock & co. No GIL is watched, so they only forward.
//
// Benchmarks report figures, they assert nothing: bench/overhead.py reads the
// JSON output (--benchmark_format=json) into build/bench/overhead.json.
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <unistd.h>

#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define GILSCOPE_BENCH_HAVE_TSC 1
#endif

#include "fake_gil.h"
#include "hooks/gil_watch.h"
#include "recorder/arena.h"
#include "recorder/clock.h"
#include "recorder/collector.h"
#include "recorder/event.h"
#include "recorder/producer.h"
#include "report/raw_file.h"

namespace gilscope::bench {
namespace {

using recorder::EventKind;

// Events each producer thread writes between two drain recyclings. Half a
// ring: even if the drain thread never got a core, a batch fits, so Record()
// never finds the ring full and the loop measures the normal path only.
constexpr std::uint64_t kBatch = 1u << 16;
// The drain period while Record() is measured: short enough that the drain
// really runs during a batch (a batch lasts about a millisecond), so the
// producer pays for sharing its ring's cache lines with a live consumer.
constexpr std::chrono::microseconds kBenchDrainPeriod{50};

// The process's one arena, with the runner's ring size. Never unmapped:
// slots are never freed, and a benchmark thread that exits records its
// kThreadExit into its slot after the benchmark function has returned.
recorder::Arena* g_arena = nullptr;

// A Collector draining the arena in the background, whose history is thrown
// away every kBatch events per thread. Without that the drained events would
// pile up (16 bytes each, hundreds of millions per benchmark).
// Created by benchmark thread 0 before the timed loop; Google Benchmark's
// start barrier publishes it to the other threads.
class BackgroundDrain {
 public:
  explicit BackgroundDrain(int threads, std::chrono::microseconds period = kBenchDrainPeriod)
      : barrier_(threads), period_(period) {
    collector_.emplace(*g_arena);
    collector_->Start(period_);
  }
  ~BackgroundDrain() { collector_->Stop(); }
  BackgroundDrain(const BackgroundDrain&) = delete;
  BackgroundDrain& operator=(const BackgroundDrain&) = delete;

  // Every producer thread calls this after each batch, timers paused. Thread
  // 0 stops the drain (which copies out what is left), discards the history
  // and starts a fresh Collector (Take() is once per Collector) while the
  // others wait, so no thread records while the drain changes hands.
  void Recycle(bool leader) {
    barrier_.arrive_and_wait();
    if (leader) {
      collector_->Stop();
      collector_->Take();
      collector_.emplace(*g_arena);
      collector_->Start(period_);
    }
    barrier_.arrive_and_wait();
  }

 private:
  std::barrier<> barrier_;
  std::chrono::microseconds period_;
  std::optional<recorder::Collector> collector_;
};

std::unique_ptr<BackgroundDrain> g_drain;

// The calling thread's ring counters (events written to its ring, and dropped).
struct SlotCounters {
  std::uint64_t written = 0;
  std::uint64_t dropped = 0;
};

SlotCounters ReadSlotCounters() {
  const recorder::SlotHeader* slot = recorder::internal::t_producer.slot;
  if (slot == nullptr) {
    // Cannot happen with 1024 slots; a loop without a ring would measure the
    // no-slot path, so stop rather than report a wrong figure.
    std::fprintf(stderr, "recorder_bench: this thread has no recorder slot\n");
    std::abort();
  }
  // The producer's own head (cells written; the ring shares no index).
  return {recorder::internal::t_producer.head, slot->dropped.load(std::memory_order_relaxed)};
}

// The loop shared by the Record benchmarks: `record(i)` writes one event.
template <typename RecordOne>
void RecordLoop(benchmark::State& state, RecordOne record) {
  const bool leader = state.thread_index() == 0;
  if (leader) g_drain = std::make_unique<BackgroundDrain>(state.threads());
  // Claims this thread's slot outside the timed loop.
  recorder::Record(EventKind::kReleased, 0, 0, 0);
  const SlotCounters before = ReadSlotCounters();

  std::uint64_t i = 0;
  for (auto _ : state) {
    record(i);
    if (++i % kBatch == 0) [[unlikely]] {
      state.PauseTiming();
      g_drain->Recycle(leader);
      state.ResumeTiming();
    }
  }

  const SlotCounters after = ReadSlotCounters();
  // Summed over threads: all must be 0 / all iterations.
  state.counters["dropped"] = static_cast<double>(after.dropped - before.dropped);
  state.counters["events"] = static_cast<double>(after.written - before.written);
  // Every thread has left the loop (its end is a barrier): the drain may go.
  if (leader) g_drain.reset();
}

void BM_Record(benchmark::State& state) {
  RecordLoop(state, [](std::uint64_t i) { recorder::Record(EventKind::kReleased, 0, 0, i); });
}
BENCHMARK(BM_Record)->Threads(1)->Threads(2);

void BM_RecordWithClock(benchmark::State& state) {
  RecordLoop(state, [](std::uint64_t) { recorder::Record(EventKind::kReleased, 0, 0, recorder::Stamp()); });
  state.SetLabel(recorder::ClockSource());
}
BENCHMARK(BM_RecordWithClock);

#ifdef GILSCOPE_BENCH_HAVE_TSC
void BM_RecordWithRdtsc(benchmark::State& state) {
  RecordLoop(state, [](std::uint64_t) { recorder::Record(EventKind::kReleased, 0, 0, __rdtsc()); });
}
BENCHMARK(BM_RecordWithRdtsc);
#endif

// --- Time stamps ---------------------------------------------------------

void BM_Clock_Stamp(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(recorder::Stamp());
  state.SetLabel(recorder::ClockSource());
}
BENCHMARK(BM_Clock_Stamp)->Name("BM_Clock/stamp");

void BM_Clock_NowNs(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(recorder::NowNs());
  state.SetLabel(recorder::ClockSource());
}
BENCHMARK(BM_Clock_NowNs)->Name("BM_Clock/now_ns");

void BM_Clock_Monotonic(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(recorder::MonotonicNs());
}
BENCHMARK(BM_Clock_Monotonic)->Name("BM_Clock/monotonic");

#ifdef GILSCOPE_BENCH_HAVE_TSC
void BM_Clock_Rdtsc(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(__rdtsc());
}
BENCHMARK(BM_Clock_Rdtsc)->Name("BM_Clock/rdtsc");

void BM_Clock_Rdtscp(benchmark::State& state) {
  unsigned aux = 0;
  for (auto _ : state) benchmark::DoNotOptimize(__rdtscp(&aux));
}
BENCHMARK(BM_Clock_Rdtscp)->Name("BM_Clock/rdtscp");

// lfence; rdtsc: the TSC read ordered after every earlier instruction (what
// the hooks used to stamp acquisitions with; they now order them through the
// GIL's mutex instead, see gil_watch.cc).
void BM_Clock_LfenceRdtsc(benchmark::State& state) {
  for (auto _ : state) {
    _mm_lfence();
    benchmark::DoNotOptimize(__rdtsc());
  }
}
BENCHMARK(BM_Clock_LfenceRdtsc)->Name("BM_Clock/lfence_rdtsc");

#endif

// --- The interposed pthread functions on objects that are no GIL's -------

void BM_FindMiss(benchmark::State& state) {
  pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
  if (hooks::Find(&mutex).kind != hooks::internal::ObjectKind::kNone) {
    state.SkipWithError("the mutex's address is watched");
    return;
  }
  for (auto _ : state) {
    const void* object = &mutex;
    // The address is "unknown" each time: Find hashes and loads for real.
    benchmark::DoNotOptimize(object);
    benchmark::DoNotOptimize(hooks::Find(object));
  }
}
BENCHMARK(BM_FindMiss);

using MutexLockFn = int (*)(pthread_mutex_t*);
using CondSignalFn = int (*)(pthread_cond_t*);

// Resolved in main(). `interposed` is what libpython binds to (the default
// lookup finds the executable's definition first); `glibc` is the next one.
MutexLockFn g_interposed_lock = nullptr;
MutexLockFn g_glibc_lock = nullptr;
CondSignalFn g_interposed_signal = nullptr;
CondSignalFn g_glibc_signal = nullptr;

void BM_MutexPair(benchmark::State& state, const MutexLockFn* lock) {
  pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
  const MutexLockFn fn = *lock;
  for (auto _ : state) {
    fn(&mutex);
    pthread_mutex_unlock(&mutex);  // not interposed: glibc's in both cases
  }
}
BENCHMARK_CAPTURE(BM_MutexPair, glibc, &g_glibc_lock);
BENCHMARK_CAPTURE(BM_MutexPair, interposed, &g_interposed_lock);

void BM_CondSignal(benchmark::State& state, const CondSignalFn* signal) {
  pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
  const CondSignalFn fn = *signal;
  for (auto _ : state) fn(&cond);
}
BENCHMARK_CAPTURE(BM_CondSignal, glibc, &g_glibc_signal);
BENCHMARK_CAPTURE(BM_CondSignal, interposed, &g_interposed_signal);

using SemWaitFn = int (*)(sem_t*);
SemWaitFn g_interposed_sem_wait = nullptr;  // == g_glibc_sem_wait when not interposed
SemWaitFn g_glibc_sem_wait = nullptr;

// sem_post + sem_wait on a semaphore that is never contended: how CPython
// takes an uncontended threading.Lock. The calling thread has a recorder slot,
// like every Python thread in a run.
void BM_SemPair(benchmark::State& state, const SemWaitFn* wait) {
  if (g_interposed_sem_wait == g_glibc_sem_wait) {
    state.SkipWithError("sem_wait is not interposed by this build");
    return;
  }
  recorder::Record(EventKind::kReleased, 0, 0, 0);  // claims the slot
  sem_t sem;
  sem_init(&sem, 0, 0);
  const SemWaitFn fn = *wait;
  for (auto _ : state) {
    sem_post(&sem);
    fn(&sem);
  }
  sem_destroy(&sem);
}
BENCHMARK_CAPTURE(BM_SemPair, glibc, &g_glibc_sem_wait);
BENCHMARK_CAPTURE(BM_SemPair, interposed, &g_interposed_sem_wait);

// --- A GIL release and retake through the interposed functions ----------

// The frame probe of BM_GilCycle/watched:1: always the same frame (what a
// loop making one blocking call sees), without CPython. The real probe's
// own cost (a few loads and compares on a repeated frame) is not in it.
// Placed like the real one in gilscope: first in .text.hot (this file is
// linked before the hooks), page-aligned, so the hooks' hot code follows it
// in the same page (hooks/hot_state.h).
[[gnu::hot, gnu::aligned(4096)]] int SameFrameProbe(const void*, std::uint64_t* code_id, std::uint32_t* line) {
  static thread_local bool seen = false;
  *code_id = 0x1234;
  *line = 42;
  const int same = seen ? 1 : 0;
  seen = true;
  return same;
}

// One drop_gil + take_gil of an uncontended GIL per iteration, made of the
// pthread calls CPython makes (fake_gil.h), through the interposers: what one
// os.read() of release_heavy costs the hooks, less the system call and the
// bytecode. watched:0 is `--no-hooks` (the interposers only forward),
// watched:1 records the GIL with frames on, a Collector draining in the
// background every 2 ms as the supervisor's does. The difference is the hooks' cost per release and retake;
// `events` per iteration says how many events it writes.
void BM_GilCycle(benchmark::State& state) {
  const bool watched = state.range(0) != 0;
  // read:1 makes release_heavy's blocking call between drop and take, a
  // one-byte read(2) of /dev/zero: a system call empties the TLB on a
  // kernel with page-table isolation and no PCID (this VM), so every page
  // the hooks touch costs a page walk again in each cycle, as in a real run.
  const bool read_between = state.range(1) != 0;
  const int zero_fd = read_between ? open("/dev/zero", O_RDONLY | O_CLOEXEC) : -1;
  if (read_between && zero_fd < 0) {
    state.SkipWithError("cannot open /dev/zero");
    return;
  }
  char byte = 0;
  test_support::FakeGil gil;
  int tstate = 0;
  gil.Take(&tstate);
  int index = -1;
  if (watched) {
    hooks::SetFrameProbe(&SameFrameProbe);
    hooks::GilMeta meta;
    meta.probe_frames = true;
    index = hooks::StartGil(gil.Addresses(), meta, reinterpret_cast<std::uintptr_t>(&tstate));
    if (index < 0) {
      state.SkipWithError("the arena's GIL table is full");
      return;
    }
  }
  // The runner's drain period (2 ms), as in a run.
  g_drain = std::make_unique<BackgroundDrain>(1, std::chrono::milliseconds(2));
  recorder::Record(EventKind::kThreadState, 0, 0, 0);  // claims the slot
  const SlotCounters before = ReadSlotCounters();
  std::uint64_t i = 0;
  for (auto _ : state) {
    gil.Drop(&tstate);
    if (read_between) benchmark::DoNotOptimize(read(zero_fd, &byte, 1));
    gil.Take(&tstate);
    // At most 3 events per cycle: a batch of events stays within half a ring.
    if (++i % (kBatch / 4) == 0) [[unlikely]] {
      state.PauseTiming();
      g_drain->Recycle(true);
      state.ResumeTiming();
    }
  }
  const SlotCounters after = ReadSlotCounters();
  if (watched) hooks::StopGil(index);
  g_drain.reset();
  if (zero_fd >= 0) close(zero_fd);
  state.counters["events"] = benchmark::Counter(static_cast<double>(after.written - before.written),
                                                benchmark::Counter::kAvgIterations);
  state.counters["dropped"] = static_cast<double>(after.dropped - before.dropped);
}
BENCHMARK(BM_GilCycle)->ArgNames({"watched", "read"})->ArgsProduct({{0, 1}, {0, 1}});

// --- No drop at a release-heavy event rate -------------------------------

// One producer writes at range(0) events/s for range(1) ms while a Collector
// drains it exactly as `gilscope run` does: the runner's default period, and
// every event streamed into an events.raw file (report::RawWriter, in a
// temporary folder) by the drain thread, which converts the stamps. The
// producer spins on NowNs() until an event is due, then writes it with a
// stamp, as the hooks do. A thread that was
// descheduled does not catch up in a burst (a CPython thread makes no GIL
// calls while it is off its core): when it is more than kMaxLagNs late it
// starts its schedule again from now, so the rate never exceeds the target;
// events_per_s says what it achieved.
void BM_NoDrop(benchmark::State& state) {
  constexpr std::uint64_t kMaxLagNs = 100'000;
  const double rate = static_cast<double>(state.range(0));
  const auto duration_ns = static_cast<std::uint64_t>(state.range(1)) * 1'000'000u;
  const double interval_ns = 1e9 / rate;

  char raw_path[] = "/tmp/gilscope-bench-XXXXXX";
  const int fd = mkstemp(raw_path);
  if (fd < 0) {
    state.SkipWithError("cannot create a temporary file for events.raw");
    return;
  }
  close(fd);
  report::RawWriter raw = report::RawWriter::Open(raw_path);

  recorder::Record(EventKind::kReleased, 0, 0, 0);  // claims the slot
  recorder::Collector collector(*g_arena);
  collector.SetSink([&raw](std::uint32_t slot, const recorder::Event* events, std::size_t n) {
    raw.AppendEvents(slot, events, n);
  });
  collector.Start();  // the runner's period
  const SlotCounters before = ReadSlotCounters();
  std::uint64_t attempted = 0;
  std::uint64_t elapsed_ns = 0;
  std::uint64_t restarts = 0;
  for (auto _ : state) {
    const std::uint64_t start = recorder::NowNs();
    std::uint64_t origin = start;  // when event 0 of the current schedule was due
    std::uint64_t i = 0;
    for (;; ++i) {
      const std::uint64_t due = origin + static_cast<std::uint64_t>(static_cast<double>(i) * interval_ns);
      std::uint64_t now = recorder::NowNs();
      while (now < due) now = recorder::NowNs();
      if (now - start >= duration_ns) {
        elapsed_ns = now - start;
        break;
      }
      if (now - due > kMaxLagNs) {
        origin = now;
        i = 0;
        ++restarts;
      }
      recorder::Record(EventKind::kReleased, 0, 0, recorder::Stamp());
      ++attempted;
    }
  }
  collector.Stop();
  raw.Flush();
  state.counters["raw_mb"] = static_cast<double>(raw.bytes_written()) / 1e6;
  unlink(raw_path);
  const SlotCounters after = ReadSlotCounters();
  state.counters["events"] = static_cast<double>(after.written - before.written);
  state.counters["dropped"] = static_cast<double>(after.dropped - before.dropped);
  state.counters["target_events_per_s"] = rate;
  state.counters["events_per_s"] = static_cast<double>(attempted) / (static_cast<double>(elapsed_ns) / 1e9);
  state.counters["late_restarts"] = static_cast<double>(restarts);
  state.SetLabel(after.dropped == before.dropped ? "no drop" : "DROPPED EVENTS");
}
BENCHMARK(BM_NoDrop)
    ->ArgNames({"events_per_s", "ms"})
    ->Args({6'600'000, 1000})
    ->Iterations(1)
    // Each run must keep everything: report every run, not their median.
    ->Repetitions(3)
    ->ReportAggregatesOnly(false)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void SetUp() {
  recorder::ArenaConfig config;  // the runner's: 1024 slots of 2^17 events
  if (config.ring_capacity < 2 * kBatch) {
    std::fprintf(stderr, "recorder_bench: rings of %u events cannot hold two batches of %llu\n",
                 config.ring_capacity, static_cast<unsigned long long>(kBatch));
    std::exit(1);
  }
  g_arena = recorder::Arena::Create(config).release();
  recorder::Install(g_arena);

  g_interposed_lock = reinterpret_cast<MutexLockFn>(dlsym(RTLD_DEFAULT, "pthread_mutex_lock"));
  g_glibc_lock = reinterpret_cast<MutexLockFn>(dlsym(RTLD_NEXT, "pthread_mutex_lock"));
  // The current condvar ABI, as the hooks resolve it.
  g_interposed_signal = reinterpret_cast<CondSignalFn>(dlsym(RTLD_DEFAULT, "pthread_cond_signal"));
  g_glibc_signal = reinterpret_cast<CondSignalFn>(dlvsym(RTLD_NEXT, "pthread_cond_signal", "GLIBC_2.3.2"));
  g_interposed_sem_wait = reinterpret_cast<SemWaitFn>(dlsym(RTLD_DEFAULT, "sem_wait"));
  g_glibc_sem_wait = reinterpret_cast<SemWaitFn>(dlsym(RTLD_NEXT, "sem_wait"));
  if (g_glibc_sem_wait == nullptr) g_glibc_sem_wait = g_interposed_sem_wait;  // not interposed
  if (g_interposed_lock == nullptr || g_glibc_lock == nullptr || g_interposed_signal == nullptr ||
      g_glibc_signal == nullptr) {
    std::fprintf(stderr, "recorder_bench: cannot resolve the pthread functions: %s\n", dlerror());
    std::exit(1);
  }
  if (g_interposed_lock == g_glibc_lock || g_interposed_signal == g_glibc_signal) {
    std::fprintf(stderr,
                 "recorder_bench: the pthread hooks are not interposed (the executable must export them)\n");
    std::exit(1);
  }
}

}  // namespace
}  // namespace gilscope::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  gilscope::bench::SetUp();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
