// The `_gilscope` built-in module: how Python code inside the host talks to it.
//
//   _gilscope._set_thread_name(name)  names the calling thread in the recorder
//   _gilscope._stop()                 the run's end (called from atexit, after
//                                     CPython joined the script's threads)
//   _gilscope._mark(name, kind)       a marker on the timeline (0 instant,
//                                     1 region begin, 2 region end)
// and the public `gilscope` module scripts import: mark(), region(), active().
//
// RegisterBuiltinModule() must run before the interpreter is initialised.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace gilscope::python {

void RegisterBuiltinModule();
// Called when the current interpreter's run ends: from atexit, with its GIL
// held, after CPython joined the interpreter's non-daemon threads.
// PRECONDITION: the GIL of the current interpreter is held.
void SetStopCallback(std::function<void()> on_stop);

// Installs the Python-side helpers: thread naming through threading.Thread,
// the main thread's name, the atexit hook calling _gilscope._stop().
// PRECONDITION: the GIL is held, the interpreter initialised. Throws PyError.
void InstallPythonHelpers();

// Marker names this process has handed out ids for (id, name), for the
// names file. Thread-safe.
std::vector<std::pair<std::uint32_t, std::string>> MarkerNames();

}  // namespace gilscope::python
