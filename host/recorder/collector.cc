#include "recorder/collector.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace gilscope::recorder {

Collector::Collector(Arena& arena) : arena_(arena), clock_(arena.header().clock) { scratch_.reserve(kChunkEvents + 1); }

std::size_t Collector::DrainSlot(std::uint32_t slot, std::vector<Event>& out) {
  SlotHeader& s = arena_.slot(slot);
  Event* const ring = arena_.ring(slot);
  const std::uint64_t mask = arena_.ring_capacity() - 1;
  const bool convert = clock_.enabled != 0;
  // relaxed: only the consumer writes tail (it is kept in the slot for the
  // next Collector, not for the producer).
  std::uint64_t tail = s.tail.load(std::memory_order_relaxed);
  // At most one ring's worth per round: a producer writing as fast as this
  // copies must not keep the drain on its ring while the others fill up.
  const std::uint64_t stop = tail + mask + 1;
  std::size_t copied = 0;
  while (tail != stop) {
    // Whole chunks of kChunkEvents (one more when the last event gains its
    // kFrame back: scratch_ has room for it), so the vector it goes to grows
    // by powers of two as it did when chunks were ring slices.
    scratch_.clear();
    while (scratch_.size() < kChunkEvents && tail != stop) {
      CellWord* const cell = CellWords(&ring[tail & mask]);
      // acquire: pairs with the producer's release of the second word, so
      // the ts written before it is visible.
      const std::uint64_t rest = __atomic_load_n(&cell[1], __ATOMIC_ACQUIRE);
      if (rest == 0) break;  // not written yet: the ring is drained
      Event e;
      e.ts = cell[0];
      std::memcpy(reinterpret_cast<unsigned char*>(&e) + offsetof(Event, kind), &rest, sizeof rest);
      // release: the copy above is complete before the producer may
      // overwrite the cell.
      __atomic_store_n(&cell[1], std::uint64_t{0}, __ATOMIC_RELEASE);
      ++tail;
      ++copied;
      if (e.kind == EventKind::kFrame) {
        s.last_frame = e;
      } else if (e.kind == EventKind::kReleased && (e.flags & kFlagSameFrame) != 0) {
        // The producer wrote no kFrame for this release because it was at
        // the frame of its last one: write that one back, as if it had.
        e.flags = static_cast<std::uint16_t>(e.flags & ~kFlagSameFrame);
        if (s.last_frame.kind == EventKind::kFrame) {
          Event frame = s.last_frame;
          frame.gil = e.gil;
          scratch_.push_back(frame);
        }
      }
      if (convert && HasTime(e.kind)) {
        // Stamps are TSC ticks: convert each timed event (and a folded
        // request's wait, a span of ticks) into nanoseconds.
        e.ts = TscToNs(clock_, e.ts);
        if (e.kind == EventKind::kAcquired && (e.flags & kFlagRequestFolded) != 0) {
          e.aux = static_cast<std::uint32_t>(std::min<std::uint64_t>(TscSpanToNs(clock_, e.aux), UINT32_MAX));
        }
      }
      scratch_.push_back(e);
    }
    if (scratch_.empty()) break;
    if (sink_) {
      sink_(slot, scratch_.data(), scratch_.size());
    } else {
      // insert() grows the vector geometrically (an exact reserve each
      // round would copy everything drained so far every time).
      out.insert(out.end(), scratch_.begin(), scratch_.end());
    }
  }
  s.tail.store(tail, std::memory_order_relaxed);
  return copied;
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
  std::size_t copied = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    // acquire: a slot still being claimed has no events yet; skip it this round.
    if (arena_.slot(i).state.load(std::memory_order_acquire) < SlotState::kActive) continue;
    copied += DrainSlot(i, drained_[i]);
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
