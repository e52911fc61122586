#include "python/py_error.h"

#include <Python.h>

#include "python/py_ref.h"

namespace gilscope::python {

std::string FetchErrorText() {
  if (!PyErr_Occurred()) return "";
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  PyRef t = PyRef::Steal(type), v = PyRef::Steal(value), b = PyRef::Steal(tb);
  std::string text = t ? reinterpret_cast<PyTypeObject*>(t.get())->tp_name : "error";
  if (v) {
    PyRef s = PyRef::Steal(PyObject_Str(v.get()));
    if (s) {
      if (const char* c = PyUnicode_AsUTF8(s.get())) text += std::string(": ") + c;
    }
    PyErr_Clear();
  }
  return text;
}

void ThrowIfError(const std::string& context) {
  if (PyErr_Occurred()) throw PyError(context + ": " + FetchErrorText());
}

}  // namespace gilscope::python
