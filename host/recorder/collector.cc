#include "recorder/collector.h"

#include <algorithm>
#include <cstring>

namespace gilscope::recorder {

void Collector::Start(std::chrono::microseconds period) {
  stop_.store(false, std::memory_order_relaxed);
  thread_ = std::thread([this, period] { Loop(period); });
}

void Collector::Loop(std::chrono::microseconds period) {
  // relaxed: stop_ only ends the loop; Stop() drains again after join.
  while (!stop_.load(std::memory_order_relaxed)) {
    DrainOnce();
    std::this_thread::sleep_for(period);
  }
}

void Collector::Stop() {
  if (thread_.joinable()) {
    stop_.store(true, std::memory_order_relaxed);
    thread_.join();
  }
  DrainOnce();
}

std::size_t Collector::DrainOnce() {
  const std::uint32_t n = arena_.claimed();
  if (drained_.size() < n) drained_.resize(n);
  const std::uint64_t mask = arena_.ring_capacity() - 1;
  std::size_t copied = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    SlotHeader& s = arena_.slot(i);
    // acquire: a slot still being claimed has no events yet; skip it this round.
    if (s.state.load(std::memory_order_acquire) < SlotState::kActive) continue;
    // acquire: pairs with the producer's release of head, so the events
    // below head are completely written.
    const std::uint64_t head = s.head.load(std::memory_order_acquire);
    std::uint64_t tail = s.tail.load(std::memory_order_relaxed);
    if (head == tail) continue;
    const Event* ring = arena_.ring(i);
    copied += head - tail;
    if (sink_) {
      while (tail < head) {
        const std::uint64_t at = tail & mask;
        const std::uint64_t n = std::min(head - tail, mask + 1 - at);  // up to the ring's end
        sink_(i, ring + at, static_cast<std::size_t>(n));
        tail += n;
      }
    } else {
      // insert() grows the vector geometrically (an exact reserve each
      // round would copy everything drained so far every time).
      std::vector<Event>& out = drained_[i];
      while (tail < head) {
        const std::uint64_t at = tail & mask;
        const std::uint64_t n = std::min(head - tail, mask + 1 - at);  // up to the ring's end
        out.insert(out.end(), ring + at, ring + at + n);
        tail += n;
      }
    }
    // release: our copies are done before the producer may reuse the cells.
    s.tail.store(head, std::memory_order_release);
  }
  return copied;
}

std::vector<ThreadLog> Collector::Take() {
  const std::uint32_t n = arena_.claimed();
  if (drained_.size() < n) drained_.resize(n);
  std::vector<ThreadLog> logs;
  logs.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    SlotHeader& s = arena_.slot(i);
    if (s.state.load(std::memory_order_acquire) < SlotState::kActive) continue;
    ThreadLog log;
    log.slot = i;
    log.native_id = s.native_id;
    log.pid = s.pid;
    log.name.assign(s.name, strnlen(s.name, kThreadNameSize));
    log.dropped = s.dropped.load(std::memory_order_relaxed);
    if (s.cpu_known.load(std::memory_order_acquire) == 1) log.cpu_s = static_cast<double>(s.cpu_ns) / 1e9;
    log.events = std::move(drained_[i]);
    logs.push_back(std::move(log));
  }
  return logs;
}

std::uint64_t Collector::dropped_no_slot() const {
  return arena_.header().dropped_no_slot.load(std::memory_order_relaxed);
}

}  // namespace gilscope::recorder
