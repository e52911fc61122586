// How Python code inside the host talks to it, without the script seeing more
// than python would show it.
//
// The public `gilscope` module scripts import (mark(), region(), active()) is
// a built-in module: `import gilscope` finds it like `import _thread`, and it
// is created only when a script imports it.
//
// The host's own Python helpers run in a private namespace and import nothing
// the script's python would not have imported (sys.modules at the script's
// first line is python's): they hook into `threading` lazily, when the first
// threading.Thread starts (CPython 3.12+: the `_thread.start_new_thread` /
// `_thread.start_joinable_thread` audit event, through a C audit hook no
// Python code can see; 3.11, which has no such event: a built-in wrapper
// around `_thread.start_new_thread`, installed before threading can capture
// it). From then on each thread names itself in the recorder and its
// uncaught exception is recorded before its own excepthook call runs.
//
// RegisterBuiltinModule() must run before the interpreter is initialised.
#pragma once

#include <Python.h>

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

// Installs the host's Python side in the current interpreter: the calling
// thread named "MainThread" (threading's name for it), the lazy threading
// hooks, and an atexit handler calling the stop callback (registered first,
// so it runs after the script's own handlers).
// PRECONDITION: the GIL is held, the interpreter initialised. Throws PyError.
void InstallPythonHelpers();

// Records the exception (type, value, traceback) for the report, as the
// script's own uncaught exception when `main`. Leaves any pending exception
// alone; does nothing where InstallPythonHelpers() did not run.
// PRECONDITION: the GIL is held.
void RecordException(PyObject* type, PyObject* value, PyObject* traceback, bool main);

// Marker names this process has handed out ids for (id, name), for the
// names file. Thread-safe.
std::vector<std::pair<std::uint32_t, std::string>> MarkerNames();

}  // namespace gilscope::python
