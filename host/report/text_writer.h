// Writes report.txt: the human summary of one run, for a Python engineer
// reading a terminal. A header (what ran, how it ended), one line per GIL
// (switches checked against CPython's own counter, contention), a table of
// threads (where each spent its life: holding, waiting, released), the event
// counts with lost events called out, and a short legend.
//
// Plain ASCII layout, no colour. User strings are printed with control
// characters and invalid UTF-8 replaced by '?', so a hostile thread name
// cannot break the table or the terminal.
#pragma once

#include <ostream>

#include "report/analysis.h"
#include "report/run_trace.h"

namespace gilscope::report {

class TextWriter {
 public:
  // `out` must outlive the writer.
  explicit TextWriter(std::ostream& out) : out_(out) {}

  // `analysis` must be Analyze(trace).
  void Write(const RunTrace& trace, const Analysis& analysis) const;

 private:
  std::ostream& out_;
};

}  // namespace gilscope::report
