// A subinterpreter owned by one host thread, as pybind11's subinterpreter but
// tied to the thread that made it.
//
// The constructor gives the calling thread a main-interpreter thread state,
// then creates the subinterpreter from it: with its own GIL (CPython 3.12+,
// PyInterpreterConfig_OWN_GIL, the isolated configuration) or sharing the
// main GIL (the legacy configuration, as Py_NewInterpreter). On return the
// subinterpreter is current and the thread holds its GIL.
// The destructor ends it (Py_EndInterpreter: joins its non-daemon threads,
// runs its atexit handlers) and drops the main thread state; on return the
// thread holds no GIL. Both must run on the same thread; it must hold no
// GIL and have no thread state before construction.
#pragma once

#include <Python.h>

#include <cstdint>

namespace gilscope::python {

class SubInterpreter {
 public:
  // Throws std::runtime_error when CPython refuses (e.g. own GIL on 3.11).
  explicit SubInterpreter(bool own_gil);
  ~SubInterpreter();
  SubInterpreter(const SubInterpreter&) = delete;
  SubInterpreter& operator=(const SubInterpreter&) = delete;

  PyThreadState* tstate() const { return run_; }
  PyInterpreterState* interp() const { return sub_->interp; }
  std::int64_t id() const { return PyInterpreterState_GetID(sub_->interp); }

  // Whether this CPython can give a subinterpreter its own GIL.
  static constexpr bool kOwnGilSupported = PY_VERSION_HEX >= 0x030C0000;

 private:
  PyThreadState* main_ = nullptr;
  PyThreadState* sub_ = nullptr;  // made with the interpreter; ends it
  PyThreadState* run_ = nullptr;  // current while the instance runs
};

}  // namespace gilscope::python
