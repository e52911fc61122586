// DiffWriter on two hand-built runs (golden files) and on the cases that
// make matching hard: repeated and missing thread names, GILs on one side
// only, zero figures.
//
// Regenerate the golden files after an intended output change with
//   GILSCOPE_UPDATE_GOLDEN=1 ./raw_tests
// and review the diff before committing it.

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "report/analysis.h"
#include "report/diff_writer.h"
#include "report_test_traces.h"

#ifndef GILSCOPE_GOLDEN_DIR
#error "GILSCOPE_GOLDEN_DIR must name tests/golden"
#endif

namespace gilscope::report {
namespace {

using namespace gilscope::report::testing;  // NOLINT: test vocabulary
using nlohmann::json;

void ExpectMatchesGolden(const std::string& file, const std::string& actual) {
  const std::string path = std::string(GILSCOPE_GOLDEN_DIR) + "/" + file;
  if (std::getenv("GILSCOPE_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path, std::ios::binary) << actual;
    GTEST_SKIP() << "rewrote " << path;
  }
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in.good()) << "missing golden file " << path;
  std::stringstream expected;
  expected << in.rdbuf();
  EXPECT_EQ(expected.str(), actual) << "output differs from " << path;
}

// SmallRun after a change: the same two threads on one GIL, plus a third
// that starves; 100 ms window.
//
//   ms        0    5 8 10   20 25 30         60 61   70              100
//   A (0xA)   HHHHHHHHH|.....|WWWWW|HHHHHHHHHHH|..........................X90
//   B (0xB)        WWWW|HHHHHHHHHHH|.............W|HHHHHHHHHHHHHHHHHHHHHH
//   C (0xC)                                           WWWWWWWWWWWWWWWWWWWWWW
//
// MainThread: lifetime 90 = held 40 + waiting 10 + released 40; waits {10}.
// worker-1: lifetime 95 = held 59 + waiting 6 + released 30; waits {5, 1}:
//    p50 1 ms, p99 5 ms (SmallRun: p50 2, p99 15).
// starved (B only): lifetime 30, all waiting, no completed wait.
// GIL 0: switches B@10, A@30, B@61 = 3; drop requests at 8 and 25 = 2;
//    busy 100 - 1 = 99 ms; contended 5..10 + 20..30 + 70..100 = 45 ms.
RunTrace ChangedRun() {
  RunTrace run = EmptyRun(100);
  run.info.args = {"--n", "6"};
  run.info.python_version = "3.12.1";
  run.gils = {Gil(0, 0xA, 3)};
  run.threads.push_back(Thread("MainThread", 2001,
                               {Tstate(0xA), AcquiredAtStart(), Released(10, true), Request(20), Timeout(25, true),
                                Acquired(30), Released(60, false), Exit(90)}));
  run.threads.push_back(Thread("worker-1", 2002,
                               {Tstate(0xB), Request(5), Timeout(8, true), Acquired(10), Released(30, true),
                                Request(60), Acquired(61)}));
  run.threads.push_back(Thread("starved", 2003, {Tstate(0xC), Request(70)}));
  return run;
}

std::string DiffText(const RunTrace& a, const RunTrace& b) {
  std::ostringstream out;
  DiffWriter(out).Write(a, Analyze(a), b, Analyze(b));
  return out.str();
}

json DiffJson(const RunTrace& a, const RunTrace& b) {
  std::ostringstream out;
  DiffWriter(out).WriteJson(a, Analyze(a), b, Analyze(b));
  return json::parse(out.str());
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The line that starts with `prefix`, or "".
std::string LineStarting(const std::string& text, const std::string& prefix) {
  for (const std::string& line : Lines(text)) {
    if (line.rfind(prefix, 0) == 0) return line;
  }
  return "";
}

// A row's cells, split on runs of two or more blanks (cells hold single blanks).
std::vector<std::string> Cells(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  std::size_t blanks = 0;
  for (char c : line) {
    if (c == ' ') {
      ++blanks;
      continue;
    }
    if (blanks >= 2 && !cell.empty()) {
      cells.push_back(cell);
      cell.clear();
    } else if (blanks == 1 && !cell.empty()) {
      cell += ' ';
    }
    blanks = 0;
    cell += c;
  }
  if (!cell.empty()) cells.push_back(cell);
  return cells;
}

TEST(DiffWriter, MatchesGoldenText) { ExpectMatchesGolden("diff_small.txt", DiffText(SmallRun(), ChangedRun())); }

TEST(DiffWriter, MatchesGoldenJson) {
  std::ostringstream out;
  const RunTrace a = SmallRun(), b = ChangedRun();
  DiffWriter(out).WriteJson(a, Analyze(a), b, Analyze(b));
  ExpectMatchesGolden("diff_small.json", out.str());
}

TEST(DiffWriter, PrintsBothRunsFiguresAndTheChange) {
  const std::string text = DiffText(SmallRun(), ChangedRun());
  EXPECT_EQ(Cells(LineStarting(text, "  script")),
            (std::vector<std::string>{"script", "demo.py --n 3", "demo.py --n 6", "differs"}));
  EXPECT_EQ(Cells(LineStarting(text, "  wall time")),
            (std::vector<std::string>{"wall time", "0.100 s", "0.100 s", "x1.00"}));
  // GIL 0: switches 3 -> 3, busy 86 -> 99 %, contended 23 -> 45 %, drop requests 2 -> 2.
  EXPECT_EQ(Cells(LineStarting(text, "  0 ")),
            (std::vector<std::string>{"0", "0", "3", "3", "x1.00", "86.0", "99.0", "+13.0", "23.0", "45.0", "+22.0",
                                      "2", "2", "x1.00"}));
  // MainThread: held 50/90 -> 40/90, waiting 10/90 -> 10/90, p50 10 -> 10, p99 10 -> 10.
  EXPECT_EQ(Cells(LineStarting(text, "  MainThread")),
            (std::vector<std::string>{"MainThread", "55.6", "44.4", "-11.1", "11.1", "11.1", "+0.0", "10.000", "10.000",
                                      "x1.00", "10.000", "10.000", "x1.00"}));
  // worker-1: held 36/95 -> 59/95, waiting 17/95 -> 6/95, p50 2 -> 1, p99 15 -> 5.
  EXPECT_EQ(Cells(LineStarting(text, "  worker-1")),
            (std::vector<std::string>{"worker-1", "37.9", "62.1", "+24.2", "17.9", "6.3", "-11.6", "2.000", "1.000",
                                      "x0.50", "15.000", "5.000", "x0.33"}));
  EXPECT_EQ(Cells(LineStarting(text, "  starved")),
            (std::vector<std::string>{"starved (B only)", "-", "0.0", "-", "-", "100.0", "-", "-", "0.000", "-", "-",
                                      "0.000", "-"}));
}

TEST(DiffWriter, JsonCarriesTheSameFigures) {
  const json doc = DiffJson(SmallRun(), ChangedRun());
  EXPECT_EQ(doc["schema_version"], 1);
  EXPECT_EQ(doc["a"]["args"], json({"--n", "3"}));
  EXPECT_EQ(doc["b"]["python_version"], "3.12.1");
  EXPECT_DOUBLE_EQ(doc["wall_ratio"].get<double>(), 1.0);
  const json& gil = doc["gils"][0];
  EXPECT_DOUBLE_EQ(gil["a"]["busy_fraction"].get<double>(), 0.86);
  EXPECT_DOUBLE_EQ(gil["b"]["contended_fraction"].get<double>(), 0.45);
  EXPECT_NEAR(gil["change"]["busy_fraction_diff"].get<double>(), 0.13, 1e-12);
  EXPECT_DOUBLE_EQ(gil["change"]["switches_ratio"].get<double>(), 1.0);
  const json& worker = doc["threads"][1];
  EXPECT_EQ(worker["name"], "worker-1");
  EXPECT_EQ(worker["a"]["native_id"], 1002);
  EXPECT_EQ(worker["b"]["native_id"], 2002);
  EXPECT_DOUBLE_EQ(worker["change"]["wait_p50_ratio"].get<double>(), 0.5);
  EXPECT_NEAR(worker["change"]["held_fraction_diff"].get<double>(), (59.0 - 36.0) / 95.0, 1e-12);
  const json& starved = doc["threads"][2];
  EXPECT_TRUE(starved["a"].is_null());
  EXPECT_TRUE(starved["change"]["held_fraction_diff"].is_null());
  EXPECT_DOUBLE_EQ(starved["b"]["waiting_fraction"].get<double>(), 1.0);
}

TEST(DiffWriter, MatchesRepeatedNamesInOrderAndListsTheRest) {
  RunTrace a = EmptyRun(100), b = EmptyRun(100);
  a.gils = {Gil(0, 0, 0)};
  b.gils = {Gil(0, 0, 0), Gil(1, 0, 0)};
  for (std::uint64_t i = 0; i < 2; ++i) a.threads.push_back(Thread("w", 10 + i, {Request(1)}));
  a.threads.push_back(Thread("gone", 20, {Request(1)}));
  for (std::uint64_t i = 0; i < 3; ++i) b.threads.push_back(Thread("w", 30 + i, {Request(1)}));
  const json doc = DiffJson(a, b);
  ASSERT_EQ(doc["threads"].size(), 4u);
  EXPECT_EQ(doc["threads"][0]["a"]["native_id"], 10);
  EXPECT_EQ(doc["threads"][0]["b"]["native_id"], 30);
  EXPECT_EQ(doc["threads"][1]["a"]["native_id"], 11);
  EXPECT_EQ(doc["threads"][1]["b"]["native_id"], 31);
  EXPECT_EQ(doc["threads"][2]["name"], "gone");
  EXPECT_TRUE(doc["threads"][2]["b"].is_null());
  EXPECT_TRUE(doc["threads"][3]["a"].is_null());
  EXPECT_EQ(doc["threads"][3]["b"]["native_id"], 32);
  ASSERT_EQ(doc["gils"].size(), 2u);
  EXPECT_TRUE(doc["gils"][1]["a"].is_null());

  const std::string text = DiffText(a, b);
  EXPECT_NE(LineStarting(text, "  gone (A only)"), "") << text;
  EXPECT_NE(LineStarting(text, "  1 "), "") << text;
  EXPECT_EQ(Cells(LineStarting(text, "  1 "))[2], "-");
}

TEST(DiffWriter, SaysNewWhenAFigureGrowsFromZero) {
  RunTrace a = SmallRun();
  a.gils[0].cpython_switch_end = a.gils[0].cpython_switch_start;
  a.threads.resize(1);
  a.threads[0].events = {Tstate(0xA), AcquiredAtStart(), Exit(90)};  // no switch, no drop request
  const std::string text = DiffText(a, SmallRun());
  const std::vector<std::string> gil = Cells(LineStarting(text, "  0 "));
  ASSERT_EQ(gil.size(), 14u) << text;
  EXPECT_EQ(gil[4], "new");   // switches 0 -> 3
  EXPECT_EQ(gil[13], "new");  // drop requests 0 -> 2
  const json doc = DiffJson(a, SmallRun());
  EXPECT_TRUE(doc["gils"][0]["change"]["switches_ratio"].is_null());
}

TEST(DiffWriter, KeepsRowsWholeWithHostileNames) {
  RunTrace a = SmallRun(), b = SmallRun();
  a.threads[1].name = b.threads[1].name = "evil\nname\x1b[31m\xff";
  const std::string text = DiffText(a, b);
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  EXPECT_NE(LineStarting(text, "  evil?name?[31m?  "), "") << text;
  EXPECT_EQ(DiffJson(a, b)["threads"][1]["name"], "evil\nname\x1b[31m\xef\xbf\xbd");
}

TEST(DiffWriter, WarnsWhenEitherRunLostEvents) {
  RunTrace b = SmallRun();
  b.threads[0].dropped = 12;
  const std::string text = DiffText(SmallRun(), b);
  EXPECT_NE(text.find("!! run B lost 12 events; its figures may be off.\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("!! run A"), std::string::npos) << text;
}

}  // namespace
}  // namespace gilscope::report
