// The consumer: drains every thread's ring while the run goes on.
//
// One Collector per Arena. A background thread wakes every `period` and
// copies new events out of each claimed slot, so rings stay far from full;
// Stop() drains a last time. The copied events are kept per slot in order.
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
  explicit Collector(Arena& arena) : arena_(arena) {}
  ~Collector() { Stop(); }
  Collector(const Collector&) = delete;
  Collector& operator=(const Collector&) = delete;

  // Where drained events go instead of memory: called on the drain thread
  // with each slot's new events in order (possibly in two pieces where the
  // ring wraps). Set before Start().
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
  void Loop(std::chrono::microseconds period);

  Arena& arena_;
  std::vector<std::vector<Event>> drained_;  // by slot index; touched only by the drainer
  Sink sink_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

}  // namespace gilscope::recorder
