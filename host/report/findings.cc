#include "report/findings.h"
#include "report/text_util.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <string>
#include <tuple>

namespace gilscope::report {
namespace {

// --- convoy -----------------------------------------------------------------
// One or two slow round trips are noise; a convoy is a pattern that repeats.
constexpr std::uint64_t kConvoyMinVoluntaryReleases = 20;
// The median is of the waits that tell: those after a blocking call that
// found the GIL held (ThreadStats::io_waits). A thread stuck behind a
// CPU-bound holder waits for its timed wait to run out (one switch interval)
// before the holder is asked to drop the GIL; half an interval leaves room
// for runs where the holder sometimes lets go earlier, while a holder about
// to block itself hands over within microseconds. Re-acquisitions that found
// the GIL free are left out: an echo server gets one after each send that did
// not block, and with them its median wait is zero however long it waits
// after each recv. There must be kConvoyMinVoluntaryReleases of them too.
constexpr double kConvoyMinMedianWaitIntervals = 0.5;
// The blocking calls must be short next to that wait for the wait to be the
// dominant cost of each round trip; a thread that sleeps for seconds and
// then waits 5 ms is not convoying.
constexpr double kConvoyMaxMedianReleasedIntervals = 1.0;
// And the waits must cost the thread a tenth of its time in the window:
// below that the convoy is real but not what limits the thread (thousands of
// fast round trips with a few dozen slow ones among them).
constexpr double kConvoyMinWaitingShare = 0.1;

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
// C code keeping the GIL runs on a core all along. A thread whose CPU time
// (over its life) is under half the time it held the GIL was mostly off the
// cores while holding it: on a loaded machine the scheduler, not C code,
// kept the GIL (04_rlock_semaphore's sem-worker-1 held it 56 ms with 10 ms
// of CPU, and "ignored" a drop request for 45 ms). Unknown CPU time (a
// child process's thread) excuses nothing.
constexpr double kLongHoldMinOnCore = 0.5;

// --- switch_storm -----------------------------------------------------------
// A hand-off costs a thread wake-up, typically 5-50 us; below ~500 per
// second they cannot add up to a noticeable share of the run.
constexpr double kStormMinSwitchesPerSecond = 500;
// A storm is sustained: 200 switches is 0.4 s at that rate. A burst of a few
// dozen (threads starting and ending together) makes a high rate over a
// short phase, and on a loaded machine each of its wake-ups waits for a
// core, so its gaps look long: 13_web_scraping showed 72 switches at "698
// per second" with 38% gaps in a 103 ms phase, a false alarm.
constexpr std::uint64_t kStormMinSwitches = 200;
// Holds this short relative to the interval mean the threads hand the GIL
// back and forth voluntarily, well before any forced switch.
constexpr double kStormMaxMedianHoldIntervals = 0.1;
// The measured cost: time the GIL was free while a thread waited for it.
constexpr double kStormMinHandoffShare = 0.1;
// ...adding up to something a person could notice: 20 ms, four default
// switch intervals. A 25 ms script starting a few threads on a busy machine
// changes hands at "800 per second" with 3 ms of gaps: no storm.
constexpr double kStormMinHandoffMs = 20;

constexpr double kDefaultSwitchIntervalMs = 5.0;  // CPython's default

// Where a pattern is looked for: the whole run, or one phase.
struct Scope {
  const Analysis& analysis;               // the run: sites, GIL tax, its window
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  const std::vector<GilStats>& gils;      // parallel to analysis.gils
  const std::vector<ThreadStats>& threads;  // parallel to analysis.threads
  int phase = -1;                          // Finding::phase
  // Put before each detail: names the window when the run has several
  // phases ("In 1.210-3.020 s (phase 2 of 3): "), else empty.
  std::string prefix;
  // How the detail calls the window: "the run" or "that phase".
  const char* noun = "the run";

  double seconds() const { return static_cast<double>(end_ns - start_ns) / 1e9; }
  bool whole_run() const { return start_ns == analysis.start_ns && end_ns == analysis.end_ns; }
};

const CodeSite& SiteOf(const Analysis& analysis, std::uint32_t site) {
  static const CodeSite kUnknown{"<unknown>", "", 0};
  return site < analysis.sites.size() ? analysis.sites[site] : kUnknown;
}

Finding Start(const char* kind, const Scope& scope) {
  Finding f;
  f.kind = kind;
  f.start_ns = scope.start_ns;
  f.end_ns = scope.end_ns;
  f.phase = scope.phase;
  return f;
}

Finding ForThread(const char* kind, const Scope& scope, std::size_t index) {
  Finding f = Start(kind, scope);
  f.thread = scope.threads[index].name;
  f.thread_index = static_cast<int>(index);
  f.gil = scope.threads[index].main_gil;
  return f;
}

void FindGilBound(const RunTrace& trace, const Scope& scope, std::vector<Finding>& out) {
  const double speedup = scope.analysis.gil_tax.speedup_bound;
  for (const GilStats& g : scope.gils) {
    // The GIL's own window: a subinterpreter's or a child's is shorter.
    const double window = static_cast<double>(g.end_ns - g.start_ns);
    const bool whole_scope = g.start_ns == scope.start_ns && g.end_ns == scope.end_ns;
    if (g.busy_fraction < kGilBoundMinBusy || g.contended_fraction < kGilBoundMinContended) continue;
    int competing = 0;
    for (const ThreadStats& t : scope.threads) {
      if (t.main_gil == static_cast<int>(g.id) && t.held_ns > 0 &&
          static_cast<double>(t.waiting_ns) >= kGilBoundMinWaitShare * window) {
        ++competing;
      }
    }
    if (competing < kGilBoundMinThreads) continue;
    Finding f = Start("gil_bound", scope);
    f.gil = static_cast<int>(g.id);
    f.figures = {{"busy_fraction", g.busy_fraction},
                 {"contended_fraction", g.contended_fraction},
                 {"threads", competing},
                 {"speedup_bound", speedup}};
    f.detail = scope.prefix + Format("GIL %u was held %.1f%% of %s and contended %.1f%%: %d threads competed for "
                                     "it and ran one at a time.",
                                     g.id, 100 * g.busy_fraction,
                                     whole_scope ? scope.noun
                                                 : (scope.whole_run() ? "its lifetime" : "its lifetime in that phase"),
                                     100 * g.contended_fraction, competing);
    f.advice = Format("Run the CPU-bound work in processes or in own-GIL subinterpreters (Python 3.12+); "
                      "`gilscope compare %s` measures what each gains (estimate%s: up to %.1fx).",
                      trace.info.script.empty() ? "SCRIPT" : trace.info.script.c_str(),
                      scope.whole_run() ? "" : " for the whole run", speedup);
    out.push_back(std::move(f));
  }
}

void FindConvoys(const Scope& scope, double interval_ms, std::vector<Finding>& out) {
  for (std::size_t i = 0; i < scope.threads.size(); ++i) {
    const ThreadStats& t = scope.threads[i];
    if (t.voluntary_releases < kConvoyMinVoluntaryReleases) continue;
    if (t.voluntary_stretches < kConvoyMinVoluntaryReleases) continue;
    if (t.io_waits < kConvoyMinVoluntaryReleases) continue;
    if (t.io_wait_p50_ms < kConvoyMinMedianWaitIntervals * interval_ms) continue;
    if (t.voluntary_released_p50_ms >= kConvoyMaxMedianReleasedIntervals * interval_ms) continue;
    if (static_cast<double>(t.waiting_ns) < kConvoyMinWaitingShare * static_cast<double>(t.lifetime_ns)) continue;
    Finding f = ForThread("convoy", scope, i);
    const double calls_per_s = scope.seconds() > 0 ? static_cast<double>(t.voluntary_releases) / scope.seconds() : 0;
    f.figures = {{"waiting_s", t.waiting_s},
                 {"io_waits", static_cast<double>(t.io_waits)},
                 {"io_wait_p50_ms", t.io_wait_p50_ms},
                 {"wait_p50_ms", t.wait_p50_ms},
                 {"released_p50_ms", t.voluntary_released_p50_ms},
                 {"voluntary_releases", static_cast<double>(t.voluntary_releases)},
                 {"blocking_calls_per_s", calls_per_s},
                 {"waits", static_cast<double>(t.waits)},
                 {"switch_intervals", t.io_wait_p50_ms / interval_ms}};
    f.detail = scope.prefix +
               Format("%s waited a median %.2f ms (%.1f switch intervals) for each of %llu acquisitions after a "
                      "blocking call that found the GIL held; it made %llu short blocking calls (median %.2f ms, "
                      "%.0f per second in %s) and lost %.3f s waiting.",
                      DescribeThread(t).c_str(), t.io_wait_p50_ms, t.io_wait_p50_ms / interval_ms,
                      static_cast<unsigned long long>(t.io_waits),
                      static_cast<unsigned long long>(t.voluntary_releases), t.voluntary_released_p50_ms, calls_per_s,
                      scope.noun, t.waiting_s);
    f.advice = "A CPU-bound thread keeps the GIL until the switch interval forces it off: move that work to a "
               "process or an own-GIL subinterpreter, or lower sys.setswitchinterval() to shorten each round trip.";
    out.push_back(std::move(f));
  }
}

void FindLongHolds(const Scope& scope, double interval_ms, std::vector<Finding>& out) {
  const double min_ms = std::max(kLongHoldMinIntervals * interval_ms, kLongHoldMinMs);
  for (std::size_t i = 0; i < scope.threads.size(); ++i) {
    const ThreadStats& t = scope.threads[i];
    const HoldRecord& h = t.most_blocking_hold;
    const double hold_ms = static_cast<double>(h.end_ns - h.start_ns) / 1e6;
    const double blocked_ms = static_cast<double>(h.blocked_ns) / 1e6;
    const double unheeded_ms = static_cast<double>(h.unheeded_ns) / 1e6;
    if (hold_ms < min_ms || unheeded_ms < kLongHoldMinUnheededIntervals * interval_ms) continue;
    const ThreadStats& life = scope.analysis.threads[i];
    if (life.cpu_s >= 0 && life.cpu_s < kLongHoldMinOnCore * life.held_s) continue;
    Finding f = ForThread("long_hold", scope, i);
    const CodeSite& site = SiteOf(scope.analysis, h.site);
    f.figures = {{"hold_ms", hold_ms},
                 {"blocked_ms", blocked_ms},
                 {"unheeded_ms", unheeded_ms},
                 {"switch_intervals", hold_ms / interval_ms},
                 {"start_s", static_cast<double>(h.start_ns - scope.analysis.start_ns) / 1e9}};
    f.detail = scope.prefix +
               Format("%s held the GIL for %.1f ms in one go (%.0f switch intervals) and kept it %.1f ms after "
                      "another thread asked for it; it let go in %s.",
                      DescribeThread(t).c_str(), hold_ms, hold_ms / interval_ms, unheeded_ms,
                      DescribeSite(site).c_str());
    f.advice = "Python code gives the GIL up within microseconds when asked, so this is C code keeping it: "
               "release the GIL around the long call (Py_BEGIN_ALLOW_THREADS) or split the work.";
    out.push_back(std::move(f));
  }
}

void FindSwitchStorms(const Scope& scope, double interval_ms, std::vector<Finding>& out) {
  if (scope.seconds() <= 0) return;
  for (const GilStats& g : scope.gils) {
    const double per_second = static_cast<double>(g.switches) / scope.seconds();
    if (per_second < kStormMinSwitchesPerSecond || g.switches < kStormMinSwitches) continue;
    if (g.holds == 0 || g.hold_p50_ms >= kStormMaxMedianHoldIntervals * interval_ms) continue;
    if (g.handoff_fraction < kStormMinHandoffShare) continue;
    if (static_cast<double>(g.handoff_ns) / 1e6 < kStormMinHandoffMs) continue;
    Finding f = Start("switch_storm", scope);
    f.gil = static_cast<int>(g.id);
    f.figures = {{"switches_per_s", per_second},
                 {"hold_p50_ms", g.hold_p50_ms},
                 {"handoff_fraction", g.handoff_fraction},
                 {"switches", static_cast<double>(g.switches)}};
    f.detail = scope.prefix +
               Format("GIL %u changed hands %.0f times per second with a median hold of %.3f ms; hand-off gaps "
                      "(the GIL free while a thread waited) took %.1f%% of %s.",
                      g.id, per_second, g.hold_p50_ms, 100 * g.handoff_fraction, scope.noun);
    f.advice = "Threads ping-pong on the GIL: do more work per wake-up (batch queue items, read larger chunks) "
               "or use fewer threads.";
    out.push_back(std::move(f));
  }
}

void FindAll(const RunTrace& trace, const Scope& scope, double interval_ms, std::vector<Finding>& out) {
  FindGilBound(trace, scope, out);
  FindConvoys(scope, interval_ms, out);
  FindLongHolds(scope, interval_ms, out);
  FindSwitchStorms(scope, interval_ms, out);
}

int KindRank(const std::string& kind) {
  static const char* const kOrder[] = {"gil_bound", "convoy", "long_hold", "switch_storm"};
  for (int r = 0; r < 4; ++r) {
    if (kind == kOrder[r]) return r;
  }
  return 4;
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
  const bool several = analysis.phases.size() > 1;
  const Scope whole{analysis,        analysis.start_ns, analysis.end_ns, analysis.gils, analysis.threads,
                    several ? -1 : 0, several ? "Over the whole run (no single phase shows it): " : "", "the run"};
  if (!several) {
    FindAll(trace, whole, interval_ms, out);
    return out;
  }
  for (std::size_t p = 0; p < analysis.phases.size(); ++p) {
    const Phase& phase = analysis.phases[p];
    const Scope scope{analysis,
                      phase.start_ns,
                      phase.end_ns,
                      phase.gils,
                      phase.threads,
                      static_cast<int>(p),
                      Format("In %.3f-%.3f s (phase %zu of %zu): ",
                             static_cast<double>(phase.start_ns - analysis.start_ns) / 1e9,
                             static_cast<double>(phase.end_ns - analysis.start_ns) / 1e9, p + 1,
                             analysis.phases.size()),
                      "that phase"};
    FindAll(trace, scope, interval_ms, out);
  }
  // The whole run adds only what no phase shows (see findings.h).
  std::vector<Finding> over_run;
  FindAll(trace, whole, interval_ms, over_run);
  const std::size_t in_phases = out.size();
  for (Finding& f : over_run) {
    const bool shown = std::any_of(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(in_phases),
                                   [&](const Finding& g) {
                                     return g.kind == f.kind && g.thread_index == f.thread_index && g.gil == f.gil;
                                   });
    if (!shown) out.push_back(std::move(f));
  }
  std::stable_sort(out.begin(), out.end(), [](const Finding& a, const Finding& b) {
    return std::make_tuple(KindRank(a.kind), a.gil, a.thread_index, a.start_ns) <
           std::make_tuple(KindRank(b.kind), b.gil, b.thread_index, b.start_ns);
  });
  return out;
}

}  // namespace gilscope::report
