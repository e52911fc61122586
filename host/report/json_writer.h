// Writes report.json: the machine-readable summary of one run (what was run,
// how it ended, and the figures of Analyze()), for scripts and CI checks.
//
// Like Google Benchmark's JSONReporter, the writer is a small class over plain
// data that prints to an injected std::ostream, so tests read what it prints.
// The document carries "schema_version"; bump kSchemaVersion when a field
// changes meaning or disappears (adding a field does not need a bump).
//
// Every user-supplied string (thread names, script, args) may hold invalid
// UTF-8; invalid bytes are replaced with U+FFFD so the output is always valid
// JSON.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <ostream>

#include "report/analysis.h"
#include "report/chrome_trace_writer.h"
#include "report/run_trace.h"

namespace gilscope::report {

class JsonWriter {
 public:
  static constexpr int kSchemaVersion = 1;

  // `out` must outlive the writer; `indent` < 0 writes one line.
  explicit JsonWriter(std::ostream& out, int indent = 2) : out_(out), indent_(indent) {}

  // `analysis` must be Analyze(trace). Writes the document and a newline.
  void Write(const RunTrace& trace, const Analysis& analysis) const;
  // The same with the trace plan already made: `plan` must be
  // PlanChromeTrace(analysis), so that writing every output plans once.
  void Write(const RunTrace& trace, const Analysis& analysis, const TracePlan& plan) const;

  // The document itself, in field order, for writers that embed it (HTML).
  static nlohmann::ordered_json ToJson(const RunTrace& trace, const Analysis& analysis);
  static nlohmann::ordered_json ToJson(const RunTrace& trace, const Analysis& analysis, const TracePlan& plan);

 private:
  std::ostream& out_;
  int indent_;
};

}  // namespace gilscope::report
