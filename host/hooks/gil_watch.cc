#include "hooks/gil_watch.h"

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
WatchEntry g_entries[std::uintptr_t{1} << kTableBits];

const WatchEntry* FindSlow(std::uintptr_t key, std::uintptr_t slot) noexcept {
  for (std::uintptr_t i = 0; i <= kTableMask; ++i) {
    const std::uintptr_t s = (slot + i) & kTableMask;
    // acquire: pairs with the release in Insert, so the entry is complete.
    const std::uintptr_t k = g_keys[s].load(std::memory_order_acquire);
    if (k == key) return &g_entries[s];
    if (k == 0) return nullptr;
  }
  return nullptr;
}

}  // namespace internal

namespace {

using internal::ObjectKind;
using internal::WatchEntry;
using recorder::EventKind;

struct GilState {
  GilAddresses addr;
  // Whether this process records this GIL now (process-local: a forked child
  // re-indexes the GILs it inherited).
  bool active = false;
  bool probe_frames = false;
  // A forked child's copy: its window opens at its first acquisition (after
  // CPython re-created and re-took it), so the counter is read exactly then.
  bool pending_start = false;
  // Set when a waiter's timeout made a drop request during the current hold;
  // cleared at each acquisition. Touched only with the GIL's mutex held
  // (timedwait returns with it, both signals are sent under it), so relaxed
  // atomics suffice: the mutex orders them.
  std::atomic<bool> drop_pending{false};
  // The stamp of the last release, written and read under the GIL's mutex
  // like drop_pending. Stamps are unordered (clock.h): the next acquisition
  // is stamped no earlier than this, so one GIL's holds never overlap and a
  // hand-off never looks negative, whatever the CPU did with rdtsc.
  std::atomic<std::uint64_t> last_release_stamp{0};
};

GilState g_gils[kMaxGils];
FrameProbe g_frame_probe = nullptr;

// Per-thread hook state. Trivial so access needs no TLS guard.
struct ThreadHookState {
  int held;                      // index + 1 of the GIL this thread holds; 0 none
  std::uintptr_t last_tstate;    // PyThreadState of its last acquisition
  // take_gil locked the GIL's mutex at request_stamp (clock.h) for GIL
  // requested - 1 and its kRequest is not written yet: it is written when
  // the thread waits on the GIL's cond, else folded into the kAcquired that
  // follows. 0: none.
  int requested;
  std::uint64_t request_stamp;
};
thread_local ThreadHookState t_hook{};

bool Insert(const void* object, ObjectKind kind, int gil) {
  const auto key = reinterpret_cast<std::uintptr_t>(object);
  const std::uintptr_t slot = internal::Slot(key);
  for (std::uintptr_t i = 0; i <= internal::kTableMask; ++i) {
    const std::uintptr_t s = (slot + i) & internal::kTableMask;
    const std::uintptr_t k = internal::g_keys[s].load(std::memory_order_relaxed);
    if (k == key || k == 0 || k == internal::kTombstone) {
      // An existing key is re-pointed (a forked child re-indexes its GILs).
      // Writers are serialised by the GIL being registered (and fork), so
      // the relaxed entry write cannot race another writer; readers that see
      // the old entry record one more event under the old index.
      internal::g_entries[s] = WatchEntry{kind, static_cast<std::uint8_t>(gil)};
      // release: the entry is written before the key makes it findable.
      internal::g_keys[s].store(key, std::memory_order_release);
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
    if (k == key) {
      // A tombstone, not 0: later keys of the same probe chain stay findable.
      internal::g_keys[s].store(internal::kTombstone, std::memory_order_release);
      return;
    }
  }
}

inline void Emit(EventKind kind, int gil, std::uint16_t flags, std::uint64_t stamp) noexcept {
  recorder::Record(kind, static_cast<std::uint8_t>(gil), flags, stamp);
}

// Writes the calling thread's pending request (if any) as a kRequest.
inline void FlushRequest() noexcept {
  if (t_hook.requested != 0) [[unlikely]] {
    recorder::Record(EventKind::kRequest, static_cast<std::uint8_t>(t_hook.requested - 1), 0, t_hook.request_stamp);
    t_hook.requested = 0;
  }
}

// kAcquired for GIL `gil`, with the pending request folded into it when it
// is this GIL's and its wait fits in `aux`.
inline void EmitAcquired(int gil, std::uint16_t flags) noexcept {
  // Not before the release it follows (see GilState::last_release_stamp).
  const std::uint64_t now =
      std::max(recorder::Stamp(), g_gils[gil].last_release_stamp.load(std::memory_order_relaxed));
  if (t_hook.requested == gil + 1) {
    // In stamp units: the Collector converts the span with the time.
    const std::uint64_t waited = now > t_hook.request_stamp ? now - t_hook.request_stamp : 0;
    if (waited <= UINT32_MAX) {
      t_hook.requested = 0;
      recorder::Record(EventKind::kAcquired, static_cast<std::uint8_t>(gil), flags | recorder::kFlagRequestFolded,
                       now, static_cast<std::uint32_t>(waited));
      return;
    }
  }
  FlushRequest();
  recorder::Record(EventKind::kAcquired, static_cast<std::uint8_t>(gil), flags, now);
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
  GilState& g = g_gils[index];
  g.addr = addr;
  g.drop_pending.store(false, std::memory_order_relaxed);
  g.probe_frames = meta.probe_frames && g_frame_probe != nullptr;
  g.active = true;
  // The mutex last: from its first hit on, the conds are known too.
  return Insert(addr.switch_cond, ObjectKind::kSwitchCond, index) &&
         Insert(addr.cond, ObjectKind::kGilCond, index) &&
         Insert(addr.mutex, ObjectKind::kGilMutex, index);
}

std::int32_t g_process_instance = -1;

void AfterForkInChild() {
  recorder::Arena* arena = recorder::Installed();
  if (arena == nullptr) return;
  // The child's copies of the GILs are new GILs: CPython recreates them
  // (PyOS_AfterFork_Child), resetting last_holder, and the forking thread
  // takes them again. Give each a fresh run-wide index, so the parent's
  // figures and the child's never mix.
  int inherited[kMaxGils];
  int n = 0;
  for (int i = 0; i < kMaxGils; ++i) {
    if (g_gils[i].active) inherited[n++] = i;
  }
  for (int k = 0; k < n; ++k) {
    const int i = inherited[k];
    GilState& old = g_gils[i];
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
    g_gils[index].pending_start = true;
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

void SetFrameProbe(FrameProbe probe) { g_frame_probe = probe; }

int StartGil(const GilAddresses& gil, const GilMeta& meta, std::uintptr_t caller_tstate) {
  recorder::Arena* arena = recorder::Installed();
  if (arena == nullptr) return -1;
  if (!g_fork_handler_installed.exchange(true)) pthread_atfork(nullptr, nullptr, &AfterForkInChild);
  const int index = arena->ReserveGil();
  if (index < 0) return -1;
  // The caller holds the GIL: open its hold before the window's first event.
  t_hook.held = index + 1;
  t_hook.last_tstate = caller_tstate;
  if (!Open(index, gil, meta, caller_tstate)) return -1;
  recorder::Record(EventKind::kThreadState, static_cast<std::uint8_t>(index), 0, caller_tstate);
  Emit(EventKind::kAcquired, index, recorder::kFlagAtStart, recorder::Stamp());
  return index;
}

void StopGil(int index) {
  if (index < 0 || index >= kMaxGils) return;
  GilState& g = g_gils[index];
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
    if (g_gils[i].active) StopGil(i);
  }
}

void UnwatchAll() {
  for (auto& k : internal::g_keys) {
    if (k.load(std::memory_order_relaxed) != 0) k.store(internal::kTombstone, std::memory_order_release);
  }
  for (GilState& g : g_gils) g.active = false;
}

void RegisterProcess(const char* role, std::int32_t instance) {
  g_process_instance = instance;
  recorder::Arena* arena = recorder::Installed();
  if (arena == nullptr) return;
  // GILs this process already records belong to the instance too.
  for (int i = 0; i < kMaxGils; ++i) {
    if (g_gils[i].active && instance >= 0) arena->gil(static_cast<std::uint32_t>(i)).instance = instance;
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

unsigned long CpythonSwitchNumber(int gil) {
  return __atomic_load_n(g_gils[gil].addr.switch_number, __ATOMIC_RELAXED);
}

void OnGilMutexLock(const WatchEntry& e) noexcept {
  if (e.kind != ObjectKind::kGilMutex) return;
  if (t_hook.held == e.gil + 1) {
    // drop_gil: this thread still owns the GIL (locked is still 1) and has
    // just stored itself as last_holder: its frame is the one giving way.
    const GilState& g = g_gils[e.gil];
    if (g.probe_frames) {
      std::uint64_t code = 0;
      std::uint32_t line = 0;
      const void* tstate = __atomic_load_n(g.addr.last_holder, __ATOMIC_RELAXED);
      if (g_frame_probe(tstate, &code, &line) == 0) {
        recorder::Record(EventKind::kFrame, e.gil, 0, code, line);
      }
    }
    return;
  }
  // take_gil: the request is written only if the thread has to wait.
  if (t_hook.requested == e.gil + 1) return;  // a second lock: the first request stands
  FlushRequest();
  t_hook.requested = e.gil + 1;
  t_hook.request_stamp = recorder::Stamp();
}

unsigned long OnGilTimedWaitBegin(const WatchEntry& e) noexcept {
  // take_gil waits for the GIL: its request is a wait's start.
  if (e.kind == ObjectKind::kGilCond) FlushRequest();
  // The mutex is held: switch_number cannot change under us.
  return *g_gils[e.gil].addr.switch_number;
}

void OnGilTimedWaitEnd(const WatchEntry& e, int rc, unsigned long saved_switch) noexcept {
  if (e.kind != ObjectKind::kGilCond || rc != ETIMEDOUT) return;
  GilState& g = g_gils[e.gil];
  // Mutex re-acquired by the wait: the same test take_gil makes next.
  const bool drop = __atomic_load_n(g.addr.locked, __ATOMIC_RELAXED) != 0 &&
                    *g.addr.switch_number == saved_switch;
  if (drop) g.drop_pending.store(true, std::memory_order_relaxed);
  Emit(EventKind::kWaitTimeout, e.gil, drop ? recorder::kFlagDropRequest : 0, recorder::Stamp());
}

void OnGilCondSignal(const WatchEntry& e) noexcept {
  GilState& g = g_gils[e.gil];
  if (e.kind == ObjectKind::kGilCond) {
    // drop_gil: locked was just set to 0, the cond is signalled under the mutex.
    // drop_gil first stored the releasing thread state as last_holder
    // (CPython's fix-up for PyThreadState_Swap while holding): that is what
    // the next acquisition is compared with, so the event stream says so too.
    const auto tstate = reinterpret_cast<std::uintptr_t>(
        __atomic_load_n(g.addr.last_holder, __ATOMIC_RELAXED));
    if (tstate != 0 && tstate != t_hook.last_tstate) {
      t_hook.last_tstate = tstate;
      recorder::Record(EventKind::kThreadState, e.gil, 0, tstate);
    }
    FlushRequest();  // a release with no acquisition seen: keep the request
    const bool forced = g.drop_pending.load(std::memory_order_relaxed);
    const std::uint64_t stamp = recorder::Stamp();
    g.last_release_stamp.store(stamp, std::memory_order_relaxed);
    Emit(EventKind::kReleased, e.gil, forced ? recorder::kFlagForced : 0, stamp);
    t_hook.held = 0;
  } else if (e.kind == ObjectKind::kSwitchCond) {
    // take_gil: locked = 1 and last_holder = this tstate are already stored.
    const auto tstate = reinterpret_cast<std::uintptr_t>(
        __atomic_load_n(g.addr.last_holder, __ATOMIC_RELAXED));
    if (tstate != t_hook.last_tstate) {
      t_hook.last_tstate = tstate;
      recorder::Record(EventKind::kThreadState, e.gil, 0, tstate);
    }
    g.drop_pending.store(false, std::memory_order_relaxed);
    if (g.pending_start) [[unlikely]] {
      // The re-take that follows fork: the window opens here, with CPython's
      // counter read after its own increment for this acquisition.
      g.pending_start = false;
      if (recorder::Arena* arena = recorder::Installed()) {
        recorder::GilRecord& r = arena->gil(static_cast<std::uint32_t>(e.gil));
        r.start_ns = recorder::NowNs();
        r.switch_start = __atomic_load_n(g.addr.switch_number, __ATOMIC_RELAXED);
        r.holder_tstate_at_start = tstate;
      }
      FlushRequest();  // not folded: the window opens at this acquisition
      Emit(EventKind::kAcquired, e.gil, recorder::kFlagAtStart, recorder::Stamp());
    } else {
      EmitAcquired(e.gil, 0);
    }
    t_hook.held = e.gil + 1;
  }
}

}  // namespace gilscope::hooks
