// Writes report.txt: the human summary of one run, for a Python engineer
// reading a terminal. A header (what ran, how it ended), the GIL tax in one
// sentence, the findings with advice, one line per GIL (switches checked
// against CPython's own counter, contention), a table of threads (where each
// spent its life: holding, waiting, released; a wait median that a phase or
// the convoy's waits contradict is starred and explained under it), the
// phases when the run has several (phases.h: each one's window and figures),
// where each thread held and
// released the GIL (Python attribution), an ASCII timeline, the event counts
// with lost events called out, and a short legend.
//
// Colour (ANSI escapes) only when asked for: the caller decides (a terminal,
// NO_COLOR unset); files get plain text. User strings are printed with
// control characters and invalid UTF-8 replaced by '?', so a hostile thread
// name cannot break the table or the terminal.
//
// The timeline: one row per GIL and per thread across `width` columns, each
// column a slice of the window showing its dominant state:
//   thread rows  '#' holding the GIL, '.' waiting for it, ' ' released
//                (or not running)
//   GIL rows     the letter of the thread that held it longest in that
//                slice (letters label the thread rows), ' ' free
#pragma once

#include <ostream>

#include "report/analysis.h"
#include "report/chrome_trace_writer.h"
#include "report/run_trace.h"

namespace gilscope::report {

class TextWriter {
 public:
  static constexpr int kDefaultWidth = 100;
  // Narrower than this and the timeline has too few columns to read.
  static constexpr int kMinWidth = 60;

  // `out` must outlive the writer. `color`: ANSI colours. `width`: the line
  // width the timeline fills (a terminal's column count), at least kMinWidth.
  explicit TextWriter(std::ostream& out, bool color = false, int width = kDefaultWidth)
      : out_(out), color_(color), width_(width < kMinWidth ? kMinWidth : width) {}

  // `analysis` must be Analyze(trace). Findings come from FindIssues().
  void Write(const RunTrace& trace, const Analysis& analysis) const;
  // The same with the trace plan already made: `plan` must be
  // PlanChromeTrace(analysis), so that writing every output plans once.
  void Write(const RunTrace& trace, const Analysis& analysis, const TracePlan& plan) const;

 private:
  std::ostream& out_;
  bool color_;
  int width_;
};

}  // namespace gilscope::report
