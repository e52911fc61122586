// Rules every figure gilscope writes must obey, checked over a report.json
// or a suite's index.json as written: shares within 0-100%, each thread's
// held + waiting + released equal to its lifetime, a GIL never contended
// longer than it was busy, percentiles in order, attribution adding up,
// counts never negative, the index's figures those of the reports it names.
//
// The rules look at the documents, not at how they were made, so the same
// check runs on reports of hand-built traces (unit tests) and of real runs
// (the suite's scripts, forks and all). Several rules match by key wherever
// it appears (any `*_fraction`, any object holding `busy_fraction` and
// `contended_fraction`, any `start_s`/`end_s` pair), so sections added later
// (phases, per-phase findings) are checked without naming them here.
//
// Each function returns one line per broken rule, naming the JSON path and
// the figures; empty means every rule holds. Plain functions of their input,
// safe from any thread.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gilscope::testing {

// The rules over one report.json (schema_version 1).
std::vector<std::string> ReportFigureViolations(const nlohmann::ordered_json& report);

// The rules over one index.json, plus: each script's figures are those of
// the report.json it names under `suite_dir`, whose own rules hold too.
std::vector<std::string> IndexFigureViolations(const nlohmann::ordered_json& index,
                                               const std::filesystem::path& suite_dir);

// The violations as one message for a failed assertion.
std::string JoinViolations(const std::vector<std::string>& violations);

// A report.json or index.json as written (keys in file order); a discarded
// value when the file is missing or not JSON.
nlohmann::ordered_json ReadOrderedJson(const std::filesystem::path& path);

}  // namespace gilscope::testing
