#include "python/builtin_module.h"

#include <Python.h>

#include <mutex>
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
  recorder::Record(kKinds[kind], 0, 0, recorder::NowNs(), id);
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

PyMethodDef g_methods[] = {
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
import atexit, threading, _gilscope

def _install():
    original = threading.Thread._bootstrap_inner
    set_name = _gilscope._set_thread_name

    def _bootstrap_inner(self):
        # Name the thread as soon as it runs, and again at its end in case
        # the script renamed it meanwhile.
        try:
            set_name(self.name)
        except Exception:
            pass
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
