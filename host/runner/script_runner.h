// Runs one Python script as __main__ in this process, with the GIL hooks
// recording, and returns everything analysis needs.
//
// The recording window opens after the interpreter has started (the main
// thread holds the GIL, so CPython's switch counter is still) and closes in
// an atexit hook, after CPython has joined the script's non-daemon threads
// and before the interpreter is torn down.
//
// Process-wide: CPython can be initialised once per process, so RunScript
// may be called once per process.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "recorder/arena.h"
#include "report/run_trace.h"

namespace gilscope::runner {

// The script cannot be run at all (missing, a folder, unreadable): exit 2.
class ScriptError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct RunOptions {
  std::string script;
  std::vector<std::string> args;
  std::optional<double> switch_interval_s;
  std::string python_executable;  // which python the interpreter stands in for
  // false: the pthread functions still forward but no GIL is watched, so
  // nothing is recorded (the baseline for overhead measurements).
  bool hooks = true;
  recorder::ArenaConfig arena;
};

// Throws ScriptError when the script cannot be opened; std::runtime_error
// when the host itself cannot work (the hooks are not bound, CPython fails
// to start). A script that fails is not an exception: see info.exit_code.
report::RunTrace RunScript(const RunOptions& options);

// Checks that `path` names a readable regular file; throws ScriptError.
void CheckScriptReadable(const std::string& path);

}  // namespace gilscope::runner
