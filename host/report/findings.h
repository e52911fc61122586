// Findings: the patterns in a run that a Python engineer can act on, each
// stated in one line with the figures behind it and one line of advice.
//
//   convoy        a thread that gives the GIL up for short blocking calls and
//                 then waits about a switch interval to get it back, every
//                 time (the convoy effect: I/O stuck behind a CPU-bound thread)
//   gil_bound     two or more threads runnable on one GIL and the GIL busy
//                 nearly all the time: the threads ran one at a time
//   long_hold     one hold far longer than the switch interval, kept long
//                 after a waiter asked for the GIL: C code not releasing it
//   switch_storm  the GIL changing hands so often that hand-off gaps (nobody
//                 holding it while a thread waits) are a large share of the run
//
// Every pattern is looked for over the whole run and inside each phase
// (Analysis::phases), because a problem that lives in one phase drowns in
// whole-run figures. A finding is listed once per phase it holds in, with
// that phase's window and figures: the narrowest true statement. A pattern
// that holds over the whole run but in no single phase (spread thinly over
// several) is listed once, for the whole run. A run of one phase gets the
// whole-run findings, as that phase is the run.
//
// FindIssues() is a pure function of the trace and its analysis (no I/O);
// every writer calls it, so report.json, report.txt and report.html always
// list the same findings. The thresholds are named constants in findings.cc,
// each with the reason for its value.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "report/analysis.h"
#include "report/run_trace.h"

namespace gilscope::report {

struct Finding {
  std::string kind;    // convoy | gil_bound | long_hold | switch_storm
  std::string thread;  // the thread's name; "" for a finding about a GIL
  int thread_index = -1;  // into Analysis::threads; -1 for a GIL finding
  int gil = -1;           // GilInfo::id concerned; -1 when none
  std::string detail;  // one line: what happened, with figures
  std::string advice;  // one line: what to do about it
  // The figures the detail quotes, by name (seconds end in _s, ms in _ms).
  std::map<std::string, double> figures;
  // Where it holds: [start_ns, end_ns), the window of its phase, and that
  // phase's index into Analysis::phases; -1 when it was found over the
  // whole run of a run with several phases (then the window is the run's).
  // The detail names the window when the run has several phases.
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  int phase = -1;
};

// In a stable order: gil_bound, convoy, long_hold, switch_storm; within a
// kind by GIL, then thread index, then time. `analysis` must be
// Analyze(trace).
std::vector<Finding> FindIssues(const RunTrace& trace, const Analysis& analysis);

// "name (native id)", or "thread <native id>" for an unnamed thread: how
// findings and reports name a thread in prose. Not sanitised.
std::string DescribeThread(const ThreadStats& thread);

// "function (file:line)", "function (file)" without a line, "function"
// without a file. Not sanitised.
std::string DescribeSite(const CodeSite& site);

}  // namespace gilscope::report
