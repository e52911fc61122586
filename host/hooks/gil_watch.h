// Which pthread objects belong to a GIL, and what each hooked call on them means.
//
// The interposed pthread functions (pthread_hooks.cc) ask Find() about every
// mutex or condition variable they are given. Find() is the whole cost for
// every object that is not a GIL's: one relaxed load from an open-addressed
// table and one compare (the table is sparse, so the slot is almost always
// empty). A hit dispatches to the On* handlers below, which turn CPython's
// take_gil/drop_gil protocol into recorder events:
//
//   take_gil: lock(gil->mutex)             -> kRequest (if not already holding)
//             timedwait(gil->cond) timeout -> kWaitTimeout (+drop request?)
//             signal(gil->switch_cond)     -> kAcquired
//   drop_gil: signal(gil->cond)            -> kReleased (forced if a drop
//                                             request was made during the hold)
//
// No CPython include: the addresses come from the shim as plain pointers.
// Watch/Unwatch may run while other threads call Find(); entries are
// published with release stores.
#pragma once

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

// Reads the Python frame of the thread state releasing a GIL: returns 0 and
// an opaque code id and a line, or -1. Called inside drop_gil while the
// releasing thread still owns the GIL. Set once before recording starts.
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

// CPython's own switch counter of a watched GIL.
// PRECONDITION: the caller holds that GIL, so the counter cannot move.
unsigned long CpythonSwitchNumber(int gil);

namespace internal {

enum class ObjectKind : std::uint8_t { kGilMutex = 1, kGilCond = 2, kSwitchCond = 3 };

struct WatchEntry {
  ObjectKind kind;
  std::uint8_t gil;
};

inline constexpr int kTableBits = 10;
inline constexpr std::uintptr_t kTableMask = (std::uintptr_t{1} << kTableBits) - 1;
inline constexpr std::uintptr_t kTombstone = 1;  // never a real object address

extern std::atomic<std::uintptr_t> g_keys[std::uintptr_t{1} << kTableBits];
extern WatchEntry g_entries[std::uintptr_t{1} << kTableBits];

inline std::uintptr_t Slot(std::uintptr_t key) {
  return (key * 0x9E3779B97F4A7C15ull) >> (64 - kTableBits);
}

const WatchEntry* FindSlow(std::uintptr_t key, std::uintptr_t slot) noexcept;

}  // namespace internal

// The hot-path filter. nullptr for every object that is not a watched GIL's.
inline const internal::WatchEntry* Find(const void* object) noexcept {
  const auto key = reinterpret_cast<std::uintptr_t>(object);
  const std::uintptr_t slot = internal::Slot(key);
  // relaxed: a miss needs no ordering; a hit re-reads with acquire in FindSlow.
  const std::uintptr_t k = internal::g_keys[slot].load(std::memory_order_relaxed);
  if (k == 0) [[likely]] return nullptr;
  return internal::FindSlow(key, slot);
}

// The handlers, called only on a hit. They never throw, lock or allocate.
void OnGilMutexLock(const internal::WatchEntry& e) noexcept;
// Called with the GIL's mutex held, before and after the real timed wait.
unsigned long OnGilTimedWaitBegin(const internal::WatchEntry& e) noexcept;
void OnGilTimedWaitEnd(const internal::WatchEntry& e, int rc, unsigned long saved_switch) noexcept;
void OnGilCondSignal(const internal::WatchEntry& e) noexcept;

}  // namespace gilscope::hooks
