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

}  // namespace gilscope::hooks
