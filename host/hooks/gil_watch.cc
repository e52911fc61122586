#include "hooks/gil_watch.h"
#include "hooks/hot_state.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "recorder/arena.h"
#include "recorder/clock.h"
#include "recorder/event.h"
#include "recorder/producer.h"

namespace gilscope::hooks {
namespace internal {

std::atomic<std::uintptr_t> g_keys[std::uintptr_t{1} << kTableBits];
constinit HotPage g_hot;
GilState g_more_gils[kMaxGils - kHotGils];

WatchEntry FindSlow(std::uintptr_t key, std::uintptr_t slot) noexcept {
  for (std::uintptr_t i = 0; i <= kTableMask; ++i) {
    const std::uintptr_t s = (slot + i) & kTableMask;
    // relaxed: a word is self-contained (see Find).
    const std::uintptr_t k = g_keys[s].load(std::memory_order_relaxed);
    if ((k & kAddressMask) == key) return EntryOf(k);
    if (k == 0) return {};
  }
  return {};
}

}  // namespace internal

namespace {

using internal::ObjectKind;
using internal::WatchEntry;
using recorder::EventKind;

using internal::g_hot;
using internal::Gil;
using internal::GilState;
using internal::MutexLockFn;

// A request stamp meaning "granted at once": take_gil found the mutex and
// the GIL free, so no clock was read (a real stamp, TSC ticks or monotonic
// nanoseconds, is never 0).
constexpr std::uint64_t kTakenFree = 0;

// Per-thread hook state. Trivial and constinit, so access needs no TLS guard.
struct ThreadHookState {
  int held;                      // index + 1 of the GIL this thread holds; 0 none
  std::uintptr_t last_tstate;    // PyThreadState of its last acquisition
  // take_gil locked the GIL's mutex for GIL requested - 1, at request_stamp
  // (clock.h; kTakenFree: the GIL was free), and its kRequest is not written
  // yet: it is written when the thread waits on the GIL's cond, else folded
  // into the kAcquired that follows. 0: none.
  int requested;
  std::uint64_t request_stamp;
  // drop_gil found the releasing frame to be the one of the thread's last
  // kFrame: the kReleased that follows carries kFlagSameFrame instead.
  bool same_frame;
};
constinit thread_local ThreadHookState t_hook{};

bool Insert(const void* object, ObjectKind kind, int gil) {
  const auto key = reinterpret_cast<std::uintptr_t>(object);
  // The address must leave the word's top bits to the kind and the GIL.
  if ((key & ~internal::kAddressMask) != 0 || key == internal::kTombstone) return false;
  const std::uintptr_t word = key | std::uintptr_t{static_cast<std::uint8_t>(kind)} << internal::kKindShift |
                              std::uintptr_t{static_cast<std::uint8_t>(gil)} << internal::kGilShift;
  const std::uintptr_t slot = internal::Slot(key);
  for (std::uintptr_t i = 0; i <= internal::kTableMask; ++i) {
    const std::uintptr_t s = (slot + i) & internal::kTableMask;
    const std::uintptr_t k = internal::g_keys[s].load(std::memory_order_relaxed);
    if ((k & internal::kAddressMask) == key || k == 0 || k == internal::kTombstone) {
      // An existing key is re-pointed (a forked child re-indexes its GILs).
      // Writers are serialised by the GIL being registered (and fork);
      // readers that see the old word record one more event under the old
      // index. release: the GIL's state (Open) is written before its objects
      // become findable.
      internal::g_keys[s].store(word, std::memory_order_release);
      return true;
    }
  }
  return false;
}

void Remove(const void* object) {
  const auto key = reinterpret_cast<std::uintptr_t>(object);
  const std::uintptr_t slot = internal::Slot(key);
  for (std::uintptr_t i = 0; i <= internal::kTableMask; ++i) {
    const std::uintptr_t s = (slot + i) & internal::kTableMask;
    const std::uintptr_t k = internal::g_keys[s].load(std::memory_order_relaxed);
    if (k == 0) return;
    if ((k & internal::kAddressMask) == key) {
      // A tombstone, not 0: later keys of the same probe chain stay findable.
      internal::g_keys[s].store(internal::kTombstone, std::memory_order_release);
      return;
    }
  }
}

// Now, as a stamp of the installed clock (its kind read from the hot page).
inline std::uint64_t Stamp() noexcept { return recorder::Stamp(g_hot.tsc); }

inline void Emit(EventKind kind, int gil, std::uint16_t flags, std::uint64_t stamp) noexcept {
  recorder::Record(kind, static_cast<std::uint8_t>(gil), flags, stamp);
}

// Writes the calling thread's pending request as a kRequest (its stamp, or
// now if it was taken free and is written after all: a request that ended
// in no acquisition).
[[gnu::noinline, gnu::cold]] void WriteRequest() noexcept {
  const std::uint64_t stamp = t_hook.request_stamp != kTakenFree ? t_hook.request_stamp : Stamp();
  recorder::Record(EventKind::kRequest, static_cast<std::uint8_t>(t_hook.requested - 1), 0, stamp);
  t_hook.requested = 0;
}

// Writes the calling thread's pending request (if any) as a kRequest.
inline void FlushRequest() noexcept {
  if (t_hook.requested != 0) [[unlikely]] WriteRequest();
}

// A kThreadState: the thread state this thread's GIL calls are made with
// changed (a thread's first acquisition, or PyThreadState_Swap).
[[gnu::noinline, gnu::cold]] void WriteThreadState(int gil, std::uintptr_t tstate) noexcept {
  t_hook.last_tstate = tstate;
  recorder::Record(EventKind::kThreadState, static_cast<std::uint8_t>(gil), 0, tstate);
}

// kAcquired for GIL `gil`, with the pending request folded into it when it
// is this GIL's and its wait fits in `aux`.
inline void EmitAcquired(int gil) noexcept {
  // Not before the release it follows (see GilState::last_release_stamp).
  const std::uint64_t now =
      std::max(Stamp(), Gil(gil).last_release_stamp.load(std::memory_order_relaxed));
  if (t_hook.requested == gil + 1) [[likely]] {
    // In stamp units: the Collector converts the span with the time.
    const std::uint64_t from = t_hook.request_stamp;
    const std::uint64_t waited = from != kTakenFree && now > from ? now - from : 0;
    if (waited <= UINT32_MAX) [[likely]] {
      t_hook.requested = 0;
      recorder::Record(EventKind::kAcquired, static_cast<std::uint8_t>(gil), recorder::kFlagRequestFolded, now,
                       static_cast<std::uint32_t>(waited));
      return;
    }
  }
  FlushRequest();
  recorder::Record(EventKind::kAcquired, static_cast<std::uint8_t>(gil), 0, now);
}

// drop_gil: reads the frame of the thread state giving the GIL away and
// writes it as a kFrame, unless it is the frame of the thread's last kFrame
// and that one reached the ring: then returns true, and the release says so
// with a flag and the Collector writes the kFrame back (one event fewer here).
inline bool NoteReleasingFrame(int gil) noexcept {
  std::uint64_t code = 0;
  std::uint32_t line = 0;
  // drop_gil has just stored the releasing thread state as last_holder.
  const void* tstate = __atomic_load_n(Gil(gil).addr.last_holder, __ATOMIC_RELAXED);
  const int probed = g_hot.frame_probe(tstate, &code, &line);
  if (probed > 0 && recorder::LastFrameSent()) [[likely]] return true;
  if (probed >= 0) recorder::RecordFrame(static_cast<std::uint8_t>(gil), code, line);
  return false;
}

std::uint32_t Pid() { return static_cast<std::uint32_t>(getpid()); }

// Opens GilRecord `index` and starts watching `addr` under it.
bool Open(int index, const GilAddresses& addr, const GilMeta& meta, std::uint64_t holder_tstate) {
  recorder::Arena* arena = recorder::Installed();
  recorder::GilRecord& r = arena->gil(static_cast<std::uint32_t>(index));
  r.pid = Pid();
  r.interpreter = meta.interpreter;
  r.instance = meta.instance;
  r.start_ns = recorder::NowNs();
  r.end_ns = 0;
  r.switch_start = __atomic_load_n(addr.switch_number, __ATOMIC_RELAXED);
  r.switch_end = r.switch_start;
  r.holder_tstate_at_start = holder_tstate;
  // release: the fields above before the state that publishes them.
  r.state.store(recorder::GilRecord::kOpen, std::memory_order_release);
  GilState& g = Gil(index);
  g.addr = addr;
  g.drop_pending.store(false, std::memory_order_relaxed);
  g.probe_frames = meta.probe_frames && g_hot.frame_probe != nullptr;
  g.active = true;
  // The clock the arena's stamps use (recorder::Install set it before).
  g_hot.tsc = recorder::ClockIsTsc();
  // The mutex last: from its first hit on, the conds are known too.
  return Insert(addr.switch_cond, ObjectKind::kSwitchCond, index) &&
         Insert(addr.cond, ObjectKind::kGilCond, index) &&
         Insert(addr.mutex, ObjectKind::kGilMutex, index);
}

std::int32_t g_process_instance = -1;
// The process this memory belongs to as far as the hooks know: set when it
// starts recording, registers, or is forked (fork runs the atfork handler
// below; vfork does not, so a vfork child running in its parent's memory
// sees another pid here: see InOwnProcess()). relaxed: a plain tag, written
// before any thread of the process could read it.
std::atomic<std::int32_t> g_owner_pid{0};

void AfterForkInChild() {
  g_owner_pid.store(static_cast<std::int32_t>(getpid()), std::memory_order_relaxed);
  recorder::Arena* arena = recorder::Installed();
  if (arena == nullptr) return;
  // The child's copies of the GILs are new GILs: CPython recreates them
  // (PyOS_AfterFork_Child), resetting last_holder, and the forking thread
  // takes them again. Give each a fresh run-wide index, so the parent's
  // figures and the child's never mix.
  int inherited[kMaxGils];
  int n = 0;
  for (int i = 0; i < kMaxGils; ++i) {
    if (Gil(i).active) inherited[n++] = i;
  }
  for (int k = 0; k < n; ++k) {
    const int i = inherited[k];
    GilState& old = Gil(i);
    old.active = false;
    recorder::GilRecord& parent_record = arena->gil(static_cast<std::uint32_t>(i));
    GilMeta meta;
    meta.interpreter = parent_record.interpreter;
    meta.instance = parent_record.instance;
    meta.probe_frames = old.probe_frames;
    const int index = arena->ReserveGil();
    if (index < 0) {
      Remove(old.addr.mutex);
      Remove(old.addr.cond);
      Remove(old.addr.switch_cond);
      continue;
    }
    Open(index, old.addr, meta, /*holder_tstate=*/0);
    Gil(index).pending_start = true;
  }
  // Not holding: CPython recreates the GIL and takes it again, and the
  // thread's next acquisition must name its thread state in the new stream.
  t_hook = {};
  const std::uint32_t parent = static_cast<std::uint32_t>(getppid());
  recorder::ProcessRecord* parent_record = arena->FindProcess(parent);
  arena->AddProcess(Pid(), parent, "fork", parent_record ? parent_record->instance : g_process_instance,
                    recorder::NowNs());
}

std::atomic<bool> g_fork_handler_installed{false};

}  // namespace

void SetFrameProbe(FrameProbe probe) { g_hot.frame_probe = probe; }

int StartGil(const GilAddresses& gil, const GilMeta& meta, std::uintptr_t caller_tstate) {
  recorder::Arena* arena = recorder::Installed();
  if (arena == nullptr) return -1;
  g_owner_pid.store(static_cast<std::int32_t>(getpid()), std::memory_order_relaxed);
  if (!g_fork_handler_installed.exchange(true)) pthread_atfork(nullptr, nullptr, &AfterForkInChild);
  const int index = arena->ReserveGil();
  if (index < 0) return -1;
  // The caller holds the GIL: open its hold before the window's first event.
  t_hook.held = index + 1;
  t_hook.last_tstate = caller_tstate;
  if (!Open(index, gil, meta, caller_tstate)) return -1;
  recorder::Record(EventKind::kThreadState, static_cast<std::uint8_t>(index), 0, caller_tstate);
  Emit(EventKind::kAcquired, index, recorder::kFlagAtStart, Stamp());
  return index;
}

void StopGil(int index) {
  if (index < 0 || index >= kMaxGils) return;
  GilState& g = Gil(index);
  if (!g.active) return;
  g.active = false;
  Remove(g.addr.mutex);
  Remove(g.addr.cond);
  Remove(g.addr.switch_cond);
  recorder::Arena* arena = recorder::Installed();
  if (arena == nullptr) return;
  recorder::GilRecord& r = arena->gil(static_cast<std::uint32_t>(index));
  r.end_ns = recorder::NowNs();
  r.switch_end = __atomic_load_n(g.addr.switch_number, __ATOMIC_RELAXED);
  r.state.store(recorder::GilRecord::kClosed, std::memory_order_release);
}

void StopAllGils() {
  for (int i = 0; i < kMaxGils; ++i) {
    if (Gil(i).active) StopGil(i);
  }
}

void UnwatchAll() {
  for (auto& k : internal::g_keys) {
    if (k.load(std::memory_order_relaxed) != 0) k.store(internal::kTombstone, std::memory_order_release);
  }
  for (int i = 0; i < kMaxGils; ++i) Gil(i).active = false;
}

void RegisterProcess(const char* role, std::int32_t instance) {
  g_process_instance = instance;
  g_owner_pid.store(static_cast<std::int32_t>(getpid()), std::memory_order_relaxed);
  recorder::Arena* arena = recorder::Installed();
  if (arena == nullptr) return;
  // GILs this process already records belong to the instance too.
  for (int i = 0; i < kMaxGils; ++i) {
    if (Gil(i).active && instance >= 0) arena->gil(static_cast<std::uint32_t>(i)).instance = instance;
  }
  if (recorder::ProcessRecord* p = arena->FindProcess(Pid())) {
    std::strncpy(p->role, role, recorder::kRoleSize - 1);
    p->instance = instance;
    return;
  }
  arena->AddProcess(Pid(), static_cast<std::uint32_t>(getppid()), role, instance, recorder::NowNs());
}

void MarkProcessExit(int status) {
  recorder::Arena* arena = recorder::Installed();
  if (arena == nullptr) return;
  if (recorder::ProcessRecord* p = arena->FindProcess(Pid())) {
    p->exit_status = status;
    p->end_ns = recorder::NowNs();
    p->state.store(recorder::ProcessRecord::kExited, std::memory_order_release);
  }
}

bool InOwnProcess() {
  const std::int32_t owner = g_owner_pid.load(std::memory_order_relaxed);
  return owner != 0 && owner == static_cast<std::int32_t>(getpid());
}

unsigned long CpythonSwitchNumber(int gil) {
  return __atomic_load_n(Gil(gil).addr.switch_number, __ATOMIC_RELAXED);
}

[[gnu::hot]] bool OnGilMutexLock(int gil) noexcept {
  if (t_hook.held == gil + 1) {
    // drop_gil: this thread still owns the GIL (locked is still 1) and has
    // just stored itself as last_holder: its frame is the one giving way.
    // Set for this release only: the signal that follows consumes it.
    t_hook.same_frame = Gil(gil).probe_frames && NoteReleasingFrame(gil);
    return false;
  }
  // take_gil: the request is written only if the thread has to wait.
  if (t_hook.requested == gil + 1) return false;  // a second lock: the first request stands
  FlushRequest();
  t_hook.requested = gil + 1;
  return true;
}

[[gnu::hot]] int LockForTake(int gil, pthread_mutex_t* mutex) noexcept {
  const MutexLockFn lock = g_hot.real_mutex_lock;
  // glibc's lock word (pthread_mutex_t's public layout): 0 when free. A
  // plain look, no read-modify-write and no extra call (a trylock would
  // touch glibc's code and tables that nothing else in the cycle does).
  // relaxed: only a guess of whether the lock will block; the lock itself
  // orders everything after it.
  if (__atomic_load_n(&mutex->__data.__lock, __ATOMIC_RELAXED) != 0) [[unlikely]] {
    // Busy: the thread may block on the mutex for a while; its wait starts now.
    t_hook.request_stamp = Stamp();
    return lock(mutex);
  }
  const int rc = lock(mutex);
  // With the mutex held, gil->locked cannot change: take_gil and drop_gil
  // write it only under this mutex (relaxed: the mutex orders it). Free
  // means take_gil takes it next without waiting: granted at once. Held:
  // the thread will wait on the GIL's cond, from now.
  t_hook.request_stamp =
      __atomic_load_n(Gil(gil).addr.locked, __ATOMIC_RELAXED) == 0 ? kTakenFree : Stamp();
  return rc;
}

unsigned long OnGilTimedWaitBegin(WatchEntry e) noexcept {
  // take_gil waits for the GIL: its request is a wait's start.
  if (e.kind == ObjectKind::kGilCond) FlushRequest();
  // The mutex is held: switch_number cannot change under us.
  return *Gil(e.gil).addr.switch_number;
}

void OnGilTimedWaitEnd(WatchEntry e, int rc, unsigned long saved_switch) noexcept {
  if (e.kind != ObjectKind::kGilCond || rc != ETIMEDOUT) return;
  GilState& g = Gil(e.gil);
  // Mutex re-acquired by the wait: the same test take_gil makes next.
  const bool drop = __atomic_load_n(g.addr.locked, __ATOMIC_RELAXED) != 0 &&
                    *g.addr.switch_number == saved_switch;
  if (drop) g.drop_pending.store(true, std::memory_order_relaxed);
  Emit(EventKind::kWaitTimeout, e.gil, drop ? recorder::kFlagDropRequest : 0, Stamp());
}

// drop_gil: locked was just set to 0, the GIL's cond is signalled under the mutex.
[[gnu::hot]] void OnGilRelease(int gil) noexcept {
  GilState& g = Gil(gil);
  // drop_gil first stored the releasing thread state as last_holder
  // (CPython's fix-up for PyThreadState_Swap while holding): that is what
  // the next acquisition is compared with, so the event stream says so too.
  const auto tstate = reinterpret_cast<std::uintptr_t>(__atomic_load_n(g.addr.last_holder, __ATOMIC_RELAXED));
  if (tstate != t_hook.last_tstate && tstate != 0) [[unlikely]] WriteThreadState(gil, tstate);
  FlushRequest();  // a release with no acquisition seen: keep the request
  std::uint16_t flags = g.drop_pending.load(std::memory_order_relaxed) ? recorder::kFlagForced : 0;
  if (t_hook.same_frame) {
    flags |= recorder::kFlagSameFrame;
    t_hook.same_frame = false;
  }
  const std::uint64_t stamp = Stamp();
  g.last_release_stamp.store(stamp, std::memory_order_relaxed);
  Emit(EventKind::kReleased, gil, flags, stamp);
  t_hook.held = 0;
}

namespace {

// The re-take that follows fork: the window opens here, with CPython's
// counter read after its own increment for this acquisition.
[[gnu::noinline, gnu::cold]] void OpenForkedWindow(int gil, std::uintptr_t tstate) noexcept {
  GilState& g = Gil(gil);
  g.pending_start = false;
  if (recorder::Arena* arena = recorder::Installed()) {
    recorder::GilRecord& r = arena->gil(static_cast<std::uint32_t>(gil));
    r.start_ns = recorder::NowNs();
    r.switch_start = __atomic_load_n(g.addr.switch_number, __ATOMIC_RELAXED);
    r.holder_tstate_at_start = tstate;
  }
  FlushRequest();  // not folded: the window opens at this acquisition
  Emit(EventKind::kAcquired, gil, recorder::kFlagAtStart, Stamp());
}

}  // namespace

// take_gil: locked = 1 and last_holder = this tstate are already stored.
[[gnu::hot]] void OnGilAcquire(int gil) noexcept {
  GilState& g = Gil(gil);
  const auto tstate = reinterpret_cast<std::uintptr_t>(__atomic_load_n(g.addr.last_holder, __ATOMIC_RELAXED));
  if (tstate != t_hook.last_tstate) [[unlikely]] WriteThreadState(gil, tstate);
  g.drop_pending.store(false, std::memory_order_relaxed);
  if (g.pending_start) [[unlikely]] {
    OpenForkedWindow(gil, tstate);
  } else {
    EmitAcquired(gil);
  }
  t_hook.held = gil + 1;
}

}  // namespace gilscope::hooks
