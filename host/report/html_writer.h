// Writes report.html: one self-contained page, opened from a file, that shows
// a run at a glance: summary and GIL tax, findings, the per-thread table, a
// wait-latency histogram per thread, where each thread held and released the
// GIL, and a zoomable timeline on a <canvas> (one row per GIL coloured by
// holder, one per thread coloured holding / waiting / released, markers).
//
// Offline by construction: the page's CSS and JavaScript (host/report/html/,
// compiled in) are inlined, nothing is loaded, and a Content-Security-Policy
// (default-src 'none', the script allowed by its hash) makes the browser
// refuse any request or any other script. The file contains no "//" at all,
// so it cannot hold a URL.
//
// Untrusted strings (thread names, script, args, function and file names,
// marker names, exception text) only ever reach the page as data: one
// <script type="application/json"> block, in which '<', '>', '&', '/',
// U+2028 and U+2029 are \u-escaped (so no "</script>" can close it) and
// invalid UTF-8 is replaced with U+FFFD. The script inserts text with
// textContent, never as markup.
//
// Size: intervals are embedded as little-endian typed arrays in base64url
// (16 bytes per interval), and the page aggregates them per pixel when it
// draws, so a run with a million intervals stays a ~25 MB file that pans and
// zooms smoothly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>

#include "report/analysis.h"
#include "report/chrome_trace_writer.h"
#include "report/run_trace.h"

namespace gilscope::report {

class HtmlWriter {
 public:
  // Wait-latency histogram buckets: "< 1 us", then 1-2-5 steps per decade
  // from 1 us up to 1 s, then ">= 1 s".
  static constexpr std::size_t kHistogramBuckets = 20;

  // `out` must outlive the writer.
  explicit HtmlWriter(std::ostream& out) : out_(out) {}

  // `analysis` must be Analyze(trace). Findings come from FindIssues().
  void Write(const RunTrace& trace, const Analysis& analysis) const;
  // The same with the trace plan already made: `plan` must be
  // PlanChromeTrace(analysis), so that writing every output plans once.
  void Write(const RunTrace& trace, const Analysis& analysis, const TracePlan& plan) const;

  // JSON text made safe inside <script type="application/json">: see above.
  // `json` must be valid UTF-8 (as nlohmann's dump with replacement makes it).
  static std::string EscapeForScript(const std::string& json);

  // The bucket of a wait of `ns` nanoseconds (0 .. kHistogramBuckets - 1).
  static std::size_t HistogramBucket(std::uint64_t ns);

 private:
  std::ostream& out_;
};

}  // namespace gilscope::report
