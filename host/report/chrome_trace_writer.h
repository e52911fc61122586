// Writes trace.json in the Chrome Trace Event Format (the JSON object form),
// which opens in ui.perfetto.dev and chrome://tracing.
//
// Layout (one pid per process of the run, each named and sorted with
// process_name / process_sort_index; the runner first):
//   - one GIL lane per GIL, in the process that owns it: tid kGilTidBase +
//     GIL id, named "GIL <id> holder", with one "X" slice per hold named
//     after the holding thread, and a "C" counter "waiting threads (GIL <id>)"
//     stepping with the number of threads waiting for it;
//   - one lane per recorded thread (tid = its index + 1: native ids are
//     reused by the OS), named "<name> (<native id>)", covering its lifetime
//     with back-to-back "holding GIL" / "waiting for GIL" / "released GIL"
//     slices (distinct names, which Perfetto colours apart, and the reserved
//     `cname` colours chrome://tracing uses: green, red, light grey); holds
//     carry the function running when they ended, voluntary releases their
//     call site;
//   - a "markers" lane under each thread that set gilscope markers (tid
//     kMarkerTidBase + index): gilscope.mark() as instant events,
//     gilscope.region() as slices, nested as they were;
//   - a "phases" lane first in the main process (tid kPhaseTid, sort index
//     -1): one "X" slice per phase of Analysis::phases, "phase <n>
//     (<source>)", with each GIL's busy and contended shares inside it;
//   - flow arrows ("s" -> "f", bp "e", category "handoff") from each hold's
//     end on the releasing thread's lane to the next hold of that GIL by
//     another thread: the hand-off.
// Lanes are sorted with thread_sort_index: GIL lanes first, then each thread
// followed by its markers. Times are microseconds since the window start with
// three decimals, so every nanosecond survives.
//
// Viewers choke on huge files, so the trace is planned before it is written
// (PlanChromeTrace): when the complete trace would hold more than max_events
// timeline events (about 160 bytes each with function names: the default
// 1,200,000 is ~190 MB, below the ~256 MB where chrome://tracing fails),
// the hand-off arrows are left out first; if that is not enough, slices
// shorter than a width w are merged into one slice per stretch of at least w
// ("... (aggregated)", named after the state or holder that dominated it),
// waiting counters keep one or two samples per w (the stretch's maximum,
// then its last value), and w doubles until the trace fits. Markers are
// never merged (at most kMaxMarkers are written). The plan is deterministic,
// so report.json / report.txt state exactly what trace.json holds.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "report/analysis.h"
#include "report/run_trace.h"

namespace gilscope::report {

// What trace.json holds for an Analysis, decided before writing it.
struct TracePlan {
  std::uint64_t max_events = 0;
  std::uint64_t full_events = 0;     // timeline events of the complete trace
  std::uint64_t events = 0;          // timeline events written
  bool flows = true;                 // hand-off arrows written
  std::uint64_t merge_below_ns = 0;  // w above; 0: every slice as recorded
  std::uint64_t markers_omitted = 0; // beyond kMaxMarkers
  bool aggregated() const { return !flows || merge_below_ns > 0; }
  // One line for the reports; empty when the trace is complete.
  std::string reason;
};

class ChromeTraceWriter {
 public:
  static constexpr std::uint64_t kDefaultMaxEvents = 1'200'000;
  static constexpr std::uint64_t kMaxMarkers = 100'000;
  // tid of GIL <id>'s lane; far above any thread index.
  static constexpr std::uint64_t kGilTidBase = 1'000'000;
  // tid of thread <index>'s markers lane.
  static constexpr std::uint64_t kMarkerTidBase = 500'000;
  // tid of the phase lane, in the main process.
  static constexpr std::uint64_t kPhaseTid = 2'000'000;

  // `out` must outlive the writer.
  explicit ChromeTraceWriter(std::ostream& out, std::uint64_t max_events = kDefaultMaxEvents)
      : out_(out), max_events_(max_events) {}

  // `analysis` must be Analyze(trace). Not thread-safe: one Write at a time.
  void Write(const RunTrace& trace, const Analysis& analysis);
  // The same with the plan already made: `plan` must be
  // PlanChromeTrace(analysis, max_events) (the other writers report the
  // default limit's plan, so a report plans once).
  void Write(const RunTrace& trace, const Analysis& analysis, const TracePlan& plan);

  // What the last Write() wrote.
  const TracePlan& plan() const { return plan_; }

 private:
  std::ostream& out_;
  std::uint64_t max_events_;
  TracePlan plan_;
};

// Timeline events ("X", "C", "i", "s", "f"; metadata not counted) of the
// trace ChromeTraceWriter(max_events) writes for `analysis`.
TracePlan PlanChromeTrace(const Analysis& analysis,
                          std::uint64_t max_events = ChromeTraceWriter::kDefaultMaxEvents);

}  // namespace gilscope::report
