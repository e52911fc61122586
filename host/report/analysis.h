// Turns a recorded run into the figures every report shows: per thread, how
// long it held, waited for and did without the GIL; per GIL, how often it
// changed hands, how busy and how contended it was.
//
// Analyze() is a pure function of its input: no I/O beyond the EventSource's
// cursors, no CPython, no globals, so tests build a RunTrace by hand and
// check exact numbers. It streams: one time-ordered pass over all threads'
// events at once (plus one per phase when the run has several), in memory
// bounded by the number of threads and GILs, not by the number of events
// (analysis.cc says how). What grows with the run is only the timeline the
// writers draw, and that is aggregated past kExactTimelineEvents.
//
// Beyond the GIL states it attributes time to Python source lines (the
// kFrame written before each release), collects the markers scripts set, and
// estimates what the GIL cost the run (GilTax).
//
// Percentiles are exact nearest-rank ones up to QuantileSketch::kExactSamples
// samples per figure, and within QuantileSketch::kRelativeError (1%) beyond.
//
// Robustness contract: the input comes from lossy ring buffers, so Analyze()
// never throws on a malformed stream and never yields a negative duration.
// Everything is clipped to the recording window [start_ns, end_ns]; a gap left
// by a dropped event is bridged by trusting the next event (see analysis.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "report/event_source.h"
#include "report/phases.h"
#include "report/run_trace.h"

namespace gilscope::report {

// What a thread was doing with respect to a GIL during an interval.
enum class GilState : std::uint8_t {
  kReleased = 0,  // neither holding nor asking: C code, I/O, sleep, idle
  kWaiting = 1,   // asked for the GIL (kRequest) and has not got it yet
  kHolding = 2,   // holds the GIL and may run Python code
};

const char* GilStateName(GilState state);

// A Python source line named by kFrame events: the function running when a
// thread released the GIL. Analysis::sites[0] is kUnknownSite.
struct CodeSite {
  std::string function;
  std::string file;
  int line = 0;  // 0: unknown
};

// Analysis::sites index of "<unknown>": a hold or release with no kFrame
// right before its kReleased (a hold cut by the window end, a dropped
// event, or a run recorded without frames). A hold that ended with its
// thread (kThreadExit, or its GIL's window closing under it when its
// process or interpreter ended) goes to the site "<thread exit>" instead,
// added to Analysis::sites when first needed.
inline constexpr std::uint32_t kUnknownSite = 0;

// Time attributed to one CodeSite, for ThreadStats::held_by_function and
// ThreadStats::released_at.
struct SiteTime {
  std::uint32_t site = kUnknownSite;  // index into Analysis::sites
  std::string function;               // copied from the site, for writers
  std::string file;
  int line = 0;
  std::uint64_t ns = 0;
  double seconds = 0;  // ns / 1e9
};

// A half-open interval [start_ns, end_ns) in which a thread waited for or
// held a GIL; never empty.
struct StateInterval {
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  GilState state = GilState::kWaiting;  // kWaiting or kHolding, never kReleased
  std::uint8_t gil = 0;                 // the event's `gil` field: GilInfo::id
  // Holding: ended by a forced release (kFlagForced), so the thread still
  // wanted the GIL in the released stretch that follows, until its next
  // request. The GIL-tax estimate counts that stretch as runnable.
  bool forced_end = false;
  // Holding: the Analysis::sites entry the hold is attributed to (the frame
  // running when it ended). Waiting: kUnknownSite. Fits in the padding, so
  // the interval stays 24 bytes.
  std::uint32_t site = kUnknownSite;
};
static_assert(sizeof(StateInterval) == 24, "kept per interval: 10M events must stay affordable");

// One hold singled out for a finding.
struct HoldRecord {
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  // Time inside the hold during which another thread waited for this GIL.
  std::uint64_t blocked_ns = 0;
  // Time from the first drop request inside the hold (a waiter's timeout
  // asking the holder to let go) to the hold's end. Python code heeds it
  // within microseconds; a long one is C code keeping the GIL. A starved
  // waiter (no CPU to time out on) makes blocked_ns long but not this.
  std::uint64_t unheeded_ns = 0;
  std::uint32_t site = kUnknownSite;
};

struct ThreadStats {
  // Identity, copied from ThreadTrace so a writer needs only the Analysis for
  // the thread table. Analysis::threads[i] describes RunTrace::threads[i].
  std::string name;
  std::uint64_t native_id = 0;
  std::uint32_t pid = 0;

  // Lifetime inside the window: first timed event (clipped) to kThreadExit,
  // or to end_ns; or, when its last event was on a GIL whose own window
  // closed earlier (its process exited, its interpreter was finalized), to
  // that GIL's end. A thread with no timed event in or before the window has
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

  // The convoy effect's waits: completed waits that began when the thread
  // came back from a blocking call (its released stretch began with a
  // voluntary release) and found the GIL held by another thread (take_gil
  // waited on the GIL's cond: the request was not folded into the
  // acquisition), and their nearest-rank median; 0 without such a wait.
  // Each wait also counts in `waits`. (Files of raw format 1 fold no
  // request, so there every such wait counts, contended or not.)
  std::uint64_t io_waits = 0;
  double io_wait_p50_ms = 0;

  // Holds ending inside the window (the at-start one and one cut by the
  // window end included) and their median length; 0 without holds.
  std::uint64_t holds = 0;
  double hold_p50_ms = 0;
  // Released stretches that began with a voluntary release and ended with a
  // new kRequest (the blocking call's duration, GIL-less), and their median.
  std::uint64_t voluntary_stretches = 0;
  double voluntary_released_p50_ms = 0;
  // The longest hold, and the hold that kept the GIL longest after a drop
  // request (ties: longer blocked_ns, then longer hold): what a long_hold
  // finding is about. Both zero without holds.
  HoldRecord longest_hold;
  HoldRecord most_blocking_hold;

  // Attribution, longest first (ties: by function, file, line).
  // held_by_function: each hold goes to the kFrame just before its
  // kReleased: the code that was running when the thread let go; for a
  // CPU-bound thread, forced off every switch interval, that is a sample of
  // where its Python time went. released_at: the released stretch after each
  // voluntary release (to the next kRequest) goes to the same frame: the call
  // site that blocked (time.sleep, socket.recv, Lock.acquire...).
  std::vector<SiteTime> held_by_function;
  std::vector<SiteTime> released_at;

  // CPU time (user + system) of the thread, from ThreadTrace; < 0: unknown.
  double cpu_s = -1;

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
  // stretches are not stored: nothing draws them. With an aggregated
  // timeline (Analysis::timeline_merge_below_ns > 0) an interval shorter
  // than the width that starts less than the width after the previous one
  // is folded into it (until the piece is 8 widths long): the piece then
  // spans both and shows the state it spent most time in.
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
  // False when CPython's counter was never read at the window's end: the
  // GIL's window was not closed (its process was killed or crashed: no end
  // time, and the end count still the start count it was given when the
  // window opened). cpython_switches is then 0 and means nothing: the
  // reports say the count is unknown rather than a mismatch.
  bool cpython_switches_known = true;
  // Timeouts inside the window that set a drop request (kFlagDropRequest).
  std::uint64_t drop_requests = 0;

  // The GIL's own recording window (GilInfo::start_ns/end_ns clipped to the
  // run's; the run's where unknown): a subinterpreter's or a forked child's
  // GIL lives shorter than the run. Acquisitions and switches are counted
  // inside it, where CPython's counter was read.
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  double window_s = 0;

  // Time some thread held it, and time it was held while >= 1 other thread
  // waited, both inside the GIL's own window; the fractions divide by that
  // window's length (0 for an empty window), so they never exceed 1.
  std::uint64_t busy_ns = 0;
  std::uint64_t contended_ns = 0;
  double busy_fraction = 0;
  double contended_fraction = 0;

  // Sorted by start. Normally disjoint; they overlap only when dropped
  // events left two threads apparently holding at once. Aggregated as
  // ThreadStats::intervals are (a folded slice keeps the first thread).
  std::vector<HolderInterval> holders;
  // Sorted by time; the first step is at the window start, each later step
  // changes the count. Threads still waiting at end_ns get no step down.
  // Aggregated: at most one step per merge width (the count at its end).
  std::vector<WaitingStep> waiting;

  // Time nobody held it while a thread waited: the hand-off gap between a
  // release and the waiter running, pure switching cost.
  std::uint64_t handoff_ns = 0;
  double handoff_fraction = 0;
  // Holds of this GIL (any thread) and their median length.
  std::uint64_t holds = 0;
  double hold_p50_ms = 0;
};

// A marker set by the script: gilscope.mark(name) is an instant
// (start_ns == end_ns), gilscope.region(name) an interval, clipped to the
// window. Regions nest per thread; depth 0 is outermost.
struct Marker {
  std::string name;          // RunTrace::marker_names[aux], or "marker <aux>"
  std::uint32_t thread = 0;  // index into Analysis::threads
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  bool region = false;
  // A region still open when the thread's stream ended (ends at its lifetime
  // end), or whose end fell outside the window.
  bool open = false;
  std::uint32_t depth = 0;
};

// The most markers an analysis keeps (Analysis::markers); as many as
// trace.json draws (ChromeTraceWriter::kMaxMarkers).
inline constexpr std::size_t kMaxKeptMarkers = 100'000;

// What the GIL cost the run, in one estimate.
//
// ideal_wall_s models the run with every GIL's Python work able to run in
// parallel. Wall time is replayed instant by instant: while b GILs are held
// and r threads are runnable on them (holding or waiting), the run makes
// min(b, cores) seconds of Python progress per second, where it could have
// made min(r, cores); so that stretch would have taken min(b,cores) /
// min(r,cores) of its length. A thread forced off the GIL counts as runnable
// until it asks again: it only stopped because the GIL made it. Stretches with no holder (I/O, sleep, idle,
// hand-off gaps) keep their length. Because a GIL shares itself roughly
// fairly among the threads waiting for it, this follows the critical path:
// two threads with 1 s and 3 s of work finish in 3 s, not 2 s. Joins need no
// special care: a thread blocked in join() is released, not runnable. The
// result is then raised to at least the largest single thread's held time and
// total held time / cores (no thread's own work can be split), and capped
// at the wall time.
struct GilTax {
  double waiting_thread_s = 0;  // sum over threads of waiting_s
  double ideal_wall_s = 0;
  double speedup_bound = 1;     // wall_s / ideal_wall_s; 1 for an empty run
  int cpu_count = 0;            // the cores assumed: RunInfo::cpu_count or this machine's
};

// The figures of one phase (phases.h): the same figures as the whole run's,
// computed over the phase's window [start_ns, end_ns) alone, exactly as
// Analyze() would give them for a trace clipped to that window. The
// timeline lists (ThreadStats::intervals, GilStats::holders and waiting)
// are left empty: the run's own timeline draws every phase.
struct Phase {
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  std::string source;  // PhaseSpan::source
  std::vector<GilStats> gils;        // parallel to Analysis::gils
  std::vector<ThreadStats> threads;  // parallel to Analysis::threads
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
  // GILs not recorded at all (RunTrace::gils_lost): none of their events are
  // in events_recorded or events_dropped.
  std::uint64_t gils_lost = 0;
  // Events naming a GIL that is not in RunTrace::gils. They still shape the
  // thread's own figures but feed no GilStats; non-zero means a recorder bug.
  std::uint64_t events_unknown_gil = 0;

  // Every source line the attribution names; sites[kUnknownSite] is
  // {"<unknown>", "", 0}. A kFrame whose code id is not in RunTrace::code
  // names "<unknown>" with its line.
  std::vector<CodeSite> sites;
  // The first kMaxKeptMarkers markers the script set in the window, in time
  // order (ties: thread, then outer region first); markers_left_out counts
  // the later ones (a script marking in a hot loop sets millions). Phases
  // still see every region that may set a boundary (MaySetPhaseBoundary).
  std::vector<Marker> markers;
  std::uint64_t markers_left_out = 0;
  GilTax gil_tax;

  // The run's activity per time bucket, and the phases found in it (at
  // least one; a single phase covering the window when nothing changed).
  ActivitySeries activity;
  std::vector<Phase> phases;

  // 0: the timeline lists (ThreadStats::intervals, GilStats::holders and
  // waiting) hold every interval. Otherwise the run was too long for that
  // (over kExactTimelineEvents events) and they are aggregated: intervals
  // shorter than this many ns are folded into their neighbours, so that the
  // timeline stays under about kTimelinePieces pieces. Every figure is still
  // computed from every event.
  std::uint64_t timeline_merge_below_ns = 0;
};

// Runs of up to this many events keep every interval of the timeline.
inline constexpr std::uint64_t kExactTimelineEvents = 4'000'000;
// Pieces an aggregated timeline aims at, all lanes together.
inline constexpr std::uint64_t kTimelinePieces = 1'000'000;

// The merge width Analyze() uses for `source`: 0 up to kExactTimelineEvents
// events, else the window times three times the lanes (threads with events,
// or GILs, whichever are more) over kTimelinePieces.
std::uint64_t TimelineMergeWidth(const EventSource& source);

// The figures of the run `source` reads, its activity series and its phases
// (each with its own figures, computed by one more pass over the events per
// phase when there are several; phase_reference.h is the reference they are
// tested against).
Analysis Analyze(const EventSource& source);
// The same for a trace in memory (TraceSource).
Analysis Analyze(const RunTrace& trace);

// Analyze() as if the recording window were [start_ns, end_ns), keeping every
// interval and without the phase pass (Analysis::activity and
// Analysis::phases stay empty).
Analysis AnalyzeWindow(const EventSource& source, std::uint64_t start_ns, std::uint64_t end_ns);
Analysis AnalyzeWindow(const RunTrace& trace, std::uint64_t start_ns, std::uint64_t end_ns);

// Timeline events a complete trace.json holds: every waiting and holding
// interval, GIL holder slice and waiting-count step. ChromeTraceWriter caps
// on this count, so a report can say up front whether the trace is whole.
std::uint64_t TimelineEventCount(const Analysis& analysis);

}  // namespace gilscope::report
