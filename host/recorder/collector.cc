#include "recorder/collector.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace gilscope::recorder {

Collector::Collector(Arena& arena) : arena_(arena), clock_(arena.header().clock) {}

void Collector::Deliver(std::uint32_t slot, const Event* ring, std::size_t n, std::vector<Event>& out) {
  while (n > 0) {
    const std::size_t k = std::min(n, kChunkEvents);
    const Event* piece = ring;
    if (clock_.enabled != 0) {
      // Stamps are TSC ticks: convert each timed event (and a folded
      // request's wait, a span of ticks) into nanoseconds.
      scratch_.assign(ring, ring + k);
      for (Event& e : scratch_) {
        if (!HasTime(e.kind)) continue;
        e.ts = TscToNs(clock_, e.ts);
        if (e.kind == EventKind::kAcquired && (e.flags & kFlagRequestFolded) != 0) {
          e.aux = static_cast<std::uint32_t>(std::min<std::uint64_t>(TscSpanToNs(clock_, e.aux), UINT32_MAX));
        }
      }
      piece = scratch_.data();
    }
    if (sink_) {
      sink_(slot, piece, k);
    } else {
      // insert() grows the vector geometrically (an exact reserve each
      // round would copy everything drained so far every time).
      out.insert(out.end(), piece, piece + k);
    }
    ring += k;
    n -= k;
  }
}

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
    while (tail < head) {
      const std::uint64_t at = tail & mask;
      const std::uint64_t n = std::min(head - tail, mask + 1 - at);  // up to the ring's end
      Deliver(i, ring + at, static_cast<std::size_t>(n), drained_[i]);
      tail += n;
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
