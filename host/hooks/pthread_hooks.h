// The interposed pthread functions live in pthread_hooks.cc; this header only
// lets the host check that the dynamic linker bound them.
#pragma once

namespace gilscope::hooks {

// True when this process's pthread_mutex_lock is gilscope's (the executable
// exports it). False means GIL events cannot be seen: a build problem.
bool Interposed();

// Called first thing in the interposed _exit() (os._exit, how
// multiprocessing's forked children end, skips atexit): the runner names
// the code objects this process's events refer to. nullptr: nothing.
using BeforeExitFn = void (*)();
void SetBeforeExit(BeforeExitFn fn);

// Called by a recorded thread (one with a recorder slot) each time it is
// about to block in sem_wait (a lock, an event, a join that is not free):
// what starts the deadlock watchdog only when some thread first blocks, so
// that a script that never blocks runs with no thread of gilscope's in its
// process (python 3.12+ warns on fork() in a multi-threaded process). Must
// be cheap after its first call, and safe from any thread. nullptr: none.
using LockBlockFn = void (*)();
void SetOnLockBlock(LockBlockFn fn);

}  // namespace gilscope::hooks
