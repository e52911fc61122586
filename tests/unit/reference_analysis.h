// The pre-streaming analysis, as a test oracle (reference_analysis.cc).
#pragma once

#include <cstdint>

#include "report/analysis.h"
#include "report/run_trace.h"

namespace gilscope::report::reference {

// What AnalyzeWindow(trace, start_ns, end_ns) must give: every figure, the
// whole timeline, markers and sites; exact percentiles.
Analysis ReferenceAnalyzeWindow(const RunTrace& trace, std::uint64_t start_ns, std::uint64_t end_ns);

}  // namespace gilscope::report::reference
