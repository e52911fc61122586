// Phases and findings on whole runs: the two-phase echo workload gets its
// convoy in the right phase, and the guide's calm scripts get no finding.

#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "cli_test_util.h"

namespace gilscope::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// scripts/workloads/echo_phases.py: 1.5 s of an echo server alone, then
// 1.5 s beside a CPU-bound thread; it prints switch_ns, the monotonic time
// (gilscope's clock) at which the CPU-bound thread started.
TEST(PhasesTest, EchoServerConvoyIsFoundInTheSecondPhase) {
  const fs::path out = OutDir("echo_phases");
  const Result r = Gilscope("run " + Workload("echo_phases.py") + " --out " + out.string());
  ASSERT_EQ(r.status, 0) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex("switch_ns=([0-9]+)"))) << r.output;
  const json rep = ReadJson(out / "report.json");
  const double switch_s =
      (std::stod(m[1].str()) - rep["window"]["start_ns"].get<double>()) / 1e9;  // seconds into the run
  ASSERT_GT(switch_s, 1.0) << r.output;  // after start-up and 1.5 s alone
  const double interval_ms = rep["switch_interval_s"].get<double>() * 1000;
  ASSERT_DOUBLE_EQ(interval_ms, 5.0);  // the default, which the bounds below assume

  // The run is cut where the CPU-bound thread started: a phase begins
  // within 10% of that time.
  bool boundary = false;
  for (const json& p : rep["phases"]) boundary |= std::abs(p["start_s"].get<double>() - switch_s) <= 0.1 * switch_s;
  EXPECT_TRUE(boundary) << "switch at " << switch_s << " s; phases " << rep["phases"].dump();

  // The convoy is named in that phase (the first convoy finding: a loaded
  // machine can make it more intense for a while, a phase of its own), with
  // its figures: each wait after a recv that found the GIL held lasted about
  // one switch interval.
  const json* convoy = nullptr;
  for (const json& f : rep["findings"]) {
    if (f["kind"] == "convoy" && f["thread"] == "echo-server" && convoy == nullptr) convoy = &f;
  }
  ASSERT_NE(convoy, nullptr) << rep["findings"].dump(2);
  ASSERT_FALSE((*convoy)["phase"].is_null()) << convoy->dump(2);
  EXPECT_NEAR((*convoy)["start_s"].get<double>(), switch_s, 0.1 * switch_s) << convoy->dump(2);
  EXPECT_GT((*convoy)["end_s"].get<double>(), switch_s + 0.1) << convoy->dump(2);
  // About one switch interval: the waiter's timed wait runs out (5 ms), it
  // sets the drop request, and the CPU-bound holder lets go at its next
  // check. That last step needs the holder on a core: on a machine so loaded
  // that cpu ran for under 80% of the time it held the GIL, each wait also
  // lasts until the scheduler runs it (3.2 intervals once, at cpu 25% of
  // held), and only the lower bound is checked.
  const double median = (*convoy)["figures"]["io_wait_p50_ms"].get<double>();
  EXPECT_GE(median, 2.5) << convoy->dump(2);
  const json* cpu = nullptr;
  for (const json& t : rep["threads"]) {
    if (t["name"] == "cpu") cpu = &t;
  }
  ASSERT_NE(cpu, nullptr);
  const double on_core = (*cpu)["cpu_s"].get<double>() / (*cpu)["held_s"].get<double>();
  if (on_core >= 0.8) {
    EXPECT_LE(median, 7.5) << convoy->dump(2);
  } else {
    std::cout << "note: cpu ran " << 100 * on_core << "% of the time it held the GIL (a loaded machine): median "
              << median << " ms not checked against 7.5 ms\n";
  }
  EXPECT_GE((*convoy)["figures"]["io_waits"].get<double>(), 20) << convoy->dump(2);
  EXPECT_NE((*convoy)["detail"].get<std::string>().find("s (phase "), std::string::npos) << convoy->dump(2);
  // Nothing is found in the quiet phase before it.
  for (const json& f : rep["findings"]) {
    if (f["phase"].is_null()) continue;
    EXPECT_GT(f["end_s"].get<double>(), switch_s) << f.dump(2);
  }
  // report.txt tells the same story, and points from the whole-run median
  // to the phase.
  const std::string text = ReadText(out / "report.txt");
  EXPECT_NE(text.find("! convoy: In "), std::string::npos) << text;
  EXPECT_NE(text.find("\nPhases ("), std::string::npos) << text;
  ExpectSwitchesMatchCpython(rep);
}

// The guide's scripts that demonstrate something other than a GIL problem:
// locks, pools, queues, asyncio, processes. 01, 03 and 06 (threads phase)
// are GIL-bound by design, 07 races at a 1 us switch interval on purpose and
// 08 deadlocks; the rest must get no finding at all.
//
// Findings judge threads by what they did while holding or waiting for the
// GIL, which assumes they had a core. On a machine so loaded that a thread
// held the GIL 20 ms or more while running under half that time (the
// scheduler kept it off the cores, GIL in hand), others wait behind it for
// the machine's sake: the test says so and judges nothing.
class CalmGuideScript : public ::testing::TestWithParam<const char*> {};

std::string Starved(const json& rep) {
  for (const json& t : rep["threads"]) {
    if (t["cpu_s"].is_null()) continue;
    const double held = t["held_s"].get<double>(), cpu = t["cpu_s"].get<double>();
    if (held >= 0.020 && cpu < 0.5 * held) {
      return t["name"].get<std::string>() + " held the GIL " + std::to_string(held) + " s with " +
             std::to_string(cpu) + " s of CPU";
    }
  }
  return {};
}

TEST_P(CalmGuideScript, GetsNoFinding) {
  const std::string name = GetParam();
  const fs::path out = OutDir("calm_" + name);
  const Result r = Gilscope("run " + std::string(GILSCOPE_SOURCE_DIR) + "/scripts/guide/" + name + ".py --out " +
                            out.string());
  ASSERT_EQ(r.status, 0) << r.output;
  const json rep = ReadJson(out / "report.json");
  if (const std::string starved = Starved(rep); !starved.empty() && !rep["findings"].empty()) {
    GTEST_SKIP() << "the machine was too loaded to judge: " << starved << "; findings " << rep["findings"].dump();
  }
  EXPECT_TRUE(rep["findings"].empty()) << rep["findings"].dump(2);
  EXPECT_GE(rep["phases"].size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Guide, CalmGuideScript,
                         ::testing::Values("02_start_threads", "04_rlock_semaphore", "05_processes", "09_lock_ordering",
                                           "10_thread_pool", "11_queue", "12_asyncio", "13_web_scraping",
                                           "14_async_server", "15_ml_pool"));

}  // namespace
}  // namespace gilscope::testing
