// `gilscope list` and `gilscope suite`: the bundled guide scripts, and running
// them all under instrumentation.
//
// Each guide script opens with a header of comment lines the host reads:
//
//   # gilscope: title = Deadlock: two locks taken in opposite orders
//   # gilscope: lesson = once both threads block ... (one line)
//   # gilscope: expect = deadlock          (ok | deadlock | timeout | error)
//   # gilscope: timeout = 10               (seconds, passed to run --timeout)
//   # gilscope: modes = main, processes    (the modes it can run in)
//   # gilscope: skip-reason = why not in the other modes
//   # gilscope: modes-3.12 = main, threads   (replaces `modes` on CPython 3.12)
//   # gilscope: skip-reason-3.12 = why not, on that version
//
// Only comment and blank lines before the first other line count; a
// malformed header is an error naming the file and line, never a guess.
//
// The suite runs each script as a child `gilscope run` (CPython can start
// once per process, and a script that deadlocks or crashes must not take the
// suite with it), writes each full report to DIR/<name>/, reads report.json
// back, and writes DIR/index.txt, index.json and index.html. A script whose
// header does not list the suite's mode is listed as skipped with its reason,
// never dropped. RunSuite() and its helpers run on the calling thread only.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace gilscope::cli {

// One guide script's header.
struct ScriptHeader {
  std::filesystem::path path;
  std::string name;     // the file stem, e.g. 08_deadlock
  std::string title;    // required
  std::string lesson;   // one line; may be empty
  std::string expect = "ok";  // the status a correct run ends with
  double timeout_s = 60;      // passed to run --timeout
  std::vector<std::string> modes = {"main"};
  std::string skip_reason;    // why the modes not listed are left out
  // Per CPython minor version ("3.12"): modes and reason that replace the
  // two above on that version (CPython bugs differ between versions).
  std::map<std::string, std::vector<std::string>, std::less<>> modes_by_version;
  std::map<std::string, std::string, std::less<>> skip_reason_by_version;
};

// `script` as it applies to CPython `python_version` ("3.12.1" or "3.12"):
// modes and skip-reason replaced by that minor version's, when given.
ScriptHeader ForPythonVersion(const ScriptHeader& script, std::string_view python_version);

// The mode names a header may list (run --mode's names, less "sequential").
const std::vector<std::string>& HeaderModes();

// Parses `path`'s header. Throws runner::UsageError (a std::runtime_error)
// naming the file and line for an unknown key, a repeated key, a line
// without '=', a bad timeout or expect, an unknown mode, or a missing title.
ScriptHeader ReadScriptHeader(const std::filesystem::path& path);

// scripts_dir/*.py, parsed, sorted by name. Throws when the folder is
// missing or holds no script.
std::vector<ScriptHeader> BundledScripts(const std::filesystem::path& scripts_dir);

// The scripts whose name matches `only`: a glob (fnmatch) when it has one of
// * ? [, else a substring; empty keeps all. Throws runner::UsageError,
// listing the names, when nothing matches.
std::vector<ScriptHeader> FilterScripts(const std::vector<ScriptHeader>& scripts, const std::string& only);

// `gilscope list`: name and title per script, the lesson on the next line.
void WriteList(const std::vector<ScriptHeader>& scripts, std::ostream& out);

struct SuiteOptions {
  std::filesystem::path scripts_dir;  // the guide folder (holding 01_*.py ...)
  std::filesystem::path out;          // DIR: index files and one folder per script
  std::string only;                   // see FilterScripts
  std::string mode = "main";
  int instances = 1;
  // The embedded CPython's version ("3.13.0"): picks headers' per-version
  // modes. Empty: the plain `modes` line applies.
  std::string python_version;
  bool color = false;  // colour PASS/FAIL/SKIP in what is printed (never in files)
  // Redraw a progress line (\r) while each script runs. Unset: only when
  // `out` is std::cout or std::cerr and that stream is a terminal.
  std::optional<bool> live_progress;
  // A child still running this long after its header's timeout is killed
  // (SIGTERM, then SIGKILL 5 s later): run --timeout should have ended it.
  double kill_grace_s = 30;
};

// One script's outcome, as the index records it.
struct ScriptResult {
  ScriptHeader script;
  // ok | error | timeout | deadlock | crashed (from report.json), "failed"
  // when the run wrote no readable report, "skipped" when not run.
  std::string status;
  bool skipped = false;
  bool passed = false;   // status == script.expect; false when skipped
  int exit_code = -1;    // the child's exit status (128 + signal); -1 when not run
  double wall_s = -1;    // report.json's wall_s, else the time the child took; -1 when not run
  double elapsed_s = -1; // the time the child took, as the suite measured it
  int gils = 0;
  // The busiest GIL (report.json's largest busy_fraction; ties: the larger
  // contended_fraction): its id, and both its fractions, shares of its own
  // window. -1: unknown (no report, or no GIL in it).
  int busiest_gil = -1;
  double gil_busy_fraction = -1;
  double gil_contended_fraction = -1;
  std::string verdict;   // one line
  bool has_report = false;       // DIR/<name>/report.json was read
  bool has_html = false;         // and report.html is beside it
  bool killed_by_suite = false;  // the child outlived timeout + kill_grace_s
};

// The arguments after the executable for one script's `gilscope run`.
std::vector<std::string> RunArgs(const ScriptHeader& script, const SuiteOptions& options,
                                 const std::filesystem::path& folder);

// Reads folder/report.json (and folder/run.log for a failure's last line).
ScriptResult ReadScriptResult(const ScriptHeader& script, const std::filesystem::path& folder, int exit_code,
                              double elapsed_s);

// A skipped script's result: the header's skip reason, or one built from
// its mode list when it gives none.
ScriptResult SkippedResult(const ScriptHeader& script, const std::string& mode);

// The three index files' contents.
nlohmann::ordered_json SuiteIndexJson(const SuiteOptions& options, const std::vector<ScriptResult>& results);
void WriteSuiteIndexText(const SuiteOptions& options, const std::vector<ScriptResult>& results,
                         std::ostream& out, bool color = false);
void WriteSuiteIndexHtml(const SuiteOptions& options, const std::vector<ScriptResult>& results,
                         std::ostream& out);

// & < > " ' as entities: for any text that goes into HTML.
std::string HtmlEscape(std::string_view text);

// Runs the suite; returns 0 when every script that ran ended as its header
// expects, 1 otherwise. Throws runner::UsageError for an unknown mode or an
// --only matching nothing, OutputError when DIR cannot be written.
int RunSuite(const SuiteOptions& options, const std::filesystem::path& gilscope_exe, std::ostream& out);

}  // namespace gilscope::cli
