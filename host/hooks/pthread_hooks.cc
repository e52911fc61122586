// The interposed pthread functions.
//
// The gilscope executable defines pthread_mutex_lock, pthread_cond_timedwait
// and pthread_cond_signal and exports them (ENABLE_EXPORTS), so libpython's
// calls through its PLT, and those of extension modules loaded later, land
// here first. Each forwards to the real glibc function; only calls on a
// watched GIL's objects (hooks::Find) do any recording (and take_gil's lock
// of the GIL's mutex is a trylock first, then the real lock if it was busy).
//
// The real functions are resolved in a constructor that runs before main(),
// so before any thread exists. The condvar calls are resolved by version
// (GLIBC_2.3.2, the current ABI) because glibc still carries the old
// GLIBC_2.2.5 condvars under the same names.
#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "hooks/gil_watch.h"
#include "hooks/hot_state.h"
#include "hooks/pthread_hooks.h"
#include "recorder/clock.h"
#include "recorder/producer.h"

namespace {

using gilscope::hooks::internal::g_hot;
using gilscope::hooks::internal::ObjectKind;

void* Resolve(const char* name, const char* version) {
  void* f = version ? dlvsym(RTLD_NEXT, name, version) : dlsym(RTLD_NEXT, name);
  if (f == nullptr) {
    std::fprintf(stderr, "gilscope: cannot resolve the real %s: %s\n", name, dlerror());
    std::abort();
  }
  return f;
}

__attribute__((constructor(101))) void ResolveRealFunctions() {
  using namespace gilscope::hooks::internal;
  g_hot.real_mutex_lock = reinterpret_cast<MutexLockFn>(Resolve("pthread_mutex_lock", nullptr));
  g_hot.real_cond_timedwait =
      reinterpret_cast<CondTimedWaitFn>(Resolve("pthread_cond_timedwait", "GLIBC_2.3.2"));
  g_hot.real_cond_signal = reinterpret_cast<CondSignalFn>(Resolve("pthread_cond_signal", "GLIBC_2.3.2"));
  g_hot.real_exit = reinterpret_cast<ExitFn>(Resolve("_exit", nullptr));
  g_hot.real_libc_exit = reinterpret_cast<ExitFn>(Resolve("exit", nullptr));
  g_hot.real_sem_wait = reinterpret_cast<SemWaitFn>(Resolve("sem_wait", nullptr));
}

// A call that arrives before the constructor (another library's constructor
// locking a mutex) resolves on the spot; still single-threaded then.
inline gilscope::hooks::internal::MutexLockFn RealMutexLock() {
  if (g_hot.real_mutex_lock == nullptr) [[unlikely]] ResolveRealFunctions();
  return g_hot.real_mutex_lock;
}
inline gilscope::hooks::internal::CondTimedWaitFn RealCondTimedWait() {
  if (g_hot.real_cond_timedwait == nullptr) [[unlikely]] ResolveRealFunctions();
  return g_hot.real_cond_timedwait;
}
inline gilscope::hooks::internal::CondSignalFn RealCondSignal() {
  if (g_hot.real_cond_signal == nullptr) [[unlikely]] ResolveRealFunctions();
  return g_hot.real_cond_signal;
}

std::atomic<gilscope::hooks::BeforeExitFn> g_before_exit{nullptr};
std::atomic<gilscope::hooks::LockBlockFn> g_on_lock_block{nullptr};

}  // namespace

namespace gilscope::hooks {

bool Interposed() {
  // If the executable's definitions were not the ones the dynamic linker bound,
  // the default lookup would not find ours.
  return dlsym(RTLD_DEFAULT, "pthread_mutex_lock") == reinterpret_cast<void*>(&pthread_mutex_lock);
}

void SetBeforeExit(BeforeExitFn fn) { g_before_exit.store(fn, std::memory_order_release); }
void SetOnLockBlock(LockBlockFn fn) { g_on_lock_block.store(fn, std::memory_order_release); }

}  // namespace gilscope::hooks

extern "C" {

// What an uncontended release and retake runs (these two interposers, the
// handlers they call on a hit, the frame probe) is `hot`: the compiler puts
// it in .text.hot, which the linker gathers in one place, so the cycle runs
// code from one page (see hooks/hot_state.h). A wait (timedwait, sem_wait)
// blocks anyway and is left where it is.
__attribute__((visibility("default"), hot)) int pthread_mutex_lock(pthread_mutex_t* mutex) {
  const auto e = gilscope::hooks::Find(mutex);
  if (e.kind == ObjectKind::kGilMutex) [[unlikely]] {
    // take_gil's lock: no clock read when the GIL turns out to be free.
    if (gilscope::hooks::OnGilMutexLock(e.gil)) return gilscope::hooks::LockForTake(e.gil, mutex);
  }
  return RealMutexLock()(mutex);
}

__attribute__((visibility("default"))) int pthread_cond_timedwait(pthread_cond_t* cond,
                                                                  pthread_mutex_t* mutex,
                                                                  const struct timespec* abstime) {
  const auto e = gilscope::hooks::Find(cond);
  if (e.kind != ObjectKind::kNone) [[unlikely]] {
    const unsigned long saved = gilscope::hooks::OnGilTimedWaitBegin(e);
    const int rc = RealCondTimedWait()(cond, mutex, abstime);
    const int saved_errno = errno;
    gilscope::hooks::OnGilTimedWaitEnd(e, rc, saved);
    errno = saved_errno;
    return rc;
  }
  return RealCondTimedWait()(cond, mutex, abstime);
}

__attribute__((visibility("default"), hot)) int pthread_cond_signal(pthread_cond_t* cond) {
  const auto e = gilscope::hooks::Find(cond);
  if (e.kind != ObjectKind::kNone) [[unlikely]] {
    if (e.kind == ObjectKind::kGilCond) {
      gilscope::hooks::OnGilRelease(e.gil);
    } else if (e.kind == ObjectKind::kSwitchCond) {
      gilscope::hooks::OnGilAcquire(e.gil);
    }
  }
  return RealCondSignal()(cond);
}

// A wait with no timeout on a semaphore: how CPython blocks on a lock, an
// event, a join. Marked on the thread's recorder slot for the deadlock
// watchdog (threads without a slot pay one thread-local load, no clock read).
__attribute__((visibility("default"))) int sem_wait(sem_t* sem) {
  if (g_hot.real_sem_wait == nullptr) [[unlikely]] ResolveRealFunctions();
  // A semaphore that is free is taken without blocking: no mark, and no
  // reason to start the watchdog.
  if (sem_trywait(sem) == 0) return 0;
  gilscope::recorder::SlotHeader* marked = gilscope::recorder::BeginLockWait();
  if (marked != nullptr) {
    if (const auto on_block = g_on_lock_block.load(std::memory_order_acquire)) on_block();
  }
  const int rc = g_hot.real_sem_wait(sem);
  const int saved_errno = errno;
  gilscope::recorder::EndLockWait(marked);
  errno = saved_errno;
  return rc;
}

// os._exit() (how multiprocessing's forked children end) skips atexit, so
// the GIL windows of this process are closed here. The caller holds the GIL
// (os._exit does not release it), which StopAllGils needs.
__attribute__((visibility("default"), noreturn)) void _exit(int status) {
  if (gilscope::hooks::InOwnProcess()) {
    if (const auto before = g_before_exit.load(std::memory_order_acquire)) before();
    gilscope::hooks::StopAllGils();
    // The calling thread (a forked child's only one, usually) ends now, not
    // when the run does.
    gilscope::recorder::RecordThreadExit();
    gilscope::hooks::MarkProcessExit(status);
  }
  if (g_hot.real_exit == nullptr) ResolveRealFunctions();
  g_hot.real_exit(status);
  __builtin_unreachable();
}

// exit() as CPython calls it for SystemExit in `gilscope python` children
// (Py_Exit): by then atexit closed the windows; only the status is left.
__attribute__((visibility("default"), noreturn)) void exit(int status) {
  if (gilscope::hooks::InOwnProcess()) gilscope::hooks::MarkProcessExit(status);
  if (g_hot.real_libc_exit == nullptr) ResolveRealFunctions();
  g_hot.real_libc_exit(status);
  __builtin_unreachable();
}

}  // extern "C"
