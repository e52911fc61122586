// Writes `gilscope diff DIR_A DIR_B`: two runs' GIL figures side by side, to
// see what a change to a script (or to its Python, or its arguments) did to
// the GIL. Run A is the baseline; every change column reads "B against A".
//
// The text form: both runs' headers (script, args, Python, mode, status,
// wall time), then per GIL (matched by GilInfo::id) switches, busy %,
// contended % and drop requests, then one row per thread with held %,
// waiting %, wait p50 and p99. Threads are matched by name: the k-th thread
// called X in A with the k-th called X in B (names repeat across instances);
// a thread found in one run only is listed with "-" for the other.
//
// Changes: percentages (of the window, or of a thread's lifetime) as a
// difference in percentage points, "+12.5"; counts and times as a ratio,
// "x2.00"; "=" when both are zero, "new" when only B's is non-zero and
// "-" when the thread or GIL is missing from one side.
//
// WriteJson() carries the same figures for tools, with "schema_version".
// User strings are sanitised like TextWriter's (control characters and
// invalid UTF-8 become '?' in text, U+FFFD in JSON).
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <ostream>

#include "report/analysis.h"
#include "report/run_trace.h"

namespace gilscope::report {

class DiffWriter {
 public:
  static constexpr int kSchemaVersion = 1;

  // `out` must outlive the writer.
  explicit DiffWriter(std::ostream& out) : out_(out) {}

  // `aa` must be Analyze(a) and `ab` Analyze(b).
  void Write(const RunTrace& a, const Analysis& aa, const RunTrace& b, const Analysis& ab) const;
  // The JSON document and a newline; `indent` < 0 writes one line.
  void WriteJson(const RunTrace& a, const Analysis& aa, const RunTrace& b, const Analysis& ab,
                 int indent = 2) const;

  static nlohmann::ordered_json ToJson(const RunTrace& a, const Analysis& aa, const RunTrace& b,
                                       const Analysis& ab);

 private:
  std::ostream& out_;
};

}  // namespace gilscope::report
