// The consumer: drains every thread's ring while the run goes on.
//
// One Collector per Arena. A background thread wakes every `period` and
// copies new events out of each claimed slot, so rings stay far from full;
// Stop() drains a last time. The copied events are kept per slot in order.
//
// Producers write stamps (clock.h); the Collector converts them to
// nanoseconds with the arena's calibration as it copies them out, so every
// event it hands to a sink or keeps has the times event.h describes. It also
// writes back the kFrame a producer left out before a release flagged
// kFlagSameFrame (event.h), so what it hands out never carries that flag:
// work moved from the observed thread to the drain.
//
// Threads: Start/Stop/Take from one controlling thread; the drain thread is
// the Arena's only consumer (the only writer of SlotHeader::tail).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "recorder/arena.h"
#include "recorder/clock.h"
#include "recorder/event.h"

namespace gilscope::recorder {

struct ThreadLog {
  std::uint32_t slot = 0;
  std::uint64_t native_id = 0;
  std::uint32_t pid = 0;
  std::string name;
  std::uint64_t dropped = 0;
  double cpu_s = -1;  // < 0: unknown
  std::vector<Event> events;
};

class Collector {
 public:
  explicit Collector(Arena& arena);
  ~Collector() { Stop(); }
  Collector(const Collector&) = delete;
  Collector& operator=(const Collector&) = delete;

  // Where drained events go instead of memory: called on the drain thread
  // with each slot's new events in order, in pieces of at most
  // kChunkEvents + 1. Set before Start().
  using Sink = std::function<void(std::uint32_t slot, const Event* events, std::size_t n)>;
  void SetSink(Sink sink) { sink_ = std::move(sink); }

  void Start(std::chrono::microseconds period = std::chrono::milliseconds(2));
  // Stops the drain thread (if any) and drains what is left. Idempotent.
  void Stop();
  // Copies out every event published so far. Returns how many it copied.
  std::size_t DrainOnce();
  // Snapshot of identities and counters, plus the events drained so far
  // (moved out: call once, after Stop()).
  std::vector<ThreadLog> Take();
  std::uint64_t dropped_no_slot() const;

 private:
  // Events handed out at a time (one more when the last one gained its
  // kFrame back).
  static constexpr std::size_t kChunkEvents = 4096;

  void Loop(std::chrono::microseconds period);
  // Copies the published cells of `slot`'s ring out (freeing each), converted
  // to nanoseconds and with left-out kFrames written back, to the sink or
  // `out`. Returns how many cells it consumed.
  std::size_t DrainSlot(std::uint32_t slot, std::vector<Event>& out);

  Arena& arena_;
  const TscCalibration clock_;                // the arena's: how its stamps convert
  std::vector<std::vector<Event>> drained_;  // by slot index; touched only by the drainer
  std::vector<Event> scratch_;               // up to kChunkEvents + 1 events handed out at once
  Sink sink_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

}  // namespace gilscope::recorder
