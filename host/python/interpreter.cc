#include "python/interpreter.h"

#include <Python.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "python/builtin_module.h"
#include "python/py_error.h"
#include "python/py_ref.h"

namespace gilscope::python {
namespace {

namespace fs = std::filesystem;

// Owns a PyConfig until it has been used.
class Config {
 public:
  Config() { PyConfig_InitPythonConfig(&c_); }
  ~Config() { PyConfig_Clear(&c_); }
  Config(const Config&) = delete;
  Config& operator=(const Config&) = delete;
  PyConfig* get() { return &c_; }

  void Check(PyStatus status, const char* what) {
    // `--version`, `-h`, a bad option: python has printed what it prints.
    if (PyStatus_IsExit(status)) throw StartupExit(status.exitcode);
    if (PyStatus_Exception(status)) {
      std::string msg = std::string("cannot initialise Python (") + what + ")";
      if (status.err_msg != nullptr) msg += std::string(": ") + status.err_msg;
      throw std::runtime_error(msg);
    }
  }

 private:
  PyConfig c_;
};

std::string Narrow(const wchar_t* w) {
  if (w == nullptr) return "";
  char* bytes = Py_EncodeLocale(w, nullptr);
  if (bytes == nullptr) return "";
  std::string s(bytes);
  PyMem_Free(bytes);
  return s;
}

// "3.13" of "3.13.0", or of "3.13.0rc1".
std::string MinorOf(const std::string& version) {
  const auto first = version.find('.');
  if (first == std::string::npos) return version;
  const auto second = version.find_first_not_of("0123456789", first + 1);
  return version.substr(0, second);
}

}  // namespace

std::string VirtualEnvPython(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw std::invalid_argument("the virtual environment '" + dir + "' is not a folder");
  }
  std::ifstream cfg(fs::path(dir) / "pyvenv.cfg");
  if (!cfg) {
    throw std::invalid_argument("'" + dir + "' is not a virtual environment: it has no pyvenv.cfg");
  }
  // "version = 3.13.0" (venv writes it; newer ones write version_info).
  std::string line, version;
  while (std::getline(cfg, line)) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    auto trim = [](std::string s) {
      const auto b = s.find_first_not_of(" \t\r");
      const auto e = s.find_last_not_of(" \t\r");
      return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    };
    const std::string key = trim(line.substr(0, eq));
    if (key == "version" || key == "version_info") version = trim(line.substr(eq + 1));
  }
  const std::string ours = MinorOf(LinkedPythonVersion());
  if (version.empty()) {
    // No version line: its lib/pythonX.Y folder says which python made it.
    for (const auto& entry : fs::directory_iterator(fs::path(dir) / "lib", ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("python3.", 0) == 0) version = name.substr(6);
    }
  }
  if (version.empty()) {
    throw std::invalid_argument("'" + dir + "' names no Python version (no version in pyvenv.cfg, no lib/python3.X)");
  }
  if (MinorOf(version) != ours) {
    throw std::invalid_argument("the virtual environment '" + dir + "' is for Python " + MinorOf(version) +
                                " (" + version + "), but this gilscope embeds CPython " + LinkedPythonVersion() +
                                ": use a virtual environment made by python" + ours +
                                " -m venv, or a gilscope built with GILSCOPE_PYTHON=/path/to/python" +
                                MinorOf(version));
  }
  for (const std::string& name : {"python" + ours, std::string("python3"), std::string("python")}) {
    const fs::path exe = fs::path(dir) / "bin" / name;
    if (access(exe.c_str(), X_OK) == 0) return fs::absolute(exe, ec).lexically_normal().string();
  }
  throw std::invalid_argument("the virtual environment '" + dir + "' has no bin/python" + ours + ", python3 or python");
}

Interpreter::Interpreter(const InterpreterOptions& options) {
  Config config;
  PyConfig* c = config.get();
  // Unless asked, the arguments are the script's, not python's own options.
  c->parse_argv = options.parse_argv ? 1 : 0;
  if (!options.virtual_env.empty()) {
    // As the venv's own python: getpath finds pyvenv.cfg beside it (and
    // the base prefix through its `home`), site adds its site-packages.
    // PYTHONHOME, if set, overrides that for it too.
    const std::string python = VirtualEnvPython(options.virtual_env);
    config.Check(PyConfig_SetBytesString(c, &c->program_name, python.c_str()), "program name");
    config.Check(PyConfig_SetBytesString(c, &c->executable, python.c_str()), "executable");
  } else if (!options.executable.empty()) {
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
  if (!options.parse_argv && !options.orig_argv.empty()) {
    std::vector<wchar_t*> wide;
    for (const std::string& a : options.orig_argv) {
      wchar_t* w = Py_DecodeLocale(a.c_str(), nullptr);
      if (w == nullptr) break;
      wide.push_back(w);
    }
    if (wide.size() == options.orig_argv.size()) {
      config.Check(PyConfig_SetWideStringList(c, &c->orig_argv, static_cast<Py_ssize_t>(wide.size()), wide.data()),
                   "orig_argv");
    }
    for (wchar_t* w : wide) PyMem_RawFree(w);
  }
  // Parses python's command line (parse_argv) into run_command,
  // run_module, run_filename, so the host can run it as python would.
  config.Check(PyConfig_Read(c), "command line");
  std::optional<std::pair<Program::Kind, std::wstring>> parsed;
  if (options.parse_argv) {
    if (c->run_command != nullptr) {
      parsed.emplace(Program::Kind::kCommand, c->run_command);
    } else if (c->run_module != nullptr) {
      parsed.emplace(Program::Kind::kModule, c->run_module);
    } else if (c->run_filename != nullptr) {
      parsed.emplace(Program::Kind::kScript, c->run_filename);
    }
    inspect_or_skip_line_ = c->inspect != 0 || c->skip_source_first_line != 0;
  }
  config.Check(Py_InitializeFromConfig(c), "start-up");
  // Py_EncodeLocale allocates from CPython's heap: only once it has started.
  if (parsed) command_line_ = Program{parsed->first, Narrow(parsed->second.c_str())};
  if (!options.virtual_env.empty() && !options.executable.empty()) {
    // Children (multiprocessing's spawn, subprocess with sys.executable)
    // run gilscope-python, which finds the same venv (GILSCOPE_PYTHON_ENV).
    PyRef exe = PyRef::Steal(PyUnicode_DecodeFSDefault(options.executable.c_str()));
    if (!exe || PySys_SetObject("executable", exe.get()) != 0) ThrowIfError("sys.executable");
  }
}

Interpreter::~Interpreter() {
  if (!finalized_) Py_FinalizeEx();
}

std::optional<Program> Interpreter::CommandLineProgram() const {
  if (!command_line_ || inspect_or_skip_line_) return std::nullopt;
  if (command_line_->kind == Program::Kind::kScript) {
    // A folder or zip file with a __main__.py: python runs it as a module
    // (its "main importer"); PyImport_GetImporter is how python tells.
    PyRef path = PyRef::Steal(PyUnicode_DecodeFSDefault(command_line_->text.c_str()));
    PyRef importer = path ? PyRef::Steal(PyImport_GetImporter(path.get())) : PyRef();
    const bool plain_file = importer && importer.get() == Py_None;
    PyErr_Clear();
    if (!plain_file) return std::nullopt;
  }
  return command_line_;
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

// Hands the pending exception to the helpers for the report (type,
// message, traceback), leaving it pending for PyErr_Print.
void RecordUncaughtException() {
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  if (value != nullptr && tb != nullptr) PyException_SetTraceback(value, tb);
  RecordException(type, value, tb, /*main=*/true);
  PyErr_Restore(type, value, tb);
}

// The status of a run that ended with the pending exception, as python's
// main gives it: SystemExit's code, 130 for KeyboardInterrupt, else 1 with
// the traceback printed (and recorded for the report).
int StatusOfPendingException() {
  if (PyErr_ExceptionMatches(PyExc_SystemExit)) return StatusOfSystemExit();
  const bool interrupted = PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
  RecordUncaughtException();
  PyErr_Print();  // the traceback, through sys.excepthook
  return interrupted ? 130 : 1;
}

// sys.path[0] for `program`, as CPython's _PyPathConfig_ComputeSysPath0:
// the script's folder, symlinks resolved; the current directory for -m; ""
// for -c.
std::string SysPathZero(const Program& program) {
  std::error_code ec;
  switch (program.kind) {
    case Program::Kind::kScript:
      return fs::weakly_canonical(program.text, ec).parent_path().string();
    case Program::Kind::kModule:
      return fs::current_path(ec).string();
    case Program::Kind::kCommand:
      return "";
  }
  return "";
}

// Puts SysPathZero(program) first on sys.path, unless it is there already
// (a second instance in the same interpreter) or sys.flags.safe_path (-P,
// PYTHONSAFEPATH) says python would not.
void InsertSysPathZero(const Program& program) {
  PyObject* flags = PySys_GetObject("flags");  // borrowed
  PyRef safe = flags ? PyRef::Steal(PyObject_GetAttrString(flags, "safe_path")) : PyRef();
  PyErr_Clear();  // 3.10 and older have no safe_path
  if (safe && PyObject_IsTrue(safe.get()) == 1) return;
  PyObject* sys_path = PySys_GetObject("path");  // borrowed
  if (sys_path == nullptr || !PyList_Check(sys_path)) return;
  PyRef folder = PyRef::Steal(PyUnicode_DecodeFSDefault(SysPathZero(program).c_str()));
  if (!folder) ThrowIfError("sys.path");
  const bool already_first =
      PyList_Size(sys_path) > 0 && PyObject_RichCompareBool(PyList_GetItem(sys_path, 0), folder.get(), Py_EQ) == 1;
  if (!already_first && PyList_Insert(sys_path, 0, folder.get()) != 0) ThrowIfError("sys.path");
}

// A fresh namespace standing for __main__.
PyRef FreshMainNamespace() {
  PyRef fresh = PyRef::Steal(PyDict_New());
  PyRef name = PyRef::Steal(PyUnicode_FromString("__main__"));
  if (!fresh || !name || PyDict_SetItemString(fresh.get(), "__name__", name.get()) != 0 ||
      PyDict_SetItemString(fresh.get(), "__builtins__", PyEval_GetBuiltins()) != 0) {
    ThrowIfError("fresh __main__ namespace");
  }
  return fresh;
}

// __main__'s namespace (borrowed), or `fresh`'s.
PyObject* Globals(bool fresh_namespace, PyRef& fresh) {
  if (fresh_namespace) {
    fresh = FreshMainNamespace();
    return fresh.get();
  }
  PyObject* main = PyImport_AddModule("__main__");  // borrowed
  ThrowIfError("__main__");
  return PyModule_GetDict(main);  // borrowed
}

// The program's name for python's messages (sys.orig_argv[0], else "python").
std::string ProgramName() {
  PyObject* orig = PySys_GetObject("orig_argv");  // borrowed
  if (orig != nullptr && PyList_Check(orig) && PyList_Size(orig) > 0) {
    if (const char* s = PyUnicode_AsUTF8(PyList_GetItem(orig, 0))) return s;
  }
  PyErr_Clear();
  return "python";
}

int RunScriptFile(const std::string& path, bool fresh_namespace) {
  std::error_code ec;
  const fs::path absolute = fs::absolute(path, ec);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    // python's own message and status for a script it cannot open.
    const int err = errno;
    std::fflush(stdout);
    std::fprintf(stderr, "%s: can't open file '%s': [Errno %d] %s\n", ProgramName().c_str(), absolute.c_str(), err,
                 std::strerror(err));
    return 2;
  }
  std::stringstream source;
  source << in.rdbuf();

  PyRef file = PyRef::Steal(PyUnicode_DecodeFSDefault(absolute.c_str()));
  if (!file) ThrowIfError("__file__");
  if (PySys_Audit("cpython.run_file", "O", file.get()) < 0) return StatusOfPendingException();
  PyRef fresh;
  PyObject* globals = Globals(fresh_namespace, fresh);
  if (PyDict_SetItemString(globals, "__file__", file.get()) != 0 ||
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
  return result ? 0 : StatusOfPendingException();
}

// runpy's _run_module_as_main for a fresh namespace: what `python -m` does,
// with run_globals in place of __main__'s (runpy.run_module would leave
// sys.argv[0] as "-m").
constexpr const char* kRunModuleFresh = R"PY(
def _run_module_fresh(mod_name, run_globals):
    import runpy, sys
    try:
        mod_name, spec, code = runpy._get_module_details(mod_name, runpy._Error)
    except runpy._Error as exc:
        sys.exit("%s: %s" % (sys.executable, exc))
    sys.argv[0] = spec.origin
    runpy._run_code(code, run_globals, None, "__main__", spec)
)PY";

// `python -m name` (CPython's pymain_run_module, set_argv0 true).
int RunModule(const std::string& name, bool fresh_namespace) {
  PyRef module = PyRef::Steal(PyUnicode_DecodeFSDefault(name.c_str()));
  if (!module) return StatusOfPendingException();
  if (PySys_Audit("cpython.run_module", "O", module.get()) < 0) return StatusOfPendingException();
  PyRef result;
  if (!fresh_namespace) {
    PyRef runpy = PyRef::Steal(PyImport_ImportModule("runpy"));
    if (!runpy) {
      std::fprintf(stderr, "Could not import runpy module\n");
      return StatusOfPendingException();
    }
    PyRef run = PyRef::Steal(PyObject_GetAttrString(runpy.get(), "_run_module_as_main"));
    if (!run) {
      std::fprintf(stderr, "Could not access runpy._run_module_as_main\n");
      return StatusOfPendingException();
    }
    result = PyRef::Steal(PyObject_CallFunction(run.get(), "Oi", module.get(), 1));
  } else {
    PyRef helpers = PyRef::Steal(PyDict_New());
    if (!helpers || PyDict_SetItemString(helpers.get(), "__builtins__", PyEval_GetBuiltins()) != 0) {
      ThrowIfError("runpy helper");
    }
    PyRef code = PyRef::Steal(Py_CompileString(kRunModuleFresh, "<gilscope>", Py_file_input));
    PyRef defined = code ? PyRef::Steal(PyEval_EvalCode(code.get(), helpers.get(), helpers.get())) : PyRef();
    if (!defined) ThrowIfError("runpy helper");
    PyObject* run = PyDict_GetItemString(helpers.get(), "_run_module_fresh");  // borrowed
    PyRef fresh = FreshMainNamespace();
    result = PyRef::Steal(PyObject_CallFunctionObjArgs(run, module.get(), fresh.get(), nullptr));
  }
  return result ? 0 : StatusOfPendingException();
}

// `python -c command` (CPython's pymain_run_command): the command line's
// bytes decoded as python decodes its arguments, compiled as "<string>"
// ignoring any coding cookie, run in __main__.
int RunCommand(const std::string& command, bool fresh_namespace) {
  PyRef unicode = PyRef::Steal(PyUnicode_DecodeFSDefault(command.c_str()));
  PyRef bytes = unicode ? PyRef::Steal(PyUnicode_AsUTF8String(unicode.get())) : PyRef();
  if (!bytes) {
    PySys_WriteStderr("Unable to decode the command from the command line:\n");
    return StatusOfPendingException();
  }
  if (PySys_Audit("cpython.run_command", "O", unicode.get()) < 0) return StatusOfPendingException();
  PyRef fresh;
  PyObject* globals = Globals(fresh_namespace, fresh);
  PyCompilerFlags flags = _PyCompilerFlags_INIT;
  flags.cf_flags |= PyCF_IGNORE_COOKIE;
#if PY_VERSION_HEX >= 0x030D0000
  // 3.13+ hands the source to linecache (linecache._register_code), so a
  // traceback shows the command's lines: python imports linecache here.
  const char* source = PyBytes_AS_STRING(bytes.get());
  PyRef code = PyRef::Steal(Py_CompileStringExFlags(source, "<string>", Py_file_input, &flags, -1));
  PyRef linecache = code ? PyRef::Steal(PyImport_ImportModule("linecache")) : PyRef();
  PyRef text = linecache ? PyRef::Steal(PyUnicode_FromString(source)) : PyRef();
  // Keyed by the file name in 3.13 (as CPython's run_mod calls it).
  PyRef registered = text ? PyRef::Steal(PyObject_CallMethod(linecache.get(), "_register_code", "sOs", "<string>",
                                                             text.get(), "<string>"))
                          : PyRef();
  PyRef result = registered ? PyRef::Steal(PyEval_EvalCode(code.get(), globals, globals)) : PyRef();
#else
  PyRef result =
      PyRef::Steal(PyRun_StringFlags(PyBytes_AS_STRING(bytes.get()), Py_file_input, globals, globals, &flags));
#endif
  return result ? 0 : StatusOfPendingException();
}

}  // namespace

std::string ArgvZero(const Program& program) {
  switch (program.kind) {
    case Program::Kind::kScript: return program.text;
    case Program::Kind::kModule: return "-m";
    case Program::Kind::kCommand: return "-c";
  }
  return program.text;
}

int RunProgram(const Program& program, bool fresh_namespace) {
  InsertSysPathZero(program);
  switch (program.kind) {
    case Program::Kind::kScript: return RunScriptFile(program.text, fresh_namespace);
    case Program::Kind::kModule: return RunModule(program.text, fresh_namespace);
    case Program::Kind::kCommand: return RunCommand(program.text, fresh_namespace);
  }
  return 1;
}

std::string LinkedPythonVersion() {
  const std::string v = Py_GetVersion();  // "3.13.0 (main, ...) [GCC ...]"
  return v.substr(0, v.find(' '));
}

}  // namespace gilscope::python
