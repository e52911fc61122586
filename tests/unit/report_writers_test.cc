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
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <tuple>
#include <string>
#include <vector>

#include "report/analysis.h"
#include "report/chrome_trace_writer.h"
#include "report/html_writer.h"
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

// A crashed process never closes its GIL, so CPython's end count was never
// read: the reports say the count is unknown instead of a "mismatch" with
// a count of 0.
TEST(ReportWriters, AGilNeverClosedHasAnUnknownCPythonCountNotAMismatch) {
  RunTrace run = SmallRun();
  run.info.status = "crashed";
  run.gils[0].end_ns = 0;
  run.gils[0].cpython_switch_start = 0;
  run.gils[0].cpython_switch_end = 0;
  const Analysis a = Analyze(run);
  EXPECT_FALSE(a.gils[0].cpython_switches_known);
  EXPECT_EQ(a.gils[0].switches, 3u) << "the recorded switches are still counted";
  const json doc = json::parse(JsonReport(run));
  EXPECT_TRUE(doc["gils"][0]["cpython_switches"].is_null()) << doc["gils"][0].dump();
  EXPECT_TRUE(doc["gils"][0]["switches_match"].is_null()) << doc["gils"][0].dump();
  const std::string text = TextReport(run);
  EXPECT_EQ(text.find("MISMATCH"), std::string::npos) << text;
  EXPECT_NE(text.find("3 switches, CPython's own count unknown: the GIL was never closed"), std::string::npos) << text;
  // A closed GIL still compares.
  EXPECT_NE(TextReport(SmallRun()).find("3 switches, CPython counted 3 (match)"), std::string::npos);
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

std::string ChromeTrace(const RunTrace& run, std::uint64_t max_events, TracePlan* plan = nullptr) {
  std::ostringstream out;
  ChromeTraceWriter writer(out, max_events);
  writer.Write(run, Analyze(run));
  if (plan != nullptr) *plan = writer.plan();
  return out.str();
}

std::vector<json> EventsWithPhase(const json& doc, const std::string& ph) {
  std::vector<json> events;
  for (const json& e : doc["traceEvents"]) {
    if (e["ph"] == ph) events.push_back(e);
  }
  return events;
}

constexpr std::uint64_t kGilLane = ChromeTraceWriter::kGilTidBase;

TEST(ReportChromeTraceWriter, MatchesGoldenForSmallRun) {
  ExpectMatchesGolden("trace_small.json", ChromeTrace(SmallRun(), ChromeTraceWriter::kDefaultMaxEvents));
}

TEST(ReportChromeTraceWriter, NamesAndSortsTheProcessAndEveryTrack) {
  const json doc = json::parse(ChromeTrace(SmallRun(), ChromeTraceWriter::kDefaultMaxEvents));
  std::map<std::pair<std::string, std::uint64_t>, json> meta;  // (name, tid) -> args
  for (const json& e : EventsWithPhase(doc, "M")) {
    EXPECT_EQ(e["pid"], 4242);
    meta[{e["name"].get<std::string>(), e["tid"].get<std::uint64_t>()}] = e["args"];
  }
  auto args = [&](const std::string& name, std::uint64_t tid) { return meta[{name, tid}]; };
  EXPECT_EQ(args("process_name", 0)["name"], "gilscope: demo.py");
  EXPECT_EQ(args("process_sort_index", 0)["sort_index"], 0);
  EXPECT_EQ(args("thread_name", 1)["name"], "MainThread (1001)");
  EXPECT_EQ(args("thread_name", 2)["name"], "worker-1 (1002)");
  EXPECT_EQ(args("thread_name", kGilLane)["name"], "GIL 0 holder (interpreter 0)");
  EXPECT_EQ(args("thread_sort_index", kGilLane)["sort_index"], 0);
  EXPECT_EQ(args("thread_sort_index", 1)["sort_index"], 1);
  EXPECT_EQ(args("thread_sort_index", 2)["sort_index"], 3);
}

// SmallRun's thread lanes, back to back over each lifetime:
//   MainThread 0..90:  H 0..20, R 20..30, W 30..40, H 40..70, R 70..90
//   worker-1   5..100: W 5..20, H 20..38, R 38..80, W 80..82, H 82..100
// (worker-1's lifetime starts at its first event, 5 ms.)
TEST(ReportChromeTraceWriter, DrawsEveryStateInItsOwnColourOverEachLifetime) {
  const json doc = json::parse(ChromeTrace(SmallRun(), ChromeTraceWriter::kDefaultMaxEvents));
  std::map<std::uint64_t, std::vector<std::tuple<std::string, double, double, std::string>>> lanes;
  std::set<std::string> colours;
  int gil_lane = 0;
  for (const json& e : EventsWithPhase(doc, "X")) {
    const auto tid = e["tid"].get<std::uint64_t>();
    if (tid == kGilLane) {
      ++gil_lane;
      continue;
    }
    if (tid == ChromeTraceWriter::kPhaseTid) continue;  // the phase lane (its own test)
    lanes[tid].push_back({e["name"], e["ts"], e["dur"], e["cname"]});
  }
  EXPECT_EQ(gil_lane, 4);
  using Slice = std::tuple<std::string, double, double, std::string>;
  const std::string h = "holding GIL", w = "waiting for GIL", r = "released GIL";
  const std::string hc = "thread_state_running", wc = "terrible", rc = "thread_state_sleeping";
  EXPECT_EQ(lanes[1], (std::vector<Slice>{{h, 0.0, 20000.0, hc},
                                          {r, 20000.0, 10000.0, rc},
                                          {w, 30000.0, 10000.0, wc},
                                          {h, 40000.0, 30000.0, hc},
                                          {r, 70000.0, 20000.0, rc}}));
  EXPECT_EQ(lanes[2], (std::vector<Slice>{{w, 5000.0, 15000.0, wc},
                                          {h, 20000.0, 18000.0, hc},
                                          {r, 38000.0, 42000.0, rc},
                                          {w, 80000.0, 2000.0, wc},
                                          {h, 82000.0, 18000.0, hc}}));
}

// Counter samples must equal the number of thread lanes in "waiting for GIL"
// at that instant, and never go negative.
TEST(ReportChromeTraceWriter, WaitingCounterMatchesTheWaitingSlices) {
  const json doc = json::parse(ChromeTrace(SmallRun(), ChromeTraceWriter::kDefaultMaxEvents));
  std::vector<std::pair<double, double>> waits;
  for (const json& e : EventsWithPhase(doc, "X")) {
    if (e["name"] == "waiting for GIL") waits.push_back({e["ts"], e["ts"].get<double>() + e["dur"].get<double>()});
  }
  std::vector<std::pair<double, int>> counter;
  for (const json& e : EventsWithPhase(doc, "C")) {
    EXPECT_EQ(e["name"], "waiting threads (GIL 0)");
    EXPECT_EQ(e["tid"], kGilLane);
    const int n = e["args"]["waiting"].get<int>();
    EXPECT_GE(n, 0);
    const double ts = e["ts"];
    int expected = 0;
    for (const auto& [a, b] : waits) expected += a <= ts && ts < b;
    EXPECT_EQ(n, expected) << "at " << ts;
    counter.push_back({ts, n});
  }
  const std::vector<std::pair<double, int>> expected = {{0.0, 0},     {5000.0, 1},  {20000.0, 0}, {30000.0, 1},
                                                        {40000.0, 0}, {80000.0, 1}, {82000.0, 0}};
  EXPECT_EQ(counter, expected);
}

// GIL 0's holders: A 0..20, B 20..38, A 40..70, B 82..100: three hand-offs,
// each an arrow from the releasing thread's hold to the acquirer's.
TEST(ReportChromeTraceWriter, DrawsAHandOffArrowFromEachReleaseToTheNextHolder) {
  const json doc = json::parse(ChromeTrace(SmallRun(), ChromeTraceWriter::kDefaultMaxEvents));
  std::map<std::uint64_t, json> starts, finishes;
  for (const json& e : EventsWithPhase(doc, "s")) {
    EXPECT_TRUE(starts.emplace(e["id"].get<std::uint64_t>(), e).second) << "duplicate flow id " << e.dump();
  }
  for (const json& e : EventsWithPhase(doc, "f")) {
    EXPECT_EQ(e["bp"], "e");
    EXPECT_TRUE(finishes.emplace(e["id"].get<std::uint64_t>(), e).second) << "duplicate flow id " << e.dump();
  }
  ASSERT_EQ(starts.size(), 3u);
  ASSERT_EQ(finishes.size(), 3u);
  // (from tid, s ts, to tid, f ts): one ns inside each hold.
  std::vector<std::tuple<int, double, int, double>> flows;
  for (const auto& [id, s] : starts) {
    ASSERT_TRUE(finishes.count(id)) << "flow " << id << " has no end";
    const json& f = finishes[id];
    EXPECT_EQ(s["cat"], f["cat"]);
    EXPECT_EQ(s["name"], f["name"]);
    EXPECT_LT(s["ts"].get<double>(), f["ts"].get<double>());
    flows.push_back({s["tid"], s["ts"], f["tid"], f["ts"]});
  }
  EXPECT_EQ(flows, (std::vector<std::tuple<int, double, int, double>>{
                       {1, 19999.999, 2, 20000.001}, {2, 37999.999, 1, 40000.001}, {1, 69999.999, 2, 82000.001}}));
}

TEST(ReportChromeTraceWriter, PutsMarkersOnTheirThreadsMarkersLane) {
  const RunTrace run = ConvoyRun(44);
  std::ostringstream out;
  ChromeTraceWriter(out).Write(run, Analyze(run));
  const json doc = json::parse(out.str());
  const std::vector<json> marks = EventsWithPhase(doc, "i");
  ASSERT_EQ(marks.size(), 1u);
  EXPECT_EQ(marks[0]["name"], "start");
  EXPECT_EQ(marks[0]["tid"], ChromeTraceWriter::kMarkerTidBase + 0);  // MainThread
  EXPECT_DOUBLE_EQ(marks[0]["ts"].get<double>(), 1000.0);
  int regions = 0;
  for (const json& e : EventsWithPhase(doc, "X")) {
    if (e["cat"] != "marker") continue;
    ++regions;
    EXPECT_EQ(e["name"], "crunch");
    EXPECT_EQ(e["tid"], ChromeTraceWriter::kMarkerTidBase + 1);  // worker-0
    EXPECT_DOUBLE_EQ(e["ts"].get<double>(), 2000.0);
  }
  EXPECT_EQ(regions, 1);
  bool named = false;
  for (const json& e : EventsWithPhase(doc, "M")) {
    named |= e["name"] == "thread_name" && e["tid"] == ChromeTraceWriter::kMarkerTidBase + 1 &&
             e["args"]["name"] == "worker-0 (" + std::to_string(run.threads[1].native_id) + ") markers";
  }
  EXPECT_TRUE(named);
}

TEST(ReportChromeTraceWriter, PutsEveryProcessInTheFileUnderItsOwnPid) {
  RunTrace run = SmallRun();
  run.processes = {{4242, 1, "runner", "ok", 0, -1}, {5151, 4242, "fork", "ok", 0, -1}};
  GilInfo child = Gil(1, 0, 0);
  child.pid = 5151;
  run.gils[0].pid = 4242;
  run.gils.push_back(child);
  ThreadTrace t = Thread("MainThread", 5151, {Request(10, 1), Acquired(11, 1), Released(50, false, 1)});
  t.pid = 5151;
  run.threads.push_back(t);
  const json doc = json::parse(ChromeTrace(run, ChromeTraceWriter::kDefaultMaxEvents));
  std::map<std::uint64_t, json> processes;
  for (const json& e : EventsWithPhase(doc, "M")) {
    if (e["name"] == "process_sort_index") processes[e["pid"]]["sort"] = e["args"]["sort_index"];
    if (e["name"] == "process_name") processes[e["pid"]]["name"] = e["args"]["name"];
  }
  ASSERT_EQ(processes.size(), 2u);
  EXPECT_EQ(processes[4242]["sort"], 0);
  EXPECT_EQ(processes[5151]["sort"], 1);
  EXPECT_EQ(processes[5151]["name"], "gilscope: demo.py (fork)");
  int child_gil = 0, child_thread = 0;
  for (const json& e : EventsWithPhase(doc, "X")) {
    if (e["tid"] == kGilLane + 1) {
      EXPECT_EQ(e["pid"], 5151);
      ++child_gil;
    }
    if (e["tid"] == 3) {
      EXPECT_EQ(e["pid"], 5151);
      ++child_thread;
    }
  }
  EXPECT_EQ(child_gil, 1);
  EXPECT_EQ(child_thread, 3);  // waiting 10..11, holding 11..50, released 50..100
}

// SmallRun: 10 thread slices + 4 holder slices + 7 counter samples + 3 flows
// (6 events) + 1 phase slice = 28. Below that the arrows go first, then
// short slices merge.
TEST(ReportChromeTraceWriter, AggregatesAboveTheLimitAndSaysSo) {
  TracePlan plan;
  const json full = json::parse(ChromeTrace(SmallRun(), 28, &plan));
  EXPECT_EQ(plan.full_events, 28u);
  EXPECT_FALSE(plan.aggregated());
  EXPECT_EQ(full["otherData"]["aggregated"], false);

  const json no_flows = json::parse(ChromeTrace(SmallRun(), 27, &plan));
  EXPECT_TRUE(plan.aggregated());
  EXPECT_FALSE(plan.flows);
  EXPECT_EQ(plan.merge_below_ns, 0u);
  EXPECT_EQ(plan.events, 22u);
  EXPECT_TRUE(EventsWithPhase(no_flows, "s").empty());
  EXPECT_EQ(no_flows["otherData"]["aggregated"], true);
  EXPECT_NE(plan.reason.find("would hold 28 events (limit 27): hand-off arrows left out"), std::string::npos)
      << plan.reason;

  const json merged = json::parse(ChromeTrace(SmallRun(), 12, &plan));
  EXPECT_GT(plan.merge_below_ns, 0u);
  EXPECT_LE(plan.events, 12u);
  std::size_t timeline = 0;
  bool saw_aggregate = false;
  for (const json& e : merged["traceEvents"]) {
    if (e["ph"] == "M") continue;
    ++timeline;
    saw_aggregate |= e["name"].get<std::string>().find("(aggregated)") != std::string::npos;
    if (e["ph"] == "C") {
      EXPECT_GE(e["args"]["waiting"].get<int>(), 0);
    }
  }
  EXPECT_EQ(timeline, plan.events) << "the plan and the file disagree";
  EXPECT_TRUE(saw_aggregate);
  EXPECT_NE(plan.reason.find("merged"), std::string::npos) << plan.reason;
  // Merged slices still tile each thread's lifetime: MainThread 0..90.
  double covered = 0;
  for (const json& e : EventsWithPhase(merged, "X")) {
    if (e["tid"] == 1) covered += e["dur"].get<double>();
  }
  EXPECT_DOUBLE_EQ(covered, 90000.0);

  // report.json and report.txt say the same as the writer.
  const Analysis analysis = Analyze(SmallRun());
  EXPECT_EQ(PlanChromeTrace(analysis, 12).events, plan.events);
}

// Three threads on two GILs with waits, holds and released stretches from
// 1 us to ~8 ms (log-uniform, a fixed seed), holds overlapping across
// threads and idle gaps on the GIL lanes: every branch of the merging.
RunTrace VariedRun() {
  RunTrace run = EmptyRun(1'000);
  run.gils = {Gil(0, 0, 0), Gil(1, 0, 0)};
  std::uint64_t seed = 12345;
  auto next_us = [&seed]() {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return std::int64_t{1} << ((seed >> 33) % 14);  // 1 us .. 8.192 ms
  };
  for (int t = 0; t < 3; ++t) {
    std::vector<Event> events;
    std::int64_t us = static_cast<std::int64_t>(t) * 7;
    const auto gil = static_cast<std::uint8_t>(t == 2 ? 1 : 0);
    while (us < 990'000) {
      events.push_back(Make(EventKind::kRequest, AtUs(us), gil, 0));
      us += next_us();
      events.push_back(Make(EventKind::kAcquired, AtUs(us), gil, 0));
      us += next_us();
      events.push_back(Make(EventKind::kReleased, AtUs(us), gil, (seed >> 40) % 2 == 0 ? recorder::kFlagForced : 0));
      us += next_us();
    }
    run.threads.push_back(Thread("t" + std::to_string(t), 2000 + t, events));
  }
  return run;
}

// The plan counts merged pieces without building them (MergeCounter); the
// file is written with Merger. Over many limits, hence many merge widths,
// the two agree, and a merged trace fits its limit.
TEST(ReportChromeTraceWriter, PlanCountsExactlyWhatIsWrittenAtEveryWidth) {
  const RunTrace run = VariedRun();
  const Analysis analysis = Analyze(run);
  const TracePlan full = PlanChromeTrace(analysis, std::numeric_limits<std::uint64_t>::max());
  ASSERT_GT(full.full_events, 2000u);
  std::set<std::uint64_t> widths;
  for (std::uint64_t limit = 8; limit < full.full_events; limit += limit / 4 + 1) {
    SCOPED_TRACE("limit " + std::to_string(limit));
    TracePlan plan;
    const json doc = json::parse(ChromeTrace(run, limit, &plan));
    std::uint64_t timeline = 0;
    for (const json& e : doc["traceEvents"]) timeline += e["ph"] != "M" ? 1 : 0;
    EXPECT_EQ(timeline, plan.events) << "width " << plan.merge_below_ns;
    EXPECT_EQ(doc["otherData"]["events"], plan.events);
    EXPECT_EQ(plan.full_events, full.full_events);
    if (plan.merge_below_ns > 0 && plan.merge_below_ns < 1'000 * kMs) {
      EXPECT_LE(plan.events, limit) << "width " << plan.merge_below_ns;
    }
    widths.insert(plan.merge_below_ns);
  }
  EXPECT_GE(widths.size(), 15u) << "the limits should exercise many widths";
}

// `gilscope report` plans trace.json once and hands the plan to every
// writer: each writes exactly what it writes when it plans for itself.
TEST(ReportWriters, WriteTheSameWithAPlanMadeOnce) {
  const RunTrace run = VariedRun();
  const Analysis analysis = Analyze(run);
  const TracePlan plan = PlanChromeTrace(analysis);
  const auto both = [&](auto write_planned, auto write_own) {
    std::ostringstream planned, own;
    write_planned(planned);
    write_own(own);
    EXPECT_FALSE(own.str().empty());
    EXPECT_EQ(planned.str(), own.str());
  };
  both([&](std::ostream& o) { JsonWriter(o).Write(run, analysis, plan); },
       [&](std::ostream& o) { JsonWriter(o).Write(run, analysis); });
  both([&](std::ostream& o) { TextWriter(o).Write(run, analysis, plan); },
       [&](std::ostream& o) { TextWriter(o).Write(run, analysis); });
  both([&](std::ostream& o) { HtmlWriter(o).Write(run, analysis, plan); },
       [&](std::ostream& o) { HtmlWriter(o).Write(run, analysis); });
  // A small limit, so that the plan merges.
  const TracePlan merged = PlanChromeTrace(analysis, 300);
  ASSERT_GT(merged.merge_below_ns, 0u);
  both([&](std::ostream& o) { ChromeTraceWriter(o, 300).Write(run, analysis, merged); },
       [&](std::ostream& o) { ChromeTraceWriter(o, 300).Write(run, analysis); });
}

TEST(ReportChromeTraceWriter, StaysValidJsonWithInvalidUtf8) {
  json doc;
  ASSERT_NO_THROW(doc = json::parse(ChromeTrace(HostileRun(), ChromeTraceWriter::kDefaultMaxEvents)));
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
  RunTrace run = ConvoyRun(44, "io", /*crunch=*/false);
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
  EXPECT_EQ(doc["findings"][0]["gil"], 0);  // gil_bound is about GIL 0
  EXPECT_EQ(doc["findings"][1]["gil"], 0);  // io's main GIL
  // One phase: each finding covers the run and names phase 0.
  EXPECT_EQ(doc["findings"][1]["phase"], 0);
  EXPECT_DOUBLE_EQ(doc["findings"][1]["start_s"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(doc["findings"][1]["end_s"].get<double>(), 0.222);
  EXPECT_EQ(doc["threads"][3]["io_waits"], 20);
  EXPECT_DOUBLE_EQ(doc["threads"][3]["io_wait_p50_ms"].get<double>(), 6.0);

  ASSERT_EQ(doc["markers"].size(), 1u);
  EXPECT_EQ(doc["markers"][0]["name"], "start");
  EXPECT_EQ(doc["markers"][0]["kind"], "mark");
  EXPECT_EQ(doc["markers"][0]["thread"], "MainThread");
  EXPECT_DOUBLE_EQ(doc["markers"][0]["start_s"].get<double>(), 0.001);
  EXPECT_EQ(doc["markers_omitted"], 0);

  EXPECT_EQ(doc["trace"]["events"], PlanChromeTrace(analysis).full_events);
  EXPECT_EQ(doc["trace"]["aggregated"], false);
  EXPECT_EQ(doc["trace"]["reason"], "");
}

TEST(ReportJsonWriter, KeepsAHostileThreadNameIntact) {
  const std::string evil = "</script><img src=x onerror=alert(1)>";
  std::ostringstream out;
  const RunTrace run = ConvoyRun(44, evil, /*crunch=*/false);
  JsonWriter(out).Write(run, Analyze(run));
  const json doc = json::parse(out.str());
  EXPECT_EQ(doc["threads"][3]["name"], evil);
  EXPECT_EQ(doc["findings"][1]["thread"], evil);
}

// EchoPhasesRun: quiet for 1 s, then a convoy (report_test_traces.h).
TEST(ReportJsonWriter, ListsEachPhaseWithItsFiguresAndDatesTheFindings) {
  const RunTrace run = EchoPhasesRun();
  const json doc = json::parse(JsonReport(run));
  ASSERT_EQ(doc["phases"].size(), 2u);
  const json& quiet = doc["phases"][0];
  const json& convoy = doc["phases"][1];
  EXPECT_DOUBLE_EQ(quiet["start_s"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(quiet["end_s"].get<double>(), 1.0);
  EXPECT_EQ(quiet["source"], "start");
  EXPECT_DOUBLE_EQ(convoy["start_s"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(convoy["end_s"].get<double>(), 2.0);
  EXPECT_EQ(convoy["source"], "change");
  EXPECT_DOUBLE_EQ(quiet["gils"][0]["contended_fraction"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(convoy["gils"][0]["contended_fraction"].get<double>(), 0.83498);
  EXPECT_DOUBLE_EQ(convoy["gils"][0]["busy_fraction"].get<double>(), 0.99751);
  // Threads alive in the phase, by index into threads[]: cpu (from 999.5
  // ms) is alive in both.
  ASSERT_EQ(convoy["threads"].size(), 2u);
  const json& echo = convoy["threads"][0];
  EXPECT_EQ(echo["thread"], 0);
  EXPECT_EQ(echo["name"], "echo-server");
  EXPECT_DOUBLE_EQ(echo["lifetime_s"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(echo["waiting_fraction"].get<double>(), 0.83083);
  EXPECT_EQ(echo["waits"], 332);
  EXPECT_DOUBLE_EQ(echo["wait_p50_ms"].get<double>(), 0.005);
  EXPECT_DOUBLE_EQ(echo["wait_p99_ms"].get<double>(), 5.0);
  EXPECT_EQ(echo["io_waits"], 166);
  EXPECT_DOUBLE_EQ(echo["io_wait_p50_ms"].get<double>(), 5.0);
  EXPECT_DOUBLE_EQ(echo["held_fraction"].get<double>() + echo["waiting_fraction"].get<double>() +
                       echo["released_fraction"].get<double>(),
                   1.0);
  EXPECT_EQ(quiet["threads"][0]["io_waits"], 0);
  ASSERT_EQ(doc["findings"].size(), 1u);
  EXPECT_EQ(doc["findings"][0]["kind"], "convoy");
  EXPECT_EQ(doc["findings"][0]["phase"], 1);
  EXPECT_DOUBLE_EQ(doc["findings"][0]["start_s"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(doc["findings"][0]["end_s"].get<double>(), 2.0);
}

TEST(ReportTextWriter, ShowsThePhasesAndWhereAWholeRunMedianHidesOne) {
  const std::string text = Text(EchoPhasesRun(), false, 100);
  // The whole-run median (a folded 5 us wait) is starred and explained.
  const std::string row = LineStartingWith(text, "  echo-server ");
  EXPECT_NE(row.find(" 0.005* "), std::string::npos) << row;
  EXPECT_NE(text.find("  * echo-server (7): wait p50 0.005 ms over the run, but a median 5.000 ms after blocking "
                      "calls that found the GIL held, in phase 2 (1.000-2.000 s)\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("! convoy: In 1.000-2.000 s (phase 2 of 2): echo-server (7) waited a median 5.00 ms"),
            std::string::npos)
      << text;
  const std::size_t phases = text.find("\nPhases (");
  ASSERT_NE(phases, std::string::npos) << text;
  EXPECT_NE(text.find("  phase 1  0.000-1.000 s (start, 1.000 s); GIL 0 busy ", phases), std::string::npos) << text;
  EXPECT_NE(text.find("  phase 2  1.000-2.000 s (change, 1.000 s); GIL 0 busy 99.8%, contended 83.5%\n", phases),
            std::string::npos)
      << text;
  // In phase 2, echo-server waited most: first row, with its io waits.
  const std::size_t phase2 = text.find("  phase 2 ", phases);
  const std::string echo = LineStartingWith(text.substr(phase2), "    echo-server (7) ");
  EXPECT_NE(echo.find("83.1"), std::string::npos) << echo;         // waiting %
  EXPECT_NE(echo.find("166      5.000"), std::string::npos) << echo;  // io waits, their p50
  // A run of one phase has no Phases section and no star.
  const std::string quiet = Text(SmallRun(), false, 100);
  EXPECT_EQ(quiet.find("\nPhases ("), std::string::npos);
  EXPECT_EQ(quiet.find('*'), std::string::npos);
}

TEST(ReportChromeTraceWriter, DrawsOneSliceAPhaseOnThePhaseLane) {
  const json doc = json::parse(ChromeTrace(EchoPhasesRun(), ChromeTraceWriter::kDefaultMaxEvents));
  std::vector<json> phases;
  for (const json& e : EventsWithPhase(doc, "X")) {
    if (e["tid"] == ChromeTraceWriter::kPhaseTid) phases.push_back(e);
  }
  ASSERT_EQ(phases.size(), 2u);
  EXPECT_EQ(phases[0]["name"], "phase 1 (start)");
  EXPECT_EQ(phases[0]["cat"], "phase");
  EXPECT_DOUBLE_EQ(phases[0]["ts"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(phases[0]["dur"].get<double>(), 1e6);
  EXPECT_EQ(phases[1]["name"], "phase 2 (change)");
  EXPECT_DOUBLE_EQ(phases[1]["ts"].get<double>(), 1e6);
  EXPECT_DOUBLE_EQ(phases[1]["dur"].get<double>(), 1e6);
  EXPECT_DOUBLE_EQ(phases[1]["args"]["GIL 0 contended %"].get<double>(), 83.5);
  EXPECT_EQ(phases[1]["args"]["source"], "change");
  bool named = false, first = false;
  for (const json& e : EventsWithPhase(doc, "M")) {
    named |= e["name"] == "thread_name" && e["tid"] == ChromeTraceWriter::kPhaseTid && e["args"]["name"] == "phases";
    first |= e["name"] == "thread_sort_index" && e["tid"] == ChromeTraceWriter::kPhaseTid &&
             e["args"]["sort_index"] == -1;
  }
  EXPECT_TRUE(named);
  EXPECT_TRUE(first);
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
  const std::string text = Text(ConvoyRun(44, "io", /*crunch=*/false), false, 100);
  EXPECT_NE(text.find("! gil_bound: GIL 0 was held 100.0% of the run"), std::string::npos) << text;
  EXPECT_NE(text.find("! convoy: io (1004) waited a median 6.00 ms (1.2 switch intervals) for each of 20"),
            std::string::npos)
      << text;
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
