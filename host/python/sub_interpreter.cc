#include "python/sub_interpreter.h"

#include <stdexcept>
#include <string>

namespace gilscope::python {

SubInterpreter::SubInterpreter(bool own_gil) {
  if (own_gil && !kOwnGilSupported) {
    throw std::runtime_error("subinterpreters with their own GIL need CPython 3.12+");
  }
  main_ = PyThreadState_New(PyInterpreterState_Main());
  PyEval_RestoreThread(main_);
#if PY_VERSION_HEX >= 0x030C0000
  // The isolated configuration is what an own GIL requires (own obmalloc,
  // extensions that declare per-interpreter GIL support only).
  PyInterpreterConfig config = own_gil ? PyInterpreterConfig(_PyInterpreterConfig_INIT)
                                       : PyInterpreterConfig(_PyInterpreterConfig_LEGACY_INIT);
  const PyStatus status = Py_NewInterpreterFromConfig(&sub_, &config);
  if (PyStatus_Exception(status)) {
    const std::string msg = status.err_msg ? status.err_msg : "unknown error";
    PyThreadState_Clear(main_);
    PyThreadState_DeleteCurrent();
    throw std::runtime_error("cannot create a subinterpreter: " + msg);
  }
#else
  sub_ = Py_NewInterpreter();
  if (sub_ == nullptr) {
    PyErr_Clear();
    PyThreadState_Clear(main_);
    PyThreadState_DeleteCurrent();
    throw std::runtime_error("cannot create a subinterpreter");
  }
#endif
  // Work happens on a second thread state, deleted before the interpreter
  // ends: deleting it runs the finalisers of its per-thread data (3.13's
  // threading dummy-thread cleanup) while the interpreter's modules still
  // exist, as the _interpreters module does.
  run_ = PyThreadState_New(sub_->interp);
  PyThreadState_Swap(run_);
}

SubInterpreter::~SubInterpreter() {
#if PY_VERSION_HEX >= 0x030D0000
  // 3.13's threading keeps a host thread's _DummyThread alive through a
  // thread-local whose per-thread data outlives the thread state; it is then
  // finalised during module teardown, when threading's globals are None, and
  // prints "Exception ignored in _DeleteDummyThreadOnDel.__del__". Its only
  // job (forget the dummy thread) is moot once the interpreter ends, so the
  // finaliser is made a no-op at that point.
  if (PyObject* globals = PyDict_New()) {
    PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins());
    PyObject* r = PyRun_String(
        "import sys\n"
        "t = sys.modules.get('threading')\n"
        "c = getattr(t, '_DeleteDummyThreadOnDel', None)\n"
        "if c is not None:\n"
        "    c.__del__ = lambda self: None\n",
        Py_file_input, globals, globals);
    if (r == nullptr) PyErr_Clear();
    Py_XDECREF(r);
    Py_DECREF(globals);
  }
#endif
  PyThreadState_Clear(run_);
  PyThreadState_DeleteCurrent();  // releases the GIL
  PyEval_RestoreThread(sub_);
  Py_EndInterpreter(sub_);
#if PY_VERSION_HEX >= 0x030C0000
  // 3.12+: no GIL is held when Py_EndInterpreter returns.
  PyEval_RestoreThread(main_);
#else
  // 3.11: the (one) GIL is still held, with no current thread state.
  PyThreadState_Swap(main_);
#endif
  PyThreadState_Clear(main_);
  PyThreadState_DeleteCurrent();
}

}  // namespace gilscope::python
