// The embedded CPython interpreter: one per process, initialised from a
// PyConfig that makes it behave as `python SCRIPT ARGS`, `python -m MODULE
// ARGS` or `python -c COMMAND ARGS` would, inside a virtual environment when
// asked.
//
// Start-up and shutdown are process-wide in CPython, so an Interpreter is a
// move-less RAII owner created once per process; Finalize() (or the
// destructor) shuts it down. Must be destroyed on the thread that created it
// (CPython's main thread).
//
// Why not Py_RunMain: on SystemExit it calls exit() from inside PyErr_Print,
// so the host would never get to write its reports. RunProgram() does what
// python's own main does for a script, -m and -c, step by step (CPython's
// Modules/main.c, pymain_run_python), and hands the status back.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace gilscope::python {

// What runs as __main__, named as python's command line names it:
// `python SCRIPT`, `python -m MODULE`, `python -c COMMAND`.
struct Program {
  enum class Kind { kScript, kModule, kCommand };
  Kind kind = Kind::kScript;
  // The script's path, the module's name or the command's source.
  std::string text;
};

// sys.argv[0] as python starts `program`: its path, "-m" (which runpy
// replaces by the module's file once it has found it) or "-c".
std::string ArgvZero(const Program& program);

// Runs `program` in the current interpreter (main or sub) the way python
// does: into __main__'s namespace, or a fresh one standing for __main__ (its
// __name__ is "__main__"; for -m, runpy.run_module's fresh globals) when
// several instances share one interpreter. First puts python's sys.path[0]
// in front of sys.path unless it is already there (sys.flags.safe_path: not
// at all): the script's real folder, the current directory (-m), "" (-c).
// SystemExit(n) gives n (None: 0, another object: printed, 1), an uncaught
// exception prints its traceback, is recorded for the report and gives 1,
// KeyboardInterrupt 130; a script that cannot be opened, python's message
// and 2. Does not finalise.
// PRECONDITION: the calling thread holds the current interpreter's GIL.
int RunProgram(const Program& program, bool fresh_namespace);

// The python of the virtual environment in `dir` (bin/python3.X, python3 or
// python), checked to be one of this CPython's minor version. Throws
// std::invalid_argument naming the problem, and both versions when they
// differ.
std::string VirtualEnvPython(const std::string& dir);

// CPython's start-up ended the work without anything to run: `--version`,
// `-h`, or a bad option (python printed the usage); `status` is python's exit
// status for it.
class StartupExit : public std::runtime_error {
 public:
  explicit StartupExit(int status) : std::runtime_error("python exited at start-up"), status(status) {}
  int status;
};

struct InterpreterOptions {
  // The python executable this interpreter stands in for: lets CPython find
  // its standard library as that python would.
  std::string python_executable;
  // When set: sys.executable (how multiprocessing's spawn and subprocess
  // start "python"), with python_home as the prefix that finds the stdlib.
  std::string executable;
  std::string python_home;
  // When set: the folder of a virtual environment of this CPython's version
  // (see VirtualEnvPython). Start-up runs as its python would (sys.prefix,
  // sys.path, site-packages, include-system-site-packages), and
  // sys.executable is then set to `executable`.
  std::string virtual_env;
  // Parse argv as python's own command line (gilscope python); otherwise
  // argv is sys.argv exactly.
  bool parse_argv = false;
  // sys.argv, exactly (argv[0] is the script path, "-m" or "-c"), or with
  // parse_argv python's whole command line (argv[0] is the program).
  std::vector<std::string> argv;
  // Without parse_argv: sys.orig_argv, the command line as python would
  // have been given it (default: argv).
  std::vector<std::string> orig_argv;
};

class Interpreter {
 public:
  // Initialises CPython. Throws StartupExit when python's command line asks
  // for no run (parse_argv), std::runtime_error with CPython's message.
  explicit Interpreter(const InterpreterOptions& options);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // With parse_argv: the program python's command line names when
  // RunProgram can run it as python would: a script file, -m or -c, without
  // -i (or PYTHONINSPECT) or -x. Empty when only RunPythonMain can: the REPL,
  // stdin, a folder or zip file as the script, -i, -x.
  // PRECONDITION: the calling thread holds the GIL.
  std::optional<Program> CommandLineProgram() const;

  // Py_RunMain: CPython's own command line (parse_argv), then finalises.
  // SystemExit exits the process from inside, as python does.
  int RunPythonMain();

  // Py_FinalizeEx: joins non-daemon threads, runs atexit handlers, tears
  // down. Returns 0, or 120 when flushing buffered data failed (as python).
  int Finalize();

 private:
  bool finalized_ = false;
  // What the parsed command line asked for (parse_argv only).
  std::optional<Program> command_line_;
  bool inspect_or_skip_line_ = false;
};

// Full version of the CPython this binary is linked with, e.g. "3.13.0".
std::string LinkedPythonVersion();

}  // namespace gilscope::python
