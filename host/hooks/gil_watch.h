// Which pthread objects belong to a GIL, and what each hooked call on them means.
//
// The interposed pthread functions (pthread_hooks.cc) ask Find() about every
// mutex or condition variable they are given. Find() is the whole cost for
// every object that is not a GIL's: one relaxed load from an open-addressed
// table and one compare (the table is sparse, so the slot is almost always
// empty). A hit dispatches to the On* handlers below, which turn CPython's
// take_gil/drop_gil protocol into recorder events:
//
//   take_gil: lock(gil->mutex)             -> the request (written as kRequest
//                                             only if the thread then waits)
//             timedwait(gil->cond) timeout -> kWaitTimeout (+drop request?)
//             signal(gil->switch_cond)     -> kAcquired (request folded in)
//   drop_gil: lock(gil->mutex)             -> kFrame: the releasing frame
//                                             (left out when it is the same
//                                             as the thread's last one)
//             signal(gil->cond)            -> kReleased (forced if a drop
//                                             request was made during the hold)
//
// Per GIL release and retake of an uncontended GIL (a blocking call) the
// observed thread reads the clock twice, at the release and at the
// acquisition: take_gil tries the mutex first, and a free mutex over a free
// GIL means the request is granted at once (wait 0, no stamp needed).
//
// No CPython include: the addresses come from the shim as plain pointers.
// Watch/Unwatch may run while other threads call Find(); table words are
// published with release stores. What the hot path touches is laid out in
// hot_state.h.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>

namespace gilscope::hooks {

struct GilAddresses {
  const void* mutex = nullptr;
  const void* cond = nullptr;
  const void* switch_cond = nullptr;
  const int* locked = nullptr;                  // gil->locked
  const unsigned long* switch_number = nullptr; // gil->switch_number
  void* const* last_holder = nullptr;           // gil->last_holder
};

inline constexpr int kMaxGils = 255;  // Event::gil is a byte

// What the run knows about a GIL besides its addresses.
struct GilMeta {
  std::int64_t interpreter = 0;  // CPython interpreter id
  std::int32_t instance = -1;    // the run's instance it belongs to
  // Record the releasing thread's Python frame (kFrame) at each release.
  bool probe_frames = false;
};

// Reads the Python frame of the thread state releasing a GIL: an opaque code
// id and a line, and returns 1 when that frame is the one this thread's
// previous successful call returned (same code object, instruction and
// interpreter), 0 when it is another, -1 when there is none. Called inside
// drop_gil while the releasing thread still owns the GIL. Set once before
// recording starts.
using FrameProbe = int (*)(const void* tstate, std::uint64_t* code_id, std::uint32_t* line);
void SetFrameProbe(FrameProbe probe);

// Starts recording a GIL: reserves its run-wide index in the installed arena
// (recorder::Installed()), opens its GilRecord (window start, CPython's switch
// counter) and watches its objects. The calling thread must hold this GIL
// (its fields are read and its hold is opened with a synthetic kAcquired,
// kFlagAtStart, so later releases pair up). Returns the index, or -1 when
// no arena is installed or the GIL table is full.
int StartGil(const GilAddresses& gil, const GilMeta& meta, std::uintptr_t caller_tstate);
// Closes a GIL's window (end time, CPython's counter) and stops watching it.
// PRECONDITION: the calling thread holds that GIL. Calls in flight may still
// complete their event.
void StopGil(int index);
// StopGil for every GIL this process still records (the process is ending;
// the calling thread holds the GIL it was running under).
void StopAllGils();
// Stops watching everything without closing windows (for tests).
void UnwatchAll();

// Marks this process in the arena's process table (called once per process
// that records; forked children are added automatically).
void RegisterProcess(const char* role, std::int32_t instance);
// Records this process's exit status (called on its way out).
void MarkProcessExit(int status);
// Whether the calling process is the one the hooks' memory belongs to: false
// in a vfork child (which runs in its parent's memory until it execs or
// exits: _posixsubprocess calls _exit(255) there when exec fails), and in a
// process that never recorded. The _exit hook does its work only when true,
// so a vfork child never closes its parent's GIL windows or thread slot.
bool InOwnProcess();

// CPython's own switch counter of a watched GIL.
// PRECONDITION: the caller holds that GIL, so the counter cannot move.
unsigned long CpythonSwitchNumber(int gil);

namespace internal {

enum class ObjectKind : std::uint8_t { kNone = 0, kGilMutex = 1, kGilCond = 2, kSwitchCond = 3 };

// What Find() says about an object: kind kNone when it is no watched GIL's.
struct WatchEntry {
  ObjectKind kind;
  std::uint8_t gil;
};

// The watch table: open addressing over 1024 words, each an object's
// address (low 48 bits: user-space addresses on Linux x86-64 and arm64) with
// what it is in the top bits, kind in bits 48-49 and GIL index in 56-63, so
// a hit needs nothing but the word the miss test loaded. 0: empty;
// kTombstone: removed.
inline constexpr int kTableBits = 10;
inline constexpr std::uintptr_t kTableMask = (std::uintptr_t{1} << kTableBits) - 1;
inline constexpr std::uintptr_t kTombstone = 1;  // never a real object address
inline constexpr unsigned kKindShift = 48;
inline constexpr unsigned kGilShift = 56;
inline constexpr std::uintptr_t kAddressMask = (std::uintptr_t{1} << kKindShift) - 1;

// hidden (here and for the hot page): the executable exports its symbols
// for the interposers, and an exported variable is reached through the GOT,
// one more load and one more page; hidden ones are addressed directly.
extern std::atomic<std::uintptr_t> g_keys[std::uintptr_t{1} << kTableBits] __attribute__((visibility("hidden")));

inline std::uintptr_t Slot(std::uintptr_t key) {
  return (key * 0x9E3779B97F4A7C15ull) >> (64 - kTableBits);
}

inline WatchEntry EntryOf(std::uintptr_t word) {
  return WatchEntry{static_cast<ObjectKind>((word >> kKindShift) & 3), static_cast<std::uint8_t>(word >> kGilShift)};
}

WatchEntry FindSlow(std::uintptr_t key, std::uintptr_t slot) noexcept;

}  // namespace internal

// The hot-path filter: kind kNone for every object that is not a watched
// GIL's. relaxed: a table word is self-contained (address and meaning in one
// atomic store). The GIL state a hit leads to was written before the word's
// release store (Insert), and is reached through the index in the word, so
// its loads depend on this one: ordered on x86 and arm64 without a fence.
inline internal::WatchEntry Find(const void* object) noexcept {
  const auto key = reinterpret_cast<std::uintptr_t>(object);
  const std::uintptr_t slot = internal::Slot(key);
  const std::uintptr_t k = internal::g_keys[slot].load(std::memory_order_relaxed);
  if (k == 0) [[likely]] return {};
  // A hit in its home slot: the usual one, a few keys in 1024 slots.
  if ((k & internal::kAddressMask) == key) [[likely]] return internal::EntryOf(k);
  return internal::FindSlow(key, slot);
}

// The handlers, called only on a hit. They never throw or allocate, and
// lock nothing but the GIL's own mutex (LockForTake, for its caller).
//
// Before lock(gil->mutex). In drop_gil (the thread holds this GIL) it reads
// the releasing frame and returns false. In take_gil it notes the request
// and returns true: the caller must then lock the mutex through
// LockForTake, not directly.
bool OnGilMutexLock(int gil) noexcept;
// take_gil's lock of the GIL's mutex, with the real pthread_mutex_lock. A
// mutex found free (glibc's lock word) over a GIL found free once the mutex
// is held (gil->locked is written only under the mutex, so take_gil will
// find the same) is a request granted at once: no clock read. Otherwise the
// request is stamped before blocking on a busy mutex, or once the mutex is
// held over a held GIL (the thread will wait on its cond). Returns what the
// real lock returns. (A thread that takes the mutex in the few instructions
// between the look and the lock makes the wait for the mutex go unstamped:
// at most that thread's short critical section.)
int LockForTake(int gil, pthread_mutex_t* mutex) noexcept;
// Called with the GIL's mutex held, before and after the real timed wait.
unsigned long OnGilTimedWaitBegin(internal::WatchEntry e) noexcept;
void OnGilTimedWaitEnd(internal::WatchEntry e, int rc, unsigned long saved_switch) noexcept;
// signal(gil->cond) in drop_gil: the release.
void OnGilRelease(int gil) noexcept;
// signal(gil->switch_cond) in take_gil: the acquisition.
void OnGilAcquire(int gil) noexcept;

}  // namespace gilscope::hooks
