#include "report/findings.h"
#include "report/text_util.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <string>

namespace gilscope::report {
namespace {

// --- convoy -----------------------------------------------------------------
// One or two slow round trips are noise; a convoy is a pattern that repeats.
constexpr std::uint64_t kConvoyMinVoluntaryReleases = 20;
// A thread stuck behind a CPU-bound holder waits for its timed wait to run
// out (one switch interval) before the holder is asked to drop the GIL;
// half an interval leaves room for runs where the holder sometimes lets go
// earlier, while an uncontended re-acquisition takes microseconds.
constexpr double kConvoyMinMedianWaitIntervals = 0.5;
// The blocking calls must be short next to that wait for the wait to be the
// dominant cost of each round trip; a thread that sleeps for seconds and
// then waits 5 ms is not convoying.
constexpr double kConvoyMaxMedianReleasedIntervals = 1.0;

// --- gil_bound --------------------------------------------------------------
// "Nearly all the time": with 10% idle the GIL is still the bottleneck, but
// below that there is visible slack (I/O, sleeps) that parallelism would not
// remove.
constexpr double kGilBoundMinBusy = 0.9;
// At least half the run had a thread waiting while another held: the threads
// really ran one at a time, rather than taking turns by design.
constexpr double kGilBoundMinContended = 0.5;
// A thread competes when it waited for the GIL at least this share of the
// run; the main thread waiting a moment at start-up or in a join does not.
constexpr double kGilBoundMinWaitShare = 0.01;
constexpr int kGilBoundMinThreads = 2;

// --- long_hold --------------------------------------------------------------
// CPython asks the holder to drop the GIL one switch interval after a waiter
// arrives, and Python code obeys within microseconds; ten intervals means
// the holder was not running Python bytecode (C code keeping the GIL).
constexpr double kLongHoldMinIntervals = 10;
// ...and long enough to matter to a person: with a tiny switch interval ten
// of them is still imperceptible.
constexpr double kLongHoldMinMs = 50;
// And it must have kept the GIL that long after a waiter's drop request:
// Python code heeds one within microseconds, so two intervals of ignoring
// it is C code. This also spares a single-threaded script (nobody asks) and a
// waiter starved of CPU (it waits long, but asks late and is then served).
constexpr double kLongHoldMinUnheededIntervals = 2;

// --- switch_storm -----------------------------------------------------------
// A hand-off costs a thread wake-up, typically 5-50 us; below ~500 per
// second they cannot add up to a noticeable share of the run.
constexpr double kStormMinSwitchesPerSecond = 500;
// Holds this short relative to the interval mean the threads hand the GIL
// back and forth voluntarily, well before any forced switch.
constexpr double kStormMaxMedianHoldIntervals = 0.1;
// The measured cost: time the GIL was free while a thread waited for it.
constexpr double kStormMinHandoffShare = 0.1;

constexpr double kDefaultSwitchIntervalMs = 5.0;  // CPython's default

const CodeSite& SiteOf(const Analysis& analysis, std::uint32_t site) {
  static const CodeSite kUnknown{"<unknown>", "", 0};
  return site < analysis.sites.size() ? analysis.sites[site] : kUnknown;
}

Finding ForThread(const char* kind, const Analysis& analysis, std::size_t index) {
  Finding f;
  f.kind = kind;
  f.thread = analysis.threads[index].name;
  f.thread_index = static_cast<int>(index);
  f.gil = analysis.threads[index].main_gil;
  return f;
}

void FindGilBound(const RunTrace& trace, const Analysis& analysis, std::vector<Finding>& out) {
  for (const GilStats& g : analysis.gils) {
    // The GIL's own window: a subinterpreter's or a child's is shorter.
    const double window = static_cast<double>(g.end_ns - g.start_ns);
    const bool whole_run = g.start_ns == analysis.start_ns && g.end_ns == analysis.end_ns;
    if (g.busy_fraction < kGilBoundMinBusy || g.contended_fraction < kGilBoundMinContended) continue;
    int competing = 0;
    for (const ThreadStats& t : analysis.threads) {
      if (t.main_gil == static_cast<int>(g.id) && t.held_ns > 0 &&
          static_cast<double>(t.waiting_ns) >= kGilBoundMinWaitShare * window) {
        ++competing;
      }
    }
    if (competing < kGilBoundMinThreads) continue;
    Finding f;
    f.kind = "gil_bound";
    f.gil = static_cast<int>(g.id);
    f.figures = {{"busy_fraction", g.busy_fraction},
                 {"contended_fraction", g.contended_fraction},
                 {"threads", competing},
                 {"speedup_bound", analysis.gil_tax.speedup_bound}};
    f.detail = Format("GIL %u was held %.1f%% of %s and contended %.1f%%: %d threads competed for it and "
                      "ran one at a time.",
                      g.id, 100 * g.busy_fraction, whole_run ? "the run" : "its lifetime", 100 * g.contended_fraction,
                      competing);
    f.advice = Format("Run the CPU-bound work in processes or in own-GIL subinterpreters (Python 3.12+); "
                      "`gilscope compare %s` measures what each gains (estimate: up to %.1fx).",
                      trace.info.script.empty() ? "SCRIPT" : trace.info.script.c_str(),
                      analysis.gil_tax.speedup_bound);
    out.push_back(std::move(f));
  }
}

void FindConvoys(const Analysis& analysis, double interval_ms, std::vector<Finding>& out) {
  for (std::size_t i = 0; i < analysis.threads.size(); ++i) {
    const ThreadStats& t = analysis.threads[i];
    if (t.voluntary_releases < kConvoyMinVoluntaryReleases) continue;
    if (t.voluntary_stretches < kConvoyMinVoluntaryReleases) continue;
    if (t.wait_p50_ms < kConvoyMinMedianWaitIntervals * interval_ms) continue;
    if (t.voluntary_released_p50_ms >= kConvoyMaxMedianReleasedIntervals * interval_ms) continue;
    Finding f = ForThread("convoy", analysis, i);
    f.figures = {{"waiting_s", t.waiting_s},
                 {"wait_p50_ms", t.wait_p50_ms},
                 {"released_p50_ms", t.voluntary_released_p50_ms},
                 {"voluntary_releases", static_cast<double>(t.voluntary_releases)},
                 {"waits", static_cast<double>(t.waits)},
                 {"switch_intervals", t.wait_p50_ms / interval_ms}};
    f.detail = Format("%s gave the GIL up %llu times for short blocking calls (median %.2f ms) and then waited a "
                      "median %.2f ms (%.1f switch intervals) to get it back each time: %.3f s lost waiting.",
                      DescribeThread(t).c_str(), static_cast<unsigned long long>(t.voluntary_releases),
                      t.voluntary_released_p50_ms, t.wait_p50_ms, t.wait_p50_ms / interval_ms, t.waiting_s);
    f.advice = "A CPU-bound thread keeps the GIL until the switch interval forces it off: move that work to a "
               "process or an own-GIL subinterpreter, or lower sys.setswitchinterval() to shorten each round trip.";
    out.push_back(std::move(f));
  }
}

void FindLongHolds(const Analysis& analysis, double interval_ms, std::vector<Finding>& out) {
  const double min_ms = std::max(kLongHoldMinIntervals * interval_ms, kLongHoldMinMs);
  for (std::size_t i = 0; i < analysis.threads.size(); ++i) {
    const ThreadStats& t = analysis.threads[i];
    const HoldRecord& h = t.most_blocking_hold;
    const double hold_ms = static_cast<double>(h.end_ns - h.start_ns) / 1e6;
    const double blocked_ms = static_cast<double>(h.blocked_ns) / 1e6;
    const double unheeded_ms = static_cast<double>(h.unheeded_ns) / 1e6;
    if (hold_ms < min_ms || unheeded_ms < kLongHoldMinUnheededIntervals * interval_ms) continue;
    Finding f = ForThread("long_hold", analysis, i);
    const CodeSite& site = SiteOf(analysis, h.site);
    f.figures = {{"hold_ms", hold_ms},
                 {"blocked_ms", blocked_ms},
                 {"unheeded_ms", unheeded_ms},
                 {"switch_intervals", hold_ms / interval_ms},
                 {"start_s", static_cast<double>(h.start_ns - analysis.start_ns) / 1e9}};
    f.detail = Format("%s held the GIL for %.1f ms in one go (%.0f switch intervals) and kept it %.1f ms after "
                      "another thread asked for it; it let go in %s.",
                      DescribeThread(t).c_str(), hold_ms, hold_ms / interval_ms, unheeded_ms,
                      DescribeSite(site).c_str());
    f.advice = "Python code gives the GIL up within microseconds when asked, so this is C code keeping it: "
               "release the GIL around the long call (Py_BEGIN_ALLOW_THREADS) or split the work.";
    out.push_back(std::move(f));
  }
}

void FindSwitchStorms(const Analysis& analysis, double interval_ms, std::vector<Finding>& out) {
  if (analysis.wall_s <= 0) return;
  for (const GilStats& g : analysis.gils) {
    const double per_second = static_cast<double>(g.switches) / analysis.wall_s;
    if (per_second < kStormMinSwitchesPerSecond) continue;
    if (g.holds == 0 || g.hold_p50_ms >= kStormMaxMedianHoldIntervals * interval_ms) continue;
    if (g.handoff_fraction < kStormMinHandoffShare) continue;
    Finding f;
    f.kind = "switch_storm";
    f.gil = static_cast<int>(g.id);
    f.figures = {{"switches_per_s", per_second},
                 {"hold_p50_ms", g.hold_p50_ms},
                 {"handoff_fraction", g.handoff_fraction},
                 {"switches", static_cast<double>(g.switches)}};
    f.detail = Format("GIL %u changed hands %.0f times per second with a median hold of %.3f ms; hand-off gaps "
                      "(the GIL free while a thread waited) took %.1f%% of the run.",
                      g.id, per_second, g.hold_p50_ms, 100 * g.handoff_fraction);
    f.advice = "Threads ping-pong on the GIL: do more work per wake-up (batch queue items, read larger chunks) "
               "or use fewer threads.";
    out.push_back(std::move(f));
  }
}

}  // namespace

std::string DescribeThread(const ThreadStats& thread) {
  if (thread.name.empty()) return "thread " + std::to_string(thread.native_id);
  return thread.name + " (" + std::to_string(thread.native_id) + ")";
}

std::string DescribeSite(const CodeSite& site) {
  if (site.file.empty()) return site.function;
  if (site.line <= 0) return site.function + " (" + site.file + ")";
  return site.function + " (" + site.file + ":" + std::to_string(site.line) + ")";
}

std::vector<Finding> FindIssues(const RunTrace& trace, const Analysis& analysis) {
  const double interval_ms =
      trace.info.switch_interval_s > 0 ? trace.info.switch_interval_s * 1e3 : kDefaultSwitchIntervalMs;
  std::vector<Finding> out;
  FindGilBound(trace, analysis, out);
  FindConvoys(analysis, interval_ms, out);
  FindLongHolds(analysis, interval_ms, out);
  FindSwitchStorms(analysis, interval_ms, out);
  return out;
}

}  // namespace gilscope::report
