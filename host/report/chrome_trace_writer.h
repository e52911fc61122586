// Writes trace.json in the Chrome Trace Event Format (the JSON object form),
// which opens in ui.perfetto.dev and chrome://tracing.
//
// Layout of the timeline (one process, "gilscope: <script>"):
//   - one GIL track per GIL, at the top: tid kGilTidBase + GIL id, named
//     "GIL <id> holder", with one "X" slice per hold named after the holder,
//     and a "C" counter "waiting threads (GIL <id>)" stepping with the number
//     of threads waiting for it;
//   - one track per recorded thread (tid = its index + 1, because native ids
//     are reused by the OS and could collide with the GIL tracks), named
//     "<name> (<native id>)", with "holding GIL" / "waiting for GIL" slices.
// Times are microseconds since the window start, printed with three
// decimals, so every nanosecond survives.
//
// Viewers choke on huge files, so the writer stops after max_slices timeline
// events (X slices and C counter samples both count: they cost the viewer the
// same). Events are written in time order, so a capped trace is a complete
// picture of the run's beginning; an instant event marks where it stops and
// says how many were omitted, and OmittedSlices() reports it to the caller.
#pragma once

#include <cstdint>
#include <ostream>

#include "report/analysis.h"
#include "report/run_trace.h"

namespace gilscope::report {

class ChromeTraceWriter {
 public:
  static constexpr std::uint64_t kDefaultMaxSlices = 2'000'000;
  // tid of GIL <id>'s pseudo-thread; far above any thread index.
  static constexpr std::uint64_t kGilTidBase = 1'000'000;

  // `out` must outlive the writer.
  explicit ChromeTraceWriter(std::ostream& out, std::uint64_t max_slices = kDefaultMaxSlices)
      : out_(out), max_slices_(max_slices) {}

  // `analysis` must be Analyze(trace). Not thread-safe: one Write at a time.
  void Write(const RunTrace& trace, const Analysis& analysis);

  // Timeline events written / left out by the last Write().
  std::uint64_t WrittenSlices() const { return written_; }
  std::uint64_t OmittedSlices() const { return omitted_; }

 private:
  std::ostream& out_;
  std::uint64_t max_slices_;
  std::uint64_t written_ = 0;
  std::uint64_t omitted_ = 0;
};

}  // namespace gilscope::report
