// The recorder under several producer threads: nothing lost below capacity,
// every loss counted above it, per-thread order kept.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "recorder/arena.h"
#include "recorder/collector.h"
#include "recorder/event.h"
#include "recorder/producer.h"

namespace gilscope::recorder {
namespace {

// Each test owns an arena and installs it; Install resets only the calling
// thread's slot, so producers are always fresh threads.
class RecorderTest : public ::testing::Test {
 protected:
  void TearDown() override { Install(nullptr); }
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
        while (!Record(EventKind::kRequest, static_cast<std::uint8_t>(t), 0, i)) {
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
    for (std::uint64_t i = 0; i < 100; ++i) Record(EventKind::kAcquired, 0, 0, i);
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

}  // namespace
}  // namespace gilscope::recorder
