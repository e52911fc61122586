// The recorder under several producer threads: nothing lost below capacity,
// every loss counted above it, per-thread order kept.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "recorder/arena.h"
#include "recorder/clock.h"
#include "recorder/collector.h"
#include "recorder/event.h"
#include "recorder/producer.h"

namespace gilscope::recorder {
namespace {

// Each test owns an arena and installs it; Install resets only the calling
// thread's slot, so producers are always fresh threads.
class RecorderTest : public ::testing::Test {
 protected:
  void TearDown() override {
    Install(nullptr);
    // A test may have installed a made-up calibration: the next arena
    // measures its own.
    UseClock(TscCalibration{});
  }
};

TEST_F(RecorderTest, ConcurrentProducersLoseNothingWhileDrained) {
  ArenaConfig config;
  config.slot_count = 16;
  config.ring_capacity = 1u << 10;  // small: the drain must keep up
  auto arena = Arena::Create(config);
  Install(arena.get());
  Collector collector(*arena);
  collector.Start(std::chrono::microseconds(200));

  constexpr int kThreads = 4;
  constexpr std::uint64_t kEvents = 200'000;
  std::atomic<std::uint64_t> refused{0};
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      SetCurrentThreadName("producer-" + std::to_string(t));
      for (std::uint64_t i = 0; i < kEvents; ++i) {
        // Back off when full instead of dropping: this test checks delivery.
        // kThreadState's ts is an address, handed back as written (a timed
        // kind's stamp would come back converted to ns).
        while (!Record(EventKind::kThreadState, static_cast<std::uint8_t>(t), 0, i)) {
          refused.fetch_add(1, std::memory_order_relaxed);
          std::this_thread::yield();
        }
      }
    });
  }
  for (auto& p : producers) p.join();
  collector.Stop();

  std::vector<ThreadLog> logs = collector.Take();
  ASSERT_EQ(logs.size(), static_cast<std::size_t>(kThreads));
  for (const ThreadLog& log : logs) {
    // Its events, then the exit event the recorder adds when a thread ends.
    ASSERT_EQ(log.events.size(), kEvents + 1) << log.name;
    EXPECT_EQ(log.events.back().kind, EventKind::kThreadExit);
    // Every refused attempt was counted as a drop, and nothing else was.
    const std::uint8_t gil = log.events.front().gil;
    EXPECT_EQ(log.name, "producer-" + std::to_string(gil));
    for (std::uint64_t i = 0; i < kEvents; ++i) {
      ASSERT_EQ(log.events[i].ts, i) << "out of order in " << log.name;
      ASSERT_EQ(log.events[i].gil, gil);
    }
  }
  std::uint64_t dropped = 0;
  for (const ThreadLog& log : logs) dropped += log.dropped;
  EXPECT_EQ(dropped, refused.load());
}

TEST_F(RecorderTest, FullRingDropsAndCounts) {
  ArenaConfig config;
  config.slot_count = 2;
  config.ring_capacity = 64;
  auto arena = Arena::Create(config);
  Install(arena.get());
  Collector collector(*arena);  // not started: nothing drains

  std::thread producer([] {
    for (std::uint64_t i = 0; i < 100; ++i) Record(EventKind::kThreadState, 0, 0, i);
  });
  producer.join();
  collector.Stop();  // one final drain
  std::vector<ThreadLog> logs = collector.Take();
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_EQ(logs[0].events.size(), 64u);
  // 36 over capacity, plus the thread's exit event, which found it full too.
  EXPECT_EQ(logs[0].dropped, 37u);
  EXPECT_EQ(logs[0].events.back().ts, 63u);  // the oldest were kept, the newest dropped
}

TEST_F(RecorderTest, ThreadsBeyondSlotCountAreCountedNotLost) {
  ArenaConfig config;
  config.slot_count = 2;
  config.ring_capacity = 64;
  auto arena = Arena::Create(config);
  Install(arena.get());
  Collector collector(*arena);
  for (int t = 0; t < 5; ++t) {
    std::thread([] {
      for (int i = 0; i < 3; ++i) Record(EventKind::kRequest, 0, 0, 1);
    }).join();
  }
  collector.Stop();
  std::vector<ThreadLog> logs = collector.Take();
  ASSERT_EQ(logs.size(), 2u);
  // Each of the first two threads: 3 events + its exit event.
  EXPECT_EQ(logs[0].events.size(), 4u);
  EXPECT_EQ(logs[0].events.back().kind, EventKind::kThreadExit);
  EXPECT_EQ(collector.dropped_no_slot(), 9u);
}

// Producers write stamps; the Collector hands out nanoseconds, converted with
// the arena's calibration: every timed kind, and a folded request's wait
// (a span of ticks). An address or a code id is never converted.
TEST_F(RecorderTest, CollectorConvertsStampsWithTheArenasCalibration) {
  ArenaConfig config;
  config.slot_count = 2;
  config.ring_capacity = 64;
  auto arena = Arena::Create(config);
  TscCalibration c{};
  c.tsc_base = 1'000;
  c.ns_base = 7'000'000'000;
  c.mult = std::uint64_t{3} << (kTscShift - 1);  // 1.5 ns per tick
  c.enabled = 1;
  arena->header().clock = c;
  Install(arena.get());
  Collector collector(*arena);
  std::thread([] {
    Record(EventKind::kRequest, 0, 0, 3'000);
    Record(EventKind::kAcquired, 0, kFlagRequestFolded, 5'000, 400);
    Record(EventKind::kThreadState, 0, 0, 0xdead'beef);
    Record(EventKind::kFrame, 0, 0, 0x1234'5678, 42);
    Record(EventKind::kReleased, 0, kFlagForced, 9'001);
    Record(EventKind::kMark, 0, 0, 10'000, 3);
  }).join();
  collector.Stop();
  std::vector<ThreadLog> logs = collector.Take();
  ASSERT_EQ(logs.size(), 1u);
  const std::vector<Event>& e = logs[0].events;
  ASSERT_EQ(e.size(), 7u);  // and the thread's exit
  EXPECT_EQ(e[0].ts, 7'000'003'000u);  // (3000 - 1000) * 1.5
  EXPECT_EQ(e[1].ts, 7'000'006'000u);
  EXPECT_EQ(e[1].aux, 600u);           // 400 ticks of waiting
  EXPECT_EQ(e[2].ts, 0xdead'beefu);    // an address
  EXPECT_EQ(e[3].ts, 0x1234'5678u);    // a code id
  EXPECT_EQ(e[3].aux, 42u);            // its line
  EXPECT_EQ(e[4].ts, 7'000'012'001u);  // 8001 * 1.5, rounded down
  EXPECT_EQ(e[4].flags, kFlagForced);
  EXPECT_EQ(e[5].ts, 7'000'013'500u);
  EXPECT_EQ(e[5].aux, 3u);             // a marker name, not a time
  EXPECT_EQ(e[6].kind, EventKind::kThreadExit);
  EXPECT_GE(e[6].ts, e[5].ts);         // the real TSC, far past the base
}

// Without a TSC calibration a stamp is CLOCK_MONOTONIC ns: nothing changes.
TEST_F(RecorderTest, CollectorKeepsMonotonicStampsAsTheyAre) {
  ArenaConfig config;
  config.slot_count = 2;
  config.ring_capacity = 64;
  auto arena = Arena::Create(config);
  arena->header().clock = TscCalibration{};
  Install(arena.get());
  Collector collector(*arena);
  std::thread([] {
    Record(EventKind::kRequest, 0, 0, 3'000);
    Record(EventKind::kAcquired, 0, kFlagRequestFolded, 5'000, 400);
  }).join();
  collector.Stop();
  std::vector<ThreadLog> logs = collector.Take();
  ASSERT_EQ(logs.size(), 1u);
  ASSERT_EQ(logs[0].events.size(), 3u);
  EXPECT_EQ(logs[0].events[0].ts, 3'000u);
  EXPECT_EQ(logs[0].events[1].ts, 5'000u);
  EXPECT_EQ(logs[0].events[1].aux, 400u);
  // The exit was stamped by NowNs()'s clock, now CLOCK_MONOTONIC: its ts is
  // a real time, comparable with this thread's.
  EXPECT_LE(logs[0].events[2].ts, MonotonicNs());
}

// A release flagged kFlagSameFrame left its kFrame out of the ring (the
// thread's last kFrame names it): the Collector writes that kFrame back
// before it, with the release's GIL, and clears the flag. What it remembers
// lives in the slot, so a later Collector of the arena continues from it. A
// thread that never wrote a kFrame gets none.
TEST_F(RecorderTest, CollectorWritesBackTheFrameAReleaseLeftOut) {
  ArenaConfig config;
  config.slot_count = 4;
  config.ring_capacity = 64;
  auto arena = Arena::Create(config);
  arena->header().clock = TscCalibration{};  // stamps are ns: handed out as written
  Install(arena.get());
  std::atomic<int> step{0};
  std::thread producer([&] {
    EXPECT_TRUE(RecordFrame(3, 0xC0DE, 7));
    EXPECT_TRUE(LastFrameSent());
    Record(EventKind::kReleased, 3, 0, 100);
    Record(EventKind::kAcquired, 3, 0, 150);
    Record(EventKind::kReleased, 5, kFlagSameFrame | kFlagForced, 200);
    step.store(1);
    while (step.load() != 2) {
    }
    Record(EventKind::kReleased, 3, kFlagSameFrame, 300);
  });
  while (step.load() != 1) {
  }
  std::vector<ThreadLog> first_logs;
  {
    Collector first(*arena);
    first.Stop();
    first_logs = first.Take();
  }
  Collector second(*arena);
  step.store(2);
  producer.join();
  std::thread([] { Record(EventKind::kReleased, 0, kFlagSameFrame, 50); }).join();
  second.Stop();
  std::vector<ThreadLog> second_logs = second.Take();

  ASSERT_EQ(first_logs.size(), 1u);
  const std::vector<Event>& a = first_logs[0].events;
  ASSERT_EQ(a.size(), 5u);
  EXPECT_EQ(a[0].kind, EventKind::kFrame);
  EXPECT_EQ(a[1].ts, 100u);
  EXPECT_EQ(a[2].kind, EventKind::kAcquired);
  EXPECT_EQ(a[3].kind, EventKind::kFrame);  // written back
  EXPECT_EQ(a[3].ts, 0xC0DEu);
  EXPECT_EQ(a[3].aux, 7u);
  EXPECT_EQ(a[3].gil, 5);                   // the release's GIL
  EXPECT_EQ(a[4].kind, EventKind::kReleased);
  EXPECT_EQ(a[4].ts, 200u);
  EXPECT_EQ(a[4].flags, kFlagForced);       // the ring-only flag is gone

  ASSERT_EQ(second_logs.size(), 2u);
  const std::vector<Event>& b = second_logs[0].events;
  ASSERT_EQ(b.size(), 3u);  // the frame written back, the release, the thread's exit
  EXPECT_EQ(b[0].kind, EventKind::kFrame);
  EXPECT_EQ(b[0].ts, 0xC0DEu);
  EXPECT_EQ(b[0].gil, 3);
  EXPECT_EQ(b[1].ts, 300u);
  EXPECT_EQ(b[1].flags, 0);
  EXPECT_EQ(b[2].kind, EventKind::kThreadExit);
  const std::vector<Event>& c = second_logs[1].events;
  ASSERT_EQ(c.size(), 2u);  // no frame to write back: the release alone, then the exit
  EXPECT_EQ(c[0].kind, EventKind::kReleased);
  EXPECT_EQ(c[0].flags, 0);
}

TEST(Clock, TscConversionIsAMultiplyAndShiftFromTheBase) {
  TscCalibration c{};
  c.tsc_base = 1000;
  c.ns_base = 5'000'000'000;
  c.mult = std::uint64_t{1} << (kTscShift - 1);  // half a nanosecond per tick
  c.enabled = 1;
  EXPECT_EQ(TscToNs(c, 1000), 5'000'000'000u);
  EXPECT_EQ(TscToNs(c, 3000), 5'000'001'000u);
  EXPECT_EQ(TscToNs(c, 10), 5'000'000'000u);  // a core a little behind the base: clamped, never wrapped
  // Ticks whose product with mult overflows 64 bits (days at GHz rates).
  EXPECT_EQ(TscToNs(c, 1000 + (std::uint64_t{1} << 40)), 5'000'000'000u + (std::uint64_t{1} << 39));
}

// Every arena of a process, and every process of a run, converts with one
// calibration: the one the run's arena carries. NowNs() stays on the
// CLOCK_MONOTONIC axis and never goes back, in this process and in a child.
TEST(Clock, OneTimeAxisForTheRunAndItsChildren) {
  auto first = Arena::Create(ArenaConfig{2, 64});
  Install(first.get());
  auto second = Arena::Create(ArenaConfig{2, 64});
  const TscCalibration& a = first->header().clock;
  const TscCalibration& b = second->header().clock;
  EXPECT_EQ(a.enabled, b.enabled);
  EXPECT_EQ(a.mult, b.mult);
  EXPECT_EQ(a.tsc_base, b.tsc_base);
  EXPECT_EQ(a.ns_base, b.ns_base);
  EXPECT_STREQ(ClockSource(), a.enabled != 0 ? "tsc" : "monotonic");

  // Within a millisecond of CLOCK_MONOTONIC, read between two of its reads.
  const std::uint64_t before = MonotonicNs();
  const std::uint64_t now = NowNs();
  const std::uint64_t after = MonotonicNs();
  EXPECT_GT(now + 1'000'000, before);
  EXPECT_LT(now, after + 1'000'000);
  std::uint64_t last = NowNs();
  for (int i = 0; i < 100'000; ++i) {
    const std::uint64_t t = NowNs();
    ASSERT_GE(t, last);
    last = t;
  }

  // A child stamps after its parent's stamp and before the parent's next one.
  const std::uint64_t parent_before = NowNs();
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Install(second.get());  // a spawned child adopts the arena's calibration this way
    const std::uint64_t t = NowNs();
    const bool ok = write(fds[1], &t, sizeof t) == static_cast<ssize_t>(sizeof t);
    _exit(ok ? 0 : 1);
  }
  std::uint64_t child_ts = 0;
  ASSERT_EQ(read(fds[0], &child_ts, sizeof child_ts), static_cast<ssize_t>(sizeof child_ts));
  const std::uint64_t parent_after = NowNs();
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  close(fds[0]);
  close(fds[1]);
  EXPECT_EQ(status, 0);
  EXPECT_GE(child_ts, parent_before);
  EXPECT_LE(child_ts, parent_after);
  Install(nullptr);
}
}  // namespace
}  // namespace gilscope::recorder
