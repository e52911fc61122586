// `gilscope run` as a user runs it: exit statuses, messages, and the figures
// in report.json for the bundled workloads.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "cli_test_util.h"
#include <vector>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using gilscope::testing::Gilscope;
using gilscope::testing::OutDir;
using gilscope::testing::ReadJson;
using gilscope::testing::Result;
using gilscope::testing::Workload;

std::vector<json> Workers(const json& report, const std::string& prefix) {
  std::vector<json> out;
  for (const json& t : report["threads"]) {
    if (t["name"].get<std::string>().rfind(prefix, 0) == 0) out.push_back(t);
  }
  return out;
}

TEST(RunTest, VersionNamesGilscopeAndCpython) {
  const Result r = Gilscope("--version");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.output.find("gilscope "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("CPython 3.1"), std::string::npos) << r.output;
}

TEST(RunTest, CpuBoundTwoThreadsShareTheGilAndCountsMatchCpython) {
  const fs::path out = OutDir("cpu_bound");
  const Result r = Gilscope("run " + Workload("cpu_bound.py") + " --out " + out.string() +
                            " -- --threads 2");
  ASSERT_EQ(r.status, 0) << r.output;
  const json rep = ReadJson(out / "report.json");
  EXPECT_EQ(rep["schema_version"], 1);
  EXPECT_EQ(rep["status"], "ok");
  EXPECT_EQ(rep["events"]["dropped"], 0);
  ASSERT_EQ(rep["gils"].size(), 1u);
  const json& gil = rep["gils"][0];
  EXPECT_GT(gil["switches"].get<long>(), 20);
  EXPECT_EQ(gil["switches"], gil["cpython_switches"]);
  EXPECT_GT(gil["busy_fraction"].get<double>(), 0.9);
  const auto workers = Workers(rep, "worker-");
  ASSERT_EQ(workers.size(), 2u);
  for (const json& t : workers) {
    const double share = t["held_s"].get<double>() / t["lifetime_s"].get<double>();
    EXPECT_NEAR(share, 0.5, 0.10) << t["name"];
    const double sum = t["held_s"].get<double>() + t["waiting_s"].get<double>() + t["released_s"].get<double>();
    EXPECT_NEAR(sum, t["lifetime_s"].get<double>(), 0.01 * t["lifetime_s"].get<double>()) << t["name"];
    EXPECT_GT(t["forced_releases"].get<long>(), 10) << t["name"];
  }
  // The main thread is in the table under CPython's name for it.
  EXPECT_EQ(Workers(rep, "MainThread").size(), 1u);
  // trace.json is valid JSON with slices for both workers.
  const json trace = ReadJson(out / "trace.json");
  std::set<long> tids;
  for (const json& e : trace["traceEvents"]) {
    if (e.value("ph", "") == "X" && e.value("name", "") == "holding GIL") tids.insert(e["tid"].get<long>());
  }
  EXPECT_GE(tids.size(), 2u);
}

TEST(RunTest, IoBoundLeavesTheGilMostlyFree) {
  const fs::path out = OutDir("io_bound");
  const Result r = Gilscope("run " + Workload("io_bound.py") + " --out " + out.string());
  ASSERT_EQ(r.status, 0) << r.output;
  const json rep = ReadJson(out / "report.json");
  EXPECT_EQ(rep["gils"][0]["switches"], rep["gils"][0]["cpython_switches"]);
  EXPECT_LT(rep["gils"][0]["busy_fraction"].get<double>(), 0.4);
  EXPECT_GT(rep["gils"][0]["switches"].get<long>(), 1000);
}

TEST(RunTest, ConvoyIoThreadWaitsAboutASwitchInterval) {
  const fs::path out = OutDir("convoy");
  const Result r = Gilscope("run " + Workload("convoy.py") + " --out " + out.string());
  ASSERT_EQ(r.status, 0) << r.output;
  const json rep = ReadJson(out / "report.json");
  const double interval_ms = rep["switch_interval_s"].get<double>() * 1000;
  const auto io = Workers(rep, "io");
  ASSERT_EQ(io.size(), 1u);
  EXPECT_GE(io[0]["wait_p50_ms"].get<double>(), interval_ms / 2) << io[0].dump();
  EXPECT_EQ(rep["gils"][0]["switches"], rep["gils"][0]["cpython_switches"]);
}

TEST(RunTest, SwitchIntervalFlagReachesTheScript) {
  const fs::path out = OutDir("interval");
  const Result r = Gilscope("run " + Workload("cpu_bound.py") + " --switch-interval 0.001 --out " +
                            out.string() + " -- --threads 2 --iterations 1000000");
  ASSERT_EQ(r.status, 0) << r.output;
  const json rep = ReadJson(out / "report.json");
  EXPECT_DOUBLE_EQ(rep["switch_interval_s"].get<double>(), 0.001);
}

TEST(RunTest, ScriptSeesArgvMainAndItsFolderOnSysPath) {
  const fs::path dir = OutDir("argv");
  fs::create_directories(dir);
  std::ofstream(dir / "helper_mod.py") << "VALUE = 42\n";
  std::ofstream(dir / "show.py") << "import sys, helper_mod, threading\n"
                                    "assert __name__ == '__main__', __name__\n"
                                    "assert helper_mod.VALUE == 42\n"
                                    "print('ARGV=' + repr(sys.argv))\n"
                                    "print('THREAD=' + threading.current_thread().name)\n";
  const Result r = Gilscope("run " + (dir / "show.py").string() + " --out " + (dir / "o").string() +
                            " -- a 'b c' --flag");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("ARGV=['" + (dir / "show.py").string() + "', 'a', 'b c', '--flag']"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("THREAD=MainThread"), std::string::npos);
}

TEST(RunTest, SystemExitStatusIsTheRunsStatus) {
  const fs::path dir = OutDir("exit");
  fs::create_directories(dir);
  std::ofstream(dir / "exit7.py") << "import sys\nsys.exit(7)\n";
  const Result r = Gilscope("run " + (dir / "exit7.py").string() + " --out " + (dir / "o").string());
  EXPECT_EQ(r.status, 7) << r.output;
  EXPECT_EQ(ReadJson(dir / "o" / "report.json")["exit_code"], 7);
}

TEST(RunTest, UncaughtExceptionPrintsTracebackAndGivesOne) {
  const fs::path dir = OutDir("raise");
  fs::create_directories(dir);
  std::ofstream(dir / "boom.py") << "def f():\n    raise ValueError('boom here')\nf()\n";
  const Result r = Gilscope("run " + (dir / "boom.py").string() + " --out " + (dir / "o").string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("Traceback"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ValueError: boom here"), std::string::npos) << r.output;
  EXPECT_EQ(ReadJson(dir / "o" / "report.json")["status"], "error");
}

TEST(RunTest, MissingScriptIsANamedUsageError) {
  const Result r = Gilscope("run /nonexistent/missing_script.py");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("missing_script.py"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("No such file"), std::string::npos) << r.output;
}

TEST(RunTest, FolderAsScriptIsAUsageError) {
  const Result r = Gilscope(std::string("run ") + GILSCOPE_SOURCE_DIR + "/scripts");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("is a folder"), std::string::npos) << r.output;
}

TEST(RunTest, BadFlagValuesAreUsageErrors) {
  EXPECT_EQ(Gilscope("run " + Workload("cpu_bound.py") + " --switch-interval -1").status, 2);
  EXPECT_EQ(Gilscope("run " + Workload("cpu_bound.py") + " --no-such-flag").status, 2);
  EXPECT_EQ(Gilscope("frobnicate").status, 2);
}

}  // namespace
