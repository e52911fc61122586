#include "hooks/gil_watch.h"

#include <cerrno>

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
  // Set when a waiter's timeout made a drop request during the current hold;
  // cleared at each acquisition. Touched only with the GIL's mutex held
  // (timedwait returns with it, both signals are sent under it), so relaxed
  // atomics suffice: the mutex orders them.
  std::atomic<bool> drop_pending{false};
};

GilState g_gils[kMaxGils];
std::atomic<int> g_gil_count{0};

// Per-thread hook state. Trivial so access needs no TLS guard.
struct ThreadHookState {
  int held;                      // index + 1 of the GIL this thread holds; 0 none
  std::uintptr_t last_tstate;    // PyThreadState of its last acquisition
};
thread_local ThreadHookState t_hook{};

bool Insert(const void* object, ObjectKind kind, int gil) {
  const auto key = reinterpret_cast<std::uintptr_t>(object);
  const std::uintptr_t slot = internal::Slot(key);
  for (std::uintptr_t i = 0; i <= internal::kTableMask; ++i) {
    const std::uintptr_t s = (slot + i) & internal::kTableMask;
    const std::uintptr_t k = internal::g_keys[s].load(std::memory_order_relaxed);
    if (k == key) return true;
    if (k == 0 || k == internal::kTombstone) {
      internal::g_entries[s] = WatchEntry{kind, static_cast<std::uint8_t>(gil)};
      // release: the entry is written before the key makes it findable.
      internal::g_keys[s].store(key, std::memory_order_release);
      return true;
    }
  }
  return false;
}

inline void Emit(EventKind kind, int gil, std::uint16_t flags) noexcept {
  recorder::Record(kind, static_cast<std::uint8_t>(gil), flags, recorder::NowNs());
}

}  // namespace

int WatchGil(const GilAddresses& gil, bool caller_holds, std::uintptr_t caller_tstate) {
  const int index = g_gil_count.load(std::memory_order_relaxed);
  if (index >= kMaxGils) return -1;
  GilState& g = g_gils[index];
  g.addr = gil;
  g.drop_pending.store(false, std::memory_order_relaxed);
  g_gil_count.store(index + 1, std::memory_order_release);
  if (caller_holds) {
    t_hook.held = index + 1;
    t_hook.last_tstate = caller_tstate;
    recorder::Record(EventKind::kThreadState, static_cast<std::uint8_t>(index), 0, caller_tstate);
    Emit(EventKind::kAcquired, index, recorder::kFlagAtStart);
  }
  // The mutex last: from its first hit on, the conds are known too.
  if (!Insert(gil.switch_cond, ObjectKind::kSwitchCond, index) ||
      !Insert(gil.cond, ObjectKind::kGilCond, index) ||
      !Insert(gil.mutex, ObjectKind::kGilMutex, index)) {
    return -1;
  }
  return index;
}

void UnwatchAll() {
  for (auto& k : internal::g_keys) {
    if (k.load(std::memory_order_relaxed) != 0) k.store(internal::kTombstone, std::memory_order_release);
  }
}

int WatchedGilCount() { return g_gil_count.load(std::memory_order_acquire); }

unsigned long CpythonSwitchNumber(int gil) {
  return __atomic_load_n(g_gils[gil].addr.switch_number, __ATOMIC_RELAXED);
}

void OnGilMutexLock(const WatchEntry& e) noexcept {
  if (e.kind != ObjectKind::kGilMutex) return;
  // drop_gil locks the mutex too, while this thread still holds the GIL.
  if (t_hook.held == e.gil + 1) return;
  Emit(EventKind::kRequest, e.gil, 0);
}

unsigned long OnGilTimedWaitBegin(const WatchEntry& e) noexcept {
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
  Emit(EventKind::kWaitTimeout, e.gil, drop ? recorder::kFlagDropRequest : 0);
}

void OnGilCondSignal(const WatchEntry& e) noexcept {
  GilState& g = g_gils[e.gil];
  if (e.kind == ObjectKind::kGilCond) {
    // drop_gil: locked was just set to 0, the cond is signalled under the mutex.
    const bool forced = g.drop_pending.load(std::memory_order_relaxed);
    Emit(EventKind::kReleased, e.gil, forced ? recorder::kFlagForced : 0);
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
    Emit(EventKind::kAcquired, e.gil, 0);
    t_hook.held = e.gil + 1;
  }
}

}  // namespace gilscope::hooks
