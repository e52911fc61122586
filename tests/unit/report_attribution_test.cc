// Analyze() beyond the GIL states: Python attribution (kFrame), per-thread
// CPU time, markers, hold statistics, hand-off time and the GIL tax, on
// hand-built traces whose answers are worked out in the comments.

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "report/analysis.h"
#include "report_test_traces.h"

namespace gilscope::report {
namespace {

using namespace gilscope::report::testing;  // NOLINT: test vocabulary

// (function, file, line, ms) of a SiteTime list, for compact expectations.
using Row = std::tuple<std::string, std::string, int, double>;

std::vector<Row> Rows(const std::vector<SiteTime>& sites) {
  std::vector<Row> rows;
  for (const SiteTime& s : sites) {
    EXPECT_DOUBLE_EQ(s.seconds, static_cast<double>(s.ns) / 1e9);
    rows.emplace_back(s.function, s.file, s.line, static_cast<double>(s.ns) / 1e6);
  }
  return rows;
}

// One thread, window 0..100 ms, code f (id 1, a.py) and g (id 2, b.py):
//
//   0..10   holds, forced off in f:10          held f:10 += 10
//   10..12  waits
//   12..20  holds, voluntary release in g:20   held g:20 += 8
//   20..50  released (blocked in g:20)         released g:20 += 30
//   50..51  waits
//   51..60  holds, voluntary release in f:10   held f:10 += 9
//   60..70  released (blocked in f:10)         released f:10 += 10
//   70..80  holds, released with no frame      held <unknown> += 10
//   80..100 released, no frame, to the window end: released <unknown> += 20
RunTrace AttributionRun() {
  RunTrace run = EmptyRun(100);
  run.gils = {Gil(0, 0xA, 0)};
  run.code = {Code(1, "f", "a.py", 1), Code(2, "g", "b.py", 15)};
  run.threads.push_back(Thread("T", 1,
                               {Tstate(0xA), AcquiredAtStart(), Frame(1, 10), Released(10, true), Request(10),
                                Acquired(12), Frame(2, 20), Released(20, false), Request(50), Acquired(51),
                                Frame(1, 10), Released(60, false), Request(70), Acquired(70), Released(80, false)}));
  return run;
}

TEST(ReportAttribution, HoldsGoToTheFrameBeforeTheirRelease) {
  const Analysis a = Analyze(AttributionRun());
  const std::vector<Row> expected = {{"f", "a.py", 10, 19.0}, {"<unknown>", "", 0, 10.0}, {"g", "b.py", 20, 8.0}};
  EXPECT_EQ(Rows(a.threads[0].held_by_function), expected);
  std::uint64_t total = 0;
  for (const SiteTime& s : a.threads[0].held_by_function) total += s.ns;
  EXPECT_EQ(total, a.threads[0].held_ns) << "every held nanosecond is attributed somewhere";
}

// A hold that ends with its thread names "<thread exit>": an exit while
// holding (T1, 30..50 ms), and a forked child's thread still holding when
// its GIL's window closed at the child's _exit (T2 on GIL 1, 40..70 ms). A
// hold cut by the run's own end (T3, 80..100) is still running, so unknown.
TEST(ReportAttribution, AHoldThatEndsWithItsThreadIsNamedThreadExit) {
  RunTrace run = EmptyRun(100);
  run.gils = {Gil(0, 0xA, 0), Gil(1, 0, 0)};
  run.gils[1].start_ns = At(20);
  run.gils[1].end_ns = At(70);
  run.code = {Code(1, "f", "a.py", 1)};
  run.threads.push_back(Thread("T1", 1, {Tstate(0xA), Request(10), Acquired(10), Frame(1, 3), Released(20, true),
                                         Request(30), Acquired(30), Exit(50)}));
  run.threads.push_back(Thread("T2", 2, {Tstate(0xB), Request(40, 1), Acquired(40, 1)}));
  run.threads.push_back(Thread("T3", 3, {Tstate(0xC), Request(80), Acquired(80)}));
  const Analysis a = Analyze(run);
  EXPECT_EQ(Rows(a.threads[0].held_by_function),
            (std::vector<Row>{{"<thread exit>", "", 0, 20.0}, {"f", "a.py", 3, 10.0}}));
  EXPECT_EQ(Rows(a.threads[1].held_by_function), (std::vector<Row>{{"<thread exit>", "", 0, 30.0}}));
  EXPECT_EQ(Rows(a.threads[2].held_by_function), (std::vector<Row>{{"<unknown>", "", 0, 20.0}}));
}

TEST(ReportAttribution, VoluntaryReleasesGoToTheirCallSite) {
  const Analysis a = Analyze(AttributionRun());
  const std::vector<Row> expected = {{"g", "b.py", 20, 30.0}, {"<unknown>", "", 0, 20.0}, {"f", "a.py", 10, 10.0}};
  EXPECT_EQ(Rows(a.threads[0].released_at), expected);
}

TEST(ReportAttribution, IntervalsCarryTheirSite) {
  const Analysis a = Analyze(AttributionRun());
  const auto& ivs = a.threads[0].intervals;
  ASSERT_EQ(ivs.size(), 6u);  // 4 holds, 2 waits (the one at 70 is empty)
  auto site_of = [&](std::size_t k) { return a.sites.at(ivs[k].site).function; };
  EXPECT_EQ(site_of(0), "f");
  EXPECT_TRUE(ivs[0].forced_end);
  EXPECT_EQ(ivs[1].state, GilState::kWaiting);
  EXPECT_EQ(ivs[1].site, kUnknownSite);
  EXPECT_EQ(site_of(2), "g");
  EXPECT_FALSE(ivs[2].forced_end);
  EXPECT_EQ(ivs[5].state, GilState::kHolding);
  EXPECT_EQ(ivs[5].site, kUnknownSite);
  EXPECT_EQ(a.sites[kUnknownSite].function, "<unknown>");
  // The longest hold: 0..10 in f (70..80 ties it but came later).
  const HoldRecord& longest = a.threads[0].longest_hold;
  EXPECT_EQ(longest.start_ns, At(0));
  EXPECT_EQ(longest.end_ns, At(10));
  EXPECT_EQ(longest.unheeded_ns, 0u);
  EXPECT_EQ(a.sites.at(longest.site).function, "f");
}

TEST(ReportAttribution, UnknownCodeKeepsItsLineAndDuplicateCodeIsOneSite) {
  // Code ids 3 and 4 name the same function and file (a module reloaded):
  // one site. Code id 99 is not in the table: "<unknown>" at its line.
  RunTrace run = EmptyRun(100);
  run.gils = {Gil(0, 0, 0)};
  run.code = {Code(3, "h", "c.py", 1), Code(4, "h", "c.py", 1)};
  run.threads.push_back(Thread("T", 1,
                               {Request(0), Acquired(0), Frame(3, 7), Released(10, true), Request(10), Acquired(10),
                                Frame(4, 7), Released(15, true), Request(15), Acquired(15), Frame(99, 5),
                                Released(40, true)}));
  const Analysis a = Analyze(run);
  const std::vector<Row> expected = {{"<unknown>", "", 5, 25.0}, {"h", "c.py", 7, 15.0}};
  EXPECT_EQ(Rows(a.threads[0].held_by_function), expected);
  EXPECT_EQ(a.sites.size(), 3u);  // unknown, h:7, <unknown>:5
}

TEST(ReportAttribution, AFrameNamesOnlyTheReleaseRightAfterIt) {
  // The frame before the release at 10 must not leak into the release at 20,
  // which had none (its kFrame was dropped).
  RunTrace run = EmptyRun(30);
  run.gils = {Gil(0, 0, 0)};
  run.code = {Code(1, "f", "a.py", 1)};
  run.threads.push_back(Thread("T", 1,
                               {Request(0), Acquired(0), Frame(1, 3), Released(10, false), Request(12),
                                Acquired(12), Released(20, false)}));
  const Analysis a = Analyze(run);
  const std::vector<Row> expected = {{"f", "a.py", 3, 10.0}, {"<unknown>", "", 0, 8.0}};
  EXPECT_EQ(Rows(a.threads[0].held_by_function), expected);
}

TEST(ReportAttribution, AFrameLeftByADroppedReleaseNamesNothingLater) {
  // The release after the frame at 10 was dropped (the thread asks again
  // while holding); the release at 30 had no frame of its own.
  RunTrace run = EmptyRun(40);
  run.gils = {Gil(0, 0, 0)};
  run.code = {Code(1, "f", "a.py", 1)};
  run.threads.push_back(Thread("T", 1,
                               {Request(0), Acquired(0), Frame(1, 3), Request(10), Acquired(12),
                                Released(30, false)}));
  const Analysis a = Analyze(run);
  const std::vector<Row> expected = {{"<unknown>", "", 0, 28.0}};
  EXPECT_EQ(Rows(a.threads[0].held_by_function), expected);
}

// Code ids are addresses in the process that recorded them: two spawned
// processes can use one id for different functions, and a forked child that
// wrote no names (killed) inherited its parent's code. Each process, 10 ms:
//   pid 4242 (runner): id 7 = parent_fn        holds 0..10 in 7
//   pid 6001 (spawn):  id 7 = spawned_fn       holds 0..10 in 7
//   pid 6002 (fork of 4242, no names): id 7 -> parent_fn (inherited)
//   pid 6003 (spawn, no names): id 7 -> <unknown>, never another process's
//   pid 6004 (spawn): id 9 only in a pid-0 entry (an older file) -> old_fn
TEST(ReportAttribution, CodeIdsAreResolvedInTheProcessThatRecordedThem) {
  RunTrace run = EmptyRun(20);
  run.gils = {Gil(0, 0, 0), Gil(1, 0, 0), Gil(2, 0, 0), Gil(3, 0, 0), Gil(4, 0, 0)};
  run.processes = {{4242, 1, "runner", "ok", 0, -1},
                   {6001, 4242, "spawn", "ok", 0, -1},
                   {6002, 4242, "fork", "crashed", 137, -1},
                   {6003, 4242, "spawn", "ok", 0, -1},
                   {6004, 4242, "spawn", "ok", 0, -1}};
  run.code = {Code(7, "parent_fn", "main.py", 3), Code(7, "spawned_fn", "worker.py", 5), Code(9, "old_fn", "old.py", 1)};
  run.code[0].pid = 4242;
  run.code[1].pid = 6001;
  run.code[2].pid = 0;
  const std::uint32_t pids[] = {4242, 6001, 6002, 6003, 6004};
  for (std::uint8_t g = 0; g < 5; ++g) {
    ThreadTrace t = Thread("MainThread", 100 + g,
                           {Tstate(0xA), AcquiredAtStart(g), Frame(g == 4 ? 9 : 7, 12), Released(10, false, g)});
    t.pid = pids[g];
    run.threads.push_back(t);
  }
  const Analysis a = Analyze(run);
  auto top = [&](std::size_t i) { return a.threads[i].held_by_function.at(0).function; };
  EXPECT_EQ(top(0), "parent_fn");
  EXPECT_EQ(top(1), "spawned_fn");
  EXPECT_EQ(top(2), "parent_fn");
  EXPECT_EQ(top(3), "<unknown>");
  EXPECT_EQ(top(4), "old_fn");
  EXPECT_EQ(a.threads[1].held_by_function.at(0).file, "worker.py");
  EXPECT_DOUBLE_EQ(a.threads[1].held_by_function.at(0).seconds, 0.010);
}

TEST(ReportAnalysisExtras, CopiesCpuTime) {
  RunTrace run = SmallRun();
  run.threads[0].cpu_s = 1.25;
  const Analysis a = Analyze(run);
  EXPECT_DOUBLE_EQ(a.threads[0].cpu_s, 1.25);
  EXPECT_LT(a.threads[1].cpu_s, 0) << "unknown stays unknown";
}

TEST(ReportAnalysisExtras, HoldStatisticsHandOffAndBlockingHolds) {
  const Analysis a = Analyze(SmallRun());
  // Holds: A 20, 30; B 18, 18 (the last cut by the window end).
  EXPECT_EQ(a.threads[0].holds, 2u);
  EXPECT_DOUBLE_EQ(a.threads[0].hold_p50_ms, 20.0);
  EXPECT_DOUBLE_EQ(a.threads[1].hold_p50_ms, 18.0);
  EXPECT_EQ(a.threads[0].longest_hold.start_ns, At(40));
  EXPECT_EQ(a.threads[0].longest_hold.end_ns, At(70));
  // GIL: holds 20, 18, 30, 18 -> nearest-rank median 18.
  EXPECT_EQ(a.gils[0].holds, 4u);
  EXPECT_DOUBLE_EQ(a.gils[0].hold_p50_ms, 18.0);
  // Free while a thread waited: 38..40 (A waits) and 80..82 (B waits).
  EXPECT_EQ(a.gils[0].handoff_ns, 4 * kMs);
  EXPECT_DOUBLE_EQ(a.gils[0].handoff_fraction, 0.04);
  // A's hold 0..20: B waited 5..20, its drop request at 10 went unheeded
  // until 20. B's hold 20..38: A waited 30..38, drop request at 35.
  const HoldRecord& a_hold = a.threads[0].most_blocking_hold;
  EXPECT_EQ(a_hold.start_ns, At(0));
  EXPECT_EQ(a_hold.end_ns, At(20));
  EXPECT_EQ(a_hold.blocked_ns, 15 * kMs);
  EXPECT_EQ(a_hold.unheeded_ns, 10 * kMs);
  const HoldRecord& b_hold = a.threads[1].most_blocking_hold;
  EXPECT_EQ(b_hold.start_ns, At(20));
  EXPECT_EQ(b_hold.blocked_ns, 8 * kMs);
  EXPECT_EQ(b_hold.unheeded_ns, 3 * kMs);
}

TEST(ReportAnalysisExtras, VoluntaryReleasedStretchesEndAtTheNextRequest) {
  // Stretches after voluntary releases: 20..50 (30) and 60..70 (10); the
  // one from 80 never ends in a request, and the forced one is not counted.
  const Analysis a = Analyze(AttributionRun());
  EXPECT_EQ(a.threads[0].voluntary_stretches, 2u);
  EXPECT_DOUBLE_EQ(a.threads[0].voluntary_released_p50_ms, 10.0);
}

TEST(ReportMarkers, InstantsAndNestedRegionsClippedToTheWindow) {
  RunTrace run = EmptyRun(100);
  run.gils = {Gil(0, 0, 0)};
  run.marker_names = {"tick", "outer", "inner"};
  run.threads.push_back(Thread("M", 1,
                               {Mark(-5, 0),  // before the window: dropped
                                Request(1), Acquired(2), Mark(5, 0), RegionBegin(10, 1), RegionBegin(20, 2),
                                RegionEnd(30, 2), RegionEnd(40, 1), Mark(50, 7), RegionBegin(90, 1),
                                Released(95, false), Exit(98)}));
  const Analysis a = Analyze(run);
  struct Expected {
    std::string name;
    std::int64_t start, end;
    bool region, open;
    std::uint32_t depth;
  };
  const std::vector<Expected> expected = {{"tick", 5, 5, false, false, 0},     {"outer", 10, 40, true, false, 0},
                                          {"inner", 20, 30, true, false, 1},   {"marker 7", 50, 50, false, false, 0},
                                          {"outer", 90, 98, true, true, 0}};
  ASSERT_EQ(a.markers.size(), expected.size());
  for (std::size_t k = 0; k < expected.size(); ++k) {
    SCOPED_TRACE(k);
    EXPECT_EQ(a.markers[k].name, expected[k].name);
    EXPECT_EQ(a.markers[k].thread, 0u);
    EXPECT_EQ(a.markers[k].start_ns, At(expected[k].start));
    EXPECT_EQ(a.markers[k].end_ns, At(expected[k].end));
    EXPECT_EQ(a.markers[k].region, expected[k].region);
    EXPECT_EQ(a.markers[k].open, expected[k].open);
    EXPECT_EQ(a.markers[k].depth, expected[k].depth);
  }
  // Markers leave the GIL figures alone: lifetime 1..98, held 2..95.
  EXPECT_EQ(a.threads[0].lifetime_ns, 97 * kMs);
  EXPECT_EQ(a.threads[0].held_ns, 93 * kMs);
}

// Two threads taking turns in 5 ms slices, each forced off for the other:
// always one holding and one waiting.
RunTrace PingPong(std::int64_t window_ms, int cores) {
  RunTrace run = EmptyRun(window_ms);
  run.info.cpu_count = cores;
  run.gils = {Gil(0, 0xA, 0)};
  std::vector<Event> a = {Tstate(0xA), AcquiredAtStart()}, b = {Tstate(0xB), Request(0)};
  for (std::int64_t t = 5; t < window_ms; t += 10) {
    a.push_back(Released(t, true));
    a.push_back(Request(t));
    b.push_back(Acquired(t));
    if (t + 5 < window_ms) {
      b.push_back(Released(t + 5, true));
      b.push_back(Request(t + 5));
      a.push_back(Acquired(t + 5));
    }
  }
  run.threads.push_back(Thread("A", 1, std::move(a)));
  run.threads.push_back(Thread("B", 2, std::move(b)));
  return run;
}

TEST(ReportGilTax, TwoCpuBoundThreadsOnTwoCoresCouldRunTwiceAsFast) {
  const Analysis a = Analyze(PingPong(100, 2));
  // Each held 50 ms and waited 50 ms; both runnable the whole run.
  EXPECT_DOUBLE_EQ(a.gil_tax.waiting_thread_s, 0.1);
  EXPECT_DOUBLE_EQ(a.gil_tax.ideal_wall_s, 0.05);
  EXPECT_DOUBLE_EQ(a.gil_tax.speedup_bound, 2.0);
  EXPECT_EQ(a.gil_tax.cpu_count, 2);
}

TEST(ReportGilTax, OneCoreGainsNothing) {
  const Analysis a = Analyze(PingPong(100, 1));
  EXPECT_DOUBLE_EQ(a.gil_tax.ideal_wall_s, 0.1);
  EXPECT_DOUBLE_EQ(a.gil_tax.speedup_bound, 1.0);
}

TEST(ReportGilTax, FollowsTheCriticalPathOfUnevenWork) {
  // A has 30 ms of work, B 10 ms; they share fairly until B is done at 20,
  // then A runs alone: 40 ms. In parallel: 30 ms (A's work), not 20.
  RunTrace run = EmptyRun(40);
  run.gils = {Gil(0, 0xA, 0)};
  run.threads.push_back(Thread("A", 1,
                               {Tstate(0xA), AcquiredAtStart(), Released(5, true), Request(5), Acquired(10),
                                Released(15, true), Request(15), Acquired(20)}));
  run.threads.push_back(Thread("B", 2,
                               {Tstate(0xB), Request(0), Acquired(5), Released(10, true), Request(10),
                                Acquired(15), Released(20, false), Exit(20)}));
  const Analysis a = Analyze(run);
  EXPECT_DOUBLE_EQ(a.gil_tax.ideal_wall_s, 0.03);
  EXPECT_NEAR(a.gil_tax.speedup_bound, 40.0 / 30.0, 1e-12);
}

TEST(ReportGilTax, IoBoundRunGainsNothing) {
  // Two threads each holding 1 ms in every 10 ms and never waiting.
  RunTrace run = EmptyRun(100);
  run.gils = {Gil(0, 0, 0)};
  std::vector<Event> a, b;
  for (std::int64_t t = 0; t < 100; t += 10) {
    a.insert(a.end(), {Request(t), Acquired(t), Released(t + 1, false)});
    b.insert(b.end(), {Request(t + 5), Acquired(t + 5), Released(t + 6, false)});
  }
  run.threads.push_back(Thread("A", 1, std::move(a)));
  run.threads.push_back(Thread("B", 2, std::move(b)));
  const Analysis a_ = Analyze(run);
  EXPECT_DOUBLE_EQ(a_.gil_tax.waiting_thread_s, 0.0);
  EXPECT_DOUBLE_EQ(a_.gil_tax.ideal_wall_s, 0.1);
  EXPECT_DOUBLE_EQ(a_.gil_tax.speedup_bound, 1.0);
}

TEST(ReportGilTax, SmallRunByHand) {
  // Rates (ideal ms per ms) in SmallRun, with a forced-off thread runnable
  // until it asks again (A 20..30, B 38..80):
  //   0..5 1 | 5..20 1/2 | 20..30 1/2 | 30..38 1/2 | 38..40 1 (no holder)
  //   40..70 1/2 | 70..80 1 (no holder) | 80..82 1 | 82..100 1
  //   = 5 + 7.5 + 5 + 4 + 2 + 15 + 10 + 2 + 18 = 68.5 ms
  const Analysis a = Analyze(SmallRun());
  EXPECT_NEAR(a.gil_tax.ideal_wall_s, 0.0685, 1e-12);
  EXPECT_NEAR(a.gil_tax.speedup_bound, 100.0 / 68.5, 1e-9);
  EXPECT_DOUBLE_EQ(a.gil_tax.waiting_thread_s, 0.027);
}

TEST(ReportGilTax, SeparateGilsAlreadyRanInParallel) {
  RunTrace run = EmptyRun(100);
  run.gils = {Gil(0, 0xA, 0), Gil(1, 0xB, 0)};
  run.threads.push_back(Thread("A", 1, {Tstate(0xA), AcquiredAtStart(0)}));
  run.threads.push_back(Thread("B", 2, {Tstate(0xB), AcquiredAtStart(1)}));
  const Analysis a = Analyze(run);
  EXPECT_DOUBLE_EQ(a.gil_tax.speedup_bound, 1.0);
}

TEST(ReportGilTax, EmptyWindowIsNoGain) {
  RunTrace run = EmptyRun(0);
  const Analysis a = Analyze(run);
  EXPECT_DOUBLE_EQ(a.gil_tax.ideal_wall_s, 0.0);
  EXPECT_DOUBLE_EQ(a.gil_tax.speedup_bound, 1.0);
}

TEST(ReportAnalysisExtras, TimelineEventCountMatchesWhatTheTraceWriterDraws) {
  // SmallRun: 7 thread intervals + 4 holder slices + 7 waiting steps.
  EXPECT_EQ(TimelineEventCount(Analyze(SmallRun())), 18u);
}

}  // namespace
}  // namespace gilscope::report
