// FindIssues() on traces built to show (or narrowly miss) each pattern, with
// the figures worked out by hand.

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "report/analysis.h"
#include "report/findings.h"
#include "report_test_traces.h"

namespace gilscope::report {
namespace {

using namespace gilscope::report::testing;  // NOLINT: test vocabulary

std::vector<Finding> Of(const std::vector<Finding>& all, const std::string& kind) {
  std::vector<Finding> out;
  for (const Finding& f : all) {
    if (f.kind == kind) out.push_back(f);
  }
  return out;
}

std::vector<Finding> Find(const RunTrace& run) { return FindIssues(run, Analyze(run)); }

TEST(ReportFindings, QuietRunHasNone) { EXPECT_TRUE(Find(SmallRun()).empty()); }

// ConvoyRun without its "crunch" region: one phase, the whole run.
RunTrace OnePhaseConvoyRun(std::size_t slots) { return ConvoyRun(slots, "io", /*crunch=*/false); }

TEST(ReportFindings, ConvoyNamesTheIoThreadWithItsLostTimeAndRoundTrip) {
  // ConvoyRun(44): io makes 21 round trips; each wait is 6 ms (1.2 switch
  // intervals) after a 3.9 ms blocking call (20 of them end in a request,
  // and those 20 waits found the GIL held after a voluntary release: the
  // first follows no release). 21 blocking calls in 0.222 s: 95 per second.
  const RunTrace run = OnePhaseConvoyRun(44);
  const std::vector<Finding> convoys = Of(Find(run), "convoy");
  ASSERT_EQ(convoys.size(), 1u);
  const Finding& f = convoys[0];
  EXPECT_EQ(f.thread, "io");
  EXPECT_EQ(f.thread_index, 3);
  EXPECT_DOUBLE_EQ(f.figures.at("io_wait_p50_ms"), 6.0);
  EXPECT_DOUBLE_EQ(f.figures.at("io_waits"), 20.0);
  EXPECT_DOUBLE_EQ(f.figures.at("wait_p50_ms"), 6.0);
  EXPECT_NEAR(f.figures.at("released_p50_ms"), 3.9, 1e-9);
  EXPECT_NEAR(f.figures.at("waiting_s"), 21 * 0.006, 1e-12);
  EXPECT_DOUBLE_EQ(f.figures.at("voluntary_releases"), 21.0);
  EXPECT_NEAR(f.figures.at("blocking_calls_per_s"), 21 / 0.222, 1e-9);
  EXPECT_NEAR(f.figures.at("switch_intervals"), 1.2, 1e-12);
  EXPECT_EQ(f.detail,
            "io (1004) waited a median 6.00 ms (1.2 switch intervals) for each of 20 acquisitions after a blocking "
            "call that found the GIL held; it made 21 short blocking calls (median 3.90 ms, 95 per second in the "
            "run) and lost 0.126 s waiting.");
  EXPECT_FALSE(f.advice.empty());
  // One phase: the finding is the run's.
  EXPECT_EQ(f.phase, 0);
  EXPECT_EQ(f.start_ns, run.start_ns);
  EXPECT_EQ(f.end_ns, run.end_ns);
}

TEST(ReportFindings, ConvoyNeedsARepeatedPattern) {
  // 40 slots: 19 round trips, below the 20 that make a pattern.
  EXPECT_TRUE(Of(Find(OnePhaseConvoyRun(40)), "convoy").empty());
}

TEST(ReportFindings, ConvoyNeedsWaitsThatFoundTheGilHeld) {
  // The same round trips, each request folded into its acquisition (the
  // GIL free when io asked; its 6 ms "wait" is then the clock, not the GIL):
  // no io wait, so no convoy, though every wait is 6 ms.
  RunTrace run = OnePhaseConvoyRun(44);
  std::vector<Event> folded;
  for (const Event& e : run.threads[3].events) {
    if (e.kind == EventKind::kRequest) continue;
    folded.push_back(e);
    if (e.kind == EventKind::kAcquired) {
      folded.back().flags |= recorder::kFlagRequestFolded;
      folded.back().aux = 6 * kMs;
    }
  }
  run.threads[3].events = folded;
  const Analysis a = Analyze(run);
  EXPECT_EQ(a.threads[3].io_waits, 0u);
  EXPECT_DOUBLE_EQ(a.threads[3].wait_p50_ms, 6.0);
  EXPECT_TRUE(Of(FindIssues(run, a), "convoy").empty());
}

TEST(ReportFindings, ConvoyNeedsShortBlockingCalls) {
  // The same run with a 30 ms switch interval: the 6 ms waits are now a
  // fifth of an interval, not the interval-long wait of a convoy.
  RunTrace run = OnePhaseConvoyRun(44);
  run.info.switch_interval_s = 0.030;
  EXPECT_TRUE(Of(Find(run), "convoy").empty());
  // And with a 3 ms interval the 3.9 ms blocking calls are longer than it.
  run.info.switch_interval_s = 0.003;
  EXPECT_TRUE(Of(Find(run), "convoy").empty());
}

TEST(ReportFindings, GilBoundWhenBusyAndContendedWithCompetingThreads) {
  // ConvoyRun: the GIL is held from 0 to the end; someone waits from 0.5 ms
  // on; worker-0, worker-1 and io each wait far more than 1% of the run.
  const RunTrace run = OnePhaseConvoyRun(44);
  const Analysis a = Analyze(run);
  const std::vector<Finding> bound = Of(FindIssues(run, a), "gil_bound");
  ASSERT_EQ(bound.size(), 1u);
  EXPECT_EQ(bound[0].thread, "");
  EXPECT_EQ(bound[0].gil, 0);
  EXPECT_DOUBLE_EQ(bound[0].figures.at("busy_fraction"), 1.0);
  EXPECT_DOUBLE_EQ(bound[0].figures.at("contended_fraction"), a.gils[0].contended_fraction);
  EXPECT_GT(a.gils[0].contended_fraction, 0.99);
  EXPECT_DOUBLE_EQ(bound[0].figures.at("threads"), 3.0);
  EXPECT_DOUBLE_EQ(bound[0].figures.at("speedup_bound"), a.gil_tax.speedup_bound);
  EXPECT_NE(bound[0].advice.find("gilscope compare convoy.py"), std::string::npos) << bound[0].advice;
}

TEST(ReportFindings, NotGilBoundBelowNinetyPercentBusy) {
  // SmallRun: busy 86%.
  EXPECT_TRUE(Of(Find(SmallRun()), "gil_bound").empty());
}

// C holds the GIL 0..100 ms (a C call, frame ext.crunch at ext.py:42); W
// asks at 10 and its timeout sets the drop request at `drop_ms`; W gets the
// GIL at 100. Interval 5 ms.
RunTrace LongHoldRun(std::int64_t drop_ms) {
  RunTrace run = EmptyRun(120);
  run.gils = {Gil(0, 0xC, 1)};
  run.code = {Code(7, "crunch", "ext.py", 40)};
  run.threads.push_back(Thread("C", 1, {Tstate(0xC), AcquiredAtStart(), Frame(7, 42), Released(100, true)}));
  run.threads.push_back(Thread("W", 2,
                               {Tstate(0xD), Request(10), Timeout(drop_ms, true), Acquired(100),
                                Released(105, false)}));
  return run;
}

TEST(ReportFindings, LongHoldNamesTheHolderAndWhereItLetGo) {
  // Hold 100 ms = 20 intervals; the drop request at 15 went unheeded 85 ms.
  const std::vector<Finding> holds = Of(Find(LongHoldRun(15)), "long_hold");
  ASSERT_EQ(holds.size(), 1u);
  const Finding& f = holds[0];
  EXPECT_EQ(f.thread, "C");
  EXPECT_DOUBLE_EQ(f.figures.at("hold_ms"), 100.0);
  EXPECT_DOUBLE_EQ(f.figures.at("unheeded_ms"), 85.0);
  EXPECT_DOUBLE_EQ(f.figures.at("blocked_ms"), 90.0);
  EXPECT_DOUBLE_EQ(f.figures.at("switch_intervals"), 20.0);
  EXPECT_NE(f.detail.find("crunch (ext.py:42)"), std::string::npos) << f.detail;
}

TEST(ReportFindings, NoLongHoldWhenTheHolderWasOffTheCores) {
  // The same hold by a thread that ran 40 ms of the 100 it held the GIL: the
  // scheduler kept it waiting, not C code. With 60 ms it is C code again.
  RunTrace run = LongHoldRun(15);
  run.threads[0].cpu_s = 0.040;
  EXPECT_TRUE(Of(Find(run), "long_hold").empty());
  run.threads[0].cpu_s = 0.060;
  EXPECT_EQ(Of(Find(run), "long_hold").size(), 1u);
}

TEST(ReportFindings, NoLongHoldWhenTheWaiterAskedLate) {
  // W was starved of CPU: its drop request came at 97 and was heeded by 100.
  // It waited 90 ms, but the holder did nothing wrong.
  EXPECT_TRUE(Of(Find(LongHoldRun(97)), "long_hold").empty());
}

TEST(ReportFindings, NoLongHoldWhenNobodyAsked) {
  RunTrace run = EmptyRun(1000);
  run.gils = {Gil(0, 0xA, 0)};
  run.threads.push_back(Thread("alone", 1, {Tstate(0xA), AcquiredAtStart()}));
  EXPECT_TRUE(Find(run).empty());
}

// A and B hand the GIL back and forth voluntarily in 200 us cycles: A holds
// from 0, B from 100, each for `hold_us`, and each asks again 10 us after
// letting go. With 50 us holds:
//   [0,50) A holds, B waits | [50,100) free, B waits | [100,150) B holds,
//   A waits | [150,200) free, A waits
// so half the run is hand-off gaps, with 10,000 switches per second.
RunTrace StormRun(int cycles, std::int64_t hold_us) {
  RunTrace run = EmptyRun(0);
  run.end_ns = AtUs(200 * cycles);
  run.gils = {Gil(0, 0, 0)};
  auto event = [](EventKind kind, std::int64_t us) { return Make(kind, AtUs(us), 0, 0); };
  std::vector<Event> a = {Tstate(0xA), event(EventKind::kRequest, 0)};
  std::vector<Event> b = {Tstate(0xB), event(EventKind::kRequest, hold_us + 10)};
  for (int c = 0; c < cycles; ++c) {
    const std::int64_t base = 200 * c;
    a.push_back(event(EventKind::kAcquired, base));
    a.push_back(event(EventKind::kReleased, base + hold_us));
    a.push_back(event(EventKind::kRequest, base + hold_us + 10));
    b.push_back(event(EventKind::kAcquired, base + 100));
    b.push_back(event(EventKind::kReleased, base + 100 + hold_us));
    b.push_back(event(EventKind::kRequest, base + 100 + hold_us + 10));
  }
  run.threads.push_back(Thread("A", 1, std::move(a)));
  run.threads.push_back(Thread("B", 2, std::move(b)));
  return run;
}

TEST(ReportFindings, SwitchStormWhenHandOffsEatTheRun) {
  const RunTrace run = StormRun(500, 50);  // 100 ms
  const std::vector<Finding> storms = Of(Find(run), "switch_storm");
  ASSERT_EQ(storms.size(), 1u);
  const Finding& f = storms[0];
  EXPECT_EQ(f.thread, "");
  // Every acquisition changes thread state (the first one from 0).
  EXPECT_DOUBLE_EQ(f.figures.at("switches"), 1000.0);
  EXPECT_NEAR(f.figures.at("switches_per_s"), 10000.0, 1e-6);
  EXPECT_DOUBLE_EQ(f.figures.at("hold_p50_ms"), 0.05);
  // 100 us of gaps per cycle, less 10 us in the first (B asks at 60).
  EXPECT_NEAR(f.figures.at("handoff_fraction"), (500 * 100 - 10) / 100000.0, 1e-12);
  EXPECT_TRUE(Of(Find(run), "convoy").empty()) << "waits of 140 us are no convoy";
}

TEST(ReportFindings, NoSwitchStormWhenHandOffsAreASmallShare) {
  // 95 us holds: gaps of 5 us twice per cycle, 5% of the run.
  const RunTrace run = StormRun(500, 95);
  EXPECT_NEAR(Analyze(run).gils[0].handoff_fraction, 0.05, 1e-3);
  EXPECT_TRUE(Of(Find(run), "switch_storm").empty());
}

TEST(ReportFindings, NoSwitchStormInAFewMilliseconds) {
  // The storm of SwitchStormWhenHandOffsEatTheRun for 10 ms: 10,000 switches
  // per second and half the run in gaps (100 us a cycle, less 10 us in the
  // first), but 4.99 ms of gaps in all, under 20.
  const RunTrace run = StormRun(50, 50);
  EXPECT_EQ(Analyze(run).gils[0].handoff_ns, 50u * 100'000u - 10'000u);
  EXPECT_TRUE(Of(Find(run), "switch_storm").empty());
}

}  // namespace
}  // namespace gilscope::report

namespace gilscope::report {
namespace {

using namespace gilscope::report::testing;  // NOLINT: test vocabulary

// EchoPhasesRun (report_test_traces.h): alone for 1 s, then beside cpu.
TEST(ReportPhaseFindings, TheConvoyIsFoundInItsPhaseWithThatPhasesFigures) {
  const RunTrace run = EchoPhasesRun();
  const Analysis a = Analyze(run);
  ASSERT_EQ(a.phases.size(), 2u);
  EXPECT_EQ(a.phases[1].start_ns, At(1000));
  EXPECT_EQ(a.phases[1].source, "change");
  const std::vector<Finding> all = FindIssues(run, a);
  // The convoy holds over the whole run too (its io waits are all in phase
  // 2), but is listed once, for its phase; nothing else is found (cpu waits
  // 0.75% of the time: only one thread competes for the GIL).
  ASSERT_EQ(all.size(), 1u) << all[1].detail;
  const Finding& f = all[0];
  EXPECT_EQ(f.kind, "convoy");
  EXPECT_EQ(f.thread, "echo-server");
  EXPECT_EQ(f.phase, 1);
  EXPECT_EQ(f.start_ns, At(1000));
  EXPECT_EQ(f.end_ns, At(2000));
  EXPECT_DOUBLE_EQ(f.figures.at("io_waits"), 166.0);
  EXPECT_DOUBLE_EQ(f.figures.at("io_wait_p50_ms"), 5.0);
  EXPECT_DOUBLE_EQ(f.figures.at("wait_p50_ms"), 0.005);
  EXPECT_DOUBLE_EQ(f.figures.at("waits"), 332.0);
  EXPECT_DOUBLE_EQ(f.figures.at("voluntary_releases"), 332.0);
  EXPECT_DOUBLE_EQ(f.figures.at("blocking_calls_per_s"), 332.0);
  EXPECT_DOUBLE_EQ(f.figures.at("released_p50_ms"), 0.01);
  EXPECT_NEAR(f.figures.at("waiting_s"), 166 * 0.005005, 1e-12);
  EXPECT_EQ(f.detail,
            "In 1.000-2.000 s (phase 2 of 2): echo-server (7) waited a median 5.00 ms (1.0 switch intervals) for "
            "each of 166 acquisitions after a blocking call that found the GIL held; it made 332 short blocking calls "
            "(median 0.01 ms, 332 per second in that phase) and lost 0.831 s waiting.");
  // The phase's own figures, by hand.
  const ThreadStats& echo = a.phases[1].threads[0];
  EXPECT_EQ(echo.acquisitions, 332u);
  EXPECT_EQ(echo.waiting_ns, 166u * 5'005'000u);
  EXPECT_EQ(echo.lifetime_ns, 1000 * kMs);
  EXPECT_EQ(echo.voluntary_stretches, 331u);
  EXPECT_EQ(a.phases[1].gils[0].contended_ns, 166u * 5'030'000u);
  EXPECT_EQ(a.phases[1].gils[0].busy_ns, 1000 * kMs - 166u * 15'000u);
  EXPECT_EQ(a.phases[0].gils[0].contended_ns, 0u);
  EXPECT_EQ(a.phases[0].threads[0].io_waits, 0u);
  EXPECT_EQ(a.phases[0].threads[0].waits, 1000u);
  // Over the whole run the median wait is a folded one (5 us): the number
  // that hid the convoy before phases.
  EXPECT_DOUBLE_EQ(a.threads[0].wait_p50_ms, 0.005);
  EXPECT_EQ(a.threads[0].io_waits, 166u);
  EXPECT_EQ(a.gils[0].switches, a.gils[0].cpython_switches);
}

TEST(ReportPhaseFindings, APatternSpreadOverPhasesIsListedOnceForTheWholeRun) {
  // ConvoyRun(44) with its "crunch" region: two phases cut at 112.1 ms, each
  // with about ten of io's 21 round trips, fewer than a convoy needs; over
  // the whole run there are 20 io waits, and it is listed for the whole run.
  const RunTrace run = ConvoyRun(44);
  const Analysis a = Analyze(run);
  ASSERT_EQ(a.phases.size(), 2u);
  EXPECT_EQ(a.phases[1].source, "after region crunch");
  EXPECT_EQ(a.phases[1].start_ns, AtUs(112'100));
  const std::vector<Finding> convoys = Of(FindIssues(run, a), "convoy");
  ASSERT_EQ(convoys.size(), 1u);
  EXPECT_EQ(convoys[0].phase, -1);
  EXPECT_EQ(convoys[0].start_ns, run.start_ns);
  EXPECT_EQ(convoys[0].end_ns, run.end_ns);
  EXPECT_DOUBLE_EQ(convoys[0].figures.at("io_waits"), 20.0);
  EXPECT_EQ(convoys[0].detail.rfind("Over the whole run (no single phase shows it): io (1004) waited", 0), 0u)
      << convoys[0].detail;
  // gil_bound holds in each phase: listed once per phase, in time order.
  const std::vector<Finding> bound = Of(FindIssues(run, a), "gil_bound");
  ASSERT_EQ(bound.size(), 2u);
  EXPECT_EQ(bound[0].phase, 0);
  EXPECT_EQ(bound[1].phase, 1);
  EXPECT_EQ(bound[0].end_ns, bound[1].start_ns);
  EXPECT_EQ(bound[1].detail.rfind("In 0.112-0.222 s (phase 2 of 2): GIL 0 was held 100.0% of that phase", 0), 0u)
      << bound[1].detail;
  EXPECT_NE(bound[1].advice.find("(estimate for the whole run: up to"), std::string::npos) << bound[1].advice;
}

}  // namespace
}  // namespace gilscope::report
