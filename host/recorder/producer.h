// The hot path: a thread appends one event to its own ring.
//
// Record() is called from inside interposed pthread functions, so it must
// never allocate, lock, log or throw. The calling thread's ring is found
// through a trivially-initialised thread_local (no TLS guard, no constructor);
// the first event of a thread claims a slot in the installed Arena.
//
// Full-buffer policy: drop and count (SlotHeader::dropped). A thread that finds
// no free slot counts its events in ArenaHeader::dropped_no_slot.
//
// How a cell is handed over (arena.h): the producer checks that the cell at
// its head is free, writes ts, then publishes the rest with a release store.
// Nothing else is shared: the head is the thread's own.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
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

// The calling thread ends here (if it has a slot): its CPU time and a
// kThreadExit, then no more events. Done automatically when a thread exits;
// a process that ends through _exit() runs no thread-exit destructors, so
// the _exit hook calls it: the thread's last hold or released stretch then
// ends when the process did, not when the run did.
void RecordThreadExit() noexcept;

namespace internal {

// The calling thread's producer state: its ring and where it writes next.
// Trivial and constinit, so the hot path reaches it with one thread-pointer
// offset and no TLS guard or init call. Zero (no ring yet) and a thread
// without a slot both have ring == nullptr, which sends Record() to
// RecordSlow(): it claims a slot or counts the loss.
struct ProducerTls {
  SlotHeader* slot;
  Event* ring;
  std::uint64_t mask;
  std::uint64_t head;  // events written to this ring: the next cell is head & mask
  bool no_slot;        // claim failed: count drops, don't retry
  // The last kFrame this thread wrote reached its ring (RecordFrame), so the
  // ring's consumer knows it: a release at the same frame may say so with
  // kFlagSameFrame instead of writing it again. False with a new slot.
  bool frame_sent;
};

// local-exec: the recorder is linked into executables only, so the variable's
// offset from the thread pointer is a link-time constant (no GOT load, no
// extra page touched per event).
extern constinit thread_local ProducerTls t_producer __attribute__((tls_model("local-exec")));

// Claims a slot for this thread. Returns false when none is left.
bool ClaimSlow() noexcept;
void CountNoSlot() noexcept;
// Record()'s rare paths: no slot yet (claims one), no slot at all (counts),
// the cell at the head still unconsumed (counts a drop).
bool RecordSlow(const Event& event) noexcept;

// The second word of an event as Record() stores it (never 0: kinds start at 1).
inline std::uint64_t RestWord(EventKind kind, std::uint8_t gil, std::uint16_t flags, std::uint32_t aux) noexcept {
  static_assert(std::endian::native == std::endian::little, "the words overlay Event's fields");
  return static_cast<std::uint64_t>(kind) | static_cast<std::uint64_t>(gil) << 8 |
         static_cast<std::uint64_t>(flags) << 16 | static_cast<std::uint64_t>(aux) << 32;
}

}  // namespace internal

inline bool Record(EventKind kind, std::uint8_t gil, std::uint16_t flags, std::uint64_t ts,
                   std::uint32_t aux = 0) noexcept {
  internal::ProducerTls& p = internal::t_producer;
  Event* const ring = p.ring;
  if (ring == nullptr) [[unlikely]] return internal::RecordSlow(Event{ts, kind, gil, flags, aux});
  CellWord* const cell = CellWords(&ring[p.head & p.mask]);
  // acquire: pairs with the consumer's release of 0, so its copy of the
  // cell's last event is complete before the cell is overwritten.
  if (__atomic_load_n(&cell[1], __ATOMIC_ACQUIRE) != 0) [[unlikely]] {
    return internal::RecordSlow(Event{ts, kind, gil, flags, aux});  // full: counted there
  }
  cell[0] = ts;
  // release: ts is in place before the cell is published. The second word is
  // built in registers (mostly constants at each call site).
  __atomic_store_n(&cell[1], internal::RestWord(kind, gil, flags, aux), __ATOMIC_RELEASE);
  ++p.head;
  return true;
}

// A kFrame (the frame of the release that follows), remembered as sent when
// it reached the ring (see ProducerTls::frame_sent).
inline bool RecordFrame(std::uint8_t gil, std::uint64_t code_id, std::uint32_t line) noexcept {
  const bool recorded = Record(EventKind::kFrame, gil, 0, code_id, line);
  internal::t_producer.frame_sent = recorded;
  return recorded;
}

// Whether this thread's ring holds the last kFrame it wrote (RecordFrame).
inline bool LastFrameSent() noexcept { return internal::t_producer.frame_sent; }

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
