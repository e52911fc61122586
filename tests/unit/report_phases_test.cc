// FindPhases() on synthetic activity series with hand-placed change points,
// and the reference (phase_reference.h) on hand-built traces with the
// per-bucket figures and per-phase figures worked out by hand.

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "report/analysis.h"
#include "report/phase_reference.h"
#include "report/phases.h"
#include "report_test_traces.h"

namespace gilscope::report {
namespace {

using namespace gilscope::report::testing;  // NOLINT: test vocabulary

// 512 buckets of 10 ms (a 5.12 s run from kStart): the minimum phase is
// 16 buckets (160 ms, above the 100 ms floor).
constexpr std::size_t kBuckets = 512;
constexpr std::uint64_t kBucketNs = 10 * kMs;

ActivitySeries Series(std::uint64_t bucket_ns = kBucketNs) {
  ActivitySeries s = ActivitySeries::Geometry(kStart, kStart + kBuckets * bucket_ns, kBuckets);
  EXPECT_EQ(s.bucket_ns, bucket_ns);
  EXPECT_EQ(s.buckets, kBuckets);
  return s;
}

// A GIL whose contended share in bucket b is share(b) (and busy all along).
template <class Share>
void AddGil(ActivitySeries& s, Share share) {
  ActivitySeries::Gil g;
  for (std::size_t b = 0; b < s.buckets; ++b) {
    g.busy_ns.push_back(s.bucket_ns);
    g.contended_ns.push_back(static_cast<std::uint64_t>(share(b) * static_cast<double>(s.bucket_ns)));
  }
  s.gils.push_back(std::move(g));
}

// A thread alive in every bucket, waiting share(b) of bucket b, with
// `waits` completed waits per bucket of mean wait_ms(b) each (0: none).
template <class Share, class WaitMs>
void AddThread(ActivitySeries& s, Share share, std::uint32_t waits, WaitMs wait_ms) {
  ActivitySeries::Thread t;
  for (std::size_t b = 0; b < s.buckets; ++b) {
    t.held_ns.push_back(0);
    t.waiting_ns.push_back(static_cast<std::uint64_t>(share(b) * static_cast<double>(s.bucket_ns)));
    t.waits.push_back(waits);
    t.wait_ns.push_back(static_cast<std::uint64_t>(waits * wait_ms(b) * 1e6));
  }
  s.threads.push_back(std::move(t));
}

// The phases' start times, in buckets from the series start (the first is
// 0); every boundary must be on a bucket edge.
std::vector<std::size_t> Starts(const std::vector<PhaseSpan>& phases, std::uint64_t bucket_ns = kBucketNs) {
  std::vector<std::size_t> out;
  for (const PhaseSpan& p : phases) {
    EXPECT_EQ((p.start_ns - kStart) % bucket_ns, 0u);
    out.push_back(static_cast<std::size_t>((p.start_ns - kStart) / bucket_ns));
  }
  return out;
}

void ExpectTiles(const ActivitySeries& s, const std::vector<PhaseSpan>& phases) {
  ASSERT_FALSE(phases.empty());
  EXPECT_EQ(phases.front().start_ns, s.start_ns);
  EXPECT_EQ(phases.back().end_ns, s.end_ns);
  for (std::size_t i = 1; i < phases.size(); ++i) {
    EXPECT_EQ(phases[i].start_ns, phases[i - 1].end_ns);
    EXPECT_LT(phases[i].start_ns, phases[i].end_ns);
  }
}

// A fixed pseudo-random sequence in [0, 1) (a 64-bit LCG): noise that is the
// same on every run.
class Noise {
 public:
  double Next() {
    state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<double>(state_ >> 11) / 9007199254740992.0;
  }

 private:
  std::uint64_t state_ = 42;
};

TEST(ReportPhases, GeometryFollowsTheDefinition) {
  // 1000 ns in 512 buckets: ceil(1000 / 512) = 2 ns each, 500 of them.
  ActivitySeries s = ActivitySeries::Geometry(100, 1100, 512);
  EXPECT_EQ(s.bucket_ns, 2u);
  EXPECT_EQ(s.buckets, 500u);
  EXPECT_EQ(s.BucketOf(99), 0u);
  EXPECT_EQ(s.BucketOf(101), 0u);
  EXPECT_EQ(s.BucketOf(102), 1u);
  EXPECT_EQ(s.BucketOf(1100), 499u);  // clamped
  EXPECT_EQ(s.BucketStart(499), 1098u);
  EXPECT_EQ(s.BucketStart(500), 1100u);
  // 1001 ns: 3 ns buckets, the last one 2 ns (clipped).
  s = ActivitySeries::Geometry(0, 1001, 512);
  EXPECT_EQ(s.bucket_ns, 2u);
  EXPECT_EQ(s.buckets, 501u);
  EXPECT_EQ(s.BucketStart(501), 1001u);
  // An empty window has no buckets and is one phase.
  s = ActivitySeries::Geometry(5, 5, 512);
  EXPECT_EQ(s.buckets, 0u);
  const std::vector<PhaseSpan> one = FindPhases(s, {});
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].start_ns, 5u);
  EXPECT_EQ(one[0].end_ns, 5u);
}

TEST(ReportPhases, ASteadyRunIsOnePhase) {
  ActivitySeries s = Series();
  AddGil(s, [](std::size_t) { return 0.6; });
  AddThread(s, [](std::size_t) { return 0.5; }, 30, [](std::size_t) { return 5.0; });
  const std::vector<PhaseSpan> phases = FindPhases(s, {});
  ASSERT_EQ(phases.size(), 1u);
  EXPECT_EQ(phases[0].source, "start");
  ExpectTiles(s, phases);
}

TEST(ReportPhases, ContentionStartingSplitsTheRunWhereItStarts) {
  ActivitySeries s = Series();
  AddGil(s, [](std::size_t b) { return b < 200 ? 0.0 : 0.8; });
  const std::vector<PhaseSpan> phases = FindPhases(s, {});
  EXPECT_EQ(Starts(phases), (std::vector<std::size_t>{0, 200}));
  EXPECT_EQ(phases[1].source, "change");
  EXPECT_EQ(phases[1].start_ns, kStart + 200 * kBucketNs);
  ExpectTiles(s, phases);
}

TEST(ReportPhases, ThreeRegimesAreThreePhases) {
  // No contention, then heavy, then moderate (0.9 vs 0.3 differ by 0.6 and
  // by a factor (0.95 / 0.35) of 2.7).
  ActivitySeries s = Series();
  AddGil(s, [](std::size_t b) { return b < 150 ? 0.0 : b < 350 ? 0.9 : 0.3; });
  EXPECT_EQ(Starts(FindPhases(s, {})), (std::vector<std::size_t>{0, 150, 350}));
}

TEST(ReportPhases, AShortMiddleStretchIsFoundByTheSeededIntervals) {
  // 40 buckets of a waiting thread in the middle of a quiet run: split once
  // over the whole run, neither side differs by a quarter (40 / 296 of the
  // right side is 0.14), so only a seeded sub-interval finds it.
  ActivitySeries s = Series();
  AddThread(s, [](std::size_t b) { return b >= 236 && b < 276 ? 1.0 : 0.0; }, 0, [](std::size_t) { return 0.0; });
  EXPECT_EQ(Starts(FindPhases(s, {})), (std::vector<std::size_t>{0, 236, 276}));
}

TEST(ReportPhases, NoiseNeverMakesAPhase) {
  ActivitySeries s = Series();
  Noise noise;
  // Shares wandering anywhere in [0.3, 0.7] from bucket to bucket...
  AddGil(s, [&](std::size_t) { return 0.3 + 0.4 * noise.Next(); });
  // ...a thread waiting all or nothing of alternate buckets (CPU-bound
  // threads taking turns in slices longer than a bucket)...
  AddThread(s, [](std::size_t b) { return b % 2 == 0 ? 1.0 : 0.0; }, 0, [](std::size_t) { return 0.0; });
  // ...and a mean wait jumping between 0.1 and 0.5 ms.
  AddThread(s, [](std::size_t) { return 0.02; }, 25, [&](std::size_t) { return 0.1 + 0.4 * noise.Next(); });
  EXPECT_EQ(FindPhases(s, {}).size(), 1u);
}

TEST(ReportPhases, ShortSpikesNeverMakeAPhase) {
  // Spikes of full contention 3 buckets long (under a quarter of the 16
  // bucket minimum phase), every 50 buckets.
  ActivitySeries s = Series();
  AddGil(s, [](std::size_t b) { return b % 50 < 3 ? 1.0 : 0.0; });
  EXPECT_EQ(FindPhases(s, {}).size(), 1u);
}

TEST(ReportPhases, AWanderingIntensityStaysOnePhase) {
  // A convoy whose contention moves between 45% and 90% (a factor of 1.9):
  // one regime, as an echo server under a loaded machine showed.
  ActivitySeries s = Series();
  AddGil(s, [](std::size_t b) { return (b / 100) % 2 == 0 ? 0.45 : 0.9; });
  EXPECT_EQ(FindPhases(s, {}).size(), 1u);
}

TEST(ReportPhases, WaitsGrowingLongSplitEvenWhenTheirShareStaysSmall) {
  // 100 ms buckets with 2 waits each: 10 us each, then 4 ms each from bucket
  // 300. The waiting share goes from 0.02% to 8%, well under a quarter; the
  // mean wait from f = ln(1 + 0.01 / 0.25) = 0.04 to ln(1 + 4 / 0.25) = 2.83,
  // more than ln 10 apart.
  ActivitySeries s = Series(100 * kMs);
  AddThread(s, [](std::size_t b) { return b < 300 ? 0.0002 : 0.08; }, 2,
            [](std::size_t b) { return b < 300 ? 0.01 : 4.0; });
  EXPECT_EQ(Starts(FindPhases(s, {}), 100 * kMs), (std::vector<std::size_t>{0, 300}));
}

TEST(ReportPhases, LongerWaitsOfAThreadThatWaitsMuchAreOneRegime) {
  // A convoy whose waits go from many short ones (mean 0.07 ms) to fewer
  // long ones (3.2 ms) at bucket 300, the thread waiting 78% then 98% of the
  // time: the share tells the story (a factor of 1.26), and the mean's step
  // is the mix of waits changing.
  ActivitySeries s = Series();
  AddThread(s, [](std::size_t b) { return b < 300 ? 0.78 : 0.98; }, 30,
            [](std::size_t b) { return b < 300 ? 0.07 : 3.2; });
  EXPECT_EQ(FindPhases(s, {}).size(), 1u);
}

TEST(ReportPhases, FewWaitsMakeNoMean) {
  // The same step with one wait every 16th bucket: 19 short ones before
  // bucket 300, 13 long ones after. A mean over 13 waits is not compared
  // (20 are needed a side), and 32 waits in the whole run are fewer than a
  // mean wait signal needs at all (40).
  ActivitySeries s = Series(100 * kMs);
  ActivitySeries::Thread t;
  for (std::size_t b = 0; b < kBuckets; ++b) {
    const std::uint32_t waits = b % 16 == 0 ? 1 : 0;
    t.held_ns.push_back(0);
    t.waiting_ns.push_back(waits * (b < 300 ? 10'000u : 4'000'000u));
    t.waits.push_back(waits);
    t.wait_ns.push_back(t.waiting_ns.back());
  }
  s.threads.push_back(std::move(t));
  EXPECT_EQ(FindPhases(s, {}).size(), 1u);
}

TEST(ReportPhases, NeverMoreThanSixteenPhases) {
  // A staircase of 32 steps, each material against the next (0 / 0.9).
  ActivitySeries s = Series();
  AddGil(s, [](std::size_t b) { return (b / 16) % 2 == 0 ? 0.0 : 0.9; });
  const std::vector<PhaseSpan> phases = FindPhases(s, {});
  EXPECT_EQ(phases.size(), 16u);
  ExpectTiles(s, phases);
}

Marker Region(std::string name, std::uint64_t start_ms, std::uint64_t end_ms, std::uint32_t depth = 0) {
  Marker m;
  m.name = std::move(name);
  m.region = true;
  m.start_ns = kStart + start_ms * kMs;
  m.end_ns = kStart + end_ms * kMs;
  m.depth = depth;
  return m;
}

TEST(ReportPhases, TopLevelRegionsSetBoundariesExactly) {
  // A steady run, regions "load" 1000.5..3000.25 ms (top level), "inner"
  // nested in it, and "blip" too short (50 ms) to be a phase.
  ActivitySeries s = Series();
  AddGil(s, [](std::size_t) { return 0.5; });
  Marker load = Region("load", 1000, 3000);
  load.start_ns += 500'000;
  load.end_ns += 250'000;
  const std::vector<Marker> markers = {Region("blip", 100, 150), load, Region("inner", 1500, 2500, 1)};
  const std::vector<PhaseSpan> phases = FindPhases(s, markers);
  ASSERT_EQ(phases.size(), 3u);
  EXPECT_EQ(phases[0].source, "start");
  EXPECT_EQ(phases[1].start_ns, load.start_ns);
  EXPECT_EQ(phases[1].source, "region load");
  EXPECT_EQ(phases[2].start_ns, load.end_ns);
  EXPECT_EQ(phases[2].source, "after region load");
  ExpectTiles(s, phases);
}

TEST(ReportPhases, ChangesAreStillFoundInsideRegions) {
  // Region "run" covers 0..4000 ms; contention starts at bucket 200 inside it.
  ActivitySeries s = Series();
  AddGil(s, [](std::size_t b) { return b < 200 ? 0.0 : 0.8; });
  const std::vector<PhaseSpan> phases = FindPhases(s, {Region("run", 0, 4000)});
  ASSERT_EQ(phases.size(), 3u);
  EXPECT_EQ(phases[0].source, "region run");  // it begins with the window
  EXPECT_EQ(phases[1].start_ns, kStart + 200 * kBucketNs);
  EXPECT_EQ(phases[1].source, "change");
  EXPECT_EQ(phases[2].start_ns, kStart + 4000 * kMs);
  EXPECT_EQ(phases[2].source, "after region run");
}

TEST(ReportPhases, RegionsInAHotLoopCannotShredTheRun) {
  // 500 back-to-back 10 ms regions: each shorter than a phase, so none counts.
  ActivitySeries s = Series();
  std::vector<Marker> markers;
  for (std::uint64_t k = 0; k < 500; ++k) markers.push_back(Region("request", 10 * k, 10 * k + 10));
  EXPECT_EQ(FindPhases(s, markers).size(), 1u);
  // 40 regions of 120 ms: long enough, but edges closer than 100 ms to one
  // already set are skipped, and at most 15 boundaries come from regions.
  markers.clear();
  for (std::uint64_t k = 0; k < 40; ++k) markers.push_back(Region("step", 120 * k, 120 * k + 120));
  const std::vector<PhaseSpan> phases = FindPhases(s, markers);
  EXPECT_LE(phases.size(), 16u);
  ExpectTiles(s, phases);
  for (const PhaseSpan& p : phases) EXPECT_GE(p.end_ns - p.start_ns, 100 * kMs);
}

// --- the reference ---------------------------------------------------------

// SmallRun (report_test_traces.h) in 10 buckets of 10 ms:
//   GIL busy: A 0..20, B 20..38, A 40..70, B 82..100
//   contended: B waits 5..20 under A, A waits 30..38 under B (B's 80..82
//   wait has no holder)
//   A (lifetime 0..90, buckets 0..8): held 0..20, 40..70; waits 30..40
//   B (lifetime 5..100, buckets 0..9): waits 5..20 and 80..82; held
//   20..38, 82..100
TEST(ReportPhaseReference, SmallRunActivityByHand) {
  const Analysis a = Analyze(SmallRun());
  const ActivitySeries s = ActivityFromTimeline(a, 10);
  ASSERT_EQ(s.buckets, 10u);
  EXPECT_EQ(s.bucket_ns, 10 * kMs);
  using V = std::vector<std::uint64_t>;
  auto ms = [](V v) {
    for (auto& x : v) x *= kMs;
    return v;
  };
  ASSERT_EQ(s.gils.size(), 1u);
  EXPECT_EQ(s.gils[0].busy_ns, ms({10, 10, 10, 8, 10, 10, 10, 0, 8, 10}));
  EXPECT_EQ(s.gils[0].contended_ns, ms({5, 10, 0, 8, 0, 0, 0, 0, 0, 0}));
  ASSERT_EQ(s.threads.size(), 2u);
  const ActivitySeries::Thread& ta = s.threads[0];
  EXPECT_EQ(ta.first_bucket, 0u);
  EXPECT_EQ(ta.held_ns, ms({10, 10, 0, 0, 10, 10, 10, 0, 0}));
  EXPECT_EQ(ta.waiting_ns, ms({0, 0, 0, 10, 0, 0, 0, 0, 0}));
  EXPECT_EQ(ta.waits, (std::vector<std::uint32_t>{0, 0, 0, 0, 1, 0, 0, 0, 0}));  // ended at 40
  EXPECT_EQ(ta.wait_ns, ms({0, 0, 0, 0, 10, 0, 0, 0, 0}));
  const ActivitySeries::Thread& tb = s.threads[1];
  EXPECT_EQ(tb.first_bucket, 0u);
  EXPECT_EQ(tb.held_ns, ms({0, 0, 10, 8, 0, 0, 0, 0, 8, 10}));
  EXPECT_EQ(tb.waiting_ns, ms({5, 10, 0, 0, 0, 0, 0, 0, 2, 0}));
  EXPECT_EQ(tb.waits, (std::vector<std::uint32_t>{0, 0, 1, 0, 0, 0, 0, 0, 1, 0}));
  EXPECT_EQ(tb.wait_ns, ms({0, 0, 15, 0, 0, 0, 0, 0, 2, 0}));
}

template <class T>
std::uint64_t Sum(const std::vector<T>& v) {
  return std::accumulate(v.begin(), v.end(), std::uint64_t{0});
}

// SmallRun with its GIL's own window [10, 90) ms (a forked child's GIL, say):
// only the time inside it counts.
RunTrace ShortGilWindowRun() {
  RunTrace run = SmallRun();
  run.gils[0].start_ns = At(10);
  run.gils[0].end_ns = At(90);
  return run;
}

TEST(ReportPhaseReference, BucketsAddUpToTheRunsFigures) {
  // Buckets of odd sizes cut every interval somewhere.
  for (const RunTrace& run : {SmallRun(), ShortGilWindowRun(), ConvoyRun(44), ConvoyRun(90), EchoPhasesRun()}) {
    const Analysis a = Analyze(run);
    for (std::size_t buckets : {1u, 7u, 512u}) {
      const ActivitySeries s = ActivityFromTimeline(a, buckets);
      for (std::size_t g = 0; g < a.gils.size(); ++g) {
        EXPECT_EQ(Sum(s.gils[g].busy_ns), a.gils[g].busy_ns);
        EXPECT_EQ(Sum(s.gils[g].contended_ns), a.gils[g].contended_ns);
      }
      for (std::size_t i = 0; i < a.threads.size(); ++i) {
        EXPECT_EQ(Sum(s.threads[i].held_ns), a.threads[i].held_ns) << i;
        EXPECT_EQ(Sum(s.threads[i].waiting_ns), a.threads[i].waiting_ns) << i;
        EXPECT_EQ(Sum(s.threads[i].waits), a.threads[i].waits) << i;  // no zero-length wait here
      }
    }
  }
}

// SmallRun cut at 50 ms:
//   phase 1 [0, 50): A held 0..20 + 40..50 = 30, waiting 30..40 = 10,
//     released 20..30 = 10; B (from 5) waiting 5..20 = 15, held 20..38 = 18,
//     released 38..50 = 12, one wait of 15 ms.
//   phase 2 [50, 100): A held 50..70 = 20, released 70..90 = 20, exits at
//     90; B released 50..80 = 30, waiting 80..82 = 2, held 82..100 = 18,
//     one wait of 2 ms. GIL busy 20 + 18 = 38 of 50, contended 0.
TEST(ReportPhaseReference, PhaseFiguresAreTheClippedRunsFigures) {
  const RunTrace run = SmallRun();
  const std::vector<Phase> phases =
      PhaseFiguresByClipping(run, {{kStart, At(50), "start"}, {At(50), At(100), "change"}});
  ASSERT_EQ(phases.size(), 2u);
  const Phase& p1 = phases[0];
  EXPECT_EQ(p1.source, "start");
  EXPECT_EQ(p1.threads[0].held_ns, 30 * kMs);
  EXPECT_EQ(p1.threads[0].waiting_ns, 10 * kMs);
  EXPECT_EQ(p1.threads[0].released_ns, 10 * kMs);
  EXPECT_EQ(p1.threads[1].waiting_ns, 15 * kMs);
  EXPECT_EQ(p1.threads[1].held_ns, 18 * kMs);
  EXPECT_EQ(p1.threads[1].released_ns, 12 * kMs);
  EXPECT_DOUBLE_EQ(p1.threads[1].wait_p50_ms, 15.0);
  const Phase& p2 = phases[1];
  EXPECT_EQ(p2.start_ns, At(50));
  EXPECT_EQ(p2.end_ns, At(100));
  EXPECT_EQ(p2.threads[0].held_ns, 20 * kMs);
  EXPECT_EQ(p2.threads[0].released_ns, 20 * kMs);
  EXPECT_EQ(p2.threads[0].waits, 0u);
  EXPECT_EQ(p2.threads[1].released_ns, 30 * kMs);
  EXPECT_EQ(p2.threads[1].waiting_ns, 2 * kMs);
  EXPECT_EQ(p2.threads[1].held_ns, 18 * kMs);
  EXPECT_EQ(p2.threads[1].acquisitions, 1u);
  EXPECT_DOUBLE_EQ(p2.threads[1].wait_p50_ms, 2.0);
  EXPECT_DOUBLE_EQ(p2.gils[0].busy_fraction, 38.0 / 50.0);
  EXPECT_EQ(p2.gils[0].contended_ns, 0u);
  // No timeline is kept per phase.
  for (const Phase& p : phases) {
    for (const ThreadStats& t : p.threads) EXPECT_TRUE(t.intervals.empty());
    for (const GilStats& g : p.gils) EXPECT_TRUE(g.holders.empty() && g.waiting.empty());
  }
}

TEST(ReportPhaseReference, OnePhaseIsTheWholeRunWithoutItsTimeline) {
  const Analysis a = Analyze(SmallRun());
  ASSERT_EQ(a.phases.size(), 1u);
  const Phase& p = a.phases[0];
  EXPECT_EQ(p.start_ns, a.start_ns);
  EXPECT_EQ(p.end_ns, a.end_ns);
  EXPECT_EQ(p.source, "start");
  ASSERT_EQ(p.threads.size(), a.threads.size());
  for (std::size_t i = 0; i < a.threads.size(); ++i) {
    EXPECT_EQ(p.threads[i].held_ns, a.threads[i].held_ns);
    EXPECT_EQ(p.threads[i].wait_p99_ms, a.threads[i].wait_p99_ms);
    EXPECT_TRUE(p.threads[i].intervals.empty());
    EXPECT_FALSE(a.threads[i].intervals.empty());  // left in the run's own figures
  }
  EXPECT_EQ(p.gils[0].contended_ns, a.gils[0].contended_ns);
  EXPECT_TRUE(p.gils[0].holders.empty());
  EXPECT_FALSE(a.gils[0].holders.empty());
  // And the series the phases came from is the timeline's.
  EXPECT_EQ(a.activity.buckets, 512u);
  EXPECT_EQ(Sum(a.activity.gils[0].busy_ns), a.gils[0].busy_ns);
}

}  // namespace
}  // namespace gilscope::report
