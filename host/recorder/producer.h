// The hot path: a thread appends one event to its own ring.
//
// Record() is called from inside interposed pthread functions, so it must
// never allocate, lock, log or throw. The calling thread's ring is found
// through a trivially-initialised thread_local (no TLS guard, no constructor);
// the first event of a thread claims a slot in the installed Arena.
//
// Full-buffer policy: drop and count (SlotHeader::dropped). A thread that finds
// no free slot counts its events in ArenaHeader::dropped_no_slot.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

#include "recorder/arena.h"
#include "recorder/clock.h"
#include "recorder/event.h"

namespace gilscope::recorder {

// Routes events to `arena` (nullptr: record nothing). Call before any thread
// records and keep the arena alive until no thread can record any more.
void Install(Arena* arena);
Arena* Installed() noexcept;

// Names the calling thread's slot (claiming one if needed). Truncates to fit.
void SetCurrentThreadName(std::string_view name) noexcept;

// Stores the calling thread's CPU time in its slot (if it has one). Done
// automatically when a thread exits; call it for threads that end with
// their process (the main thread, a child leaving through _exit).
void RecordCurrentThreadCpu() noexcept;

namespace internal {

struct ProducerTls {
  SlotHeader* slot;
  Event* ring;
  std::uint64_t mask;
  std::uint64_t cached_tail;  // last tail seen; reloaded only when the ring looks full
  bool no_slot;               // claim failed: count drops, don't retry
};

extern thread_local ProducerTls t_producer;

// Claims a slot for this thread. Returns false when none is left.
bool ClaimSlow() noexcept;
void CountNoSlot() noexcept;

}  // namespace internal

inline bool Record(EventKind kind, std::uint8_t gil, std::uint16_t flags, std::uint64_t ts,
                   std::uint32_t aux = 0) noexcept {
  internal::ProducerTls& p = internal::t_producer;
  if (p.slot == nullptr) [[unlikely]] {
    if (p.no_slot || !internal::ClaimSlow()) {
      internal::CountNoSlot();
      return false;
    }
  }
  SlotHeader& s = *p.slot;
  // relaxed: only this thread writes head.
  const std::uint64_t head = s.head.load(std::memory_order_relaxed);
  if (head - p.cached_tail > p.mask) [[unlikely]] {
    // acquire: pairs with the consumer's release of tail, so the cells it
    // finished copying are free to overwrite.
    p.cached_tail = s.tail.load(std::memory_order_acquire);
    if (head - p.cached_tail > p.mask) {
      s.dropped.store(s.dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      return false;
    }
  }
  p.ring[head & p.mask] = Event{ts, kind, gil, flags, aux};
  // release: the event's bytes are visible before the new head.
  s.head.store(head + 1, std::memory_order_release);
  return true;
}

// Marks the calling thread as blocked on a lock from now on, for the
// deadlock watchdog (SlotHeader::lock_wait_seq). Only threads that have a
// slot (Python threads) are marked. Returns the slot to pass to EndLockWait
// (nullptr: nothing marked).
inline SlotHeader* BeginLockWait() noexcept {
  SlotHeader* slot = internal::t_producer.slot;
  // relaxed load + store, no read-modify-write: only this thread writes it.
  if (slot != nullptr) slot->lock_wait_seq.store(slot->lock_wait_seq.load(std::memory_order_relaxed) + 1,
                                                 std::memory_order_relaxed);
  return slot;
}
inline void EndLockWait(SlotHeader* slot) noexcept {
  if (slot != nullptr) slot->lock_wait_seq.store(slot->lock_wait_seq.load(std::memory_order_relaxed) + 1,
                                                 std::memory_order_relaxed);
}

}  // namespace gilscope::recorder
