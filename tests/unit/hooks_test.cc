// The hooks against a GIL built the way CPython's take_gil/drop_gil build
// theirs (fake_gil.h), checked against the fake's own counters.
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <ctime>
#include <memory>
#include <thread>
#include <vector>

#include "fake_gil.h"
#include "hooks/gil_watch.h"
#include "recorder/arena.h"
#include "recorder/collector.h"
#include "recorder/producer.h"
#include "report/analysis.h"
#include "runner/collect.h"

namespace gilscope {
namespace {

using test_support::FakeGil;

// A fresh arena of `slots` slots (rings of `capacity` events), installed:
// the hooks record into it.
std::unique_ptr<recorder::Arena> InstallArena(std::uint32_t slots,
                                              std::uint32_t capacity = recorder::ArenaConfig{}.ring_capacity) {
  recorder::ArenaConfig config;
  config.slot_count = slots;
  config.ring_capacity = capacity;
  auto arena = recorder::Arena::Create(config);
  recorder::Install(arena.get());
  return arena;
}

// Takes the GIL as `tstate` and starts watching it, as the host does.
int TakeAndWatch(FakeGil& gil, int* tstate) {
  gil.Take(tstate);
  return hooks::StartGil(gil.Addresses(), hooks::GilMeta{}, reinterpret_cast<std::uintptr_t>(tstate));
}

// Two "interpreter loops" contend; one also releases voluntarily now and then.
// The main thread holds the GIL when watching starts, like the host does.
TEST(HooksTest, EventsMatchTheGilsOwnCountersExactly) {
  auto arena = InstallArena(8);
  recorder::Collector collector(*arena);
  collector.Start(std::chrono::microseconds(500));

  FakeGil gil;
  int main_tstate = 0, tstates[2] = {0, 0};
  const int index = TakeAndWatch(gil, &main_tstate);
  const unsigned long switches_before = 1;  // main's take, before watching
  ASSERT_EQ(gil.switch_number, switches_before);
  ASSERT_EQ(index, 0);

  constexpr int kRounds = 300;
  std::atomic<int> voluntary{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      void* me = &tstates[t];
      gil.Take(me);
      for (int round = 0; round < kRounds; ++round) {
        // "Bytecode" until asked to drop, bounded so a lone thread moves on.
        for (long spin = 0; spin < 50'000'000 && !gil.drop_request.load(std::memory_order_relaxed); ++spin) {
        }
        if (round % 10 == 0) voluntary.fetch_add(1);  // a "blocking call"
        gil.Drop(me);
        gil.Take(me);
      }
      gil.Drop(me);
    });
  }
  gil.Drop(&main_tstate);  // main "joins" without the GIL
  for (auto& th : threads) th.join();
  gil.Take(&main_tstate);
  hooks::StopGil(index);
  collector.Stop();
  report::RunTrace trace;
  runner::CollectInto(*arena, collector.Take(), collector.dropped_no_slot(), trace);
  recorder::Install(nullptr);

  const report::Analysis a = report::Analyze(trace);
  ASSERT_EQ(a.gils.size(), 1u);
  EXPECT_EQ(a.events_dropped, 0u);
  EXPECT_GT(a.gils[0].switches, 100u);
  EXPECT_EQ(a.gils[0].switches, a.gils[0].cpython_switches);
  EXPECT_EQ(a.gils[0].cpython_switches, gil.switch_number - switches_before);
  ASSERT_EQ(a.threads.size(), 3u);  // main + two workers
  std::uint64_t forced = 0, releases = 0, acquisitions = 0;
  for (const auto& t : a.threads) {
    forced += t.forced_releases;
    releases += t.forced_releases + t.voluntary_releases;
    acquisitions += t.acquisitions;
    EXPECT_EQ(t.held_ns + t.waiting_ns + t.released_ns, t.lifetime_ns);
  }
  // Main: 1 release, 1 acquisition; each worker: kRounds + 1 of each.
  EXPECT_EQ(releases, 2u * (kRounds + 1) + 1);
  EXPECT_EQ(acquisitions, 2u * (kRounds + 1) + 1);
  EXPECT_EQ(forced, static_cast<std::uint64_t>(gil.forced_drops.load()));
  EXPECT_GT(forced, 0u);
  EXPECT_GT(a.gils[0].drop_requests, 0u);
  // Stamps are unordered rdtsc reads; an acquisition is stamped no earlier
  // than the release it follows, so no hold starts before the previous one
  // ended, at any of the hundreds of hand-offs.
  const auto& holders = a.gils[0].holders;
  ASSERT_GT(holders.size(), 2u * kRounds);
  for (std::size_t k = 1; k < holders.size(); ++k) {
    ASSERT_GE(holders[k].start_ns, holders[k - 1].end_ns) << "hold " << k << " overlaps the one before";
  }
}

TEST(HooksTest, OtherMutexesRecordNothing) {
  auto arena = InstallArena(4);
  recorder::Collector collector(*arena);
  std::thread([] {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    for (int i = 0; i < 1000; ++i) {
      pthread_mutex_lock(&m);
      pthread_cond_signal(&c);
      timespec past{0, 0};
      pthread_cond_timedwait(&c, &m, &past);
      pthread_mutex_unlock(&m);
    }
  }).join();
  collector.Stop();
  EXPECT_EQ(arena->claimed(), 0u);  // no thread ever recorded an event
  recorder::Install(nullptr);
}

// A take that finds the GIL free writes no kRequest: it is folded into the
// kAcquired (kFlagRequestFolded, aux = ns since the request). A take that
// has to wait writes it. The analysis reads both as request + acquisition.
TEST(HooksTest, UncontendedTakesFoldTheirRequest) {
  auto arena = InstallArena(4);
  recorder::Collector collector(*arena);

  FakeGil gil;
  int main_tstate = 0, other_tstate = 0;
  ASSERT_EQ(TakeAndWatch(gil, &main_tstate), 0);
  constexpr int kUncontended = 50;
  for (int i = 0; i < kUncontended; ++i) {  // a blocking call: release, retake a free GIL
    gil.Drop(&main_tstate);
    gil.Take(&main_tstate);
  }
  // One contended take: the other thread asks while main holds the GIL, and
  // gets it only when main releases it (after at least one timed wait).
  std::thread other([&] {
    gil.Take(&other_tstate);
    gil.Drop(&other_tstate);
  });
  while (!gil.drop_request.load()) {
    // Holding until the other thread's timeout has asked for the GIL.
  }
  gil.Drop(&main_tstate);
  other.join();
  gil.Take(&main_tstate);
  hooks::StopGil(0);
  collector.Stop();
  std::vector<recorder::ThreadLog> logs = collector.Take();
  std::size_t requests = 0, folded = 0, acquired = 0;
  for (const auto& log : logs) {
    for (const recorder::Event& e : log.events) {
      requests += e.kind == recorder::EventKind::kRequest;
      if (e.kind == recorder::EventKind::kAcquired && (e.flags & recorder::kFlagAtStart) == 0) {
        ++acquired;
        folded += (e.flags & recorder::kFlagRequestFolded) != 0;
      }
    }
  }
  std::size_t taken_free = 0;  // folded with no wait at all: no clock read for the request
  for (const auto& log : logs) {
    for (const recorder::Event& e : log.events) {
      taken_free += e.kind == recorder::EventKind::kAcquired && (e.flags & recorder::kFlagRequestFolded) != 0 &&
                    e.aux == 0;
    }
  }
  report::RunTrace trace;
  runner::CollectInto(*arena, std::move(logs), collector.dropped_no_slot(), trace);
  recorder::Install(nullptr);

  // main: kUncontended + 1 takes after releasing, the other thread 1.
  EXPECT_EQ(acquired, kUncontended + 2u);
  EXPECT_EQ(requests, 1u);  // the other thread's: it waited
  EXPECT_GE(folded, kUncontended + 0u);
  // Each of main's uncontended takes found the mutex and the GIL free.
  EXPECT_GE(taken_free, kUncontended + 0u);
  EXPECT_EQ(requests + folded, acquired);
  const report::Analysis a = report::Analyze(trace);
  ASSERT_EQ(a.threads.size(), 2u);
  std::uint64_t waits = 0, acquisitions = 0;
  for (const auto& t : a.threads) {
    waits += t.waits;
    acquisitions += t.acquisitions;
    EXPECT_EQ(t.held_ns + t.waiting_ns + t.released_ns, t.lifetime_ns);
  }
  EXPECT_EQ(acquisitions, acquired);
  EXPECT_EQ(waits, acquired);  // every acquisition ends a wait, folded or not
  EXPECT_EQ(a.gils[0].switches, a.gils[0].cpython_switches);
}

// A take that finds the GIL's mutex busy is stamped before it blocks on it:
// the time the mutex was held by someone else is part of its wait.
TEST(HooksTest, ATakeThatFindsTheMutexBusyWaitsFromBeforeTheLock) {
  auto arena = InstallArena(4);
  recorder::Collector collector(*arena);
  FakeGil gil;
  int main_tstate = 0;
  ASSERT_EQ(TakeAndWatch(gil, &main_tstate), 0);
  gil.Drop(&main_tstate);  // the GIL is free from now on
  constexpr std::uint64_t kHeldNs = 2'000'000;
  std::atomic<bool> locked{false};
  std::thread holder([&] {
    // glibc's trylock is not interposed: the hooks never see this lock.
    ASSERT_EQ(pthread_mutex_trylock(&gil.mutex), 0);
    locked.store(true);
    // Until main blocks on the mutex (glibc marks a lock with a sleeping
    // waiter 2), then a measured while longer.
    while (__atomic_load_n(&gil.mutex.__data.__lock, __ATOMIC_RELAXED) != 2) {
    }
    const std::uint64_t until = recorder::NowNs() + kHeldNs;
    while (recorder::NowNs() < until) {
    }
    pthread_mutex_unlock(&gil.mutex);
  });
  while (!locked.load()) {
  }
  gil.Take(&main_tstate);
  holder.join();
  hooks::StopGil(0);
  collector.Stop();
  std::vector<recorder::ThreadLog> logs = collector.Take();
  recorder::Install(nullptr);
  ASSERT_EQ(logs.size(), 1u);
  const recorder::Event* last = nullptr;
  for (const recorder::Event& e : logs[0].events) {
    if (e.kind == recorder::EventKind::kAcquired) last = &e;
  }
  ASSERT_NE(last, nullptr);
  ASSERT_NE(last->flags & recorder::kFlagRequestFolded, 0) << "the GIL was free: the request is folded";
  EXPECT_GE(last->aux, kHeldNs) << "the wait for the mutex is missing";
}

// A frame probe driven by the test: the "current frame" is g_frame (0: no
// Python frame), returned with the shim's contract (1 when it is the frame
// this thread's previous successful call returned).
std::atomic<std::uint64_t> g_frame{0};
thread_local std::uint64_t t_probed = 0;
int ScriptedProbe(const void*, std::uint64_t* code_id, std::uint32_t* line) {
  const std::uint64_t frame = g_frame.load();
  if (frame == 0) return -1;
  *code_id = frame;
  *line = static_cast<std::uint32_t>(frame % 1000);
  const int same = frame == t_probed ? 1 : 0;
  t_probed = frame;
  return same;
}

int TakeAndWatchWithFrames(FakeGil& gil, int* tstate) {
  hooks::SetFrameProbe(&ScriptedProbe);
  t_probed = 0;
  gil.Take(tstate);
  hooks::GilMeta meta;
  meta.probe_frames = true;
  return hooks::StartGil(gil.Addresses(), meta, reinterpret_cast<std::uintptr_t>(tstate));
}

// The code ids of the kFrame right before each kReleased of `events`; 0 for
// a release with none. Fails on a kFlagSameFrame left in the handed-out stream.
std::vector<std::uint64_t> ReleaseFrames(const std::vector<recorder::Event>& events) {
  std::vector<std::uint64_t> frames;
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i].kind != recorder::EventKind::kReleased) continue;
    EXPECT_EQ(events[i].flags & recorder::kFlagSameFrame, 0) << "release " << frames.size();
    const bool framed = i > 0 && events[i - 1].kind == recorder::EventKind::kFrame;
    if (framed) {
      EXPECT_EQ(events[i - 1].aux, events[i - 1].ts % 1000) << "the frame's line";
    }
    frames.push_back(framed ? events[i - 1].ts : 0);
  }
  return frames;
}

// A release at the same frame as the thread's last kFrame writes no kFrame
// (one event fewer on the observed thread); the Collector writes it back, so
// what comes out names every release exactly as if each had its own.
TEST(HooksTest, ReleasesAtTheSameFrameWriteItOnceAndEachStillNamesIt) {
  auto arena = InstallArena(4);
  recorder::Collector collector(*arena);
  FakeGil gil;
  int tstate = 0;
  ASSERT_EQ(TakeAndWatchWithFrames(gil, &tstate), 0);
  const std::uint64_t before = recorder::internal::t_producer.head;
  const std::vector<std::uint64_t> frames = {101, 101, 101, 202, 202, 0, 202, 101, 101};
  for (const std::uint64_t f : frames) {
    g_frame.store(f);
    gil.Drop(&tstate);
    gil.Take(&tstate);
  }
  const std::uint64_t written = recorder::internal::t_producer.head - before;
  hooks::StopGil(0);
  collector.Stop();
  std::vector<recorder::ThreadLog> logs = collector.Take();
  recorder::Install(nullptr);
  // A release and an acquisition per cycle, and a kFrame only where the
  // frame changed: 101, 202, 101 (the frameless release keeps 202 known).
  EXPECT_EQ(written, 2 * frames.size() + 3);
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_EQ(ReleaseFrames(logs[0].events), frames);
}

// A kFrame that found the ring full never reached the Collector: the next
// release at that frame writes it again instead of saying "same frame".
TEST(HooksTest, AFrameLostToAFullRingIsWrittenAgain) {
  auto arena = InstallArena(4, 8);
  recorder::Collector collector(*arena);  // drained by hand below
  FakeGil gil;
  int tstate = 0;
  ASSERT_EQ(TakeAndWatchWithFrames(gil, &tstate), 0);  // 2 events: thread state, held at start
  auto cycle = [&](std::uint64_t frame) {
    g_frame.store(frame);
    gil.Drop(&tstate);
    gil.Take(&tstate);
  };
  cycle(101);  // frame, release, acquisition: 5 events
  cycle(101);  // release, acquisition: 7
  cycle(101);  // release: 8, the ring is full; its acquisition is dropped
  cycle(202);  // frame 202, release, acquisition: all dropped
  collector.DrainOnce();
  cycle(202);  // the probe says "same frame", but 202 never reached the ring
  cycle(202);
  hooks::StopGil(0);
  collector.Stop();
  std::vector<recorder::ThreadLog> logs = collector.Take();
  recorder::Install(nullptr);
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_EQ(logs[0].dropped, 4u);
  EXPECT_EQ(ReleaseFrames(logs[0].events), (std::vector<std::uint64_t>{101, 101, 101, 202, 202}));
}
}  // namespace
}  // namespace gilscope
