// Analyze() on hand-built traces whose answers were worked out by hand (see
// the timelines in the comments and in report_test_traces.h).

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "report/analysis.h"
#include "report_test_traces.h"

namespace gilscope::report {
namespace {

using namespace gilscope::report::testing;  // NOLINT: test vocabulary

constexpr double kMsInS = 1e-3;

// The invariants every analysis must satisfy whatever its input.
void ExpectConsistent(const Analysis& a) {
  const std::uint64_t window = a.end_ns - a.start_ns;
  for (const ThreadStats& t : a.threads) {
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.held_ns + t.waiting_ns + t.released_ns, t.lifetime_ns);
    EXPECT_EQ(t.lifetime_end_ns - t.lifetime_start_ns, t.lifetime_ns);
    EXPECT_GE(t.lifetime_start_ns, a.start_ns);
    EXPECT_LE(t.lifetime_end_ns, a.end_ns);
    EXPECT_LE(t.wait_p50_ms, t.wait_p99_ms);
    EXPECT_LE(t.wait_p99_ms, t.wait_max_ms);
    // Intervals: non-empty, disjoint, in order, inside the lifetime, and
    // adding up to the held and waiting totals.
    std::uint64_t previous_end = t.lifetime_start_ns;
    std::uint64_t held = 0, waiting = 0;
    for (const StateInterval& iv : t.intervals) {
      EXPECT_GE(iv.start_ns, previous_end);
      EXPECT_LT(iv.start_ns, iv.end_ns);
      ASSERT_NE(iv.state, GilState::kReleased);
      (iv.state == GilState::kHolding ? held : waiting) += iv.end_ns - iv.start_ns;
      previous_end = iv.end_ns;
    }
    EXPECT_LE(previous_end, t.lifetime_end_ns);
    EXPECT_EQ(held, t.held_ns);
    EXPECT_EQ(waiting, t.waiting_ns);
  }
  for (const GilStats& g : a.gils) {
    EXPECT_LE(g.busy_ns, window);
    EXPECT_LE(g.contended_ns, g.busy_ns);
    EXPECT_LE(g.switches, g.acquisitions);
    EXPECT_GE(g.busy_fraction, 0.0);
    EXPECT_LE(g.busy_fraction, 1.0);
    ASSERT_FALSE(g.waiting.empty());
    EXPECT_EQ(g.waiting.front().ts_ns, a.start_ns);
    for (std::size_t k = 1; k < g.waiting.size(); ++k) {
      EXPECT_LT(g.waiting[k - 1].ts_ns, g.waiting[k].ts_ns);
      EXPECT_NE(g.waiting[k - 1].waiting, g.waiting[k].waiting);
    }
    for (std::size_t k = 1; k < g.holders.size(); ++k) {
      EXPECT_LE(g.holders[k - 1].start_ns, g.holders[k].start_ns);
    }
  }
}

TEST(ReportAnalysis, TwoThreadsAlternatingGiveExactThreadFigures) {
  const Analysis a = Analyze(SmallRun());
  ExpectConsistent(a);
  ASSERT_EQ(a.threads.size(), 2u);

  const ThreadStats& main = a.threads[0];
  EXPECT_EQ(main.name, "MainThread");
  EXPECT_EQ(main.native_id, 1001u);
  EXPECT_EQ(main.lifetime_ns, 90 * kMs);
  EXPECT_EQ(main.held_ns, 50 * kMs);
  EXPECT_EQ(main.waiting_ns, 10 * kMs);
  EXPECT_EQ(main.released_ns, 30 * kMs);
  EXPECT_DOUBLE_EQ(main.held_s + main.waiting_s + main.released_s, main.lifetime_s);
  EXPECT_DOUBLE_EQ(main.lifetime_s, 0.090);
  EXPECT_EQ(main.acquisitions, 1u) << "the synthetic at-start acquisition is not counted";
  EXPECT_EQ(main.forced_releases, 1u);
  EXPECT_EQ(main.voluntary_releases, 1u);
  EXPECT_EQ(main.waits, 1u);
  EXPECT_DOUBLE_EQ(main.wait_p50_ms, 10.0);
  EXPECT_DOUBLE_EQ(main.wait_p99_ms, 10.0);
  EXPECT_DOUBLE_EQ(main.wait_max_ms, 10.0);
  EXPECT_EQ(main.main_gil, 0);
  EXPECT_TRUE(main.exited);
  EXPECT_EQ(main.state_at_end, GilState::kReleased);

  const ThreadStats& worker = a.threads[1];
  EXPECT_EQ(worker.lifetime_start_ns, At(5));
  EXPECT_EQ(worker.lifetime_ns, 95 * kMs);
  EXPECT_EQ(worker.held_ns, 36 * kMs);
  EXPECT_EQ(worker.waiting_ns, 17 * kMs);
  EXPECT_EQ(worker.released_ns, 42 * kMs);
  EXPECT_DOUBLE_EQ(worker.held_s + worker.waiting_s + worker.released_s, worker.lifetime_s);
  EXPECT_EQ(worker.acquisitions, 2u);
  EXPECT_EQ(worker.forced_releases, 1u);
  EXPECT_EQ(worker.voluntary_releases, 0u);
  EXPECT_EQ(worker.waits, 2u);
  EXPECT_DOUBLE_EQ(worker.wait_p50_ms, 2.0);
  EXPECT_DOUBLE_EQ(worker.wait_p99_ms, 15.0);
  EXPECT_DOUBLE_EQ(worker.wait_max_ms, 15.0);
  EXPECT_FALSE(worker.exited);
  EXPECT_EQ(worker.state_at_end, GilState::kHolding);
}

TEST(ReportAnalysis, TwoThreadsAlternatingGiveExactGilFigures) {
  const Analysis a = Analyze(SmallRun());
  ASSERT_EQ(a.gils.size(), 1u);
  const GilStats& gil = a.gils[0];
  EXPECT_EQ(gil.acquisitions, 3u);
  EXPECT_EQ(gil.switches, 3u);
  EXPECT_EQ(gil.cpython_switches, 3u);
  EXPECT_EQ(gil.drop_requests, 2u);
  EXPECT_EQ(gil.busy_ns, 86 * kMs);
  EXPECT_EQ(gil.contended_ns, 23 * kMs);
  EXPECT_DOUBLE_EQ(gil.busy_fraction, 0.86);
  EXPECT_DOUBLE_EQ(gil.contended_fraction, 0.23);
  EXPECT_DOUBLE_EQ(a.wall_s, 0.1);
  EXPECT_EQ(a.events_recorded, 15u);
  EXPECT_EQ(a.events_dropped, 0u);
}

TEST(ReportAnalysis, KeepsIntervalsHoldersAndWaitingSteps) {
  const Analysis a = Analyze(SmallRun());
  using S = GilState;
  // Released stretches (20..30, 70..90) are the gaps, not stored.
  const std::vector<std::tuple<std::int64_t, std::int64_t, S>> main_expected = {
      {0, 20, S::kHolding}, {30, 40, S::kWaiting}, {40, 70, S::kHolding}};
  const auto& ivs = a.threads[0].intervals;
  ASSERT_EQ(ivs.size(), main_expected.size());
  for (std::size_t k = 0; k < ivs.size(); ++k) {
    EXPECT_EQ(ivs[k].start_ns, At(std::get<0>(main_expected[k]))) << k;
    EXPECT_EQ(ivs[k].end_ns, At(std::get<1>(main_expected[k]))) << k;
    EXPECT_EQ(ivs[k].state, std::get<2>(main_expected[k])) << k;
  }

  const std::vector<std::tuple<std::int64_t, std::int64_t, std::uint32_t>> holders_expected = {
      {0, 20, 0}, {20, 38, 1}, {40, 70, 0}, {82, 100, 1}};
  const auto& holders = a.gils[0].holders;
  ASSERT_EQ(holders.size(), holders_expected.size());
  for (std::size_t k = 0; k < holders.size(); ++k) {
    EXPECT_EQ(holders[k].start_ns, At(std::get<0>(holders_expected[k]))) << k;
    EXPECT_EQ(holders[k].end_ns, At(std::get<1>(holders_expected[k]))) << k;
    EXPECT_EQ(holders[k].thread, std::get<2>(holders_expected[k])) << k;
  }

  const std::vector<std::pair<std::int64_t, std::uint32_t>> steps_expected = {
      {0, 0}, {5, 1}, {20, 0}, {30, 1}, {40, 0}, {80, 1}, {82, 0}};
  const auto& steps = a.gils[0].waiting;
  ASSERT_EQ(steps.size(), steps_expected.size());
  for (std::size_t k = 0; k < steps.size(); ++k) {
    EXPECT_EQ(steps[k].ts_ns, At(steps_expected[k].first)) << k;
    EXPECT_EQ(steps[k].waiting, steps_expected[k].second) << k;
  }
}

TEST(ReportAnalysis, ReusedThreadStateAddressIsNotASwitch) {
  // A exits and its PyThreadState memory is reused by C: CPython compares
  // addresses, so C taking over from A is not a switch; D's is.
  RunTrace run = EmptyRun(100);
  run.gils = {Gil(0, 0, 2)};
  run.threads.push_back(Thread("A", 1, {Tstate(0x1000), Request(1), Acquired(2), Released(5, false), Exit(6)}));
  run.threads.push_back(Thread("C", 2, {Tstate(0x1000), Request(7), Acquired(8), Released(9, false), Exit(10)}));
  run.threads.push_back(Thread("D", 3, {Tstate(0x2000), Request(10), Acquired(11), Released(12, false)}));
  const Analysis a = Analyze(run);
  ExpectConsistent(a);
  EXPECT_EQ(a.gils[0].acquisitions, 3u);
  EXPECT_EQ(a.gils[0].switches, 2u);
}

TEST(ReportAnalysis, SwitchesFollowThreadStateNotOsThread) {
  // One OS thread using two thread states switches when it changes state;
  // a thread that never reported one counts as thread state 0.
  RunTrace run = EmptyRun(100);
  run.gils = {Gil(0, 0x1, 2)};
  run.threads.push_back(Thread("A", 1,
                               {Tstate(0x1), Request(1), Acquired(2), Released(3, false),  // same as at start
                                Tstate(0x2), Request(4), Acquired(5), Released(6, false),  // switch
                                Request(7), Acquired(8), Released(9, false)}));            // same
  run.threads.push_back(Thread("B", 2, {Request(10), Acquired(11), Released(12, false)}));  // 0x2 -> 0
  const Analysis a = Analyze(run);
  EXPECT_EQ(a.gils[0].acquisitions, 4u);
  EXPECT_EQ(a.gils[0].switches, 2u);
}

TEST(ReportAnalysis, SwitchesAreCountedInTimeOrderAcrossThreads) {
  // B comes first in the thread list but the hand-offs alternate in time:
  // 0xA(start) -> B@10 -> A@20 -> B@30 -> A@40 is 4 switches (thread by
  // thread it would look like 2).
  RunTrace run = EmptyRun(100);
  run.gils = {Gil(0, 0xA, 4)};
  run.threads.push_back(Thread("B", 2,
                               {Tstate(0xB), Request(5), Acquired(10), Released(15, true), Request(25),
                                Acquired(30), Released(35, true)}));
  run.threads.push_back(Thread("A", 1,
                               {Tstate(0xA), AcquiredAtStart(), Released(10, true), Request(12), Acquired(20),
                                Released(25, true), Request(28), Acquired(40), Released(45, false)}));
  const Analysis a = Analyze(run);
  ExpectConsistent(a);
  EXPECT_EQ(a.gils[0].acquisitions, 4u);
  EXPECT_EQ(a.gils[0].switches, 4u);
}

TEST(ReportAnalysis, ClipsEverythingToTheWindow) {
  // T:  before the window it acquires and releases (not counted), then asks
  //     again at -10; inside it gets the GIL at 20 (wait clipped to 0..20),
  //     releases at 50, waits 80..90, holds to the end; its release at 150
  //     and exit at 200 are after the window.
  // U:  waits from -20 through the whole window; only its timeout at 30 is
  //     a drop request inside the window.
  RunTrace run = EmptyRun(100);
  run.gils = {Gil(0, 0x5, 1)};
  run.threads.push_back(Thread("T", 1,
                               {Tstate(0x7), Request(-50), Acquired(-40), Released(-30, true), Request(-10),
                                Acquired(20), Released(50, false), Request(80), Acquired(90),
                                Released(150, true), Exit(200)}));
  run.threads.push_back(Thread("U", 2,
                               {Tstate(0x8), Request(-20), Timeout(-5, true), Timeout(30, true),
                                Timeout(120, true)}));
  const Analysis a = Analyze(run);
  ExpectConsistent(a);

  const ThreadStats& t = a.threads[0];
  EXPECT_EQ(t.lifetime_start_ns, kStart);
  EXPECT_EQ(t.lifetime_ns, 100 * kMs);
  EXPECT_EQ(t.waiting_ns, 30 * kMs);
  EXPECT_EQ(t.held_ns, 40 * kMs);
  EXPECT_EQ(t.released_ns, 30 * kMs);
  EXPECT_EQ(t.acquisitions, 2u);
  EXPECT_EQ(t.forced_releases, 0u);
  EXPECT_EQ(t.voluntary_releases, 1u);
  EXPECT_DOUBLE_EQ(t.wait_p50_ms, 10.0);
  EXPECT_DOUBLE_EQ(t.wait_max_ms, 20.0);
  EXPECT_FALSE(t.exited);
  EXPECT_EQ(t.state_at_end, GilState::kHolding);

  const ThreadStats& u = a.threads[1];
  EXPECT_EQ(u.lifetime_ns, 100 * kMs);
  EXPECT_EQ(u.waiting_ns, 100 * kMs);
  EXPECT_EQ(u.waits, 0u);

  const GilStats& gil = a.gils[0];
  EXPECT_EQ(gil.acquisitions, 2u);
  EXPECT_EQ(gil.switches, 1u) << "0x5 -> 0x7 at 20; 90 is the same holder";
  EXPECT_EQ(gil.drop_requests, 1u);
  EXPECT_EQ(gil.busy_ns, 40 * kMs);
  EXPECT_EQ(gil.contended_ns, 40 * kMs);
}

TEST(ReportAnalysis, StreamEndingMidWaitCountsWaitingUpToTheEnd) {
  RunTrace run = EmptyRun(100);
  run.gils = {Gil(0, 0xA, 0)};
  run.threads.push_back(Thread("holder", 1, {Tstate(0xA), AcquiredAtStart()}));
  run.threads.push_back(Thread("starved", 2, {Tstate(0xB), Request(60)}));
  const Analysis a = Analyze(run);
  ExpectConsistent(a);

  const ThreadStats& starved = a.threads[1];
  EXPECT_EQ(starved.lifetime_ns, 40 * kMs);
  EXPECT_EQ(starved.waiting_ns, 40 * kMs);
  EXPECT_EQ(starved.held_ns, 0u);
  EXPECT_EQ(starved.waits, 0u);
  EXPECT_EQ(starved.wait_max_ms, 0.0) << "an unfinished wait is not a latency sample";
  EXPECT_EQ(starved.main_gil, -1);
  EXPECT_EQ(starved.state_at_end, GilState::kWaiting);

  EXPECT_EQ(a.threads[0].held_ns, 100 * kMs);
  EXPECT_EQ(a.threads[0].acquisitions, 0u);
  const GilStats& gil = a.gils[0];
  EXPECT_EQ(gil.switches, 0u);
  EXPECT_DOUBLE_EQ(gil.busy_fraction, 1.0);
  EXPECT_DOUBLE_EQ(gil.contended_fraction, 0.4);
  ASSERT_EQ(gil.waiting.size(), 2u);
  EXPECT_EQ(gil.waiting[1].ts_ns, At(60));
  EXPECT_EQ(gil.waiting[1].waiting, 1u);
}

TEST(ReportAnalysis, PercentilesUseNearestRank) {
  RunTrace run = EmptyRun(10'000);
  run.gils = {Gil(0, 0, 0)};
  // Latencies 100, 99, ..., 1 ms (descending, so nothing can rely on order).
  std::vector<Event> many;
  std::int64_t t = 0;
  for (std::int64_t latency = 100; latency >= 1; --latency) {
    many.push_back(Request(t));
    many.push_back(Acquired(t + latency));
    many.push_back(Released(t + latency + 1, false));
    t += latency + 1;
  }
  run.threads.push_back(Thread("many", 1, many));
  run.threads.push_back(Thread("one", 2, {Request(9000), Acquired(9007), Released(9008, false)}));
  run.threads.push_back(Thread("two", 3,
                               {Request(9100), Acquired(9109), Released(9110, false), Request(9200),
                                Acquired(9203), Released(9204, false)}));
  const Analysis a = Analyze(run);
  ExpectConsistent(a);

  EXPECT_EQ(a.threads[0].waits, 100u);
  EXPECT_DOUBLE_EQ(a.threads[0].wait_p50_ms, 50.0);
  EXPECT_DOUBLE_EQ(a.threads[0].wait_p99_ms, 99.0);
  EXPECT_DOUBLE_EQ(a.threads[0].wait_max_ms, 100.0);

  EXPECT_DOUBLE_EQ(a.threads[1].wait_p50_ms, 7.0);
  EXPECT_DOUBLE_EQ(a.threads[1].wait_p99_ms, 7.0);
  EXPECT_DOUBLE_EQ(a.threads[1].wait_max_ms, 7.0);

  // Two samples: rank ceil(0.5 * 2) = 1 is the smaller one.
  EXPECT_DOUBLE_EQ(a.threads[2].wait_p50_ms, 3.0);
  EXPECT_DOUBLE_EQ(a.threads[2].wait_p99_ms, 9.0);
}

TEST(ReportAnalysis, GapsFromDroppedEventsNeverGiveNegativeDurations) {
  RunTrace run = EmptyRun(100);
  run.gils = {Gil(0, 0, 1)};
  run.threads.push_back(Thread("gappy", 1,
                               {Tstate(0x1),
                                Acquired(10),          // its request was lost: counts, no latency
                                Released(20, false),
                                Released(25, true),    // a second release: counted, still released
                                Request(30),
                                Acquired(28),          // clock went back: treated as 30, latency 0
                                Request(40),           // release lost: the hold ends here
                                Timeout(45, false),
                                Acquired(50),          // latency 10
                                Released(60, false),
                                Timeout(70, true),     // request lost: the wait starts here
                                Acquired(75),          // latency 5
                                Exit(80)}));
  const Analysis a = Analyze(run);
  ExpectConsistent(a);
  const ThreadStats& t = a.threads[0];
  EXPECT_EQ(t.lifetime_ns, 70 * kMs);
  EXPECT_EQ(t.held_ns, 35 * kMs);
  EXPECT_EQ(t.waiting_ns, 15 * kMs);
  EXPECT_EQ(t.released_ns, 20 * kMs);
  EXPECT_EQ(t.acquisitions, 4u);
  EXPECT_EQ(t.forced_releases, 1u);
  EXPECT_EQ(t.voluntary_releases, 2u);
  EXPECT_EQ(t.waits, 3u);
  EXPECT_DOUBLE_EQ(t.wait_p50_ms, 5.0);
  EXPECT_DOUBLE_EQ(t.wait_max_ms, 10.0);
  EXPECT_EQ(a.gils[0].drop_requests, 1u);
  EXPECT_EQ(a.gils[0].switches, 1u);
}

TEST(ReportAnalysis, ThreadsOutsideTheWindowHaveEmptyLifetimes) {
  RunTrace run = EmptyRun(100);
  run.gils = {Gil(0, 0, 0)};
  run.threads.push_back(Thread("gone", 1, {Request(-30), Acquired(-20), Released(-10, false), Exit(-5)}));
  run.threads.push_back(Thread("no times", 2, {Tstate(0x1)}));
  run.threads.push_back(Thread("too late", 3, {Request(150), Acquired(160)}));
  run.threads.push_back(Thread("odd kind", 4,
                               {Request(10), Make(static_cast<EventKind>(99), At(12), 0, 0), Acquired(20),
                                Released(30, false)}));
  const Analysis a = Analyze(run);
  ExpectConsistent(a);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(a.threads[i].lifetime_ns, 0u) << a.threads[i].name;
    EXPECT_EQ(a.threads[i].acquisitions, 0u) << a.threads[i].name;
  }
  EXPECT_TRUE(a.threads[0].exited);
  EXPECT_FALSE(a.threads[2].exited);
  EXPECT_EQ(a.threads[3].acquisitions, 1u) << "an unknown event kind is skipped, not fatal";
  EXPECT_EQ(a.threads[3].waiting_ns, 10 * kMs);
  EXPECT_EQ(a.gils[0].acquisitions, 1u);
}

TEST(ReportAnalysis, EmptyAndInvertedWindowsAreHarmless) {
  RunTrace empty;
  const Analysis e = Analyze(empty);
  EXPECT_EQ(e.wall_s, 0.0);
  EXPECT_TRUE(e.threads.empty());

  RunTrace inverted = EmptyRun(100);
  inverted.end_ns = kStart - 5 * kMs;
  inverted.gils = {Gil(0, 0, 0)};
  inverted.threads.push_back(Thread("t", 1, {Request(1), Acquired(2), Released(3, false)}));
  const Analysis a = Analyze(inverted);
  ExpectConsistent(a);
  EXPECT_EQ(a.end_ns, a.start_ns);
  EXPECT_EQ(a.wall_s, 0.0);
  EXPECT_EQ(a.threads[0].lifetime_ns, 0u);
  EXPECT_EQ(a.gils[0].busy_fraction, 0.0);
}

TEST(ReportAnalysis, CountsRecordedAndDroppedEvents) {
  RunTrace run = SmallRun();
  run.threads[0].dropped = 5;
  run.threads[1].dropped = 1;
  run.dropped_no_slot = 2;
  const Analysis a = Analyze(run);
  EXPECT_EQ(a.events_recorded, 15u);
  EXPECT_EQ(a.events_dropped, 8u);
  EXPECT_EQ(a.events_unknown_gil, 0u);
}

TEST(ReportAnalysis, GilsAreMatchedByIdAndAnalyzedSeparately) {
  // GilInfo order differs from id order; events on GIL 9 match no GilInfo.
  RunTrace run = EmptyRun(100);
  run.gils = {Gil(3, 0, 1), Gil(1, 0, 1)};
  run.threads.push_back(Thread("X", 1,
                               {Tstate(0x10), Request(0, 1), Acquired(0, 1), Released(30, false, 1),
                                Request(40, 3), Acquired(40, 3), Released(50, false, 3), Request(60, 9),
                                Acquired(60, 9), Released(80, false, 9)}));
  run.threads.push_back(Thread("Y", 2, {Tstate(0x20), Request(45, 3)}));
  const Analysis a = Analyze(run);
  ExpectConsistent(a);

  EXPECT_EQ(a.gils[0].id, 3u);
  EXPECT_EQ(a.gils[0].acquisitions, 1u);
  EXPECT_EQ(a.gils[0].switches, 1u);
  EXPECT_EQ(a.gils[0].busy_ns, 10 * kMs);
  EXPECT_EQ(a.gils[0].contended_ns, 5 * kMs);
  EXPECT_EQ(a.gils[1].id, 1u);
  EXPECT_EQ(a.gils[1].busy_ns, 30 * kMs);
  EXPECT_EQ(a.gils[1].contended_ns, 0u);
  EXPECT_EQ(a.events_unknown_gil, 3u);

  EXPECT_EQ(a.threads[0].held_ns, 60 * kMs) << "an unknown GIL still counts for its thread";
  EXPECT_EQ(a.threads[0].main_gil, 1);
  EXPECT_EQ(a.threads[1].main_gil, -1);
  EXPECT_EQ(a.threads[1].waiting_ns, 55 * kMs);
}

TEST(ReportAnalysis, RandomStreamsKeepEveryInvariant) {
  // Garbage in (random kinds, flags, GILs, times that go backwards and stray
  // outside the window): no crash, and every invariant still holds.
  std::mt19937_64 rng(20240601);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int round = 0; round < 300; ++round) {
    RunTrace run = EmptyRun(100);
    run.gils = {Gil(0, static_cast<std::uint64_t>(pick(0, 3)), 0), Gil(1, 0, 0)};
    const int threads = pick(0, 6);
    for (int i = 0; i < threads; ++i) {
      std::vector<Event> events;
      std::int64_t ms = pick(-30, 50);
      const int n = pick(0, 60);
      for (int k = 0; k < n; ++k) {
        ms += pick(-2, 8);
        const auto kind = static_cast<EventKind>(pick(0, 7));
        const auto gil = static_cast<std::uint8_t>(pick(0, 2));
        const auto flags = static_cast<std::uint16_t>(pick(0, 15));
        events.push_back(kind == EventKind::kThreadState ? Tstate(static_cast<std::uint64_t>(pick(0, 3)))
                                                          : Make(kind, At(ms), gil, flags));
      }
      run.threads.push_back(Thread("t" + std::to_string(i), static_cast<std::uint64_t>(i), events));
    }
    SCOPED_TRACE(round);
    ExpectConsistent(Analyze(run));
    if (::testing::Test::HasFailure()) break;
  }
}

TEST(ReportAnalysis, FoldedRequestsGiveTheSameFiguresAsWrittenOnes) {
  // The hooks fold the kRequest of an uncontended take_gil into its
  // kAcquired (kFlagRequestFolded, aux = ns since the request). A stream
  // with folded requests must analyse exactly like the same stream with
  // them written out, whatever the window clips.
  auto folded = [](std::int64_t request_ms, std::int64_t acquired_ms) {
    Event e = Acquired(acquired_ms);
    e.flags |= recorder::kFlagRequestFolded;
    e.aux = static_cast<std::uint32_t>(At(acquired_ms) - At(request_ms));
    return e;
  };
  RunTrace written = EmptyRun(100);
  written.gils = {Gil(0, 0xA, 3)};
  RunTrace compact = written;
  written.threads.push_back(Thread("A", 1,
                                   {Tstate(0xA), AcquiredAtStart(), Released(10, false), Request(-1), Request(12),
                                    Acquired(14), Released(20, true), Request(30), Timeout(35, true), Acquired(40),
                                    Released(50, false), Request(60), Acquired(62), Released(70, false),
                                    Request(99), Acquired(101), Exit(102)}));
  compact.threads.push_back(Thread("A", 1,
                                   {Tstate(0xA), AcquiredAtStart(), Released(10, false), Request(-1), Request(12),
                                    Acquired(14), Released(20, true), Request(30), Timeout(35, true), Acquired(40),
                                    Released(50, false), folded(60, 62), Released(70, false), folded(99, 101),
                                    Exit(102)}));
  written.threads.push_back(Thread("B", 2, {Tstate(0xB), Request(-5), Acquired(10), Released(12, true), Request(20),
                                            Acquired(20), Released(30, true), Request(55), Acquired(56)}));
  compact.threads.push_back(Thread("B", 2, {Tstate(0xB), folded(-5, 10), Released(12, true), folded(20, 20),
                                            Released(30, true), folded(55, 56)}));
  const Analysis a = Analyze(written);
  const Analysis b = Analyze(compact);
  ExpectConsistent(b);
  ASSERT_EQ(a.threads.size(), b.threads.size());
  for (std::size_t i = 0; i < a.threads.size(); ++i) {
    SCOPED_TRACE(a.threads[i].name);
    const ThreadStats& x = a.threads[i];
    const ThreadStats& y = b.threads[i];
    EXPECT_EQ(x.held_ns, y.held_ns);
    EXPECT_EQ(x.waiting_ns, y.waiting_ns);
    EXPECT_EQ(x.released_ns, y.released_ns);
    EXPECT_EQ(x.lifetime_ns, y.lifetime_ns);
    EXPECT_EQ(x.acquisitions, y.acquisitions);
    EXPECT_EQ(x.waits, y.waits);
    EXPECT_EQ(x.wait_p50_ms, y.wait_p50_ms);
    EXPECT_EQ(x.wait_max_ms, y.wait_max_ms);
    EXPECT_EQ(x.voluntary_stretches, y.voluntary_stretches);
    EXPECT_EQ(x.voluntary_released_p50_ms, y.voluntary_released_p50_ms);
    ASSERT_EQ(x.intervals.size(), y.intervals.size());
    for (std::size_t k = 0; k < x.intervals.size(); ++k) {
      EXPECT_EQ(x.intervals[k].start_ns, y.intervals[k].start_ns);
      EXPECT_EQ(x.intervals[k].end_ns, y.intervals[k].end_ns);
      EXPECT_EQ(x.intervals[k].state, y.intervals[k].state);
    }
  }
  EXPECT_GT(b.threads[0].waiting_ns, 0u);
  EXPECT_EQ(a.gils[0].switches, b.gils[0].switches);
  EXPECT_EQ(a.gils[0].acquisitions, b.gils[0].acquisitions);
  EXPECT_EQ(b.gils[0].acquisitions, 6u);
}

// A forked child's (or subinterpreter's) GIL lives 40..90 ms of a 100 ms run:
//   C (0xC): holds from the GIL's window start (synthetic at-start) to 60,
//            waits 65..72, holds 72..85, exits at 85.
//   D (0xD): waits 50..60, holds 60..70 (forced off), exits at 80.
// GIL 1: busy 20 + 10 + 13 = 43 of its 50 ms (0.86), contended 10 (D under
// C) + 5 (C under D) = 15 (0.3), hand-off 70..72 (0.04); switches D@60, C@72.
// C's lifetime starts at 40, not at the run's start. GIL 0, held all run by
// A, is busy 1.0 of its own (the run's) window.
TEST(ReportAnalysis, EachGilIsMeasuredOverItsOwnWindow) {
  RunTrace run = EmptyRun(100);
  GilInfo child = Gil(1, 0xC, 2);
  child.start_ns = At(40);
  child.end_ns = At(90);
  run.gils = {Gil(0, 0xA, 0), child};
  run.threads.push_back(Thread("A", 1, {Tstate(0xA), AcquiredAtStart(0)}));
  run.threads.push_back(Thread("C", 2, {Tstate(0xC), AcquiredAtStart(1), Released(60, false, 1), Request(65, 1),
                                        Acquired(72, 1), Exit(85)}));
  run.threads.push_back(
      Thread("D", 3, {Tstate(0xD), Request(50, 1), Acquired(60, 1), Released(70, true, 1), Exit(80)}));
  const Analysis a = Analyze(run);
  ExpectConsistent(a);

  const GilStats& g1 = a.gils[1];
  EXPECT_EQ(g1.start_ns, At(40));
  EXPECT_EQ(g1.end_ns, At(90));
  EXPECT_DOUBLE_EQ(g1.window_s, 0.05);
  EXPECT_EQ(g1.busy_ns, 43 * kMs);
  EXPECT_DOUBLE_EQ(g1.busy_fraction, 0.86);
  EXPECT_EQ(g1.contended_ns, 15 * kMs);
  EXPECT_DOUBLE_EQ(g1.contended_fraction, 0.3);
  EXPECT_DOUBLE_EQ(g1.handoff_fraction, 0.04);
  EXPECT_EQ(g1.acquisitions, 2u);
  EXPECT_EQ(g1.switches, 2u);
  EXPECT_EQ(g1.switches, g1.cpython_switches);

  const ThreadStats& c = a.threads[1];
  EXPECT_EQ(c.lifetime_start_ns, At(40));
  EXPECT_EQ(c.held_ns, 33 * kMs);
  EXPECT_EQ(c.waiting_ns, 7 * kMs);
  EXPECT_EQ(c.lifetime_ns, 45 * kMs);

  EXPECT_EQ(a.gils[0].start_ns, At(0));
  EXPECT_DOUBLE_EQ(a.gils[0].busy_fraction, 1.0);
}

// An acquisition outside the GIL's window is not replayed against CPython's
// counter, which was read at the window's ends.
TEST(ReportAnalysis, SwitchesAreCountedInsideTheGilsWindowOnly) {
  RunTrace run = EmptyRun(100);
  GilInfo g = Gil(0, 0xA, 1);
  g.start_ns = At(10);
  g.end_ns = At(60);
  run.gils = {g};
  run.threads.push_back(Thread("A", 1, {Tstate(0xA), AcquiredAtStart(0), Released(30, false), Request(70),
                                        Acquired(72), Released(80, false)}));
  run.threads.push_back(Thread("B", 2, {Tstate(0xB), Request(20), Acquired(30), Released(40, false)}));
  const Analysis a = Analyze(run);
  EXPECT_EQ(a.gils[0].acquisitions, 1u);  // B@30; A@72 is after the window
  EXPECT_EQ(a.gils[0].switches, 1u);
}

}  // namespace
}  // namespace gilscope::report
