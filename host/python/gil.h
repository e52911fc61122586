// Scoped GIL guards, as pybind11's gil_scoped_acquire / gil_scoped_release.
//
// GilAcquire: the calling thread (with or without a thread state) holds the GIL
// for the guard's lifetime (PyGILState_Ensure/Release).
// GilRelease: the calling thread, which holds the GIL, lets it go for the
// guard's lifetime (PyEval_SaveThread/RestoreThread).
// Both must be destroyed on the thread that created them; neither moves.
#pragma once

#include <Python.h>

namespace gilscope::python {

class GilAcquire {
 public:
  GilAcquire() : state_(PyGILState_Ensure()) {}
  ~GilAcquire() { PyGILState_Release(state_); }
  GilAcquire(const GilAcquire&) = delete;
  GilAcquire& operator=(const GilAcquire&) = delete;

 private:
  PyGILState_STATE state_;
};

class GilRelease {
 public:
  GilRelease() : tstate_(PyEval_SaveThread()) {}
  ~GilRelease() { PyEval_RestoreThread(tstate_); }
  GilRelease(const GilRelease&) = delete;
  GilRelease& operator=(const GilRelease&) = delete;

 private:
  PyThreadState* tstate_;
};

}  // namespace gilscope::python
