// Turns a recorded run (RunTrace) into the figures every report shows: per
// thread, how long it held, waited for and did without the GIL; per GIL, how
// often it changed hands, how busy and how contended it was.
//
// Analyze() is a pure function of its input: no I/O, no CPython, no globals,
// so tests build a RunTrace by hand and check exact numbers. It runs in
// O(n log n) in the number of events and keeps every waiting and holding
// interval, because the Chrome-trace writer draws them.
//
// Robustness contract: the input comes from lossy ring buffers, so Analyze()
// never throws on a malformed stream and never yields a negative duration.
// Everything is clipped to the recording window [start_ns, end_ns]; a gap left
// by a dropped event is bridged by trusting the next event (see analysis.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "report/run_trace.h"

namespace gilscope::report {

// What a thread was doing with respect to a GIL during an interval.
enum class GilState : std::uint8_t {
  kReleased = 0,  // neither holding nor asking: C code, I/O, sleep, idle
  kWaiting = 1,   // asked for the GIL (kRequest) and has not got it yet
  kHolding = 2,   // holds the GIL and may run Python code
};

const char* GilStateName(GilState state);

// A half-open interval [start_ns, end_ns) in which a thread waited for or
// held a GIL; never empty.
struct StateInterval {
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  GilState state = GilState::kWaiting;  // kWaiting or kHolding, never kReleased
  std::uint8_t gil = 0;                 // the event's `gil` field: GilInfo::id
};

struct ThreadStats {
  // Identity, copied from ThreadTrace so a writer needs only the Analysis for
  // the thread table. Analysis::threads[i] describes RunTrace::threads[i].
  std::string name;
  std::uint64_t native_id = 0;
  std::uint32_t pid = 0;

  // Lifetime inside the window: first timed event (clipped) to kThreadExit,
  // or to end_ns. A thread with no timed event in or before the window has
  // an empty lifetime and all figures zero.
  std::uint64_t lifetime_start_ns = 0;
  std::uint64_t lifetime_end_ns = 0;

  // Invariant: held_ns + waiting_ns + released_ns == lifetime_ns, exactly:
  // every nanosecond of the lifetime is in exactly one state.
  std::uint64_t lifetime_ns = 0;
  std::uint64_t held_ns = 0;
  std::uint64_t waiting_ns = 0;
  std::uint64_t released_ns = 0;
  // The same four in seconds (the *_ns value / 1e9), as the reports print
  // them. Their sum equals lifetime_s only up to rounding: compare the _ns.
  double lifetime_s = 0;
  double held_s = 0;
  double waiting_s = 0;
  double released_s = 0;

  // kAcquired events inside the window; the synthetic at-start one is not an
  // acquisition (the thread got the GIL before recording began).
  std::uint64_t acquisitions = 0;
  // kReleased events inside the window, split by kFlagForced.
  std::uint64_t forced_releases = 0;
  std::uint64_t voluntary_releases = 0;

  // Completed waits (kRequest -> kAcquired, acquisition inside the window)
  // and their latency, clipped to the window like every other duration.
  // Nearest-rank percentiles; 0 when there was no completed wait.
  std::uint64_t waits = 0;
  double wait_p50_ms = 0;
  double wait_p99_ms = 0;
  double wait_max_ms = 0;

  // The GilInfo::id this thread held longest (ties: the lowest id); -1 when
  // it held no GIL for a measurable time.
  int main_gil = -1;
  // Whether the stream has a kThreadExit at or before end_ns.
  bool exited = false;
  // What the thread was doing when its lifetime ended. kWaiting at end_ns
  // (not exited) is what a GIL deadlock or starvation looks like.
  GilState state_at_end = GilState::kReleased;

  // The waiting and holding intervals in time order, disjoint and inside
  // the lifetime; the gaps between them are the released time. Released
  // stretches are not stored: nothing draws them, and at 10M events the
  // memory matters (they would be a third of the intervals).
  std::vector<StateInterval> intervals;
};

// One thread holding a GIL over [start_ns, end_ns).
struct HolderInterval {
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  std::uint32_t thread = 0;  // index into Analysis::threads
};

// From ts_ns on (until the next step), `waiting` threads were waiting.
struct WaitingStep {
  std::uint64_t ts_ns = 0;
  std::uint32_t waiting = 0;
};

struct GilStats {
  // Copied from GilInfo. Analysis::gils[i] describes RunTrace::gils[i].
  std::uint32_t id = 0;
  std::int64_t interpreter = 0;

  // Acquisitions of this GIL inside the window, all threads (no at-start).
  std::uint64_t acquisitions = 0;
  // Acquisitions whose PyThreadState differs from the previous holder's,
  // the same rule as CPython's gil->switch_number, so the two should match.
  std::uint64_t switches = 0;
  // cpython_switch_end - cpython_switch_start (0 if the counter went back).
  std::uint64_t cpython_switches = 0;
  // Timeouts inside the window that set a drop request (kFlagDropRequest).
  std::uint64_t drop_requests = 0;

  // Time some thread held it, and time it was held while >= 1 other thread
  // waited; the fractions divide by the window length (0 for an empty window).
  std::uint64_t busy_ns = 0;
  std::uint64_t contended_ns = 0;
  double busy_fraction = 0;
  double contended_fraction = 0;

  // Sorted by start. Normally disjoint; they overlap only when dropped
  // events left two threads apparently holding at once.
  std::vector<HolderInterval> holders;
  // Sorted by time; the first step is at the window start, each later step
  // changes the count. Threads still waiting at end_ns get no step down.
  std::vector<WaitingStep> waiting;
};

struct Analysis {
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;  // >= start_ns even when the trace's was not
  double wall_s = 0;         // (end_ns - start_ns) / 1e9

  std::vector<GilStats> gils;
  std::vector<ThreadStats> threads;

  // Events in all streams (every kind), and events lost: full rings plus
  // threads that found no recorder slot.
  std::uint64_t events_recorded = 0;
  std::uint64_t events_dropped = 0;
  // Events naming a GIL that is not in RunTrace::gils. They still shape the
  // thread's own figures but feed no GilStats; non-zero means a recorder bug.
  std::uint64_t events_unknown_gil = 0;
};

Analysis Analyze(const RunTrace& trace);

}  // namespace gilscope::report
