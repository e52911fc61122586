#include "python/builtin_module.h"

#include <Python.h>

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "python/py_error.h"
#include "python/py_ref.h"
#include "recorder/clock.h"
#include "recorder/producer.h"

namespace gilscope::python {
namespace {

// Per interpreter: what to do when its run ends. Guarded by g_stop_mutex
// (interpreters with their own GIL call in concurrently).
std::mutex g_stop_mutex;
std::unordered_map<PyInterpreterState*, std::function<void()>> g_on_stop;

PyObject* SetThreadName(PyObject*, PyObject* arg) {
  Py_ssize_t size = 0;
  const char* name = PyUnicode_AsUTF8AndSize(arg, &size);
  if (name == nullptr) return nullptr;
  recorder::SetCurrentThreadName(std::string_view(name, static_cast<std::size_t>(size)));
  Py_RETURN_NONE;
}

std::mutex g_marker_mutex;
std::unordered_map<std::string, std::uint32_t> g_marker_ids;
std::uint32_t g_local_marker_id = 0;  // when no arena is installed

std::uint32_t MarkerId(const std::string& name) {
  std::lock_guard<std::mutex> lock(g_marker_mutex);
  auto it = g_marker_ids.find(name);
  if (it != g_marker_ids.end()) return it->second;
  recorder::Arena* arena = recorder::Installed();
  // relaxed: ids need only be unique across the run's processes.
  const std::uint32_t id = arena ? arena->header().next_marker.fetch_add(1, std::memory_order_relaxed)
                                 : g_local_marker_id++;
  g_marker_ids.emplace(name, id);
  return id;
}

PyObject* Mark(PyObject*, PyObject* args) {
  const char* name = nullptr;
  Py_ssize_t size = 0;
  int kind = 0;
  if (!PyArg_ParseTuple(args, "s#i", &name, &size, &kind)) return nullptr;
  if (kind < 0 || kind > 2) {
    PyErr_SetString(PyExc_ValueError, "kind must be 0, 1 or 2");
    return nullptr;
  }
  const std::uint32_t id = MarkerId(std::string(name, static_cast<std::size_t>(size)));
  static constexpr recorder::EventKind kKinds[] = {recorder::EventKind::kMark, recorder::EventKind::kRegionBegin,
                                                   recorder::EventKind::kRegionEnd};
  recorder::Record(kKinds[kind], 0, 0, recorder::Stamp(), id);
  Py_RETURN_NONE;
}

PyObject* Stop(PyObject*, PyObject*) {
  std::function<void()> on_stop;
  {
    std::lock_guard<std::mutex> lock(g_stop_mutex);
    auto it = g_on_stop.find(PyInterpreterState_Get());
    if (it != g_on_stop.end()) {
      on_stop = std::move(it->second);
      g_on_stop.erase(it);
    }
  }
  if (on_stop) on_stop();
  Py_RETURN_NONE;
}

// A str as UTF-8 (lone surrogates backslash-escaped); "" for anything else.
std::string Utf8Of(PyObject* obj) {
  if (obj == nullptr || !PyUnicode_Check(obj)) return "";
  PyRef bytes = PyRef::Steal(PyUnicode_AsEncodedString(obj, "utf-8", "backslashreplace"));
  if (!bytes) {
    PyErr_Clear();
    return "";
  }
  return std::string(PyBytes_AS_STRING(bytes.get()), static_cast<std::size_t>(PyBytes_GET_SIZE(bytes.get())));
}

// _exception(thread, type, message, traceback, main): appends one JSON line
// to <arena>.exceptions-<pid>.jsonl, which the supervisor reads at the end
// of the run (so an exception is kept even if the process crashes later).
PyObject* RecordException(PyObject*, PyObject* args) {
  PyObject *thread = nullptr, *type = nullptr, *message = nullptr, *traceback = nullptr;
  int main = 0;
  if (!PyArg_ParseTuple(args, "UUUUp", &thread, &type, &message, &traceback, &main)) return nullptr;
  recorder::Arena* arena = recorder::Installed();
  if (arena == nullptr || arena->path().empty()) Py_RETURN_NONE;
  try {
    nlohmann::json j = {{"pid", getpid()},
                        {"native_id", static_cast<std::uint64_t>(syscall(SYS_gettid))},
                        {"thread", Utf8Of(thread)},
                        {"type", Utf8Of(type)},
                        {"message", Utf8Of(message)},
                        {"traceback", Utf8Of(traceback)},
                        {"main", main != 0},
                        {"time_ns", recorder::NowNs()}};
    const std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    const std::string path = arena->path() + ".exceptions-" + std::to_string(getpid()) + ".jsonl";
    Py_BEGIN_ALLOW_THREADS
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
      // One write with O_APPEND: lines of concurrent threads do not mix.
      (void)!write(fd, line.data(), line.size());
      close(fd);
    }
    Py_END_ALLOW_THREADS
  } catch (const std::exception&) {
    // Out of memory: the exception goes unrecorded, the script is unaffected.
  }
  Py_RETURN_NONE;
}

// A C function as a Python builtin function object (no module: the
// helpers' namespace and the public module hold them directly).
PyMethodDef g_set_thread_name_def = {"_set_thread_name", SetThreadName, METH_O,
                                     "Name the calling thread in gilscope's recorder."};
PyMethodDef g_exception_def = {
    "_exception", RecordException, METH_VARARGS,
    "Record an uncaught exception for gilscope's report (thread, type, message, traceback, main)."};
PyMethodDef g_stop_def = {"_stop", Stop, METH_NOARGS, "End gilscope's recording window (called from atexit)."};
PyMethodDef g_mark_def = {"_mark", Mark, METH_VARARGS, "Put a marker on gilscope's timeline (name, kind)."};

// _format_tb(tb): the traceback as CPython's own C printer writes it
// ("Traceback (most recent call last):" and the frames with their source
// lines), into a StringIO of the `_io` module every start-up has loaded.
PyObject* FormatTraceback(PyObject*, PyObject* tb) {
  if (!PyTraceBack_Check(tb)) return PyUnicode_FromString("");
  PyRef io = PyRef::Steal(PyImport_ImportModule("_io"));
  PyRef buffer = io ? PyRef::Steal(PyObject_CallMethod(io.get(), "StringIO", nullptr)) : PyRef();
  if (!buffer || PyTraceBack_Print(tb, buffer.get()) != 0) return nullptr;
  return PyObject_CallMethod(buffer.get(), "getvalue", nullptr);
}
PyMethodDef g_format_tb_def = {"_format_tb", FormatTraceback, METH_O, "A traceback's text, as CPython prints it."};

PyRef NewFunction(PyMethodDef* def) { return PyRef::Steal(PyCFunction_NewEx(def, nullptr, nullptr)); }

// The public module's body, run in its namespace when a script imports it.
// It imports nothing.
constexpr const char* kPublicModule = R"PY(
def _make(mark_):
    def mark(name):
        """An instant marker named `name` on this thread's timeline."""
        mark_(str(name), 0)

    class region:
        """A region of this thread's timeline: `with gilscope.region(name): ...`"""
        __slots__ = ("name",)

        def __init__(self, name):
            self.name = str(name)

        def __enter__(self):
            mark_(self.name, 1)
            return self

        def __exit__(self, *exc):
            mark_(self.name, 2)
            return False

    def active():
        """True when the script runs under gilscope."""
        return True

    return mark, region, active

mark, region, active = _make(_mark)
del _make, _mark
)PY";

// Runs `source` in the namespace `dict` (given `__builtins__`, as any
// module's has) through PyEval_EvalCode: the PyRun_* functions would also
// reset CPython's record of an unhandled KeyboardInterrupt.
bool RunInNamespace(const char* source, const char* filename, PyObject* dict) {
  if (PyDict_SetItemString(dict, "__builtins__", PyEval_GetBuiltins()) != 0) return false;
  PyRef code = PyRef::Steal(Py_CompileString(source, filename, Py_file_input));
  PyRef result = code ? PyRef::Steal(PyEval_EvalCode(code.get(), dict, dict)) : PyRef();
  return static_cast<bool>(result);
}

int ExecPublicModule(PyObject* module) {
  PyObject* dict = PyModule_GetDict(module);  // borrowed
  PyRef mark = NewFunction(&g_mark_def);
  if (!mark || PyDict_SetItemString(dict, "_mark", mark.get()) != 0) return -1;
  return RunInNamespace(kPublicModule, "<gilscope>", dict) ? 0 : -1;
}

// Multi-phase init with no module state, so every subinterpreter (own GIL
// included) can import it.
PyModuleDef_Slot g_public_slots[] = {
    {Py_mod_exec, reinterpret_cast<void*>(&ExecPublicModule)},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, nullptr},
};

PyModuleDef g_public_module = {
    PyModuleDef_HEAD_INIT,
    "gilscope",
    "Markers on gilscope's GIL timeline.\n\n"
    "    gilscope.mark('checkpoint')          an instant marker\n"
    "    with gilscope.region('load data'):   a region on this thread's lane\n"
    "    gilscope.active()                    True under gilscope\n",
    0,
    nullptr,
    g_public_slots,
    nullptr,
    nullptr,
    nullptr,
};

PyObject* InitPublicModule() { return PyModuleDef_Init(&g_public_module); }

// Runs in a private namespace, never in __main__, holding the C functions
// _set_thread_name, _exception and _format_tb. It imports nothing: `sys` is
// loaded at every start-up, and threading is hooked only once the script
// itself has imported it (_install_thread_hooks, called from C).
constexpr const char* kHelpers = R"PY(
import sys

def _exception_text(exc_type, exc):
    name = getattr(exc_type, "__qualname__", None) or getattr(exc_type, "__name__", "?")
    module = getattr(exc_type, "__module__", None)
    if module not in (None, "builtins", "__main__"):
        name = module + "." + name
    try:
        message = str(exc)
    except BaseException:
        message = "<str() of the exception failed>"
    return name, message

def _format_one(exc_type, exc, tb):
    name, message = _exception_text(exc_type, exc)
    text = _format_tb(tb) if tb is not None else ""
    text += name + (": " + message if message else "") + "\n"
    try:
        for note in getattr(exc, "__notes__", None) or ():
            text += str(note) + "\n"
    except BaseException:
        pass
    return text

def _format_exception(exc_type, exc, tb):
    # What traceback.format_exception writes, chained exceptions included,
    # from CPython's C traceback printer: importing `traceback` would put it
    # and its own imports into sys.modules where python's hooks had not.
    parts, seen = [], set()
    while True:
        parts.append(_format_one(exc_type, exc, tb))
        if exc is None:
            break
        seen.add(id(exc))
        cause = getattr(exc, "__cause__", None)
        context = getattr(exc, "__context__", None)
        if cause is not None:
            parts.append("\nThe above exception was the direct cause of the following exception:\n\n")
            exc = cause
        elif context is not None and not getattr(exc, "__suppress_context__", False):
            parts.append("\nDuring handling of the above exception, another exception occurred:\n\n")
            exc = context
        else:
            break
        if id(exc) in seen:
            parts.pop()
            break
        exc_type, tb = type(exc), getattr(exc, "__traceback__", None)
    return "".join(reversed(parts))

def _record_exception(exc_type, exc, tb, main):
    # Never raises: whatever fails here, the script's own handling goes on.
    try:
        threading = sys.modules.get("threading")
        try:
            thread = threading.current_thread().name if threading is not None else "MainThread"
        except BaseException:
            thread = "?"
        type_name, message = _exception_text(exc_type, exc)
        try:
            text = _format_exception(exc_type, exc, tb)
        except BaseException:
            text = ""
        _exception(str(thread), str(type_name), message, text, bool(main))
    except BaseException:
        pass

def _install_thread_hooks():
    # Called from C as a threading.Thread is about to start; True once done.
    threading = sys.modules.get("threading")
    thread_class = getattr(threading, "Thread", None)
    original = getattr(thread_class, "_bootstrap_inner", None)
    if original is None:
        return False
    set_name = _set_thread_name
    exc_info = sys.exc_info

    def _bootstrap_inner(self):
        # Name the thread as soon as it runs, and again at its end in case
        # the script renamed it meanwhile.
        try:
            set_name(self.name)
        except Exception:
            pass
        # An exception that ends the thread: recorded, then handed to the
        # thread's own excepthook call exactly as before (threading.excepthook
        # itself is left alone, so it prints, or not, as the script chose).
        invoke = getattr(self, "_invoke_excepthook", None)
        if invoke is not None:
            def _invoke_excepthook(thread, _invoke=invoke):
                exc_type, exc, tb = exc_info()
                if exc_type is not None and not issubclass(exc_type, SystemExit):
                    _record_exception(exc_type, exc, tb, False)
                _invoke(thread)
            self._invoke_excepthook = _invoke_excepthook
        try:
            original(self)
        finally:
            try:
                set_name(self.name)
            except Exception:
                pass

    _bootstrap_inner.__wrapped__ = original
    thread_class._bootstrap_inner = _bootstrap_inner
    return True
)PY";

// Keys of the host's entries in each interpreter's state dict
// (PyInterpreterState_GetDict), which CPython clears when the interpreter ends.
constexpr const char* kThreadHooksKey = "gilscope.install_thread_hooks";
constexpr const char* kRecordExceptionKey = "gilscope.record_exception";

// The current interpreter's state dict, or null. PRECONDITION: GIL held.
PyObject* InterpreterDict() { return PyInterpreterState_GetDict(PyInterpreterState_Get()); }  // borrowed

// Hooks threading in the current interpreter once it is loaded, at most once.
// Keeps any pending exception and never raises: it runs inside CPython's
// starting of a thread. PRECONDITION: GIL held.
void EnsureThreadHooks() {
  PyObject* state = InterpreterDict();
  PyObject* install = state != nullptr ? PyDict_GetItemString(state, kThreadHooksKey) : nullptr;  // borrowed
  if (install == nullptr) return;
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  // Out of the dict while it runs: it sets class attributes, which raises
  // audit events that come back here.
  PyRef fn = PyRef::Borrow(install);
  PyDict_DelItemString(state, kThreadHooksKey);
  PyRef done = PyRef::Steal(PyObject_CallNoArgs(fn.get()));
  if (!done || PyObject_IsTrue(done.get()) != 1) PyDict_SetItemString(state, kThreadHooksKey, fn.get());
  PyErr_Clear();
  PyErr_Restore(type, value, tb);
}

#if PY_VERSION_HEX >= 0x030C0000
// A C audit hook (PySys_AddAuditHook): invisible to Python code, unlike
// sys.addaudithook or a wrapper. threading starts every thread through
// _thread.start_new_thread (3.12) or _thread.start_joinable_thread (3.13),
// both audited before the new thread exists.
int AuditHook(const char* event, PyObject*, void*) {
  if (std::strncmp(event, "_thread.start_", 14) == 0) EnsureThreadHooks();
  return 0;
}
#else
// 3.11 audits no thread start: `_thread.start_new_thread` (which threading
// binds as `_start_new_thread` when imported) is replaced by a built-in
// function of the same name, bound like the original to the `_thread` module
// (so it reads `<built-in function start_new_thread>`), that hooks threading
// and then calls the original, kept in the interpreter's state dict.
constexpr const char* kStartNewThreadKey = "gilscope.start_new_thread";

PyObject* StartNewThread(PyObject*, PyObject* args, PyObject* kwargs) {
  EnsureThreadHooks();
  PyObject* state = InterpreterDict();
  PyObject* original = state != nullptr ? PyDict_GetItemString(state, kStartNewThreadKey) : nullptr;  // borrowed
  if (original == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "_thread.start_new_thread is gone");
    return nullptr;
  }
  PyRef keep = PyRef::Borrow(original);
  return PyObject_Call(keep.get(), args, kwargs);
}
PyMethodDef g_start_new_thread_def = {"start_new_thread", reinterpret_cast<PyCFunction>(
                                                              reinterpret_cast<void (*)()>(&StartNewThread)),
                                      METH_VARARGS | METH_KEYWORDS, nullptr};

void WrapStartNewThread() {
  PyRef thread = PyRef::Steal(PyImport_ImportModule("_thread"));  // loaded at every start-up
  PyRef original = thread ? PyRef::Steal(PyObject_GetAttrString(thread.get(), "start_new_thread")) : PyRef();
  if (!original || !PyCFunction_Check(original.get())) ThrowIfError("_thread.start_new_thread");
  if (PyCFunction_GetFunction(original.get()) == g_start_new_thread_def.ml_meth) return;
  // The same docstring as the original (static text in CPython).
  g_start_new_thread_def.ml_doc = reinterpret_cast<PyCFunctionObject*>(original.get())->m_ml->ml_doc;
  PyObject* state = InterpreterDict();
  PyRef module_name = PyRef::Steal(PyUnicode_FromString("_thread"));
  PyRef wrapper = PyRef::Steal(PyCFunction_NewEx(&g_start_new_thread_def, thread.get(), module_name.get()));
  if (state == nullptr || !wrapper || PyDict_SetItemString(state, kStartNewThreadKey, original.get()) != 0 ||
      PyObject_SetAttrString(thread.get(), "start_new_thread", wrapper.get()) != 0) {
    ThrowIfError("wrapping _thread.start_new_thread");
  }
}
#endif

// atexit.register(fn), leaving sys.modules as it was: the handler lives in
// the interpreter's own atexit state, which a later `import atexit` by the
// script shares, so registration order (ours first, run last) is kept.
void RegisterAtExit(PyObject* fn) {
  PyObject* modules = PyImport_GetModuleDict();  // borrowed
  const bool loaded = PyDict_GetItemString(modules, "atexit") != nullptr;
  PyRef atexit = PyRef::Steal(PyImport_ImportModule("atexit"));
  PyRef r = atexit ? PyRef::Steal(PyObject_CallMethod(atexit.get(), "register", "O", fn)) : PyRef();
  if (!r) ThrowIfError("atexit.register");
  if (!loaded && PyDict_DelItemString(modules, "atexit") != 0) ThrowIfError("sys.modules");
}

}  // namespace

std::vector<std::pair<std::uint32_t, std::string>> MarkerNames() {
  std::lock_guard<std::mutex> lock(g_marker_mutex);
  std::vector<std::pair<std::uint32_t, std::string>> names;
  for (const auto& [name, id] : g_marker_ids) names.emplace_back(id, name);
  return names;
}

void RegisterBuiltinModule() {
  PyImport_AppendInittab("gilscope", &InitPublicModule);
#if PY_VERSION_HEX >= 0x030C0000
  // Runtime-wide and before start-up, so every interpreter has it and no
  // `sys.addaudithook` event is raised.
  PySys_AddAuditHook(&AuditHook, nullptr);
#endif
}

void SetStopCallback(std::function<void()> on_stop) {
  std::lock_guard<std::mutex> lock(g_stop_mutex);
  g_on_stop[PyInterpreterState_Get()] = std::move(on_stop);
}

void InstallPythonHelpers() {
  // threading's name for the thread that starts the interpreter.
  recorder::SetCurrentThreadName("MainThread");
  PyRef globals = PyRef::Steal(PyDict_New());
  ThrowIfError("helpers");
  for (PyMethodDef* def : {&g_set_thread_name_def, &g_exception_def, &g_format_tb_def}) {
    PyRef fn = NewFunction(def);
    if (!fn || PyDict_SetItemString(globals.get(), def->ml_name, fn.get()) != 0) ThrowIfError("helpers");
  }
  // Compiled under the name "<gilscope>", which is how its frame reads in
  // a traceback of a script's thread.
  if (!RunInNamespace(kHelpers, "<gilscope>", globals.get())) ThrowIfError("installing gilscope's Python helpers");
  PyObject* state = InterpreterDict();
  if (state == nullptr) throw PyError("the interpreter has no state dict for gilscope's helpers");
  if (PyDict_SetItemString(state, kThreadHooksKey, PyDict_GetItemString(globals.get(), "_install_thread_hooks")) != 0 ||
      PyDict_SetItemString(state, kRecordExceptionKey, PyDict_GetItemString(globals.get(), "_record_exception")) != 0) {
    ThrowIfError("helpers");
  }
#if PY_VERSION_HEX < 0x030C0000
  WrapStartNewThread();
#endif
  // A script that imported threading before this ran (none does: this runs
  // first) would be hooked here.
  EnsureThreadHooks();
  PyRef stop = NewFunction(&g_stop_def);
  if (!stop) ThrowIfError("helpers");
  RegisterAtExit(stop.get());
}

void RecordException(PyObject* type, PyObject* value, PyObject* traceback, bool main) {
  PyObject* state = InterpreterDict();
  PyObject* record = state != nullptr ? PyDict_GetItemString(state, kRecordExceptionKey) : nullptr;  // borrowed
  if (record == nullptr || type == nullptr) return;
  PyObject *pending_type = nullptr, *pending_value = nullptr, *pending_tb = nullptr;
  PyErr_Fetch(&pending_type, &pending_value, &pending_tb);
  PyRef keep = PyRef::Borrow(record);
  PyRef r = PyRef::Steal(PyObject_CallFunctionObjArgs(keep.get(), type, value ? value : Py_None,
                                                      traceback ? traceback : Py_None, main ? Py_True : Py_False,
                                                      nullptr));
  PyErr_Clear();
  PyErr_Restore(pending_type, pending_value, pending_tb);
}

}  // namespace gilscope::python
