// Owning references to Python objects, explicit about where ownership came from.
//
// A PyRef owns one strong reference. Build it with Steal() from a new
// reference (what most C API calls return) or Borrow() from a borrowed one,
// never from a raw pointer of unknown provenance.
// PRECONDITION: the GIL is held whenever a PyRef is created, copied or destroyed.
#pragma once

#include <Python.h>

#include <utility>

namespace gilscope::python {

class PyRef {
 public:
  PyRef() = default;
  static PyRef Steal(PyObject* o) { return PyRef(o); }
  static PyRef Borrow(PyObject* o) {
    Py_XINCREF(o);
    return PyRef(o);
  }
  PyRef(const PyRef& other) : o_(other.o_) { Py_XINCREF(o_); }
  PyRef(PyRef&& other) noexcept : o_(std::exchange(other.o_, nullptr)) {}
  PyRef& operator=(PyRef other) noexcept {
    std::swap(o_, other.o_);
    return *this;
  }
  ~PyRef() { Py_XDECREF(o_); }

  PyObject* get() const { return o_; }
  PyObject* release() { return std::exchange(o_, nullptr); }
  explicit operator bool() const { return o_ != nullptr; }

 private:
  explicit PyRef(PyObject* o) : o_(o) {}
  PyObject* o_ = nullptr;
};

}  // namespace gilscope::python
