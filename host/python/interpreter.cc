#include "python/interpreter.h"

#include <Python.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "python/py_error.h"
#include "python/py_ref.h"

namespace gilscope::python {
namespace {

// Owns a PyConfig until it has been used.
class Config {
 public:
  Config() { PyConfig_InitPythonConfig(&c_); }
  ~Config() { PyConfig_Clear(&c_); }
  Config(const Config&) = delete;
  Config& operator=(const Config&) = delete;
  PyConfig* get() { return &c_; }

  void Check(PyStatus status, const char* what) {
    if (PyStatus_Exception(status)) {
      std::string msg = std::string("cannot initialise Python (") + what + ")";
      if (status.err_msg != nullptr) msg += std::string(": ") + status.err_msg;
      throw std::runtime_error(msg);
    }
  }

 private:
  PyConfig c_;
};

}  // namespace

Interpreter::Interpreter(const InterpreterOptions& options) {
  Config config;
  PyConfig* c = config.get();
  // Unless asked, the arguments are the script's, not python's own options.
  c->parse_argv = options.parse_argv ? 1 : 0;
  if (!options.executable.empty()) {
    config.Check(PyConfig_SetBytesString(c, &c->program_name, options.executable.c_str()), "program name");
    config.Check(PyConfig_SetBytesString(c, &c->executable, options.executable.c_str()), "executable");
    if (!options.python_home.empty() && getenv("PYTHONHOME") == nullptr) {
      config.Check(PyConfig_SetBytesString(c, &c->home, options.python_home.c_str()), "home");
    }
  } else if (!options.python_executable.empty()) {
    config.Check(PyConfig_SetBytesString(c, &c->program_name, options.python_executable.c_str()),
                 "program name");
  }
  std::vector<char*> argv;
  for (const std::string& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  config.Check(PyConfig_SetBytesArgv(c, static_cast<Py_ssize_t>(argv.size()), argv.data()), "argv");
  config.Check(Py_InitializeFromConfig(c), "start-up");
}

Interpreter::~Interpreter() {
  if (!finalized_) Py_FinalizeEx();
}

int Interpreter::RunPythonMain() {
  finalized_ = true;
  return Py_RunMain();
}

int Interpreter::Finalize() {
  if (finalized_) return 0;
  finalized_ = true;
  return Py_FinalizeEx() < 0 ? 120 : 0;
}

namespace {

// The status `python` exits with for a pending SystemExit; clears it.
// Mirrors CPython's _Py_HandleSystemExit, which is not public API.
int StatusOfSystemExit() {
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  PyRef t = PyRef::Steal(type), v = PyRef::Steal(value), b = PyRef::Steal(tb);
  PyRef code = v ? PyRef::Steal(PyObject_GetAttrString(v.get(), "code")) : PyRef();
  PyErr_Clear();
  if (!code || code.get() == Py_None) return 0;
  if (PyLong_Check(code.get())) {
    const long n = PyLong_AsLong(code.get());
    PyErr_Clear();
    return static_cast<int>(n & 0xff);
  }
  // sys.exit("message"): the message goes to stderr and the status is 1.
  PyObject* err = PySys_GetObject("stderr");  // borrowed
  if (err != nullptr && err != Py_None) {
    PyFile_WriteObject(code.get(), err, Py_PRINT_RAW);
    PyFile_WriteString("\n", err);
  }
  PyErr_Clear();
  return 1;
}

// Hands the pending exception to the _gilscope helpers for the report
// (type, message, traceback), leaving it pending for PyErr_Print.
void RecordUncaughtException() {
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  if (value != nullptr && tb != nullptr) PyException_SetTraceback(value, tb);
  PyRef module = PyRef::Steal(PyImport_ImportModule("_gilscope"));
  PyRef record = module ? PyRef::Steal(PyObject_GetAttrString(module.get(), "_record_exception")) : PyRef();
  if (record && type != nullptr) {
    PyRef r = PyRef::Steal(PyObject_CallFunctionObjArgs(record.get(), type, value ? value : Py_None,
                                                        tb ? tb : Py_None, Py_True, nullptr));
  }
  PyErr_Clear();
  PyErr_Restore(type, value, tb);
}

}  // namespace

int Interpreter::RunMainScript(const std::string& path) { return RunScript(path, false); }

int Interpreter::RunScriptInFreshNamespace(const std::string& path) { return RunScript(path, true); }

int RunScript(const std::string& path, bool fresh_namespace) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path absolute = fs::absolute(path, ec);
  const fs::path real = fs::weakly_canonical(path, ec);

  // sys.path[0]: the folder of the script, symlinks resolved (as python).
  PyObject* sys_path = PySys_GetObject("path");  // borrowed
  PyRef folder_str = PyRef::Steal(PyUnicode_DecodeFSDefault(real.parent_path().c_str()));
  const bool already_first = sys_path != nullptr && PyList_Check(sys_path) && PyList_Size(sys_path) > 0 &&
                             folder_str &&
                             PyObject_RichCompareBool(PyList_GetItem(sys_path, 0), folder_str.get(), Py_EQ) == 1;
  if (sys_path != nullptr && PyList_Check(sys_path) && !already_first) {
    PyRef folder = PyRef::Steal(PyUnicode_DecodeFSDefault(real.parent_path().c_str()));
    if (!folder || PyList_Insert(sys_path, 0, folder.get()) != 0) ThrowIfError("sys.path");
  }

  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read script '" + path + "'");
  std::stringstream source;
  source << in.rdbuf();

  PyRef fresh;
  PyObject* globals = nullptr;  // borrowed
  if (fresh_namespace) {
    fresh = PyRef::Steal(PyDict_New());
    if (!fresh || PyDict_SetItemString(fresh.get(), "__name__", PyRef::Steal(PyUnicode_FromString("__main__")).get()) != 0 ||
        PyDict_SetItemString(fresh.get(), "__builtins__", PyEval_GetBuiltins()) != 0) {
      ThrowIfError("fresh __main__ namespace");
    }
    globals = fresh.get();
  } else {
    PyObject* main = PyImport_AddModule("__main__");  // borrowed
    ThrowIfError("__main__");
    globals = PyModule_GetDict(main);  // borrowed
  }
  PyRef file = PyRef::Steal(PyUnicode_DecodeFSDefault(absolute.c_str()));
  if (!file || PyDict_SetItemString(globals, "__file__", file.get()) != 0 ||
      PyDict_SetItemString(globals, "__cached__", Py_None) != 0) {
    ThrowIfError("__main__.__file__");
  }

  // compile() on the file's bytes, as python does for a script: the coding
  // declaration and BOM are honoured, and a source that is not UTF-8 or
  // holds NUL bytes is the SyntaxError (ValueError on 3.11) python raises,
  // never a C string silently cut at the first NUL.
  const std::string text = source.str();
  PyRef bytes = PyRef::Steal(PyBytes_FromStringAndSize(text.data(), static_cast<Py_ssize_t>(text.size())));
  PyObject* compile = bytes ? PyDict_GetItemString(PyEval_GetBuiltins(), "compile") : nullptr;  // borrowed
  PyRef code = compile ? PyRef::Steal(PyObject_CallFunction(compile, "OOsii", bytes.get(), file.get(), "exec", 0, 1))
                       : PyRef();
  PyRef result = code ? PyRef::Steal(PyEval_EvalCode(code.get(), globals, globals)) : PyRef();
  if (result) return 0;
  if (PyErr_ExceptionMatches(PyExc_SystemExit)) return StatusOfSystemExit();
  const bool interrupted = PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
  RecordUncaughtException();
  PyErr_Print();  // the traceback, through sys.excepthook
  return interrupted ? 130 : 1;
}

std::string LinkedPythonVersion() {
  const std::string v = Py_GetVersion();  // "3.13.0 (main, ...) [GCC ...]"
  return v.substr(0, v.find(' '));
}

}  // namespace gilscope::python
