// Runs a Python script with the GIL hooks recording, in one of several
// execution modes, and returns everything analysis needs.
//
//   main                    the script as __main__ on the main thread (python SCRIPT)
//   threads                 N host threads, each running it in a fresh __main__
//                           namespace of the main interpreter (one GIL)
//   subinterpreters         N subinterpreters with their own GIL (3.12+), each on
//                           its own host thread
//   shared-subinterpreters  N subinterpreters sharing the main GIL
//   processes               N forked children, each running it as __main__
//   sequential              N runs one after another on the main thread (the
//                           baseline `gilscope compare` measures against)
// Instances start together from a barrier, so comparisons are fair.
//
// Every process of the run (forked instances, multiprocessing children,
// spawned `gilscope-python` children) records into one shared arena, found by
// children through the GILSCOPE_ARENA environment variable.
//
// The recording window of each GIL opens once the interpreter has started
// (its owner holds the GIL, so CPython's switch counter is still) and closes
// in atexit, after CPython joined the interpreter's non-daemon threads, or
// in os._exit. Process-wide: call RunScript once per process.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "python/interpreter.h"
#include "recorder/arena.h"
#include "report/run_trace.h"

namespace gilscope::runner {

// The run cannot start as asked (a script that cannot be opened, a mode this
// CPython lacks, bad instance counts): exit status 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
using ScriptError = UsageError;

enum class Mode { kMain, kThreads, kSubinterpreters, kSharedSubinterpreters, kProcesses, kSequential };

const char* ModeName(Mode mode);
std::optional<Mode> ParseMode(std::string_view name);
// The modes this build's CPython supports, in the order compare runs them.
std::vector<Mode> SupportedModes();

struct RunOptions {
  // What runs as __main__: a script, -m MODULE or -c COMMAND, with `args`
  // after it in sys.argv (python's own sys.argv for each).
  python::Program program;
  std::vector<std::string> args;
  // `gilscope python --gilscope-out DIR ARGS`: `args` is python's whole
  // command line, parsed by CPython (program is unused); main mode only.
  bool python_command_line = false;
  // The folder of a virtual environment of the embedded CPython's version
  // (python::VirtualEnvPython): the runner and every gilscope-python child
  // start as its python would. Empty: none.
  std::string python_env;
  std::optional<double> switch_interval_s;
  Mode mode = Mode::kMain;
  int instances = 1;
  // The python the embedded CPython stands in for, its prefix, and the
  // executable spawned children should run (gilscope-python).
  std::string python_executable;
  std::string python_home;
  std::string child_executable;
  // Where events.raw goes (the run's raw events, streamed while it runs).
  std::string out_dir;
  // > 0: end the run after this many seconds (status "timeout", exit 124).
  double timeout_s = 0;
  // > 0: a run whose threads are all blocked on locks this long is a
  // deadlock (status "deadlock", exit 3).
  double deadlock_after_s = 0;
  // > 0: the runner (and every process it starts) may map this many bytes
  // of data memory (heap, private mappings, thread stacks) beyond what it
  // had before Python started; past that, allocations fail and Python raises
  // MemoryError. RLIMIT_DATA, so the shared event arena does not count.
  std::uint64_t memory_limit_bytes = 0;
  // false: the pthread functions still forward but no GIL is watched, so
  // nothing is recorded (the baseline for overhead measurements).
  bool hooks = true;
  recorder::ArenaConfig arena;
};

// Exit statuses besides the script's own.
inline constexpr int kExitDeadlock = 3;
inline constexpr int kExitTimeout = 124;
inline constexpr int kExitInterrupted = 130;

// The supervisor: runs the script in a child process (the runner), drains
// its events into out_dir/events.raw as it goes, and whatever happens to the
// runner (exit, exception, os._exit, a signal, a timeout, Ctrl-C) returns the
// run's facts read back from that file, status set, with no events (threads
// carry identity only: a long run's events do not fit in memory; analysis
// reads them from the file through report::RawFileSource). The supervisor
// itself never starts Python.
// Throws UsageError when the run cannot start as asked; std::runtime_error
// when the host itself cannot work (the hooks are not bound).
report::RunTrace RunScript(const RunOptions& options);

// "512M", "2G", "1.5G", "65536" (bytes), "100K", "1T" (powers of 1024; an
// optional trailing "B" or "iB"): the byte count. Throws UsageError naming
// the value when it is not one, or is zero.
std::uint64_t ParseSize(const std::string& text, const std::string& option);

// Checks that `path` names a readable regular file; throws UsageError.
void CheckScriptReadable(const std::string& path);

// How reports name what ran: the script's path, "-m MODULE", "-c 'CODE'"
// (quoted as a shell would need it), or "python" before python's own
// command line.
std::string ProgramLabel(const RunOptions& options);

// The virtual environment a run uses: `flag` (--python-env) if given, else
// an activated one (VIRTUAL_ENV); "" for none. Checked, made absolute.
// Throws UsageError naming the problem (both versions when they differ).
std::string ChoosePythonEnv(const std::string& flag);

// `gilscope python ARGS`: CPython's own command line with the hooks on. When
// GILSCOPE_ARENA names a run's arena, it records into that run as a spawned
// child process. Inside the virtual environment GILSCOPE_PYTHON_ENV (set for
// a run's processes) or VIRTUAL_ENV names, when either does. Returns the exit
// status (2 for a virtual environment it cannot use).
int PythonMain(const std::vector<std::string>& argv, const std::string& executable,
               const std::string& python_home);

}  // namespace gilscope::runner
