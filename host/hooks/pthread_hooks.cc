// The interposed pthread functions.
//
// The gilscope executable defines pthread_mutex_lock, pthread_cond_timedwait
// and pthread_cond_signal and exports them (ENABLE_EXPORTS), so libpython's
// calls through its PLT, and those of extension modules loaded later, land
// here first. Each forwards to the real glibc function; only calls on a
// watched GIL's objects (hooks::Find) do any recording.
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
#include "hooks/pthread_hooks.h"
#include "recorder/clock.h"
#include "recorder/producer.h"

namespace {

using MutexLockFn = int (*)(pthread_mutex_t*);
using CondTimedWaitFn = int (*)(pthread_cond_t*, pthread_mutex_t*, const struct timespec*);
using CondSignalFn = int (*)(pthread_cond_t*);
using ExitFn = void (*)(int);
using SemWaitFn = int (*)(sem_t*);

MutexLockFn g_real_mutex_lock = nullptr;
CondTimedWaitFn g_real_cond_timedwait = nullptr;
CondSignalFn g_real_cond_signal = nullptr;
ExitFn g_real_exit = nullptr;
ExitFn g_real_libc_exit = nullptr;
SemWaitFn g_real_sem_wait = nullptr;
std::atomic<gilscope::hooks::BeforeExitFn> g_before_exit{nullptr};

void* Resolve(const char* name, const char* version) {
  void* f = version ? dlvsym(RTLD_NEXT, name, version) : dlsym(RTLD_NEXT, name);
  if (f == nullptr) {
    std::fprintf(stderr, "gilscope: cannot resolve the real %s: %s\n", name, dlerror());
    std::abort();
  }
  return f;
}

__attribute__((constructor(101))) void ResolveRealFunctions() {
  g_real_mutex_lock = reinterpret_cast<MutexLockFn>(Resolve("pthread_mutex_lock", nullptr));
  g_real_cond_timedwait =
      reinterpret_cast<CondTimedWaitFn>(Resolve("pthread_cond_timedwait", "GLIBC_2.3.2"));
  g_real_cond_signal = reinterpret_cast<CondSignalFn>(Resolve("pthread_cond_signal", "GLIBC_2.3.2"));
  g_real_exit = reinterpret_cast<ExitFn>(Resolve("_exit", nullptr));
  g_real_libc_exit = reinterpret_cast<ExitFn>(Resolve("exit", nullptr));
  g_real_sem_wait = reinterpret_cast<SemWaitFn>(Resolve("sem_wait", nullptr));
}

// A call that arrives before the constructor (another library's constructor
// locking a mutex) resolves on the spot; still single-threaded then.
inline MutexLockFn RealMutexLock() {
  if (g_real_mutex_lock == nullptr) [[unlikely]] ResolveRealFunctions();
  return g_real_mutex_lock;
}
inline CondTimedWaitFn RealCondTimedWait() {
  if (g_real_cond_timedwait == nullptr) [[unlikely]] ResolveRealFunctions();
  return g_real_cond_timedwait;
}
inline CondSignalFn RealCondSignal() {
  if (g_real_cond_signal == nullptr) [[unlikely]] ResolveRealFunctions();
  return g_real_cond_signal;
}

}  // namespace

namespace gilscope::hooks {

bool Interposed() {
  // If the executable's definitions were not the ones the dynamic linker bound,
  // the default lookup would not find ours.
  return dlsym(RTLD_DEFAULT, "pthread_mutex_lock") == reinterpret_cast<void*>(&pthread_mutex_lock);
}

void SetBeforeExit(BeforeExitFn fn) { g_before_exit.store(fn, std::memory_order_release); }

}  // namespace gilscope::hooks

extern "C" {

__attribute__((visibility("default"))) int pthread_mutex_lock(pthread_mutex_t* mutex) {
  if (const auto* e = gilscope::hooks::Find(mutex)) [[unlikely]] {
    gilscope::hooks::OnGilMutexLock(*e);
  }
  return RealMutexLock()(mutex);
}

__attribute__((visibility("default"))) int pthread_cond_timedwait(pthread_cond_t* cond,
                                                                  pthread_mutex_t* mutex,
                                                                  const struct timespec* abstime) {
  if (const auto* e = gilscope::hooks::Find(cond)) [[unlikely]] {
    const unsigned long saved = gilscope::hooks::OnGilTimedWaitBegin(*e);
    const int rc = RealCondTimedWait()(cond, mutex, abstime);
    const int saved_errno = errno;
    gilscope::hooks::OnGilTimedWaitEnd(*e, rc, saved);
    errno = saved_errno;
    return rc;
  }
  return RealCondTimedWait()(cond, mutex, abstime);
}

__attribute__((visibility("default"))) int pthread_cond_signal(pthread_cond_t* cond) {
  if (const auto* e = gilscope::hooks::Find(cond)) [[unlikely]] {
    gilscope::hooks::OnGilCondSignal(*e);
  }
  return RealCondSignal()(cond);
}

// A wait with no timeout on a semaphore: how CPython blocks on a lock, an
// event, a join. Marked on the thread's recorder slot for the deadlock
// watchdog (threads without a slot pay one thread-local load, no clock read).
__attribute__((visibility("default"))) int sem_wait(sem_t* sem) {
  if (g_real_sem_wait == nullptr) [[unlikely]] ResolveRealFunctions();
  gilscope::recorder::SlotHeader* marked = gilscope::recorder::BeginLockWait();
  const int rc = g_real_sem_wait(sem);
  const int saved_errno = errno;
  gilscope::recorder::EndLockWait(marked);
  errno = saved_errno;
  return rc;
}

// os._exit() (how multiprocessing's forked children end) skips atexit, so
// the GIL windows of this process are closed here. The caller holds the GIL
// (os._exit does not release it), which StopAllGils needs.
__attribute__((visibility("default"), noreturn)) void _exit(int status) {
  if (const auto before = g_before_exit.load(std::memory_order_acquire)) before();
  gilscope::recorder::RecordCurrentThreadCpu();
  gilscope::hooks::StopAllGils();
  gilscope::hooks::MarkProcessExit(status);
  if (g_real_exit == nullptr) ResolveRealFunctions();
  g_real_exit(status);
  __builtin_unreachable();
}

// exit() as CPython calls it for SystemExit in `gilscope python` children
// (Py_Exit): by then atexit closed the windows; only the status is left.
__attribute__((visibility("default"), noreturn)) void exit(int status) {
  gilscope::hooks::MarkProcessExit(status);
  if (g_real_libc_exit == nullptr) ResolveRealFunctions();
  g_real_libc_exit(status);
  __builtin_unreachable();
}

}  // extern "C"
