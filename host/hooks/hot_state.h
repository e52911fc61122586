// What the hooks read and write on every hooked call, laid out so that a GIL
// release and retake touches as few memory pages as possible.
//
// Why pages: on a kernel with page-table isolation and no PCID (this KVM
// guest: `pti` in /proc/cpuinfo, no `pcid`), every system call switches page
// tables and empties the TLB. A thread that releases the GIL around a
// blocking call (release_heavy: one os.read per release) therefore pays a
// page walk, about 5 to 15 ns here, for each distinct page it touches between
// two system calls, however few bytes it reads there. The hooks' own
// instructions cost less than their pages did: before this layout a release
// and retake touched some six pages no unhooked run touches (the watch
// entries, the GIL states, the GOT slot of a thread-local, the slot header,
// a libc table of pthread_mutex_trylock, the probe's code page).
//
// So the process-wide state of the hot path lives in one 4 KiB page,
// g_hot: the real pthread functions (which every interposed call reads
// anyway, hooks on or off), the frame probe, the clock's kind and the state
// of the first kHotGils GILs; GILs beyond them (a run with more than 62
// interpreters) live in g_more_gils. Per-thread state is in thread-locals of
// the executable (local-exec: no GOT), next to glibc's own thread block.
//
// Internal to the hooks library (gil_watch.cc, pthread_hooks.cc).
#pragma once

#include <pthread.h>
#include <semaphore.h>

#include <atomic>
#include <cstdint>

#include "hooks/gil_watch.h"

namespace gilscope::hooks::internal {

// One cache line per GIL: everything a release or an acquisition reads or
// writes besides CPython's own fields and the thread's ring.
struct alignas(64) GilState {
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
static_assert(sizeof(GilState) == 64, "a GIL's hook state is one cache line");

using MutexLockFn = int (*)(pthread_mutex_t*);
using CondTimedWaitFn = int (*)(pthread_cond_t*, pthread_mutex_t*, const struct timespec*);
using CondSignalFn = int (*)(pthread_cond_t*);
using SemWaitFn = int (*)(sem_t*);
using ExitFn = void (*)(int);

inline constexpr int kHotGils = 63;

struct alignas(4096) HotPage {
  // The real functions (pthread_hooks.cc resolves them before main).
  MutexLockFn real_mutex_lock = nullptr;
  CondTimedWaitFn real_cond_timedwait = nullptr;
  CondSignalFn real_cond_signal = nullptr;
  SemWaitFn real_sem_wait = nullptr;
  ExitFn real_exit = nullptr;       // _exit
  ExitFn real_libc_exit = nullptr;  // exit
  FrameProbe frame_probe = nullptr;
  // Stamps are raw TSC reads (else CLOCK_MONOTONIC): the installed clock's
  // kind, copied when a GIL starts being recorded (recorder::Stamp(bool)).
  bool tsc = false;
  GilState gils[kHotGils];
};
static_assert(sizeof(HotPage) == 4096, "the hot path's shared state is one page");

extern constinit HotPage g_hot __attribute__((visibility("hidden")));
extern GilState g_more_gils[kMaxGils - kHotGils] __attribute__((visibility("hidden")));

// GIL `i`'s state (0 <= i < kMaxGils).
inline GilState& Gil(int i) noexcept { return i < kHotGils ? g_hot.gils[i] : g_more_gils[i - kHotGils]; }

}  // namespace gilscope::hooks::internal
