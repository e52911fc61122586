#include "runner/script_runner.h"

#include <Python.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <spdlog/spdlog.h>

#include "hooks/gil_shim.h"
#include "hooks/gil_watch.h"
#include "hooks/pthread_hooks.h"
#include "python/builtin_module.h"
#include "python/interpreter.h"
#include "python/py_error.h"
#include "python/py_ref.h"
#include "recorder/clock.h"
#include "recorder/collector.h"
#include "recorder/producer.h"

#ifndef GILSCOPE_VERSION
#define GILSCOPE_VERSION "0.0.0"
#endif

namespace gilscope::runner {
namespace {

// Sets sys.setswitchinterval(seconds) and returns sys.getswitchinterval().
double ApplySwitchInterval(std::optional<double> seconds) {
  using python::PyRef;
  PyObject* sys = PyImport_AddModule("sys");  // borrowed
  python::ThrowIfError("sys");
  if (seconds) {
    PyRef r = PyRef::Steal(PyObject_CallMethod(sys, "setswitchinterval", "d", *seconds));
    python::ThrowIfError("--switch-interval");
  }
  PyRef v = PyRef::Steal(PyObject_CallMethod(sys, "getswitchinterval", nullptr));
  python::ThrowIfError("sys.getswitchinterval");
  return PyFloat_AsDouble(v.get());
}

hooks::GilAddresses AddressesOfCurrentInterpreter() {
  gilscope_gil_addresses a{};
  if (gilscope_gil_addresses_of(nullptr, &a) != 0) {
    throw std::runtime_error("the interpreter has no GIL (free-threaded builds are not supported)");
  }
  hooks::GilAddresses g;
  g.mutex = a.mutex;
  g.cond = a.cond;
  g.switch_cond = a.switch_cond;
  g.locked = a.locked;
  g.switch_number = a.switch_number;
  g.last_holder = a.last_holder;
  return g;
}

// PRECONDITION: the caller holds this GIL, so the counter cannot move.
unsigned long ReadSwitchNumber(const hooks::GilAddresses& gil) {
  return __atomic_load_n(gil.switch_number, __ATOMIC_RELAXED);
}

}  // namespace

void CheckScriptReadable(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    throw ScriptError("cannot open script '" + path + "': " + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) throw ScriptError("'" + path + "' is a folder, not a Python script");
  if (!S_ISREG(st.st_mode)) throw ScriptError("'" + path + "' is not a regular file");
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw ScriptError("cannot read script '" + path + "': " + std::strerror(errno));
  close(fd);
}

report::RunTrace RunScript(const RunOptions& options) {
  CheckScriptReadable(options.script);
  if (!hooks::Interposed()) {
    throw std::runtime_error(
        "the pthread hooks are not in effect (the executable must export them): no GIL event can be seen");
  }

  auto arena = recorder::Arena::Create(options.arena);
  recorder::Install(arena.get());
  recorder::Collector collector(*arena);

  report::RunTrace trace;
  trace.info.gilscope_version = GILSCOPE_VERSION;
  trace.info.python_version = python::LinkedPythonVersion();
  trace.info.script = options.script;
  trace.info.args = options.args;

  python::RegisterBuiltinModule();
  python::InterpreterOptions interp_options;
  interp_options.python_executable = options.python_executable;
  interp_options.argv.push_back(options.script);
  interp_options.argv.insert(interp_options.argv.end(), options.args.begin(), options.args.end());
  python::Interpreter interpreter(interp_options);

  python::InstallPythonHelpers();
  trace.info.switch_interval_s = ApplySwitchInterval(options.switch_interval_s);

  // The main thread holds the GIL: CPython's switch counter cannot move
  // between the window's opening and the counter's reading.
  const hooks::GilAddresses gil = AddressesOfCurrentInterpreter();
  report::GilInfo info;
  info.id = 0;
  info.holder_tstate_at_start = gilscope_current_tstate();
  trace.start_ns = recorder::NowNs();
  if (options.hooks && hooks::WatchGil(gil, /*caller_holds=*/true, info.holder_tstate_at_start) != 0) {
    throw std::runtime_error("cannot watch the main GIL");
  }
  info.cpython_switch_start = ReadSwitchNumber(gil);

  bool stopped = false;
  python::SetStopCallback([&] {
    // Runs in atexit with the GIL held: the counter is still again.
    trace.end_ns = recorder::NowNs();
    info.cpython_switch_end = ReadSwitchNumber(gil);
    hooks::UnwatchAll();
    stopped = true;
  });

  collector.Start();
  spdlog::debug("running {} with {} argument(s)", options.script, options.args.size());
  trace.info.exit_code = interpreter.RunMainScript(options.script);
  // Joins the script's non-daemon threads, then runs atexit: the window closes.
  if (const int status = interpreter.Finalize(); status != 0 && trace.info.exit_code == 0) {
    trace.info.exit_code = status;
  }
  collector.Stop();
  if (!stopped) {
    // The atexit hook did not run (os._exit, a fatal error): close the
    // window here. CPython's counter may include shutdown switches then.
    spdlog::warn("the run ended without its atexit hook; CPython's switch count includes shutdown");
    trace.end_ns = recorder::NowNs();
    info.cpython_switch_end = ReadSwitchNumber(gil);
    hooks::UnwatchAll();
  }
  trace.info.status = trace.info.exit_code == 0 ? "ok" : "error";
  trace.gils.push_back(info);

  for (recorder::ThreadLog& log : collector.Take()) {
    report::ThreadTrace t;
    t.native_id = log.native_id;
    t.pid = log.pid;
    t.name = std::move(log.name);
    t.dropped = log.dropped;
    t.events = std::move(log.events);
    trace.threads.push_back(std::move(t));
  }
  trace.dropped_no_slot = collector.dropped_no_slot();
  recorder::Install(nullptr);
  return trace;
}

}  // namespace gilscope::runner
