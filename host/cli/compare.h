// `gilscope compare`: the same script, N instances, in every execution mode
// this CPython supports, side by side.
//
// Each mode runs as a child `gilscope run --mode M` (CPython can start once
// per process), writing its full report to DIR/<mode>/; compare reads the
// report.json files back and writes DIR/compare.json and a table.
#pragma once

#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "python/interpreter.h"

namespace gilscope::cli {

struct CompareOptions {
  // What runs, as `gilscope run` takes it: SCRIPT, -m MODULE or -c COMMAND
  // (program; the command line's words land in script, module and command).
  python::Program program;
  std::string script;
  std::string module;
  std::string command;
  std::vector<std::string> args;
  int instances = 2;
  std::filesystem::path out;
  std::vector<std::string> extra_run_flags;  // e.g. --switch-interval 0.001
};

// One mode's outcome as compare.json records it.
struct ModeResult {
  std::string mode;
  std::string status;      // the run's status, or "failed" when it wrote no report
  int exit_code = 0;
  double wall_s = 0;
  int gils = 0;
  double busy_fraction = 0;       // the GILs' busy time over the run's wall time
  double contended_fraction = 0;  // likewise, contended
  double cpu_s = -1;              // the threads' CPU time, when known
  double speedup_bound = 0;       // gil_tax.speedup_bound, when present
  std::filesystem::path folder;
};

// What compare hands each `gilscope run`: {SCRIPT}, {"-m", MODULE} or
// {"-c", COMMAND}.
std::vector<std::string> ProgramWords(const CompareOptions& options);
// The same for people: the script's path, "-m MODULE" or "-c COMMAND".
std::string ProgramLabel(const CompareOptions& options);

// Reads one run's report.json into a ModeResult (status "failed" if missing).
ModeResult ReadModeResult(const std::string& mode, const std::filesystem::path& folder, int exit_code);

// compare.json for these results (schema_version 1).
nlohmann::ordered_json CompareJson(const CompareOptions& options, const ModeResult& sequential,
                                   const std::vector<ModeResult>& modes);

// The table and its one-line meaning.
void WriteCompareTable(const CompareOptions& options, const ModeResult& sequential,
                       const std::vector<ModeResult>& modes, std::ostream& out);

// Runs everything; returns 0 when every mode ran ok.
int RunCompare(const CompareOptions& options, const std::filesystem::path& self, std::ostream& progress);

}  // namespace gilscope::cli
