#include "runner/script_runner.h"

#include <Python.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <memory>
#include <mutex>
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
#include "report/raw_file.h"
#include "runner/collect.h"
#include "runner/watchdog.h"

#ifndef GILSCOPE_VERSION
#define GILSCOPE_VERSION "0.0.0"
#endif

namespace gilscope::runner {
namespace {

constexpr const char* kArenaEnv = "GILSCOPE_ARENA";
// The virtual environment of a run, for its gilscope-python children.
constexpr const char* kPythonEnvEnv = "GILSCOPE_PYTHON_ENV";
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

// sys.executable = path (when not empty). PRECONDITION: the GIL is held.
void SetSysExecutable(const std::string& path) {
  if (path.empty()) return;
  python::PyRef exe = python::PyRef::Steal(PyUnicode_DecodeFSDefault(path.c_str()));
  if (!exe || PySys_SetObject("executable", exe.get()) != 0) python::ThrowIfError("sys.executable");
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
// A full GIL table is counted in the arena (gils_lost) and, when `warn`,
// said on stderr; a spawned child says nothing: its output is the program's.
// PRECONDITION: its GIL is held by the calling thread.
int StartCurrentGil(bool hooks_on, int instance, bool warn = true) {
  if (!hooks_on) return -1;
  hooks::GilMeta meta;
  meta.interpreter = PyInterpreterState_GetID(PyInterpreterState_Get());
  meta.instance = instance;
  // Frames are read on every interpreter: the code registry tags each
  // reference with its interpreter, which drops its own at its end
  // (DrainInterpreterCode).
  meta.probe_frames = true;
  const int index = hooks::StartGil(AddressesOfCurrentInterpreter(), meta, gilscope_current_tstate());
  if (index < 0 && warn) spdlog::warn("a GIL could not be recorded: the run's GIL table is full");
  return index;
}

// Code names drained from interpreters of this process that already ended
// (subinterpreters), kept for the process's names file.
std::mutex g_code_names_mutex;
nlohmann::json g_code_names = nlohmann::json::array();
// The process that last wrote its names file (a forked child inherits the
// value, and must write its own).
pid_t g_names_written_by = 0;

// Names the code objects the current interpreter's events refer to and
// releases them. PRECONDITION: its GIL is held, before it ends.
void DrainInterpreterCode() {
  nlohmann::json drained = nlohmann::json::array();
  gilscope_code_registry_drain(
      [](std::uint64_t id, const char* qualname, const char* filename, int first_line, void* ctx) {
        static_cast<nlohmann::json*>(ctx)->push_back({id, qualname, filename, first_line});
      },
      &drained);
  std::lock_guard<std::mutex> lock(g_code_names_mutex);
  for (auto& c : drained) g_code_names.push_back(std::move(c));
}

// Names for the ids this process's events use (code objects of kFrame,
// markers), written beside the arena for the supervisor:
// <arena>.names-<pid>.json = {"pid": P, "code": [[id, qualname, file, line]...],
//                             "markers": [[id, name]...]}.
// Code ids are this process's (addresses tagged with the interpreter id).
// PRECONDITION: the current interpreter's GIL is held (its code objects are
// read and released).
void WriteNamesFile() {
  recorder::Arena* arena = recorder::Installed();
  if (arena == nullptr || arena->path().empty()) return;
  // The supervisor removes the arena's file once it has read the run's
  // files: a process still running then (a forkserver, a stray child) would
  // only leave its names behind in /dev/shm, unread.
  if (access(arena->path().c_str(), F_OK) != 0) return;
  DrainInterpreterCode();
  g_names_written_by = getpid();
  nlohmann::json j;
  j["pid"] = static_cast<std::uint32_t>(getpid());
  {
    std::lock_guard<std::mutex> lock(g_code_names_mutex);
    j["code"] = g_code_names;
  }
  j["markers"] = nlohmann::json::array();
  for (const auto& [id, name] : python::MarkerNames()) j["markers"].push_back({id, name});
  const std::string path = arena->path() + ".names-" + std::to_string(getpid()) + ".json";
  const std::string tmp = path + ".tmp";
  if (FILE* f = std::fopen(tmp.c_str(), "w")) {
    const std::string text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    if (std::fclose(f) == 0 && ok) std::rename(tmp.c_str(), path.c_str());
  }
}

// Runs first in the interposed _exit(): os._exit() (multiprocessing's forked
// children) skips atexit, so a process that has not written its names file
// writes it here, while its caller still holds the GIL (os._exit keeps it).
void WriteNamesBeforeExit() {
  if (g_names_written_by == getpid() || !Py_IsInitialized() || !PyGILState_Check()) return;
  WriteNamesFile();
}

// Stop callback of a main interpreter: close the windows, then name ids.
void StopMainInterpreter() {
  hooks::StopAllGils();
  WriteNamesFile();
}

// Calls read(stream) on every file the run's processes left beside the
// arena named <arena><infix><pid><extension>, then removes it.
template <typename Read>
void ConsumeRunFiles(const std::string& arena_path, const std::string& infix, const std::string& extension,
                     Read read) {
  namespace fs = std::filesystem;
  const fs::path arena(arena_path);
  const std::string prefix = arena.filename().string() + infix;
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(arena.parent_path(), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && entry.path().extension() == extension) files.push_back(entry.path());
  }
  for (const fs::path& file : files) {
    std::ifstream in(file);
    read(in);
    in.close();
    fs::remove(file, ec);
  }
}

// Every uncaught exception the run's processes recorded, in time order.
void CollectExceptions(const std::string& arena_path, report::RunTrace& meta) {
  ConsumeRunFiles(arena_path, ".exceptions-", ".jsonl", [&meta](std::istream& in) {
    std::string line;
    while (std::getline(in, line)) {
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object()) continue;  // a line cut short by a crash
      report::ScriptException e;
      e.pid = j.value("pid", 0u);
      e.native_id = j.value("native_id", std::uint64_t{0});
      e.thread = j.value("thread", "");
      e.type = j.value("type", "");
      e.message = j.value("message", "");
      e.traceback = j.value("traceback", "");
      e.main = j.value("main", false);
      e.time_ns = j.value("time_ns", std::uint64_t{0});
      meta.exceptions.push_back(std::move(e));
    }
  });
  std::stable_sort(meta.exceptions.begin(), meta.exceptions.end(),
                   [](const report::ScriptException& a, const report::ScriptException& b) {
                     return a.time_ns < b.time_ns;
                   });
}

// Reads and removes every names file of the run into meta.code/marker_names.
void CollectNames(const std::string& arena_path, report::RunTrace& meta) {
  ConsumeRunFiles(arena_path, ".names-", ".json", [&meta](std::istream& in) {
    const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return;
    const auto pid = j.value("pid", std::uint32_t{0});
    for (const auto& c : j.value("code", nlohmann::json::array())) {
      if (!c.is_array() || c.size() != 4) continue;
      report::CodeInfo info;
      info.pid = pid;
      info.id = c[0].get<std::uint64_t>();
      info.function = c[1].get<std::string>();
      info.file = c[2].get<std::string>();
      info.first_line = c[3].get<int>();
      meta.code.push_back(std::move(info));
    }
    for (const auto& m : j.value("markers", nlohmann::json::array())) {
      if (!m.is_array() || m.size() != 2) continue;
      const auto id = m[0].get<std::uint32_t>();
      if (id >= 1'000'000) continue;
      if (meta.marker_names.size() <= id) meta.marker_names.resize(id + 1);
      meta.marker_names[id] = m[1].get<std::string>();
    }
  });
}

// The watchdog's description of a deadlock, if it left one (and removes it).
void ReadDeadlock(const std::string& arena_path, report::RunTrace& meta) {
  const std::string path = DeadlockFilePath(arena_path);
  std::ifstream in(path);
  if (!in) return;
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  std::remove(path.c_str());
  if (!j.is_object()) return;
  meta.deadlock.summary = j.value("summary", "");
  for (const auto& t : j.value("threads", nlohmann::json::array())) {
    report::BlockedThread b;
    b.name = t.value("name", "");
    b.waiting_for = t.value("waiting_for", "");
    b.held_by = t.value("held_by", "");
    for (const auto& h : t.value("holds", nlohmann::json::array())) {
      if (h.is_string()) b.holds.push_back(h.get<std::string>());
    }
    b.stack = t.value("stack", "");
    meta.deadlock.threads.push_back(std::move(b));
  }
}

// The arena lives in shared memory under a name children can find.
// The arena's file, and the prefix of the names/exceptions files the run's
// processes leave beside it. Unique per run, not only per supervisor pid:
// pids are reused (pid_max is 32768 here), and a process that outlives its
// run's collection (a forkserver, a stray child) writes its names file after
// the supervisor has read them; a later run whose supervisor got the same
// pid would otherwise read those names as its own processes' (a forked
// child's frames named by another run's code).
std::string ArenaPath() {
  return "/dev/shm/gilscope-" + std::to_string(getpid()) + "-" + std::to_string(recorder::MonotonicNs()) + ".arena";
}

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
        statuses[i] = python::RunProgram(options.program, /*fresh_namespace=*/true);
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
        // A subinterpreter starts from the main one's configuration, in a
        // venv the venv's python as sys.executable (its site found the venv
        // through it): its children must be gilscope-python too.
        if (!options.python_env.empty()) SetSysExecutable(options.child_executable);
        python::InstallPythonHelpers();
        const double interval = ApplySwitchInterval(options.switch_interval_s);
        if (i == 0) switch_interval = interval;
        if (own_gil) {
          const int index = StartCurrentGil(options.hooks, i);
          // Runs in the subinterpreter's atexit, inside Py_EndInterpreter.
          python::SetStopCallback([index] {
            hooks::StopGil(index);
            DrainInterpreterCode();
          });
        } else if (options.hooks) {
          // Its threads release the main GIL, whose frames are probed too.
          python::SetStopCallback(&DrainInterpreterCode);
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
          statuses[i] = python::RunProgram(options.program, /*fresh_namespace=*/false);
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
        status = python::RunProgram(options.program, /*fresh_namespace=*/false);
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

// Sets an environment variable (when `value` is not empty) for the guard's
// lifetime: the run's processes inherit it.
class EnvVar {
 public:
  EnvVar(const char* name, const std::string& value) : name_(name), set_(!value.empty()) {
    if (set_) setenv(name_, value.c_str(), 1);
  }
  ~EnvVar() {
    if (set_) unsetenv(name_);
  }
  EnvVar(const EnvVar&) = delete;
  EnvVar& operator=(const EnvVar&) = delete;

 private:
  const char* name_;
  bool set_;
};

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

std::uint64_t ParseSize(const std::string& text, const std::string& option) {
  const auto bad = [&]() {
    return UsageError(option + ": '" + text + "' is not a size (examples: 512M, 2G, 1.5G, 100000K)");
  };
  std::size_t used = 0;
  double number = 0;
  try {
    number = std::stod(text, &used);
  } catch (const std::exception&) {
    throw bad();
  }
  if (!(number > 0) || !std::isfinite(number) || text.find_first_of("xXpP") != std::string::npos) throw bad();
  std::string unit = text.substr(used);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() >= 2 && unit.compare(unit.size() - 2, 2, "IB") == 0) unit.resize(unit.size() - 2);
  else if (unit.size() >= 2 && unit.back() == 'B') unit.pop_back();
  double scale = 1;
  if (unit.empty() || unit == "B") scale = 1;
  else if (unit == "K") scale = 1024.0;
  else if (unit == "M") scale = 1024.0 * 1024;
  else if (unit == "G") scale = 1024.0 * 1024 * 1024;
  else if (unit == "T") scale = 1024.0 * 1024 * 1024 * 1024;
  else throw bad();
  const double bytes = number * scale;
  if (bytes < 1 || bytes > 1e18) throw bad();
  return static_cast<std::uint64_t>(bytes);
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

namespace {

// `text` as one shell word: as it is when nothing in it needs quoting, else
// in single quotes.
std::string ShellQuote(const std::string& text) {
  const bool plain = !text.empty() && std::all_of(text.begin(), text.end(), [](unsigned char c) {
    return std::isalnum(c) != 0 || (c != 0 && std::strchr("@%_+=:,./-", c) != nullptr);
  });
  if (plain) return text;
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

}  // namespace

std::string ProgramLabel(const RunOptions& options) {
  if (options.python_command_line) return "python";
  switch (options.program.kind) {
    case python::Program::Kind::kScript: return options.program.text;
    case python::Program::Kind::kModule: return "-m " + options.program.text;
    case python::Program::Kind::kCommand: return "-c " + ShellQuote(options.program.text);
  }
  return options.program.text;
}

std::string ChoosePythonEnv(const std::string& flag) {
  std::string dir = flag;
  std::string source = "--python-env";
  if (dir.empty()) {
    const char* active = std::getenv("VIRTUAL_ENV");
    if (active == nullptr || *active == '\0') return "";
    dir = active;
    source = "VIRTUAL_ENV (an activated virtual environment; deactivate it or pass --python-env)";
  }
  try {
    python::VirtualEnvPython(dir);
  } catch (const std::invalid_argument& e) {
    throw UsageError(source + ": " + e.what());
  }
  std::error_code ec;
  return std::filesystem::absolute(dir, ec).lexically_normal().string();
}

namespace {

// The data memory this process has mapped (VmData: heap, private writable
// mappings, stacks), in bytes; 0 when unknown.
std::uint64_t MappedDataBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmData:", 0) == 0) return std::strtoull(line.c_str() + 7, nullptr, 10) * 1024;
  }
  return 0;
}

// --memory-limit, in the runner only (children inherit it): RLIMIT_DATA, not
// RLIMIT_AS, because the event arena is a 2 GiB MAP_SHARED mapping that
// RLIMIT_DATA ignores (Linux >= 4.7 counts private writable mappings and
// brk), and under AddressSanitizer the shadow reservation alone exceeds any
// address-space limit. The limit is on top of what is already mapped, so
// gilscope's own start-up does not eat into the script's share.
void ApplyMemoryLimit(std::uint64_t bytes) {
  if (bytes == 0) return;
  const rlim_t limit = static_cast<rlim_t>(MappedDataBytes() + bytes);
  rlimit current{};
  getrlimit(RLIMIT_DATA, &current);
  rlimit wanted{limit, limit};
  if (current.rlim_max != RLIM_INFINITY && current.rlim_max < limit) wanted = {current.rlim_max, current.rlim_max};
  if (setrlimit(RLIMIT_DATA, &wanted) != 0) {
    std::fprintf(stderr, "gilscope: --memory-limit: setrlimit(RLIMIT_DATA): %s\n", std::strerror(errno));
  }
}

// The runner: the child process that starts Python and runs the script.
// Records into the inherited arena; returns the run's exit status.
int RunnerMain(const RunOptions& options, recorder::Arena& arena) {
  hooks::RegisterProcess("runner", -1);

  python::RegisterBuiltinModule();
  python::InterpreterOptions interp_options;
  interp_options.python_executable = options.python_executable;
  interp_options.executable = options.child_executable;
  interp_options.python_home = options.python_home;
  interp_options.virtual_env = options.python_env;
  if (options.python_command_line) {
    interp_options.parse_argv = true;
    interp_options.argv.push_back(options.child_executable.empty() ? "python" : options.child_executable);
  } else {
    // python's sys.argv and sys.orig_argv for `python SCRIPT|-m MOD|-c CMD ARGS`.
    interp_options.argv.push_back(python::ArgvZero(options.program));
    interp_options.orig_argv = {options.child_executable.empty() ? "python" : options.child_executable};
    if (options.program.kind != python::Program::Kind::kScript) {
      interp_options.orig_argv.push_back(interp_options.argv[0]);
    }
    interp_options.orig_argv.push_back(options.program.text);
  }
  interp_options.argv.insert(interp_options.argv.end(), options.args.begin(), options.args.end());
  if (!options.python_command_line) {
    interp_options.orig_argv.insert(interp_options.orig_argv.end(), options.args.begin(), options.args.end());
  }
  std::optional<python::Interpreter> interpreter_storage;
  try {
    interpreter_storage.emplace(interp_options);
  } catch (const python::StartupExit& e) {
    hooks::MarkProcessExit(e.status);
    return e.status;  // python --version, -h, a bad option: python said why
  }
  python::Interpreter& interpreter = *interpreter_storage;
  // python's command line: run what it names as `run` would, or, for what
  // only python's own main can do (the REPL, stdin, -i, -x, a folder or zip
  // file), hand it over to Py_RunMain.
  python::Program program = options.program;
  bool python_main = false;
  if (options.python_command_line) {
    if (const auto parsed = interpreter.CommandLineProgram()) {
      program = *parsed;
    } else {
      python_main = true;
    }
  }

  python::InstallPythonHelpers();
  arena.header().run.switch_interval_s = ApplySwitchInterval(options.switch_interval_s);

  // Main mode: the main GIL is the instance's. Otherwise it belongs to the
  // host (the instances of threads/shared modes run under it too).
  StartCurrentGil(options.hooks, options.mode == Mode::kMain ? 0 : -1);
  // In atexit, after CPython joined the script's threads. In a forked
  // instance this closes that child's own (re-indexed) GILs.
  python::SetStopCallback(&StopMainInterpreter);
  hooks::SetBeforeExit(&WriteNamesBeforeExit);

  Watchdog watchdog(arena, options.deadlock_after_s);
  std::vector<int> statuses(static_cast<std::size_t>(options.instances), 0);
  double ignored_interval = 0;
  switch (options.mode) {
    case Mode::kMain:
      statuses[0] = python_main ? interpreter.RunPythonMain() : python::RunProgram(program, /*fresh_namespace=*/false);
      break;
    case Mode::kSequential:
      for (int& st : statuses) st = python::RunProgram(program, /*fresh_namespace=*/true);
      break;
    case Mode::kThreads:
      RunThreadInstances(options, statuses);
      break;
    case Mode::kSubinterpreters:
    case Mode::kSharedSubinterpreters:
      RunSubinterpreterInstances(options, options.mode == Mode::kSubinterpreters, statuses, ignored_interval);
      break;
    case Mode::kProcesses:
      RunProcessInstances(options, interpreter, &arena, statuses);
      break;
  }
  int status = FirstFailure(statuses);
  // Joins the script's non-daemon threads, then runs atexit: the window closes.
  if (const int fin = interpreter.Finalize(); fin != 0 && status == 0) status = fin;
  hooks::StopAllGils();  // if atexit never ran (a fatal error in finalisation)
  recorder::RecordCurrentThreadCpu();
  hooks::MarkProcessExit(status);
  std::fflush(nullptr);
  return status;
}

volatile std::sig_atomic_t g_interrupted = 0;
void OnInterrupt(int) { g_interrupted = 1; }

// Kills the runner and every traced process of the run still running.
void KillRun(recorder::Arena& arena, pid_t runner) {
  kill(runner, SIGKILL);
  for (std::uint32_t i = 0; i < arena.process_count(); ++i) {
    recorder::ProcessRecord& p = arena.process(i);
    if (p.state.load(std::memory_order_acquire) == recorder::ProcessRecord::kRunning &&
        p.pid != static_cast<std::uint32_t>(getpid())) {
      kill(static_cast<pid_t>(p.pid), SIGKILL);
    }
  }
}

struct RunnerEnd {
  int raw_status = 0;
  bool timed_out = false;
  bool interrupted = false;
};

// Waits for the runner, enforcing the timeout and passing Ctrl-C on.
RunnerEnd WaitForRunner(recorder::Arena& arena, pid_t runner, double timeout_s) {
  RunnerEnd end;
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, runner, 0));
  const auto start = std::chrono::steady_clock::now();
  std::optional<std::chrono::steady_clock::time_point> interrupted_at;
  for (;;) {
    const pid_t done = waitpid(runner, &end.raw_status, WNOHANG);
    if (done == runner) break;
    const auto now = std::chrono::steady_clock::now();
    if (timeout_s > 0 && !end.timed_out &&
        std::chrono::duration<double>(now - start).count() >= timeout_s) {
      end.timed_out = true;
      KillRun(arena, runner);
    }
    if (g_interrupted && !interrupted_at) {
      // The terminal sent SIGINT to the runner too (same process group); it
      // gets KeyboardInterrupt. Give it a moment to end by itself.
      end.interrupted = true;
      interrupted_at = now;
    }
    if (interrupted_at && now - *interrupted_at > std::chrono::seconds(3)) KillRun(arena, runner);
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      poll(&p, 1, 100);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  if (pidfd >= 0) close(pidfd);
  return end;
}

}  // namespace

report::RunTrace RunScript(const RunOptions& options) {
  if (!options.python_command_line && options.program.kind == python::Program::Kind::kScript) {
    CheckScriptReadable(options.program.text);
  }
  if (options.python_command_line && (options.mode != Mode::kMain || options.instances != 1)) {
    throw UsageError("python's own command line runs in --mode main, one instance");
  }
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

  const std::string raw_path = (std::filesystem::path(options.out_dir) / "events.raw").string();
  report::RawWriter raw = report::RawWriter::Open(raw_path);
  ArenaFile arena_file(options.arena);
  // The runner and its gilscope-python children find the same venv.
  EnvVar python_env(kPythonEnvEnv, options.python_env);
  recorder::Arena& arena = arena_file.arena();
  recorder::Install(&arena);
  hooks::RegisterProcess("supervisor", -1);
  hooks::SetFrameProbe(&gilscope_probe_frame);
  recorder::Collector collector(arena);
  collector.SetSink([&raw](std::uint32_t slot, const recorder::Event* events, std::size_t n) {
    raw.AppendEvents(slot, events, n);
  });

  // Fork while the supervisor has one thread: a lock another thread holds
  // at fork() stays locked in the child for ever (AddressSanitizer's
  // allocator in GCC 12 has no fork handler, and the drain thread allocates,
  // so the runner deadlocked in its first malloc). Events wait in the rings
  // until the drain starts just after.
  std::fflush(nullptr);
  const pid_t runner = fork();
  if (runner < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (runner == 0) {
    int status = 1;
    try {
      ApplyMemoryLimit(options.memory_limit_bytes);
      status = RunnerMain(options, arena);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "gilscope: %s\n", e.what());
      status = 70;
    }
    std::fflush(nullptr);
    _exit(status);
  }
  collector.Start();

  struct sigaction on_int {}, old_int {};
  on_int.sa_handler = &OnInterrupt;
  sigemptyset(&on_int.sa_mask);
  sigaction(SIGINT, &on_int, &old_int);
  const RunnerEnd end = WaitForRunner(arena, runner, options.timeout_s);
  sigaction(SIGINT, &old_int, nullptr);
  collector.Stop();
  // A process of the run may outlive the runner (multiprocessing's resource
  // tracker, a detached child) and go on recording: the collector's last
  // drain in its destructor must not reach events.raw once it is finished.
  collector.SetSink(nullptr);

  report::RunTrace meta;
  meta.info.gilscope_version = GILSCOPE_VERSION;
  meta.info.python_version = python::LinkedPythonVersion();
  meta.info.script = ProgramLabel(options);
  meta.info.args = options.args;
  meta.info.mode = ModeName(options.mode);
  meta.info.instances = options.instances;
  meta.info.switch_interval_s = arena.header().run.switch_interval_s;
  meta.info.cpu_count = static_cast<int>(std::thread::hardware_concurrency());
  const int raw_status = end.raw_status;
  if (end.timed_out) {
    meta.info.status = "timeout";
    meta.info.exit_code = kExitTimeout;
  } else if (arena.header().run.outcome.load(std::memory_order_acquire) == recorder::RunRecord::kDeadlock) {
    meta.info.status = "deadlock";
    meta.info.exit_code = kExitDeadlock;
  } else if (WIFSIGNALED(raw_status)) {
    meta.info.status = end.interrupted ? "interrupted" : "crashed";
    meta.info.exit_code = 128 + WTERMSIG(raw_status);
    meta.info.signal = WTERMSIG(raw_status);
  } else {
    meta.info.exit_code = WEXITSTATUS(raw_status);
    meta.info.status = end.interrupted ? "interrupted" : (meta.info.exit_code == 0 ? "ok" : "error");
  }
  // The runner's own record: it may not have marked its end (a crash).
  if (recorder::ProcessRecord* p = arena.FindProcess(static_cast<std::uint32_t>(runner))) {
    if (p->state.load(std::memory_order_acquire) != recorder::ProcessRecord::kExited) {
      p->exit_status = meta.info.exit_code;
      p->end_ns = recorder::NowNs();
      p->state.store(recorder::ProcessRecord::kExited, std::memory_order_release);
    }
  }
  std::vector<recorder::ThreadLog> logs = collector.Take();
  // A process that outlives the runner (multiprocessing's resource tracker)
  // may still write events; the collector's last drain (its destructor, after
  // events.raw is finished) must not hand them to the finished writer.
  collector.SetSink(nullptr);
  for (const recorder::ThreadLog& log : logs) {
    report::ThreadTrace identity;
    identity.native_id = log.native_id;
    identity.pid = log.pid;
    identity.name = log.name;
    identity.dropped = log.dropped;
    identity.cpu_s = log.cpu_s;
    raw.SetStream(identity, log.slot);
  }
  CollectInto(arena, std::move(logs), collector.dropped_no_slot(), meta);
  // A run of more than kMaxGils interpreters (a test suite starting
  // hundreds of processes) records the first ones only; say so, as the
  // spawned children themselves stay silent.
  // relaxed: a counter read once, ordering nothing else.
  if (const std::uint64_t lost = arena.header().gils_lost.load(std::memory_order_relaxed); lost > 0) {
    spdlog::warn("{} GIL(s) of this run were not recorded: its GIL table holds {}; their threads' GIL events "
                 "are missing from the report",
                 lost, recorder::kMaxGils);
  }
  // A process that never recorded its end but is gone was killed by a
  // signal (a pool's terminate() sends SIGTERM) and reaped by its parent in
  // the script, so its status is unknown: "ended", exit status -1.
  for (report::ProcessInfo& p : meta.processes) {
    if (p.status == "running" && kill(static_cast<pid_t>(p.pid), 0) != 0 && errno == ESRCH) {
      p.status = "ended";
      p.exit_status = -1;
    }
  }
  CollectNames(arena.path(), meta);
  CollectExceptions(arena.path(), meta);
  ReadDeadlock(arena.path(), meta);
  // The supervisor's own process record is not part of the run.
  std::erase_if(meta.processes, [](const report::ProcessInfo& p) { return p.role == "supervisor"; });
  meta.threads.clear();
  raw.Finish(meta);
  recorder::Install(nullptr);

  // The run's facts, checked as a reader will see them (every record's
  // framing and checksum), without decoding its events: analysis streams
  // them from the file (report::RawFileSource).
  return report::RawFileSource::Open(raw_path)->meta();
}

int PythonMain(const std::vector<std::string>& argv, const std::string& executable,
               const std::string& python_home) {
  python::InterpreterOptions options;
  options.executable = executable;
  options.python_home = python_home;
  options.parse_argv = true;
  options.argv = argv;
  // A run's virtual environment, else an activated one: checked before
  // anything starts, as `gilscope run` checks it.
  const char* run_env = getenv(kPythonEnvEnv);
  try {
    options.virtual_env = ChoosePythonEnv(run_env != nullptr ? run_env : "");
  } catch (const UsageError& e) {
    std::fprintf(stderr, "gilscope python: %s\n", e.what());
    return 2;
  }

  std::unique_ptr<recorder::Arena> arena;
  if (const char* path = getenv(kArenaEnv); path != nullptr && *path != '\0') {
    try {
      arena = recorder::Arena::Attach(path);
      recorder::Install(arena.get());
      hooks::SetFrameProbe(&gilscope_probe_frame);
      hooks::RegisterProcess("spawn", -1);
    } catch (const std::exception& e) {
      // Not spdlog: its default logger would write on the program's stdout.
      std::fprintf(stderr, "gilscope: not recording this process: %s\n", e.what());
    }
  }
  python::RegisterBuiltinModule();
  std::optional<python::Interpreter> interpreter;
  try {
    interpreter.emplace(options);
  } catch (const python::StartupExit& e) {
    hooks::MarkProcessExit(e.status);
    return e.status;  // --version, -h, a bad option: python said why
  }
  // Only a recorded process needs the helpers (thread names, exceptions,
  // the window's end in atexit).
  if (arena) {
    python::InstallPythonHelpers();
    StartCurrentGil(true, -1, /*warn=*/false);
    python::SetStopCallback(&StopMainInterpreter);
    hooks::SetBeforeExit(&WriteNamesBeforeExit);
  }
  const int status = interpreter->RunPythonMain();
  hooks::MarkProcessExit(status);
  // The mapping stays until the process exits: daemon threads may still be
  // blocked in hooks that write into it.
  (void)arena.release();
  return status;
}

}  // namespace gilscope::runner
