// The streaming analysis (Analyze, AnalyzeWindow over an EventSource) against
// the in-memory analysis it replaced (reference_analysis.h): the same
// figures, to the nanosecond, on the hand-made traces, on random streams full
// of the gaps dropped events leave, through events.raw, and up to the tear
// of a truncated file; percentiles exact up to QuantileSketch::kExactSamples
// samples and within its stated error beyond; and a timeline that stays
// bounded once the run is long enough to aggregate it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "reference_analysis.h"
#include "report/analysis.h"
#include "report/chrome_trace_writer.h"
#include "report/json_writer.h"
#include "report/phase_reference.h"
#include "report/quantile_sketch.h"
#include "report/raw_file.h"
#include "report_test_traces.h"

namespace gilscope::report {
namespace {

using namespace testing;  // NOLINT: the trace builders
using reference::ReferenceAnalyzeWindow;
using recorder::Event;
using recorder::EventKind;

// A percentile from a sketch of `count` samples against the exact one.
void ExpectPercentile(double got_ms, double want_ms, std::uint64_t count, const std::string& what) {
  if (count <= QuantileSketch::kExactSamples) {
    EXPECT_EQ(got_ms, want_ms) << what << " (exact below " << QuantileSketch::kExactSamples << " samples)";
  } else {
    EXPECT_NEAR(got_ms, want_ms, want_ms * QuantileSketch::kRelativeError + 1e-6) << what;
  }
}

// Site indices are numbered in the order sites are first met, which differs
// between a pass per thread and one over all threads at once: sites are
// compared by what they name.
const std::vector<CodeSite>* g_got_sites = nullptr;
const std::vector<CodeSite>* g_want_sites = nullptr;

std::string SiteKey(const std::vector<CodeSite>& sites, std::uint32_t site) {
  if (site >= sites.size()) return "<out of range " + std::to_string(site) + ">";
  return sites[site].function + "|" + sites[site].file + "|" + std::to_string(sites[site].line);
}
std::string GotSite(std::uint32_t site) { return SiteKey(*g_got_sites, site); }
std::string WantSite(std::uint32_t site) { return SiteKey(*g_want_sites, site); }

void ExpectSameIntervals(const std::vector<StateInterval>& got, const std::vector<StateInterval>& want,
                         const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t k = 0; k < got.size(); ++k) {
    EXPECT_EQ(got[k].start_ns, want[k].start_ns) << what << " interval " << k;
    EXPECT_EQ(got[k].end_ns, want[k].end_ns) << what << " interval " << k;
    EXPECT_EQ(got[k].state, want[k].state) << what << " interval " << k;
    EXPECT_EQ(got[k].gil, want[k].gil) << what << " interval " << k;
    EXPECT_EQ(got[k].forced_end, want[k].forced_end) << what << " interval " << k;
    EXPECT_EQ(GotSite(got[k].site), WantSite(want[k].site)) << what << " interval " << k;
  }
}

void ExpectSameSiteTimes(const std::vector<SiteTime>& got, const std::vector<SiteTime>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t k = 0; k < got.size(); ++k) {
    EXPECT_EQ(GotSite(got[k].site), WantSite(want[k].site)) << what << " " << k;
    EXPECT_EQ(got[k].ns, want[k].ns) << what << " " << k;
  }
}

void ExpectSameHold(const HoldRecord& got, const HoldRecord& want, const std::string& what) {
  EXPECT_EQ(got.start_ns, want.start_ns) << what;
  EXPECT_EQ(got.end_ns, want.end_ns) << what;
  EXPECT_EQ(got.blocked_ns, want.blocked_ns) << what;
  EXPECT_EQ(got.unheeded_ns, want.unheeded_ns) << what;
  EXPECT_EQ(GotSite(got.site), WantSite(want.site)) << what;
}

// Every figure of `got` against the reference's; the timeline too unless
// `timeline` is false (an aggregated one).
void ExpectSameAnalysis(const Analysis& got, const Analysis& want, bool timeline = true) {
  EXPECT_EQ(got.start_ns, want.start_ns);
  EXPECT_EQ(got.end_ns, want.end_ns);
  EXPECT_EQ(got.events_recorded, want.events_recorded);
  EXPECT_EQ(got.events_dropped, want.events_dropped);
  EXPECT_EQ(got.events_unknown_gil, want.events_unknown_gil);
  g_got_sites = &got.sites;
  g_want_sites = &want.sites;
  std::vector<std::string> got_sites, want_sites;
  for (std::uint32_t k = 0; k < got.sites.size(); ++k) got_sites.push_back(GotSite(k));
  for (std::uint32_t k = 0; k < want.sites.size(); ++k) want_sites.push_back(WantSite(k));
  EXPECT_EQ(got_sites.front(), want_sites.front()) << "sites[kUnknownSite]";
  std::sort(got_sites.begin(), got_sites.end());
  std::sort(want_sites.begin(), want_sites.end());
  EXPECT_EQ(got_sites, want_sites);
  ASSERT_EQ(got.markers.size(), want.markers.size());
  for (std::size_t m = 0; m < got.markers.size(); ++m) {
    EXPECT_EQ(got.markers[m].name, want.markers[m].name) << "marker " << m;
    EXPECT_EQ(got.markers[m].thread, want.markers[m].thread) << "marker " << m;
    EXPECT_EQ(got.markers[m].start_ns, want.markers[m].start_ns) << "marker " << m;
    EXPECT_EQ(got.markers[m].end_ns, want.markers[m].end_ns) << "marker " << m;
    EXPECT_EQ(got.markers[m].open, want.markers[m].open) << "marker " << m;
    EXPECT_EQ(got.markers[m].depth, want.markers[m].depth) << "marker " << m;
  }
  ASSERT_EQ(got.gils.size(), want.gils.size());
  for (std::size_t g = 0; g < got.gils.size(); ++g) {
    const GilStats &a = got.gils[g], &b = want.gils[g];
    const std::string what = "GIL " + std::to_string(g);
    EXPECT_EQ(a.acquisitions, b.acquisitions) << what;
    EXPECT_EQ(a.switches, b.switches) << what;
    EXPECT_EQ(a.cpython_switches, b.cpython_switches) << what;
    EXPECT_EQ(a.drop_requests, b.drop_requests) << what;
    EXPECT_EQ(a.start_ns, b.start_ns) << what;
    EXPECT_EQ(a.end_ns, b.end_ns) << what;
    EXPECT_EQ(a.busy_ns, b.busy_ns) << what;
    EXPECT_EQ(a.contended_ns, b.contended_ns) << what;
    EXPECT_EQ(a.handoff_ns, b.handoff_ns) << what;
    EXPECT_EQ(a.holds, b.holds) << what;
    ExpectPercentile(a.hold_p50_ms, b.hold_p50_ms, b.holds, what + " hold p50");
    if (!timeline) continue;
    ASSERT_EQ(a.holders.size(), b.holders.size()) << what;
    for (std::size_t k = 0; k < a.holders.size(); ++k) {
      EXPECT_EQ(a.holders[k].start_ns, b.holders[k].start_ns) << what << " holder " << k;
      EXPECT_EQ(a.holders[k].end_ns, b.holders[k].end_ns) << what << " holder " << k;
      EXPECT_EQ(a.holders[k].thread, b.holders[k].thread) << what << " holder " << k;
    }
    ASSERT_EQ(a.waiting.size(), b.waiting.size()) << what;
    for (std::size_t k = 0; k < a.waiting.size(); ++k) {
      EXPECT_EQ(a.waiting[k].ts_ns, b.waiting[k].ts_ns) << what << " step " << k;
      EXPECT_EQ(a.waiting[k].waiting, b.waiting[k].waiting) << what << " step " << k;
    }
  }
  ASSERT_EQ(got.threads.size(), want.threads.size());
  for (std::size_t i = 0; i < got.threads.size(); ++i) {
    const ThreadStats &a = got.threads[i], &b = want.threads[i];
    const std::string what = "thread " + std::to_string(i);
    EXPECT_EQ(a.lifetime_start_ns, b.lifetime_start_ns) << what;
    EXPECT_EQ(a.lifetime_end_ns, b.lifetime_end_ns) << what;
    EXPECT_EQ(a.held_ns, b.held_ns) << what;
    EXPECT_EQ(a.waiting_ns, b.waiting_ns) << what;
    EXPECT_EQ(a.released_ns, b.released_ns) << what;
    EXPECT_EQ(a.acquisitions, b.acquisitions) << what;
    EXPECT_EQ(a.forced_releases, b.forced_releases) << what;
    EXPECT_EQ(a.voluntary_releases, b.voluntary_releases) << what;
    EXPECT_EQ(a.waits, b.waits) << what;
    ExpectPercentile(a.wait_p50_ms, b.wait_p50_ms, b.waits, what + " wait p50");
    ExpectPercentile(a.wait_p99_ms, b.wait_p99_ms, b.waits, what + " wait p99");
    EXPECT_EQ(a.wait_max_ms, b.wait_max_ms) << what;
    EXPECT_EQ(a.io_waits, b.io_waits) << what;
    ExpectPercentile(a.io_wait_p50_ms, b.io_wait_p50_ms, b.io_waits, what + " io wait p50");
    EXPECT_EQ(a.holds, b.holds) << what;
    ExpectPercentile(a.hold_p50_ms, b.hold_p50_ms, b.holds, what + " hold p50");
    EXPECT_EQ(a.voluntary_stretches, b.voluntary_stretches) << what;
    ExpectPercentile(a.voluntary_released_p50_ms, b.voluntary_released_p50_ms, b.voluntary_stretches,
                     what + " released p50");
    ExpectSameHold(a.longest_hold, b.longest_hold, what + " longest hold");
    ExpectSameHold(a.most_blocking_hold, b.most_blocking_hold, what + " most blocking hold");
    ExpectSameSiteTimes(a.held_by_function, b.held_by_function, what + " held_by_function");
    ExpectSameSiteTimes(a.released_at, b.released_at, what + " released_at");
    EXPECT_EQ(a.main_gil, b.main_gil) << what;
    EXPECT_EQ(a.exited, b.exited) << what;
    EXPECT_EQ(a.state_at_end, b.state_at_end) << what;
    if (timeline) ExpectSameIntervals(a.intervals, b.intervals, what);
  }
  EXPECT_DOUBLE_EQ(got.gil_tax.waiting_thread_s, want.gil_tax.waiting_thread_s);
  EXPECT_NEAR(got.gil_tax.ideal_wall_s, want.gil_tax.ideal_wall_s, 1e-9 + want.gil_tax.ideal_wall_s * 1e-12);
  EXPECT_EQ(got.gil_tax.cpu_count, want.gil_tax.cpu_count);
}

void ExpectSameSeries(const ActivitySeries& got, const ActivitySeries& want) {
  ASSERT_EQ(got.buckets, want.buckets);
  EXPECT_EQ(got.bucket_ns, want.bucket_ns);
  ASSERT_EQ(got.gils.size(), want.gils.size());
  for (std::size_t g = 0; g < got.gils.size(); ++g) {
    EXPECT_EQ(got.gils[g].busy_ns, want.gils[g].busy_ns) << "GIL " << g;
    EXPECT_EQ(got.gils[g].contended_ns, want.gils[g].contended_ns) << "GIL " << g;
  }
  ASSERT_EQ(got.threads.size(), want.threads.size());
  for (std::size_t i = 0; i < got.threads.size(); ++i) {
    EXPECT_EQ(got.threads[i].first_bucket, want.threads[i].first_bucket) << "thread " << i;
    EXPECT_EQ(got.threads[i].held_ns, want.threads[i].held_ns) << "thread " << i;
    EXPECT_EQ(got.threads[i].waiting_ns, want.threads[i].waiting_ns) << "thread " << i;
    EXPECT_EQ(got.threads[i].waits, want.threads[i].waits) << "thread " << i;
    EXPECT_EQ(got.threads[i].wait_ns, want.threads[i].wait_ns) << "thread " << i;
  }
}

// The whole check for one trace: the streaming pass over the trace in
// memory matches the reference, and so does its activity series against the
// reference's own reading of the reference timeline.
void ExpectMatchesReference(const RunTrace& run) {
  const Analysis want = ReferenceAnalyzeWindow(run, run.start_ns, run.end_ns);
  {
    SCOPED_TRACE("AnalyzeWindow");
    ExpectSameAnalysis(AnalyzeWindow(run, run.start_ns, run.end_ns), want);
  }
  SCOPED_TRACE("Analyze");
  const Analysis got = Analyze(run);
  ExpectSameAnalysis(got, want);
  ExpectSameSeries(got.activity, ActivityFromTimeline(want, ActivitySeries::kDefaultBuckets));
}

TEST(StreamingAnalysis, MatchesTheReferenceOnTheHandMadeTraces) {
  {
    SCOPED_TRACE("SmallRun");
    ExpectMatchesReference(SmallRun());
  }
  {
    SCOPED_TRACE("ConvoyRun");
    ExpectMatchesReference(ConvoyRun(40));
  }
  {
    SCOPED_TRACE("EchoPhasesRun");
    ExpectMatchesReference(EchoPhasesRun());
  }
}

// A random run: threads taking turns on a GIL or two the way take_gil and
// drop_gil write events, with frames, thread-state swaps, markers and exits,
// and then damaged the way lossy rings damage streams (events dropped,
// repeated, out of order, outside the window, on an unknown GIL).
RunTrace RandomRun(unsigned seed, std::size_t cycles_per_thread) {
  std::mt19937_64 rng(seed);
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  auto uniform = [&](std::uint64_t lo, std::uint64_t hi) {
    return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng);
  };
  const std::size_t gils = 1 + uniform(0, 1);
  const std::size_t threads = 2 + uniform(0, 3);
  // About 3.6 ms per cycle: the window holds most of them.
  RunTrace run = EmptyRun(std::max<std::int64_t>(1000, static_cast<std::int64_t>(cycles_per_thread) * 3));
  run.marker_names = {"load", "warm-up"};
  for (std::size_t g = 0; g < gils; ++g) run.gils.push_back(Gil(static_cast<std::uint32_t>(g), 0xA0, 0));
  if (gils == 2) {  // a subinterpreter's GIL with its own, shorter window
    run.gils[1].start_ns = run.start_ns + (run.end_ns - run.start_ns) / 10;
    run.gils[1].end_ns = run.end_ns - (run.end_ns - run.start_ns) / 10;
  }
  run.code = {Code(kWorkerCode, "worker", "w.py", 3), Code(kRecvCode, "recv", "r.py", 9),
              Code(kMainCode, "<module>", "m.py", 1)};
  const std::uint64_t codes[] = {kWorkerCode, kRecvCode, kMainCode, 0x999};
  for (std::size_t i = 0; i < threads; ++i) {
    std::vector<Event> ev;
    const std::uint8_t gil = static_cast<std::uint8_t>(uniform(0, gils - 1));
    ev.push_back(Tstate(0xA0 + i));
    std::uint64_t t = kStart - 20 * kMs + uniform(0, 60 * kMs);  // some start before the window
    if (i == 0) ev.push_back(AcquiredAtStart(gil));
    for (std::size_t c = 0; c < cycles_per_thread; ++c) {
      t += uniform(1'000, 400'000);
      if (chance(0.05)) ev.push_back(Event{t, EventKind::kMark, 0, 0, static_cast<std::uint32_t>(uniform(0, 2))});
      if (chance(0.03)) ev.push_back(Event{t, EventKind::kRegionBegin, 0, 0, 0});
      if (chance(0.03)) ev.push_back(Event{t, EventKind::kRegionEnd, 0, 0, 0});
      if (chance(0.5)) {
        ev.push_back(Make(EventKind::kRequest, t, gil, 0));
        while (chance(0.3)) {
          t += uniform(1'000, 5'000'000);
          ev.push_back(Make(EventKind::kWaitTimeout, t, gil, chance(0.7) ? recorder::kFlagDropRequest : 0));
        }
        t += uniform(0, 3'000'000);
        ev.push_back(Make(EventKind::kAcquired, t, gil, 0));
      } else {
        const std::uint32_t waited = static_cast<std::uint32_t>(uniform(0, 20'000));
        t += waited;
        ev.push_back(Event{t, EventKind::kAcquired, gil, recorder::kFlagRequestFolded, waited});
      }
      if (chance(0.05)) ev.push_back(Tstate(0xB0 + i));  // PyThreadState_Swap
      t += uniform(1'000, 6'000'000);
      if (chance(0.9)) ev.push_back(Frame(codes[uniform(0, 3)], static_cast<std::uint32_t>(uniform(1, 40))));
      ev.push_back(Make(EventKind::kReleased, t, gil, chance(0.4) ? recorder::kFlagForced : 0));
      if (chance(0.05)) ev.push_back(Tstate(0xA0 + i));
    }
    if (chance(0.5)) ev.push_back(Exit(static_cast<std::int64_t>((t - kStart) / kMs) + 1));
    // The damage: drops, repeats, swaps, strays.
    std::vector<Event> damaged;
    for (std::size_t k = 0; k < ev.size(); ++k) {
      if (chance(0.03)) continue;
      damaged.push_back(ev[k]);
      if (chance(0.01)) damaged.push_back(ev[k]);
      if (chance(0.01) && k + 1 < ev.size()) std::swap(damaged.back(), ev[k + 1]);
      if (chance(0.005)) damaged.push_back(Make(EventKind::kAcquired, ev[k].ts, 77, 0));
    }
    run.threads.push_back(Thread("thread-" + std::to_string(i), 100 + i, std::move(damaged)));
    run.threads.back().dropped = uniform(0, 3);
  }
  return run;
}

TEST(StreamingAnalysis, MatchesTheReferenceOnRandomDamagedRuns) {
  for (unsigned seed = 1; seed <= 60; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    ExpectMatchesReference(RandomRun(seed, 300));
    if (HasFailure()) break;  // one seed's report is enough to read
  }
}

TEST(StreamingAnalysis, PercentilesPastTheExactSamplesAreWithinTheStatedError) {
  // 6,000 cycles per thread: thousands of waits and holds each, past
  // kExactSamples, so the sketches fold.
  for (unsigned seed = 100; seed < 104; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const RunTrace run = RandomRun(seed, 6000);
    const Analysis want = ReferenceAnalyzeWindow(run, run.start_ns, run.end_ns);
    std::uint64_t most_waits = 0;
    for (const ThreadStats& t : want.threads) most_waits = std::max(most_waits, t.waits);
    ASSERT_GT(most_waits, QuantileSketch::kExactSamples) << "the run must be long enough to fold a sketch";
    ExpectSameAnalysis(AnalyzeWindow(run, run.start_ns, run.end_ns), want);
  }
}

class StreamingFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("gilscope_streaming_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  std::filesystem::path dir_;
};

TEST_F(StreamingFileTest, StreamingFromEventsRawMatchesTheReference) {
  const RunTrace run = RandomRun(7, 2000);
  WriteRawFile(Path("events.raw"), run);
  const auto source = RawFileSource::Open(Path("events.raw"));
  const Analysis want = ReferenceAnalyzeWindow(ReadRawFile(Path("events.raw")).trace, run.start_ns, run.end_ns);
  ExpectSameAnalysis(Analyze(*source), want);
}

TEST_F(StreamingFileTest, ATruncatedFileIsRightUpToTheTear) {
  // Written the way a run writes it: blocks flushed as the run goes, so a
  // crash tears the file in the middle of a later block.
  const RunTrace run = RandomRun(11, 3000);
  {
    RawWriter writer = RawWriter::Open(Path("events.raw"));
    for (std::size_t i = 0; i < run.threads.size(); ++i) writer.SetStream(run.threads[i], static_cast<std::uint32_t>(i));
    constexpr std::size_t kChunk = 500;
    for (std::size_t from = 0;; from += kChunk) {
      bool any = false;
      for (std::size_t i = 0; i < run.threads.size(); ++i) {
        const auto& ev = run.threads[i].events;
        if (from >= ev.size()) continue;
        any = true;
        writer.AppendEvents(static_cast<std::uint32_t>(i), ev.data() + from, std::min(kChunk, ev.size() - from));
        writer.Flush();
      }
      if (!any) break;
    }
  }  // no Finish: the runner "crashed"
  const auto whole = std::filesystem::file_size(Path("events.raw"));
  std::filesystem::resize_file(Path("events.raw"), whole * 2 / 3 + 7);  // mid-block
  ReadOptions lenient;
  lenient.allow_unfinished = true;
  const RawContents survived = ReadRawFile(Path("events.raw"), lenient);
  ASSERT_GT(survived.torn_bytes, 0u);
  ASSERT_GT(survived.events, 0u);
  ASSERT_LT(survived.events, [&] {
    std::uint64_t n = 0;
    for (const ThreadTrace& t : run.threads) n += t.events.size();
    return n;
  }());
  const auto source = RawFileSource::Open(Path("events.raw"), lenient);
  // No RUN record survived: analyse in the run's window, with its GILs.
  RunTrace facts = survived.trace;
  facts.start_ns = run.start_ns;
  facts.end_ns = run.end_ns;
  const Analysis want = ReferenceAnalyzeWindow(facts, run.start_ns, run.end_ns);
  const Analysis got = AnalyzeWindow(*source, run.start_ns, run.end_ns);
  EXPECT_EQ(got.events_recorded, survived.events);
  ExpectSameAnalysis(got, want);
}

// A run past kExactTimelineEvents: every figure still exact (percentiles
// within the sketch's error), and a timeline that is aggregated, bounded,
// in order and inside each thread's lifetime.
TEST(StreamingAnalysis, ALongRunKeepsItsFiguresAndABoundedTimeline) {
  RunTrace run = EmptyRun(60'000);  // one minute
  run.gils = {Gil(0, 0xA, 0)};
  const std::size_t cycles = (kExactTimelineEvents / 2 + 200'000) / 3;
  for (int i = 0; i < 2; ++i) {
    std::vector<Event> ev = {Tstate(0xA + static_cast<std::uint64_t>(i))};
    ev.reserve(cycles * 3 + 2);
    std::uint64_t t = kStart + static_cast<std::uint64_t>(i) * 3'000;
    for (std::size_t c = 0; c < cycles; ++c) {
      t += 2'000 + (c * 7919 + static_cast<std::size_t>(i) * 31) % 9'000;
      ev.push_back(Event{t, EventKind::kAcquired, 0, recorder::kFlagRequestFolded,
                         static_cast<std::uint32_t>(c % 5'000)});
      ev.push_back(Frame(kWorkerCode, 3));
      t += 1'000 + (c * 104729) % 20'000;
      ev.push_back(Make(EventKind::kReleased, t, 0, c % 3 == 0 ? recorder::kFlagForced : 0));
    }
    run.threads.push_back(Thread("t" + std::to_string(i), 10 + static_cast<std::uint64_t>(i), std::move(ev)));
  }
  run.end_ns = std::max(run.threads[0].events.back().ts, run.threads[1].events.back().ts) + 1;
  ASSERT_GT(TraceSource(run).total_events(), kExactTimelineEvents);

  const Analysis got = Analyze(run);
  const Analysis want = ReferenceAnalyzeWindow(run, run.start_ns, run.end_ns);
  ExpectSameAnalysis(got, want, /*timeline=*/false);
  ASSERT_GT(got.timeline_merge_below_ns, 0u);
  EXPECT_EQ(got.timeline_merge_below_ns, TimelineMergeWidth(TraceSource(run)));
  std::uint64_t pieces = 0;
  for (const ThreadStats& t : got.threads) {
    pieces += t.intervals.size();
    std::uint64_t last_end = t.lifetime_start_ns;
    for (const StateInterval& iv : t.intervals) {
      ASSERT_LT(iv.start_ns, iv.end_ns);
      ASSERT_GE(iv.start_ns, last_end);
      last_end = iv.end_ns;
    }
    EXPECT_LE(last_end, t.lifetime_end_ns);
  }
  for (const GilStats& g : got.gils) pieces += g.holders.size() + g.waiting.size();
  EXPECT_LT(pieces, kTimelinePieces * 3 / 2) << "the aggregated timeline must stay near its budget";
  EXPECT_LT(pieces, TimelineEventCount(want) / 2) << "and far below the whole one";
  // The reports say so: report.json's timeline block (report.html reads it),
  // and the trace plan's reason (report.txt, trace.json).
  const nlohmann::ordered_json doc = JsonWriter::ToJson(run, got);
  EXPECT_EQ(doc["timeline"]["aggregated"], true);
  EXPECT_DOUBLE_EQ(doc["timeline"]["merge_below_s"].get<double>(),
                   static_cast<double>(got.timeline_merge_below_ns) / 1e9);
  const TracePlan plan = PlanChromeTrace(got);
  EXPECT_TRUE(plan.aggregated());
  EXPECT_GE(plan.merge_below_ns, got.timeline_merge_below_ns);
  EXPECT_NE(plan.reason.find("analysis merged"), std::string::npos) << plan.reason;
  EXPECT_FALSE(JsonWriter::ToJson(SmallRun(), Analyze(SmallRun()))["timeline"]["aggregated"].get<bool>());
}

// A script marking in a hot loop: the analysis keeps the first
// kMaxKeptMarkers markers, the same as the first of the reference's (which
// keeps them all), counts the rest, and still cuts the run at a long region
// it did not keep.
TEST(StreamingAnalysis, KeepsTheFirstMarkersAndEveryRegionThatSetsAPhase) {
  RunTrace run = EchoPhasesRun();
  run.marker_names = {"tick", "slow part"};
  const std::size_t marks = kMaxKeptMarkers + 5'000;
  std::vector<Event> ev;
  ev.reserve(marks + 3);
  for (std::size_t i = 0; i < marks; ++i) ev.push_back(Event{kStart + 1 + i * 1'000, EventKind::kMark, 0, 0, 0});
  ev.push_back(RegionBegin(300, 1));  // after every mark: not among the kept
  ev.push_back(RegionEnd(700, 1));
  ev.push_back(Exit(1900));
  run.threads.push_back(Thread("marker", 9, std::move(ev)));

  const Analysis got = Analyze(run);
  const Analysis want = ReferenceAnalyzeWindow(run, run.start_ns, run.end_ns);
  ASSERT_EQ(want.markers.size(), marks + 1);
  ASSERT_EQ(got.markers.size(), kMaxKeptMarkers);
  EXPECT_EQ(got.markers_left_out, want.markers.size() - kMaxKeptMarkers);
  for (std::size_t k = 0; k < got.markers.size(); ++k) {
    ASSERT_EQ(got.markers[k].start_ns, want.markers[k].start_ns) << "marker " << k;
    ASSERT_EQ(got.markers[k].name, want.markers[k].name) << "marker " << k;
    ASSERT_EQ(got.markers[k].thread, want.markers[k].thread) << "marker " << k;
  }
  // The phases are what every marker makes of the run's activity.
  const std::vector<PhaseSpan> spans = FindPhases(got.activity, want.markers);
  ASSERT_EQ(got.phases.size(), spans.size());
  bool cut_at_region = false;
  for (std::size_t p = 0; p < spans.size(); ++p) {
    EXPECT_EQ(got.phases[p].start_ns, spans[p].start_ns) << "phase " << p;
    EXPECT_EQ(got.phases[p].end_ns, spans[p].end_ns) << "phase " << p;
    EXPECT_EQ(got.phases[p].source, spans[p].source) << "phase " << p;
    cut_at_region = cut_at_region || (got.phases[p].source == "region slow part" && got.phases[p].start_ns == At(300));
  }
  EXPECT_TRUE(cut_at_region) << "the region left out of the markers must still start a phase";
  // The reports count what they do not show.
  EXPECT_EQ(JsonWriter::ToJson(run, got)["markers_omitted"].get<std::uint64_t>(), want.markers.size() - 10'000);
  EXPECT_EQ(PlanChromeTrace(got).markers_omitted, got.markers_left_out);
}

TEST(QuantileSketch, IsExactUpToItsSampleLimitAndWithinOnePercentBeyond) {
  std::mt19937_64 rng(5);
  std::lognormal_distribution<double> latency(10.0, 2.0);  // ns: ~20 us median, long tail
  QuantileSketch sketch;
  std::vector<std::uint64_t> all;
  auto exact = [&](std::size_t p) {
    std::vector<std::uint64_t> v = all;
    const auto at = v.begin() + static_cast<std::ptrdiff_t>(NearestRank(p, v.size()) - 1);
    std::nth_element(v.begin(), at, v.end());
    return *at;
  };
  for (std::size_t n = 1; n <= 50'000; ++n) {
    const auto v = static_cast<std::uint64_t>(latency(rng)) + (n % 97 == 0 ? 0 : 1);  // zeros too
    sketch.Add(v);
    all.push_back(v);
    if (n == QuantileSketch::kExactSamples) {
      ASSERT_FALSE(sketch.approximate());
      for (std::size_t p : {1, 50, 90, 99, 100}) EXPECT_EQ(sketch.Percentile(p), exact(p)) << "p" << p;
    }
  }
  ASSERT_TRUE(sketch.approximate());
  EXPECT_EQ(sketch.count(), all.size());
  EXPECT_EQ(sketch.max(), *std::max_element(all.begin(), all.end()));
  for (std::size_t p : {1, 10, 50, 90, 99, 100}) {
    const double want = static_cast<double>(exact(p));
    EXPECT_NEAR(static_cast<double>(sketch.Percentile(p)), want, want * QuantileSketch::kRelativeError + 1)
        << "p" << p;
  }
}

}  // namespace
}  // namespace gilscope::report
