#include "python/builtin_module.h"

#include <Python.h>

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

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

PyMethodDef g_methods[] = {
    {"_exception", RecordException, METH_VARARGS,
     "Record an uncaught exception for gilscope's report (thread, type, message, traceback, main)."},
    {"_set_thread_name", SetThreadName, METH_O, "Name the calling thread in gilscope's recorder."},
    {"_stop", Stop, METH_NOARGS, "End gilscope's recording window (called from atexit)."},
    {"_mark", Mark, METH_VARARGS, "Put a marker on gilscope's timeline (name, kind)."},
    {nullptr, nullptr, 0, nullptr},
};

// Multi-phase init with no module state, so every subinterpreter (own GIL
// included) can import it.
PyModuleDef_Slot g_slots[] = {
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, nullptr},
};

PyModuleDef g_module = {
    PyModuleDef_HEAD_INIT, "_gilscope", "gilscope host hooks (internal).", 0, g_methods,
    g_slots, nullptr, nullptr, nullptr,
};

PyObject* InitModule() { return PyModuleDef_Init(&g_module); }

// Runs in a private namespace, never in __main__: the script must see the
// same globals it would under plain python.
constexpr const char* kHelpers = R"PY(
import atexit, sys, threading, _gilscope

def _record_exception(exc_type, exc, tb, main):
    # Never raises: whatever fails here, the script's own handling goes on.
    try:
        try:
            thread = threading.current_thread().name
        except BaseException:
            thread = "?"
        type_name = getattr(exc_type, "__qualname__", None) or getattr(exc_type, "__name__", "?")
        module = getattr(exc_type, "__module__", None)
        if module not in (None, "builtins", "__main__"):
            type_name = module + "." + type_name
        try:
            message = str(exc)
        except BaseException:
            message = "<str() of the exception failed>"
        try:
            import traceback
            text = "".join(traceback.format_exception(exc_type, exc, tb))
        except BaseException:
            text = ""
        _gilscope._exception(str(thread), str(type_name), message, text, bool(main))
    except BaseException:
        pass

def _install():
    original = threading.Thread._bootstrap_inner
    set_name = _gilscope._set_thread_name
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
    threading.Thread._bootstrap_inner = _bootstrap_inner
    set_name(threading.main_thread().name)
    # atexit runs after CPython has joined the non-daemon threads; ours is
    # registered first, so it runs after the script's own atexit handlers.
    atexit.register(_gilscope._stop)
    # For the host: the script's own uncaught exception (before it prints).
    _gilscope._record_exception = _record_exception

def _public_module():
    import sys, types
    m = types.ModuleType("gilscope", (
        "Markers on gilscope's GIL timeline.\n\n"
        "    gilscope.mark('checkpoint')          an instant marker\n"
        "    with gilscope.region('load data'):   a region on this thread's lane\n"
        "    gilscope.active()                    True under gilscope\n"))
    mark_ = _gilscope._mark

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

    m.mark, m.region, m.active = mark, region, active
    sys.modules.setdefault("gilscope", m)

_install()
_public_module()
)PY";

}  // namespace

std::vector<std::pair<std::uint32_t, std::string>> MarkerNames() {
  std::lock_guard<std::mutex> lock(g_marker_mutex);
  std::vector<std::pair<std::uint32_t, std::string>> names;
  for (const auto& [name, id] : g_marker_ids) names.emplace_back(id, name);
  return names;
}

void RegisterBuiltinModule() { PyImport_AppendInittab("_gilscope", &InitModule); }

void SetStopCallback(std::function<void()> on_stop) {
  std::lock_guard<std::mutex> lock(g_stop_mutex);
  g_on_stop[PyInterpreterState_Get()] = std::move(on_stop);
}

void InstallPythonHelpers() {
  PyRef globals = PyRef::Steal(PyDict_New());
  ThrowIfError("helpers");
  PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins());
  // Compiled under the name "<gilscope>", which is how its frame reads in
  // a traceback of a script's thread.
  PyRef code = PyRef::Steal(Py_CompileString(kHelpers, "<gilscope>", Py_file_input));
  PyRef result = code ? PyRef::Steal(PyEval_EvalCode(code.get(), globals.get(), globals.get())) : PyRef();
  if (!result) ThrowIfError("installing gilscope's Python helpers");
}

}  // namespace gilscope::python
