// The embedded CPython interpreter: one per process, initialised from a
// PyConfig that makes it behave as `python SCRIPT ARGS` would.
//
// Start-up and shutdown are process-wide in CPython, so an Interpreter is a
// move-less RAII owner created once per process; Finalize() (or the
// destructor) shuts it down. Must be destroyed on the thread that created it
// (CPython's main thread).
//
// Why not Py_RunMain: on SystemExit it calls exit() from inside PyErr_Print,
// so the host would never get to write its reports. RunMainScript() does
// what `python SCRIPT` does, step by step, and hands the status back.
#pragma once

#include <string>
#include <vector>

namespace gilscope::python {

// Runs `path` like `python path` in the current interpreter (main or sub):
// into __main__'s namespace, or a fresh one. See Interpreter::RunMainScript.
// PRECONDITION: the calling thread holds the current interpreter's GIL.
int RunScript(const std::string& path, bool fresh_namespace);

struct InterpreterOptions {
  // The python executable this interpreter stands in for: lets CPython find
  // its standard library as that python would.
  std::string python_executable;
  // When set: sys.executable (how multiprocessing's spawn and subprocess
  // start "python"), with python_home as the prefix that finds the stdlib.
  std::string executable;
  std::string python_home;
  // Parse argv as python's own command line (gilscope python); otherwise
  // argv is sys.argv exactly.
  bool parse_argv = false;
  // sys.argv, exactly (argv[0] is the script path).
  std::vector<std::string> argv;
};

class Interpreter {
 public:
  // Initialises CPython. Throws std::runtime_error with CPython's message.
  explicit Interpreter(const InterpreterOptions& options);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Runs `path` as __main__ the way `python path` does: its real folder
  // first on sys.path, __file__ absolute; SystemExit(n) gives n (None: 0,
  // another object: printed, 1), an uncaught exception prints its traceback
  // and gives 1, KeyboardInterrupt 130. Does not finalise.
  // PRECONDITION: the calling thread holds the GIL.
  int RunMainScript(const std::string& path);

  // The same in a fresh namespace standing for __main__ (its __name__ is
  // "__main__"): how the host runs several instances in one interpreter.
  static int RunScriptInFreshNamespace(const std::string& path);

  // Py_RunMain: CPython's own command line (parse_argv), then finalises.
  // SystemExit exits the process from inside, as python does.
  int RunPythonMain();

  // Py_FinalizeEx: joins non-daemon threads, runs atexit handlers, tears
  // down. Returns 0, or 120 when flushing buffered data failed (as python).
  int Finalize();

 private:
  bool finalized_ = false;
};

// Full version of the CPython this binary is linked with, e.g. "3.13.0".
std::string LinkedPythonVersion();

}  // namespace gilscope::python
