// The three writers on the hand-built SmallRun (golden files) and on inputs
// built to break them: invalid UTF-8, control characters, dropped events,
// a switch-count mismatch, a slice cap.
//
// Regenerate the golden files after an intended output change with
//   GILSCOPE_UPDATE_GOLDEN=1 ./report_tests
// and review the diff before committing it.

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "report/analysis.h"
#include "report/chrome_trace_writer.h"
#include "report/json_writer.h"
#include "report/text_writer.h"
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

std::string JsonReport(const RunTrace& run) {
  std::ostringstream out;
  JsonWriter(out).Write(run, Analyze(run));
  return out.str();
}

std::string TextReport(const RunTrace& run) {
  std::ostringstream out;
  TextWriter(out).Write(run, Analyze(run));
  return out.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The thread table: from its header line to the first blank line.
std::vector<std::string> TableLines(const std::string& text) {
  std::vector<std::string> table;
  bool inside = false;
  for (const std::string& line : Lines(text)) {
    if (line.rfind("  thread ", 0) == 0) inside = true;
    if (inside && line.empty()) break;
    if (inside) table.push_back(line);
  }
  return table;
}

std::size_t CodePoints(const std::string& s) {
  std::size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

// A run whose user strings are not valid UTF-8.
RunTrace HostileRun() {
  RunTrace run = SmallRun();
  run.info.script = "bad\xff\xfe.py";
  run.info.args = {"\xc3(", "ok"};
  run.threads[0].name = "Main\x80Thread";
  run.threads[1].name = "worker\xe2\x28\xa1";
  return run;
}

TEST(ReportJsonWriter, MatchesGoldenForSmallRun) { ExpectMatchesGolden("report_small.json", JsonReport(SmallRun())); }

TEST(ReportJsonWriter, CarriesTheAnalysisFigures) {
  RunTrace run = SmallRun();
  run.threads.push_back(Thread("idle", 1003, {Request(50)}));  // never holds
  run.threads[0].dropped = 4;
  const json doc = json::parse(JsonReport(run));

  EXPECT_EQ(doc["schema_version"], 1);
  EXPECT_EQ(doc["python"]["version"], "3.13.0");
  EXPECT_EQ(doc["args"], json({"--n", "3"}));
  EXPECT_DOUBLE_EQ(doc["wall_s"].get<double>(), 0.1);
  EXPECT_EQ(doc["gils"][0]["switches"], 3);
  EXPECT_EQ(doc["gils"][0]["cpython_switches"], 3);
  EXPECT_EQ(doc["gils"][0]["drop_requests"], 2);
  // SmallRun's 23 ms, plus idle waiting under MainThread (50..70) and worker-1 (82..100).
  EXPECT_DOUBLE_EQ(doc["gils"][0]["contended_fraction"].get<double>(), 0.61);

  const json& worker = doc["threads"][1];
  EXPECT_EQ(worker["name"], "worker-1");
  EXPECT_EQ(worker["gil"], 0);
  EXPECT_DOUBLE_EQ(worker["held_s"].get<double>(), 0.036);
  EXPECT_EQ(worker["acquisitions"], 2);
  EXPECT_DOUBLE_EQ(worker["wait_p99_ms"].get<double>(), 15.0);
  EXPECT_TRUE(doc["threads"][2]["gil"].is_null()) << "a thread that never held a GIL has no GIL";
  EXPECT_EQ(doc["events"]["recorded"], 16);
  EXPECT_EQ(doc["events"]["dropped"], 4);
}

TEST(ReportJsonWriter, StaysValidJsonWithInvalidUtf8) {
  const std::string text = JsonReport(HostileRun());
  json doc;
  ASSERT_NO_THROW(doc = json::parse(text));
  const std::string replacement = "\xef\xbf\xbd";  // U+FFFD
  EXPECT_EQ(doc["script"], "bad" + replacement + replacement + ".py");
  EXPECT_EQ(doc["threads"][0]["name"], "Main" + replacement + "Thread");
  EXPECT_EQ(doc["args"][1], "ok");
}

TEST(ReportTextWriter, MatchesGoldenForSmallRun) { ExpectMatchesGolden("report_small.txt", TextReport(SmallRun())); }

TEST(ReportTextWriter, CallsOutDroppedEventsOnlyWhenThereAreSome) {
  const std::string clean = TextReport(SmallRun());
  EXPECT_NE(clean.find("Events: 15 recorded, 0 dropped\n"), std::string::npos);
  EXPECT_EQ(clean.find("!!"), std::string::npos);

  RunTrace lossy = SmallRun();
  lossy.threads[1].dropped = 7;
  lossy.dropped_no_slot = 3;
  const std::string text = TextReport(lossy);
  EXPECT_NE(text.find("Events: 15 recorded, 10 DROPPED\n"), std::string::npos) << text;
  EXPECT_NE(text.find("!! 10 events were lost"), std::string::npos) << text;
}

TEST(ReportTextWriter, FlagsASwitchCountThatDisagreesWithCPython) {
  RunTrace run = SmallRun();
  run.gils[0].cpython_switch_end = run.gils[0].cpython_switch_start + 5;
  const std::string text = TextReport(run);
  EXPECT_NE(text.find("3 switches, CPython counted 5 (MISMATCH: 2 not recorded)"), std::string::npos) << text;
}

TEST(ReportTextWriter, KeepsTheTableAlignedWithHostileNames) {
  RunTrace run = HostileRun();
  run.threads[0].name = "evil\nname\x1b[31m";
  run.threads.push_back(Thread("na\xc3\xafve \xe2\x80\x94 caf\xc3\xa9", 77, {Request(1)}));
  run.threads.push_back(Thread("", 78, {Request(2)}));
  const std::string text = TextReport(run);
  const std::vector<std::string> table = TableLines(text);
  ASSERT_EQ(table.size(), 5u) << text;  // header + 4 threads, nothing split
  for (const std::string& line : table) {
    EXPECT_EQ(CodePoints(line), CodePoints(table[0])) << "ragged row: [" << line << "]";
    EXPECT_EQ(line.find('\x1b'), std::string::npos);
  }
  EXPECT_EQ(table[1].rfind("  evil?name?[31m ", 0), 0u) << table[1];
  EXPECT_EQ(table[2].rfind("  worker?(? ", 0), 0u) << table[2];
  EXPECT_EQ(table[4].rfind("  (unnamed) ", 0), 0u) << table[4];
  EXPECT_NE(text.find("script           bad??.py ?( ok\n"), std::string::npos) << text;
}

TEST(ReportTextWriter, ShowsTheGilColumnOnlyWithSeveralGils) {
  EXPECT_EQ(TableLines(TextReport(SmallRun()))[0].find(" GIL "), std::string::npos);
  RunTrace run = SmallRun();
  run.gils.push_back(Gil(1, 0, 0));
  const std::vector<std::string> table = TableLines(TextReport(run));
  EXPECT_NE(table[0].find(" GIL "), std::string::npos) << table[0];
}

std::string ChromeTrace(const RunTrace& run, std::uint64_t max_slices, std::uint64_t* omitted = nullptr) {
  std::ostringstream out;
  ChromeTraceWriter writer(out, max_slices);
  writer.Write(run, Analyze(run));
  if (omitted != nullptr) *omitted = writer.OmittedSlices();
  return out.str();
}

std::vector<json> EventsWithPhase(const json& doc, const std::string& ph) {
  std::vector<json> events;
  for (const json& e : doc["traceEvents"]) {
    if (e["ph"] == ph) events.push_back(e);
  }
  return events;
}

TEST(ReportChromeTraceWriter, MatchesGoldenForSmallRun) {
  ExpectMatchesGolden("trace_small.json", ChromeTrace(SmallRun(), ChromeTraceWriter::kDefaultMaxSlices));
}

TEST(ReportChromeTraceWriter, NamesTheProcessAndEveryTrack) {
  const json doc = json::parse(ChromeTrace(SmallRun(), ChromeTraceWriter::kDefaultMaxSlices));
  std::map<std::pair<std::string, std::uint64_t>, json> meta;  // (name, tid) -> args
  for (const json& e : EventsWithPhase(doc, "M")) {
    EXPECT_EQ(e["pid"], 4242);
    meta[{e["name"].get<std::string>(), e["tid"].get<std::uint64_t>()}] = e["args"];
  }
  auto args = [&](const std::string& name, std::uint64_t tid) { return meta[{name, tid}]; };
  EXPECT_EQ(args("process_name", 0)["name"], "gilscope: demo.py");
  EXPECT_EQ(args("thread_name", 1)["name"], "MainThread (1001)");
  EXPECT_EQ(args("thread_name", 2)["name"], "worker-1 (1002)");
  EXPECT_EQ(args("thread_name", 1'000'000)["name"], "GIL 0 holder");
  EXPECT_EQ(args("thread_sort_index", 1'000'000)["sort_index"], 0);
  EXPECT_EQ(args("thread_sort_index", 1)["sort_index"], 1);
  EXPECT_EQ(args("thread_sort_index", 2)["sort_index"], 2);
}

TEST(ReportChromeTraceWriter, DrawsEveryHoldWaitAndWaitingCount) {
  const json doc = json::parse(ChromeTrace(SmallRun(), ChromeTraceWriter::kDefaultMaxSlices));
  int holding = 0, waiting = 0, gil_track = 0;
  for (const json& e : EventsWithPhase(doc, "X")) {
    EXPECT_EQ(e["cat"], "gil");
    if (e["name"] == "holding GIL") ++holding;
    if (e["name"] == "waiting for GIL") ++waiting;
    if (e["tid"] == 1'000'000) ++gil_track;
    // worker-1's first hold: 20 ms .. 38 ms after the window start, in us.
    if (e["tid"] == 2 && e["name"] == "holding GIL" && e["ts"] == 20000.0) {
      EXPECT_DOUBLE_EQ(e["dur"].get<double>(), 18000.0);
    }
  }
  EXPECT_EQ(holding, 4);
  EXPECT_EQ(waiting, 3);
  EXPECT_EQ(gil_track, 4);

  std::vector<std::pair<double, int>> counter;
  for (const json& e : EventsWithPhase(doc, "C")) {
    EXPECT_EQ(e["name"], "waiting threads (GIL 0)");
    counter.push_back({e["ts"].get<double>(), e["args"]["waiting"].get<int>()});
  }
  const std::vector<std::pair<double, int>> expected = {{0.0, 0},     {5000.0, 1},  {20000.0, 0}, {30000.0, 1},
                                                        {40000.0, 0}, {80000.0, 1}, {82000.0, 0}};
  EXPECT_EQ(counter, expected);
}

TEST(ReportChromeTraceWriter, WritesTimelineEventsInTimeOrder) {
  const json doc = json::parse(ChromeTrace(SmallRun(), ChromeTraceWriter::kDefaultMaxSlices));
  double last = -1;
  for (const json& e : doc["traceEvents"]) {
    if (e["ph"] == "M") continue;
    EXPECT_GE(e["ts"].get<double>(), last) << e.dump();
    last = e["ts"].get<double>();
  }
}

TEST(ReportChromeTraceWriter, CapsSlicesAndSaysHowManyWereOmitted) {
  // SmallRun has 7 thread slices + 4 GIL slices + 7 counter samples = 18.
  std::uint64_t omitted = 0;
  const json full = json::parse(ChromeTrace(SmallRun(), 18, &omitted));
  EXPECT_EQ(omitted, 0u);
  EXPECT_TRUE(EventsWithPhase(full, "i").empty());

  const json doc = json::parse(ChromeTrace(SmallRun(), 5, &omitted));
  EXPECT_EQ(omitted, 13u);
  EXPECT_EQ(EventsWithPhase(doc, "X").size() + EventsWithPhase(doc, "C").size(), 5u);
  const std::vector<json> marks = EventsWithPhase(doc, "i");
  ASSERT_EQ(marks.size(), 1u);
  EXPECT_EQ(marks[0]["args"]["omitted_slices"], 13);
  EXPECT_NE(marks[0]["name"].get<std::string>().find("13 slices omitted"), std::string::npos);
  // The five earliest are kept (0, 0, 0, 5, 5 ms), so the cut is at 20 ms.
  EXPECT_DOUBLE_EQ(marks[0]["ts"].get<double>(), 20000.0);
  EXPECT_EQ(doc["otherData"]["slices_omitted"], 13);
}

TEST(ReportChromeTraceWriter, StaysValidJsonWithInvalidUtf8) {
  json doc;
  ASSERT_NO_THROW(doc = json::parse(ChromeTrace(HostileRun(), ChromeTraceWriter::kDefaultMaxSlices)));
  EXPECT_EQ(doc["traceEvents"][0]["args"]["name"], "gilscope: bad\xef\xbf\xbd\xef\xbf\xbd.py");
}

}  // namespace
}  // namespace gilscope::report

namespace gilscope::report {
namespace {

using namespace gilscope::report::testing;  // NOLINT: test vocabulary
using nlohmann::json;

std::string Text(const RunTrace& run, bool color, int width) {
  std::ostringstream out;
  TextWriter(out, color, width).Write(run, Analyze(run));
  return out.str();
}

std::string StripAnsi(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\x1b' && i + 1 < s.size() && s[i + 1] == '[') {
      i += 2;
      while (i < s.size() && s[i] != 'm') ++i;
      continue;
    }
    out.push_back(s[i]);
  }
  return out;
}

std::string LineStartingWith(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) return line;
  }
  return {};
}

TEST(ReportJsonWriter, CarriesAttributionTaxFindingsMarkersAndTraceSize) {
  RunTrace run = ConvoyRun(44);
  run.threads[1].cpu_s = 0.5;
  run.threads[0].cpu_s = -1;
  const Analysis analysis = Analyze(run);
  std::ostringstream out;
  JsonWriter(out).Write(run, analysis);
  const json doc = json::parse(out.str());

  EXPECT_EQ(doc["schema_version"], 1);
  EXPECT_DOUBLE_EQ(doc["gil_tax"]["waiting_thread_s"].get<double>(), analysis.gil_tax.waiting_thread_s);
  EXPECT_DOUBLE_EQ(doc["gil_tax"]["ideal_wall_s"].get<double>(), analysis.gil_tax.ideal_wall_s);
  EXPECT_DOUBLE_EQ(doc["gil_tax"]["speedup_bound"].get<double>(), analysis.gil_tax.speedup_bound);
  EXPECT_EQ(doc["gil_tax"]["cpu_count"], 2);

  const json& worker = doc["threads"][1];
  EXPECT_TRUE(doc["threads"][0]["cpu_s"].is_null());
  EXPECT_DOUBLE_EQ(worker["cpu_s"].get<double>(), 0.5);
  ASSERT_FALSE(worker["held_by_function"].empty());
  const json& top = worker["held_by_function"][0];
  EXPECT_EQ(top["function"], "worker");
  EXPECT_EQ(top["file"], "workload.py");
  EXPECT_EQ(top["line"], 27);
  EXPECT_DOUBLE_EQ(top["held_s"].get<double>(), analysis.threads[1].held_by_function[0].seconds);
  const json& io = doc["threads"][3];
  ASSERT_EQ(io["released_at"].size(), 1u);
  EXPECT_EQ(io["released_at"][0]["function"], "Connection.recv");
  EXPECT_EQ(io["released_at"][0]["line"], 88);
  EXPECT_GT(io["released_at"][0]["released_s"].get<double>(), 0.0);

  std::vector<std::string> kinds;
  for (const json& f : doc["findings"]) {
    kinds.push_back(f["kind"]);
    EXPECT_TRUE(f.contains("thread") && f.contains("detail") && f.contains("advice") && f["figures"].is_object());
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"gil_bound", "convoy"}));
  EXPECT_EQ(doc["findings"][1]["thread"], "io");
  EXPECT_DOUBLE_EQ(doc["findings"][1]["figures"]["wait_p50_ms"].get<double>(), 6.0);

  ASSERT_EQ(doc["markers"].size(), 2u);
  EXPECT_EQ(doc["markers"][1]["name"], "crunch");
  EXPECT_EQ(doc["markers"][1]["kind"], "region");
  EXPECT_EQ(doc["markers"][1]["thread"], "worker-0");
  EXPECT_DOUBLE_EQ(doc["markers"][1]["start_s"].get<double>(), 0.002);
  EXPECT_EQ(doc["markers_omitted"], 0);

  EXPECT_EQ(doc["trace"]["slices"], TimelineEventCount(analysis));
  EXPECT_EQ(doc["trace"]["slices_omitted"], 0);
}

TEST(ReportJsonWriter, KeepsAHostileThreadNameIntact) {
  const std::string evil = "</script><img src=x onerror=alert(1)>";
  std::ostringstream out;
  const RunTrace run = ConvoyRun(44, evil);
  JsonWriter(out).Write(run, Analyze(run));
  const json doc = json::parse(out.str());
  EXPECT_EQ(doc["threads"][3]["name"], evil);
  EXPECT_EQ(doc["findings"][1]["thread"], evil);
}

TEST(ReportTextWriter, OpensWithTheGilTaxSentence) {
  const RunTrace run = SmallRun();
  const Analysis a = Analyze(run);
  const std::string text = Text(run, false, 100);
  char expected[256];
  std::snprintf(expected, sizeof expected,
                "The GIL cost this run %.3f s of thread time waiting; with every thread's Python work in parallel "
                "it could take ~%.3f s (up to %.1fx faster).",
                a.gil_tax.waiting_thread_s, a.gil_tax.ideal_wall_s, a.gil_tax.speedup_bound);
  const std::size_t at = text.find(expected);
  ASSERT_NE(at, std::string::npos) << text;
  EXPECT_LT(at, text.find("GILs\n")) << "before the GIL and thread sections";
  EXPECT_NE(text.find("up to 1.5x faster"), std::string::npos);  // 100 / 68.5 ms
}

TEST(ReportTextWriter, DrawsTheTimelineOneColumnPerMillisecond) {
  // Width 125: 22 columns of label, " |", 100 columns of 1 ms each, "|".
  const std::string text = Text(SmallRun(), false, 125);
  const std::string gil = LineStartingWith(text, "    GIL 0 ");
  const std::string a = LineStartingWith(text, "  A MainThread ");
  const std::string b = LineStartingWith(text, "  B worker-1 ");
  auto bar = [](const std::string& line) { return line.substr(line.find('|') + 1, 100); };
  // See SmallRun's diagram: A holds 0..20 and 40..70, waits 30..40, exits
  // at 90; B waits 5..20 and 80..82, holds 20..38 and 82..100.
  EXPECT_EQ(bar(a), std::string(20, '#') + std::string(10, ' ') + std::string(10, '.') + std::string(30, '#') +
                        std::string(30, ' '));
  EXPECT_EQ(bar(b), std::string(5, ' ') + std::string(15, '.') + std::string(18, '#') + std::string(42, ' ') +
                        std::string(2, '.') + std::string(18, '#'));
  EXPECT_EQ(bar(gil), std::string(20, 'A') + std::string(18, 'B') + std::string(2, ' ') + std::string(30, 'A') +
                          std::string(12, ' ') + std::string(18, 'B'));
  for (const std::string& line : {gil, a, b}) EXPECT_EQ(line.size(), 125u) << "[" << line << "]";
}

TEST(ReportTextWriter, TimelineFitsTheGivenWidth) {
  for (int width : {60, 80, 200}) {
    const std::string text = Text(ConvoyRun(44), false, width);
    const std::string row = LineStartingWith(text, "  B worker-0");
    ASSERT_FALSE(row.empty()) << text;
    EXPECT_EQ(row.size(), static_cast<std::size_t>(width));
  }
  // Narrower than the minimum is drawn at the minimum.
  const std::string row = LineStartingWith(Text(ConvoyRun(44), false, 10), "  B worker-0");
  EXPECT_EQ(row.size(), static_cast<std::size_t>(TextWriter::kMinWidth));
}

TEST(ReportTextWriter, ColourIsOnlyAddedNeverChangesTheText) {
  const RunTrace run = ConvoyRun(44);
  const std::string plain = Text(run, false, 100);
  const std::string colour = Text(run, true, 100);
  EXPECT_EQ(plain.find('\x1b'), std::string::npos);
  EXPECT_NE(colour.find("\x1b[1m"), std::string::npos);
  EXPECT_NE(colour.find("\x1b[32m#"), std::string::npos) << "holding is green";
  EXPECT_EQ(StripAnsi(colour), plain);
}

TEST(ReportTextWriter, ListsFindingsAndWhereTheGilWent) {
  const std::string text = Text(ConvoyRun(44), false, 100);
  EXPECT_NE(text.find("! gil_bound: GIL 0 was held 100.0% of the run"), std::string::npos) << text;
  EXPECT_NE(text.find("! convoy: io (1004) gave the GIL up 21 times"), std::string::npos) << text;
  EXPECT_NE(text.find("    -> A CPU-bound thread keeps the GIL"), std::string::npos) << text;
  const std::size_t io = text.find("  io (1004)\n");
  ASSERT_NE(io, std::string::npos) << text;
  EXPECT_NE(text.find("Connection.recv (client.py:88)", io), std::string::npos) << text;
  EXPECT_NE(text.find("worker (workload.py:27)"), std::string::npos) << text;

  const std::string quiet = Text(SmallRun(), false, 100);
  EXPECT_NE(quiet.find("Findings\n  none:"), std::string::npos) << quiet;
  EXPECT_NE(quiet.find("no Python frames were recorded"), std::string::npos) << quiet;
}

}  // namespace
}  // namespace gilscope::report
