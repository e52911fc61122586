// The simple, obviously right way to get a run's phases and their figures
// from a finished Analysis: the reference that a streaming analysis, which
// fills the same structures during its own pass, is tested against.
//
//   ActivityFromTimeline   the ActivitySeries of phases.h, read off the
//                          timeline Analyze() keeps (each thread's waiting
//                          and holding intervals, each GIL's holders and
//                          waiting steps), split across buckets exactly as
//                          phases.h defines
//   PhaseFiguresByClipping each phase's figures: Analyze() of the trace with
//                          the phase's window (AnalyzeWindow), with the
//                          timeline lists dropped
//   WholeRunPhase          the one phase of a run in which nothing changed:
//                          the run's own figures, without re-analysis
//
// Costs: ActivityFromTimeline is linear in the timeline and allocates only
// the series; PhaseFiguresByClipping analyses the events once per phase
// (each pass stops at its phase's end, and keeps one phase's timeline at a
// time). Fine for the runs analysed in memory today; a streaming analysis
// computes the same in one pass.
#pragma once

#include <cstddef>
#include <vector>

#include "report/analysis.h"
#include "report/phases.h"
#include "report/run_trace.h"

namespace gilscope::report {

// `analysis` must keep its timeline (ThreadStats::intervals, GilStats::holders
// and GilStats::waiting), as Analyze() does. `buckets` > 0.
ActivitySeries ActivityFromTimeline(const Analysis& analysis, std::size_t buckets);

// One Phase per span, in order: Phase::gils and Phase::threads are what
// Analyze() gives for `trace` with start_ns/end_ns set to the span's window
// (AnalyzeWindow), their timeline lists emptied.
std::vector<Phase> PhaseFiguresByClipping(const RunTrace& trace, const std::vector<PhaseSpan>& spans);

// The phase `span` (the whole window) with the figures of `analysis`, the
// timeline lists left out. The timeline stays in `analysis`, which is why it
// is taken by non-const reference: it is moved aside while the rest is copied.
Phase WholeRunPhase(Analysis& analysis, const PhaseSpan& span);

}  // namespace gilscope::report
