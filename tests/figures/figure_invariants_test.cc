// The figure rules (figure_invariants.h) without CPython: that the checker
// catches each broken rule in a report.json, that every hand-built test trace
// and every seed run of the raw-file fuzzer makes a report obeying them all,
// and, with hand-computed figures, the case that broke them in the suite's
// 05_processes: a forked child that exits holding its GIL.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "figure_invariants.h"
#include "report/analysis.h"
#include "report/json_writer.h"
#include "report/raw_file.h"
#include "report_test_traces.h"

#ifndef GILSCOPE_SOURCE_DIR
#error "GILSCOPE_SOURCE_DIR must name the source tree"
#endif

namespace gilscope::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;
using report::Analysis;
using report::Analyze;
using report::GilInfo;
using report::JsonWriter;
using report::RunTrace;
using namespace report::testing;  // NOLINT: the shared trace builders

ordered_json ReportOf(const RunTrace& run) { return JsonWriter::ToJson(run, Analyze(run)); }

// True when some violation mentions every one of `words`.
bool Names(const std::vector<std::string>& violations, const std::vector<std::string>& words) {
  for (const std::string& v : violations) {
    bool all = true;
    for (const std::string& w : words) all = all && v.find(w) != std::string::npos;
    if (all) return true;
  }
  return false;
}

// A runner whose main thread forks a child and waits for it, over 100 ms:
//
//   ms          0    10   19 20      30 32 33  40       50               95  100
//   A  GIL 0    HHHHH|......................................................|HHH
//   C  GIL 1              W|HHHHHHHHH|..|W|HHHHHHHHHHHHHHHH| (child exits)
//   W  GIL 1                                   WWWWWWWWWW|
//
// A (0xA) holds GIL 0 at the start, releases it voluntarily at 10 (the
// fork and the wait) and takes it back at 95. The child's GIL 1 lives
// 20..50: its main thread C (0xC) asks for it at 19 (before the window, as
// the re-take after fork does), holds it from the window's start, releases
// 30..32, holds again from 33 and calls _exit holding it: no release, no
// kThreadExit, only the GIL's window closing at 50. Its thread W (0xD)
// waits from 40 and dies with the process.
//
// C: lifetime 19..50 = 31 ms = held 10 + 17 + waiting 1 + 1 + released 2.
// W: lifetime 40..50 = 10 ms, all waiting.
// GIL 1 over its 30 ms: busy 27 (0.9), contended 40..50 = 10 (1/3),
//   hand-off 32..33 = 1 (19..20 is before the window); C@33 is its one
//   acquisition, by the holder at the start: no switch.
// A: lifetime 100 = held 10 + 5 + released 85; GIL 0 busy 15 of 100.
RunTrace ForkedChildRun() {
  RunTrace run = EmptyRun(100);
  GilInfo child = Gil(1, 0xC, 0);
  child.pid = 4343;
  child.start_ns = At(20);
  child.end_ns = At(50);
  run.gils = {Gil(0, 0xA, 0), child};
  run.gils[0].pid = 4242;
  run.threads.push_back(Thread("MainThread", 1001, {Tstate(0xA), AcquiredAtStart(0), Released(10, false, 0),
                                                    Request(95, 0), Acquired(95, 0)}));
  report::ThreadTrace c = Thread("MainThread", 2001, {Tstate(0xC), Request(19, 1), AcquiredAtStart(1),
                                                      Released(30, false, 1), Request(32, 1), Acquired(33, 1)});
  c.pid = 4343;
  run.threads.push_back(std::move(c));
  report::ThreadTrace w = Thread("worker", 2002, {Tstate(0xD), Request(40, 1)});
  w.pid = 4343;
  run.threads.push_back(std::move(w));
  return run;
}

TEST(FigureInvariants, AForkedChildThatExitsHoldingItsGilEndsWithIt) {
  const RunTrace run = ForkedChildRun();
  const Analysis a = Analyze(run);
  ASSERT_EQ(a.threads.size(), 3u);
  const report::ThreadStats& c = a.threads[1];
  EXPECT_EQ(c.lifetime_start_ns, At(19));
  EXPECT_EQ(c.lifetime_end_ns, At(50)) << "the child ended with its GIL, not at the run's end";
  EXPECT_EQ(c.held_ns, 27 * kMs);
  EXPECT_EQ(c.waiting_ns, 2 * kMs);
  EXPECT_EQ(c.released_ns, 2 * kMs);
  const report::ThreadStats& w = a.threads[2];
  EXPECT_EQ(w.lifetime_ns, 10 * kMs);
  EXPECT_EQ(w.waiting_ns, 10 * kMs);

  const report::GilStats& g1 = a.gils[1];
  EXPECT_DOUBLE_EQ(g1.window_s, 0.03);
  EXPECT_EQ(g1.busy_ns, 27 * kMs);
  EXPECT_DOUBLE_EQ(g1.busy_fraction, 0.9);
  EXPECT_EQ(g1.contended_ns, 10 * kMs);
  EXPECT_DOUBLE_EQ(g1.handoff_fraction, 1.0 / 30);
  EXPECT_EQ(g1.acquisitions, 1u);
  EXPECT_EQ(g1.switches, 0u);

  const report::ThreadStats& main = a.threads[0];
  EXPECT_EQ(main.lifetime_ns, 100 * kMs);
  EXPECT_EQ(main.held_ns, 15 * kMs);
  EXPECT_DOUBLE_EQ(a.gils[0].busy_fraction, 0.15);

  const std::vector<std::string> v = ReportFigureViolations(JsonWriter::ToJson(run, a));
  EXPECT_TRUE(v.empty()) << JoinViolations(v);
}

TEST(FigureInvariants, HoldOnEveryHandBuiltTrace) {
  const std::vector<std::pair<std::string, RunTrace>> runs = {
      {"SmallRun", SmallRun()},         {"ConvoyRun(44)", ConvoyRun(44)}, {"ConvoyRun(7)", ConvoyRun(7)},
      {"EmptyRun(100)", EmptyRun(100)}, {"ForkedChildRun", ForkedChildRun()},
  };
  for (const auto& [name, run] : runs) {
    const std::vector<std::string> v = ReportFigureViolations(ReportOf(run));
    EXPECT_TRUE(v.empty()) << name << ":" << JoinViolations(v);
  }
}

// The fuzzer's seeds are whole runs written by RawWriter: a small and a
// rich one (every record type), an empty run, a crashed and a torn one.
TEST(FigureInvariants, HoldOnEveryFuzzSeedRun) {
  const fs::path corpus = fs::path(GILSCOPE_SOURCE_DIR) / "tests" / "fuzz" / "corpus";
  report::ReadOptions options;
  options.allow_unfinished = true;
  int checked = 0;
  for (const char* seed : {"small", "rich", "empty_run", "crashed", "torn"}) {
    const fs::path path = corpus / (std::string(seed) + ".seed");
    ASSERT_TRUE(fs::exists(path)) << path;
    const report::RawContents raw = report::ReadRawFile(path.string(), options);
    const std::vector<std::string> v = ReportFigureViolations(ReportOf(raw.trace));
    EXPECT_TRUE(v.empty()) << seed << ":" << JoinViolations(v);
    ++checked;
  }
  EXPECT_EQ(checked, 5);
}

TEST(FigureInvariants, HoldOnTheGoldenReport) {
  std::ifstream in(fs::path(GILSCOPE_SOURCE_DIR) / "tests" / "golden" / "report_small.json");
  ASSERT_TRUE(in);
  const std::vector<std::string> v = ReportFigureViolations(ordered_json::parse(in));
  EXPECT_TRUE(v.empty()) << JoinViolations(v);
}

// Each rule, broken on purpose in an otherwise good report, is named.
TEST(FigureInvariants, EachBrokenRuleIsNamed) {
  const ordered_json good = ReportOf(SmallRun());
  ASSERT_TRUE(ReportFigureViolations(good).empty()) << JoinViolations(ReportFigureViolations(good));
  struct Plant {
    std::string what;
    std::function<void(ordered_json&)> change;
    std::vector<std::string> named;  // words the violation must contain
  };
  const std::vector<Plant> plants = {
      {"a GIL busy 187% of its window", [](ordered_json& r) { r["gils"][0]["busy_fraction"] = 1.87; },
       {".gils[0].busy_fraction", "outside 0-100%"}},
      {"contended longer than busy", [](ordered_json& r) { r["gils"][0]["contended_fraction"] = 0.9; },
       {".gils[0]", "contended 0.9 > busy 0.86"}},
      {"busy and hand-off over 100%", [](ordered_json& r) { r["gils"][0]["handoff_fraction"] = 0.2; },
       {".gils[0]", "busy + hand-off"}},
      {"more switches than acquisitions", [](ordered_json& r) { r["gils"][0]["switches"] = 99; },
       {".gils[0]", "99 switches"}},
      {"a GIL window longer than the run", [](ordered_json& r) { r["gils"][0]["window_s"] = 0.2; },
       {".gils[0]", "window 0.2 s"}},
      {"a second lost from a thread's states", [](ordered_json& r) { r["threads"][0]["released_s"] = 0.029; },
       {".threads[0]", "held + waiting + released"}},
      {"a lifetime longer than the run",
       [](ordered_json& r) {
         r["threads"][0]["lifetime_s"] = 0.2;
         r["threads"][0]["released_s"] = 0.14;
       },
       {".threads[0]", "longer than the run's"}},
      {"percentiles out of order", [](ordered_json& r) { r["threads"][1]["wait_p50_ms"] = 16.0; },
       {".threads[1]", "out of order"}},
      {"a median hold above the longest",
       [](ordered_json& r) { r["threads"][0]["hold_p50_ms"] = r["threads"][0]["longest_hold_ms"].get<double>() + 1; },
       {".threads[0]", "median hold"}},
      {"held time attributed to nobody",
       [](ordered_json& r) { r["threads"][0]["held_by_function"] = ordered_json::array(); },
       {".threads[0]", "held_by_function adds up to 0"}},
      {"a negative count", [](ordered_json& r) { r["events"]["dropped"] = -1; }, {".events.dropped", "negative"}},
      {"a NaN written as null", [](ordered_json& r) { r["gils"][0]["contended_fraction"] = nullptr; },
       {".gils[0].contended_fraction", "null"}},
      {"the tax's waiting time not the threads'", [](ordered_json& r) { r["gil_tax"]["waiting_thread_s"] = 1.0; },
       {".gil_tax.waiting_thread_s"}},
      {"a speed-up bound below 1", [](ordered_json& r) { r["gil_tax"]["speedup_bound"] = 0.5; },
       {".gil_tax.speedup_bound"}},
      {"a window that is not wall_s", [](ordered_json& r) { r["wall_s"] = 0.5; }, {".window", "wall_s 0.5"}},
      {"a phase ending after the run",
       [](ordered_json& r) { r["phases"] = ordered_json::array({{{"start_s", 0.05}, {"end_s", 0.3}}}); },
       {".phases[0]", "after the run's"}},
      {"a marker after the run",
       [](ordered_json& r) {
         r["markers"] = ordered_json::array({{{"name", "m"}, {"start_s", 0.09}, {"duration_s", 0.02}}});
       },
       {".markers[0]", "after the run's"}},
      {"unknown-GIL events above those recorded", [](ordered_json& r) { r["events"]["unknown_gil"] = 1000; },
       {".events", "on unknown GILs"}},
  };
  for (const Plant& p : plants) {
    ordered_json bad = good;
    p.change(bad);
    const std::vector<std::string> v = ReportFigureViolations(bad);
    EXPECT_TRUE(Names(v, p.named)) << p.what << ": got" << JoinViolations(v);
  }
}

}  // namespace
}  // namespace gilscope::testing
