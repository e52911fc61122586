// The hooks against a GIL built the way CPython's take_gil/drop_gil build
// theirs (Python/ceval_gil.c, FORCE_SWITCHING): the same pthread calls in the
// same order on the same kinds of objects. The fake keeps its own switch
// counter and counts its forced drops, so the recorded events can be
// checked against the truth, exactly as gilscope checks CPython's counter.
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <ctime>
#include <memory>
#include <thread>
#include <vector>

#include "hooks/gil_watch.h"
#include "recorder/arena.h"
#include "recorder/collector.h"
#include "recorder/producer.h"
#include "report/analysis.h"
#include "runner/collect.h"

namespace gilscope {
namespace {

struct FakeGil {
  long interval_us = 100;
  std::atomic<void*> last_holder{nullptr};
  int locked = 0;  // read by the hooks as gil->locked
  unsigned long switch_number = 0;
  pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
  pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t switch_cond = PTHREAD_COND_INITIALIZER;
  pthread_mutex_t switch_mutex = PTHREAD_MUTEX_INITIALIZER;
  std::atomic<int> drop_request{0};
  std::atomic<int> forced_drops{0};  // the truth for forced releases

  void Take(void* tstate) {
    pthread_mutex_lock(&mutex);
    while (__atomic_load_n(&locked, __ATOMIC_RELAXED)) {
      const unsigned long saved = switch_number;
      timespec deadline;
      clock_gettime(CLOCK_REALTIME, &deadline);
      deadline.tv_nsec += interval_us * 1000;
      if (deadline.tv_nsec >= 1'000'000'000) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1'000'000'000;
      }
      const int r = pthread_cond_timedwait(&cond, &mutex, &deadline);
      if (r == ETIMEDOUT && locked && switch_number == saved) drop_request.store(1);
    }
    pthread_mutex_lock(&switch_mutex);
    __atomic_store_n(&locked, 1, __ATOMIC_RELAXED);
    if (tstate != last_holder.load()) {
      last_holder.store(tstate);
      ++switch_number;
    }
    pthread_cond_signal(&switch_cond);
    pthread_mutex_unlock(&switch_mutex);
    drop_request.store(0);
    pthread_mutex_unlock(&mutex);
  }

  void Drop(void* tstate) {
    last_holder.store(tstate);
    pthread_mutex_lock(&mutex);
    if (drop_request.load()) forced_drops.fetch_add(1);
    __atomic_store_n(&locked, 0, __ATOMIC_RELAXED);
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&mutex);
    if (drop_request.load()) {
      pthread_mutex_lock(&switch_mutex);
      if (last_holder.load() == tstate) {
        drop_request.store(0);
        pthread_cond_wait(&switch_cond, &switch_mutex);
      }
      pthread_mutex_unlock(&switch_mutex);
    }
  }

  hooks::GilAddresses Addresses() const {
    hooks::GilAddresses a;
    a.mutex = &mutex;
    a.cond = &cond;
    a.switch_cond = &switch_cond;
    a.locked = &locked;
    a.switch_number = &switch_number;
    a.last_holder = reinterpret_cast<void* const*>(&last_holder);
    return a;
  }
};
static_assert(sizeof(std::atomic<void*>) == sizeof(void*));

// A fresh arena of `slots` slots, installed: the hooks record into it.
std::unique_ptr<recorder::Arena> InstallArena(std::uint32_t slots) {
  recorder::ArenaConfig config;
  config.slot_count = slots;
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
  report::RunTrace trace;
  runner::CollectInto(*arena, std::move(logs), collector.dropped_no_slot(), trace);
  recorder::Install(nullptr);

  // main: kUncontended + 1 takes after releasing, the other thread 1.
  EXPECT_EQ(acquired, kUncontended + 2u);
  EXPECT_EQ(requests, 1u);  // the other thread's: it waited
  EXPECT_GE(folded, kUncontended + 0u);
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
}  // namespace
}  // namespace gilscope
