// The interposed pthread functions live in pthread_hooks.cc; this header only
// lets the host check that the dynamic linker bound them.
#pragma once

namespace gilscope::hooks {

// True when this process's pthread_mutex_lock is gilscope's (the executable
// exports it). False means GIL events cannot be seen: a build problem.
bool Interposed();

}  // namespace gilscope::hooks
