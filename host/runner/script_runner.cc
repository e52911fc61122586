#include "runner/script_runner.h"

#include <Python.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <memory>
#include <spdlog/spdlog.h>
#include <thread>

#include "hooks/gil_shim.h"
#include "hooks/gil_watch.h"
#include "hooks/pthread_hooks.h"
#include "python/builtin_module.h"
#include "python/gil.h"
#include "python/interpreter.h"
#include "python/py_error.h"
#include "python/py_ref.h"
#include "python/sub_interpreter.h"
#include "recorder/clock.h"
#include "recorder/collector.h"
#include "recorder/producer.h"
#include "runner/collect.h"

#ifndef GILSCOPE_VERSION
#define GILSCOPE_VERSION "0.0.0"
#endif

namespace gilscope::runner {
namespace {

constexpr const char* kArenaEnv = "GILSCOPE_ARENA";
constexpr int kMaxInstances = 64;

// Sets sys.setswitchinterval(seconds) and returns sys.getswitchinterval().
// PRECONDITION: the GIL of the current interpreter is held.
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

// The current interpreter's GIL. PRECONDITION: its GIL is held.
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

// Starts recording the current interpreter's GIL; -1 when hooks are off.
// PRECONDITION: its GIL is held by the calling thread.
int StartCurrentGil(bool hooks_on, int instance) {
  if (!hooks_on) return -1;
  hooks::GilMeta meta;
  meta.interpreter = PyInterpreterState_GetID(PyInterpreterState_Get());
  meta.instance = instance;
  const int index = hooks::StartGil(AddressesOfCurrentInterpreter(), meta, gilscope_current_tstate());
  if (index < 0) spdlog::warn("a GIL could not be recorded: the run's GIL table is full");
  return index;
}

// The arena lives in shared memory under a name children can find.
std::string ArenaPath() { return "/dev/shm/gilscope-" + std::to_string(getpid()) + ".arena"; }

// Releases N instances at once: each counts itself ready (without the GIL),
// the controller waits for all, then opens the gate.
class StartBarrier {
 public:
  explicit StartBarrier(int n) : ready_(n) {}
  // PRECONDITION: the calling instance thread holds no GIL.
  void ArriveAndWait() {
    ready_.count_down();
    gate_.wait();
  }
  void ReleaseWhenAllReady() {
    ready_.wait();
    gate_.count_down();
  }

 private:
  std::latch ready_;
  std::latch gate_{1};
};

int FirstFailure(const std::vector<int>& statuses) {
  for (int s : statuses) {
    if (s != 0) return s;
  }
  return 0;
}

void RunThreadInstances(const RunOptions& options, std::vector<int>& statuses) {
  StartBarrier barrier(options.instances);
  std::vector<std::thread> threads;
  for (int i = 0; i < options.instances; ++i) {
    threads.emplace_back([&, i] {
      recorder::SetCurrentThreadName("instance-" + std::to_string(i));
      barrier.ArriveAndWait();
      python::GilAcquire gil;
      try {
        statuses[i] = python::RunScript(options.script, /*fresh_namespace=*/true);
      } catch (const std::exception& e) {
        spdlog::error("instance {}: {}", i, e.what());
        statuses[i] = 1;
      }
    });
  }
  python::GilRelease release;
  barrier.ReleaseWhenAllReady();
  for (auto& t : threads) t.join();
}

void RunSubinterpreterInstances(const RunOptions& options, bool own_gil, std::vector<int>& statuses,
                                double& switch_interval) {
  StartBarrier barrier(options.instances);
  std::vector<std::thread> threads;
  for (int i = 0; i < options.instances; ++i) {
    threads.emplace_back([&, i] {
      recorder::SetCurrentThreadName("instance-" + std::to_string(i));
      std::unique_ptr<python::SubInterpreter> sub;
      try {
        sub = std::make_unique<python::SubInterpreter>(own_gil);
        python::InstallPythonHelpers();
        const double interval = ApplySwitchInterval(options.switch_interval_s);
        if (i == 0) switch_interval = interval;
        if (own_gil) {
          const int index = StartCurrentGil(options.hooks, i);
          // Runs in the subinterpreter's atexit, inside Py_EndInterpreter.
          python::SetStopCallback([index] { hooks::StopGil(index); });
        }
      } catch (const std::exception& e) {
        spdlog::error("instance {}: {}", i, e.what());
        statuses[i] = 1;
        if (!sub) {
          barrier.ArriveAndWait();
          return;
        }
      }
      {
        python::GilRelease release;
        barrier.ArriveAndWait();
      }
      if (statuses[i] == 0) {
        try {
          statuses[i] = python::RunScript(options.script, /*fresh_namespace=*/false);
        } catch (const std::exception& e) {
          spdlog::error("instance {}: {}", i, e.what());
          statuses[i] = 1;
        }
      }
      sub.reset();
    });
  }
  python::GilRelease release;
  barrier.ReleaseWhenAllReady();
  for (auto& t : threads) t.join();
}

void RunProcessInstances(const RunOptions& options, python::Interpreter& interpreter,
                         recorder::Arena* arena, std::vector<int>& statuses) {
  int gate[2];
  if (pipe2(gate, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  std::vector<pid_t> children;
  for (int i = 0; i < options.instances; ++i) {
    PyOS_BeforeFork();
    const pid_t pid = fork();
    if (pid == 0) {
      PyOS_AfterFork_Child();
      close(gate[1]);
      hooks::RegisterProcess("instance", i);
      char go = 0;
      while (read(gate[0], &go, 1) < 0 && errno == EINTR) {
      }
      int status = 1;
      try {
        status = python::RunScript(options.script, /*fresh_namespace=*/false);
      } catch (const std::exception& e) {
        spdlog::error("instance {}: {}", i, e.what());
      }
      const int fin = interpreter.Finalize();
      std::fflush(nullptr);
      _exit(status != 0 ? status : fin);
    }
    PyOS_AfterFork_Parent();
    if (pid < 0) {
      spdlog::error("fork: {}", std::strerror(errno));
      statuses[i] = 1;
      continue;
    }
    children.push_back(pid);
  }
  close(gate[0]);
  python::GilRelease release;
  const std::string go(children.size(), 'g');
  if (!go.empty() && write(gate[1], go.data(), go.size()) < 0) spdlog::error("gate: {}", std::strerror(errno));
  close(gate[1]);
  for (std::size_t i = 0; i < children.size(); ++i) {
    int raw = 0;
    while (waitpid(children[i], &raw, 0) < 0 && errno == EINTR) {
    }
    const int status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
    statuses[i] = status;
    if (arena != nullptr && WIFSIGNALED(raw)) {
      if (recorder::ProcessRecord* p = arena->FindProcess(static_cast<std::uint32_t>(children[i]))) {
        p->exit_status = status;
        p->end_ns = recorder::NowNs();
        p->state.store(recorder::ProcessRecord::kExited, std::memory_order_release);
      }
    }
  }
}

// Owns the arena file and the environment variable that names it.
class ArenaFile {
 public:
  ArenaFile(const recorder::ArenaConfig& config) : path_(ArenaPath()) {
    arena_ = recorder::Arena::Create(config, path_);
    setenv(kArenaEnv, path_.c_str(), 1);
  }
  ~ArenaFile() {
    unsetenv(kArenaEnv);
    unlink(path_.c_str());
  }
  recorder::Arena& arena() { return *arena_; }

 private:
  std::string path_;
  std::unique_ptr<recorder::Arena> arena_;
};

}  // namespace

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kMain: return "main";
    case Mode::kThreads: return "threads";
    case Mode::kSubinterpreters: return "subinterpreters";
    case Mode::kSharedSubinterpreters: return "shared-subinterpreters";
    case Mode::kProcesses: return "processes";
    case Mode::kSequential: return "sequential";
  }
  return "?";
}

std::optional<Mode> ParseMode(std::string_view name) {
  for (Mode m : {Mode::kMain, Mode::kThreads, Mode::kSubinterpreters, Mode::kSharedSubinterpreters,
                 Mode::kProcesses, Mode::kSequential}) {
    if (name == ModeName(m)) return m;
  }
  return std::nullopt;
}

std::vector<Mode> SupportedModes() {
  std::vector<Mode> modes = {Mode::kThreads};
  if (python::SubInterpreter::kOwnGilSupported) modes.push_back(Mode::kSubinterpreters);
  modes.push_back(Mode::kSharedSubinterpreters);
  modes.push_back(Mode::kProcesses);
  return modes;
}

void CheckScriptReadable(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    throw UsageError("cannot open script '" + path + "': " + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) throw UsageError("'" + path + "' is a folder, not a Python script");
  if (!S_ISREG(st.st_mode)) throw UsageError("'" + path + "' is not a regular file");
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw UsageError("cannot read script '" + path + "': " + std::strerror(errno));
  close(fd);
}

report::RunTrace RunScript(const RunOptions& options) {
  CheckScriptReadable(options.script);
  if (options.instances < 1 || options.instances > kMaxInstances) {
    throw UsageError("--instances must be between 1 and " + std::to_string(kMaxInstances));
  }
  if (options.mode == Mode::kMain && options.instances != 1) {
    throw UsageError("--mode main runs one instance; choose --mode threads, subinterpreters, "
                     "shared-subinterpreters or processes for " + std::to_string(options.instances));
  }
  if (options.mode == Mode::kSubinterpreters && !python::SubInterpreter::kOwnGilSupported) {
    throw UsageError("--mode subinterpreters needs CPython 3.12+ (subinterpreters with their own GIL); "
                     "this build embeds CPython " + python::LinkedPythonVersion() +
                     ". Use --mode shared-subinterpreters, or build with GILSCOPE_PYTHON=/path/to/python3.12+");
  }
  if (!hooks::Interposed()) {
    throw std::runtime_error(
        "the pthread hooks are not in effect (the executable must export them): no GIL event can be seen");
  }

  ArenaFile arena_file(options.arena);
  recorder::Arena& arena = arena_file.arena();
  recorder::Install(&arena);
  hooks::RegisterProcess("host", -1);
  recorder::Collector collector(arena);

  report::RunTrace trace;
  trace.info.gilscope_version = GILSCOPE_VERSION;
  trace.info.python_version = python::LinkedPythonVersion();
  trace.info.script = options.script;
  trace.info.args = options.args;
  trace.info.mode = ModeName(options.mode);
  trace.info.instances = options.instances;

  python::RegisterBuiltinModule();
  python::InterpreterOptions interp_options;
  interp_options.python_executable = options.python_executable;
  interp_options.executable = options.child_executable;
  interp_options.python_home = options.python_home;
  interp_options.argv.push_back(options.script);
  interp_options.argv.insert(interp_options.argv.end(), options.args.begin(), options.args.end());
  python::Interpreter interpreter(interp_options);

  python::InstallPythonHelpers();
  trace.info.switch_interval_s = ApplySwitchInterval(options.switch_interval_s);

  collector.Start();
  // Main mode: the main GIL is the instance's. Otherwise it belongs to the
  // host (the instances of threads/shared modes run under it too).
  const int main_gil = StartCurrentGil(options.hooks, options.mode == Mode::kMain ? 0 : -1);
  (void)main_gil;
  // In atexit, after CPython joined the script's threads. In a forked
  // instance this closes that child's own (re-indexed) GILs.
  python::SetStopCallback([] { hooks::StopAllGils(); });

  std::vector<int> statuses(static_cast<std::size_t>(options.instances), 0);
  spdlog::debug("running {} in mode {} x{}", options.script, ModeName(options.mode), options.instances);
  switch (options.mode) {
    case Mode::kMain:
      statuses[0] = interpreter.RunMainScript(options.script);
      break;
    case Mode::kSequential:
      for (int& s : statuses) s = python::RunScript(options.script, /*fresh_namespace=*/true);
      break;
    case Mode::kThreads:
      RunThreadInstances(options, statuses);
      break;
    case Mode::kSubinterpreters:
    case Mode::kSharedSubinterpreters:
      RunSubinterpreterInstances(options, options.mode == Mode::kSubinterpreters, statuses,
                                 trace.info.switch_interval_s);
      break;
    case Mode::kProcesses:
      RunProcessInstances(options, interpreter, &arena, statuses);
      break;
  }
  trace.info.exit_code = FirstFailure(statuses);
  // Joins the script's non-daemon threads, then runs atexit: the window closes.
  if (const int status = interpreter.Finalize(); status != 0 && trace.info.exit_code == 0) {
    trace.info.exit_code = status;
  }
  hooks::StopAllGils();  // if atexit never ran (a fatal error in finalisation)
  hooks::MarkProcessExit(trace.info.exit_code);
  collector.Stop();
  trace.info.status = trace.info.exit_code == 0 ? "ok" : "error";
  CollectInto(arena, collector.Take(), collector.dropped_no_slot(), trace);
  recorder::Install(nullptr);
  return trace;
}

int PythonMain(const std::vector<std::string>& argv, const std::string& executable,
               const std::string& python_home) {
  std::unique_ptr<recorder::Arena> arena;
  if (const char* path = getenv(kArenaEnv); path != nullptr && *path != '\0') {
    try {
      arena = recorder::Arena::Attach(path);
      recorder::Install(arena.get());
      hooks::RegisterProcess("spawn", -1);
    } catch (const std::exception& e) {
      spdlog::warn("not recording this process: {}", e.what());
    }
  }
  python::RegisterBuiltinModule();
  python::InterpreterOptions options;
  options.executable = executable;
  options.python_home = python_home;
  options.parse_argv = true;
  options.argv = argv;
  python::Interpreter interpreter(options);
  python::InstallPythonHelpers();
  if (arena) {
    StartCurrentGil(true, -1);
    python::SetStopCallback([] { hooks::StopAllGils(); });
  }
  const int status = interpreter.RunPythonMain();
  hooks::MarkProcessExit(status);
  // The mapping stays until the process exits: daemon threads may still be
  // blocked in hooks that write into it.
  (void)arena.release();
  return status;
}

}  // namespace gilscope::runner
