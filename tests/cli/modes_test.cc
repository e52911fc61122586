// Execution modes, traced children, compare: whole-process runs of the
// CPU-bound workload, asserting the GIL picture each mode must produce.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "cli_test_util.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using gilscope::testing::Gilscope;
using gilscope::testing::OutDir;
using gilscope::testing::ExpectSwitchesMatchCpython;
using gilscope::testing::ReadJson;
using gilscope::testing::Workload;

constexpr bool kOwnGil = GILSCOPE_PYTHON_MINOR >= 12;
const std::string kSmall = " -- --threads 1 --iterations 1500000";

json RunMode(const std::string& mode, int instances, const std::string& name) {
  const fs::path out = OutDir(name);
  const auto r = Gilscope("run " + Workload("cpu_bound.py") + " --mode " + mode + " --instances " +
                          std::to_string(instances) + " --out " + out.string() + kSmall);
  EXPECT_EQ(r.status, 0) << r.output;
  return ReadJson(out / "report.json");
}

// Holding slices of two different GIL lanes that overlap in time.
bool GilLanesOverlap(const fs::path& trace_path) {
  const json trace = ReadJson(trace_path);
  std::map<long, std::vector<std::pair<double, double>>> lanes;
  for (const json& e : trace["traceEvents"]) {
    if (e.value("ph", "") != "X") continue;
    const long tid = e["tid"].get<long>();
    if (tid < 1000000) continue;  // GIL lanes only
    lanes[tid].push_back({e["ts"].get<double>(), e["ts"].get<double>() + e["dur"].get<double>()});
  }
  for (auto a = lanes.begin(); a != lanes.end(); ++a) {
    for (auto b = std::next(a); b != lanes.end(); ++b) {
      for (const auto& x : a->second) {
        for (const auto& y : b->second) {
          if (std::max(x.first, y.first) + 1000 < std::min(x.second, y.second)) return true;  // > 1 ms
        }
      }
    }
  }
  return false;
}

TEST(ModesTest, ThreadsShareOneGilAndCountsMatch) {
  const json rep = RunMode("threads", 2, "mode_threads");
  EXPECT_EQ(rep["mode"], "threads");
  EXPECT_EQ(rep["instances"], 2);
  ASSERT_EQ(rep["gils"].size(), 1u);
  ExpectSwitchesMatchCpython(rep);
  int instance_threads = 0;
  for (const json& t : rep["threads"]) instance_threads += t["name"].get<std::string>().rfind("instance-", 0) == 0;
  EXPECT_EQ(instance_threads, 2);
}

TEST(ModesTest, SharedSubinterpretersSerialiseOnTheMainGil) {
  const json rep = RunMode("shared-subinterpreters", 2, "mode_shared");
  ASSERT_EQ(rep["gils"].size(), 1u);  // every instance shares the main GIL
  ExpectSwitchesMatchCpython(rep);
  EXPECT_GT(rep["gils"][0]["switches"].get<long>(), 0);
}

TEST(ModesTest, OwnGilSubinterpretersRunInParallel) {
  if (!kOwnGil) GTEST_SKIP() << "own-GIL subinterpreters need CPython 3.12+";
  const fs::path out = OutDir("mode_subi");
  const auto r = Gilscope("run " + Workload("cpu_bound.py") + " --mode subinterpreters --instances 2 --out " +
                          out.string() + kSmall);
  ASSERT_EQ(r.status, 0) << r.output;
  const json rep = ReadJson(out / "report.json");
  ASSERT_EQ(rep["gils"].size(), 3u);  // the host's main GIL and one per instance
  ExpectSwitchesMatchCpython(rep);
  std::set<long> interpreters;
  for (const json& g : rep["gils"]) interpreters.insert(g["interpreter"].get<long>());
  EXPECT_EQ(interpreters.size(), 3u);
  EXPECT_TRUE(GilLanesOverlap(out / "trace.json")) << "the two instances' GILs were never held at once";
}

TEST(ModesTest, SubinterpretersOn311AreRefusedWithAClearMessage) {
  if (kOwnGil) GTEST_SKIP() << "this build's CPython has own-GIL subinterpreters";
  const auto r = Gilscope("run " + Workload("cpu_bound.py") + " --mode subinterpreters --instances 2 --out " +
                          OutDir("mode_subi_311").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("needs CPython 3.12+"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("shared-subinterpreters"), std::string::npos) << r.output;
}

TEST(ModesTest, ProcessesRecordEachChildsOwnGil) {
  const fs::path out = OutDir("mode_procs");
  const auto r = Gilscope("run " + Workload("cpu_bound.py") + " --mode processes --instances 2 --out " +
                          out.string() + kSmall);
  ASSERT_EQ(r.status, 0) << r.output;
  const json rep = ReadJson(out / "report.json");
  ExpectSwitchesMatchCpython(rep);
  std::set<long> pids;
  for (const json& t : rep["threads"]) {
    if (t["held_s"].get<double>() > 0.05) pids.insert(t["pid"].get<long>());
  }
  EXPECT_GE(pids.size(), 2u);
  EXPECT_TRUE(GilLanesOverlap(out / "trace.json")) << "the two children's GILs were never held at once";
}

TEST(ModesTest, MainModeRefusesSeveralInstances) {
  const auto r = Gilscope("run " + Workload("cpu_bound.py") + " --instances 2 --out " + OutDir("main2").string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("--mode main runs one instance"), std::string::npos) << r.output;
}

TEST(ModesTest, ForkedPoolChildrenAreTracedAsTheirOwnProcesses) {
  const fs::path out = OutDir("mp_fork");
  const auto r = Gilscope("run " + Workload("mp_fork.py") + " --out " + out.string() + " -- --iterations 300000");
  ASSERT_EQ(r.status, 0) << r.output;
  const json rep = ReadJson(out / "report.json");
  ExpectSwitchesMatchCpython(rep);
  std::set<long> pids;
  for (const json& t : rep["threads"]) {
    if (t["held_s"].get<double>() > 0) pids.insert(t["pid"].get<long>());
  }
  EXPECT_GE(pids.size(), 3u);  // the script and its two workers
}

TEST(ModesTest, SpawnedPoolChildrenAreTracedToo) {
  const fs::path out = OutDir("mp_spawn");
  const auto r = Gilscope("run " + Workload("mp_spawn.py") + " --out " + out.string() + " -- --iterations 300000");
  ASSERT_EQ(r.status, 0) << r.output;
  const json rep = ReadJson(out / "report.json");
  ExpectSwitchesMatchCpython(rep);
  std::set<long> pids;
  for (const json& t : rep["threads"]) {
    if (t["held_s"].get<double>() > 0) pids.insert(t["pid"].get<long>());
  }
  EXPECT_GE(pids.size(), 3u);
}

TEST(ModesTest, CompareWritesEveryModeAndTheBaseline) {
  const fs::path out = OutDir("compare");
  const auto r = Gilscope("compare " + Workload("cpu_bound.py") + " --instances 2 --out " + out.string() + kSmall);
  ASSERT_EQ(r.status, 0) << r.output;
  const json c = ReadJson(out / "compare.json");
  EXPECT_EQ(c["schema_version"], 1);
  EXPECT_EQ(c["instances"], 2);
  EXPECT_GT(c["sequential_wall_s"].get<double>(), 0);
  std::set<std::string> modes;
  for (const json& m : c["modes"]) {
    modes.insert(m["mode"].get<std::string>());
    EXPECT_EQ(m["status"], "ok") << m.dump();
    EXPECT_GT(m["wall_s"].get<double>(), 0) << m.dump();
    EXPECT_TRUE(fs::exists(m["report"].get<std::string>())) << m.dump();
  }
  std::set<std::string> expected = {"threads", "shared-subinterpreters", "processes"};
  if (kOwnGil) expected.insert("subinterpreters");
  EXPECT_EQ(modes, expected);
  EXPECT_FALSE(c["verdict"].get<std::string>().empty());
  EXPECT_NE(r.output.find("sequential (baseline)"), std::string::npos) << r.output;
}

// compare takes what run takes: -c COMMAND and -m MODULE, their arguments
// after --, run as python would in every mode.
TEST(ModesTest, CompareRunsACommandOrAModuleInEveryMode) {
  constexpr long long kN = 300000;
  const std::string code = "import sys; n = int(sys.argv[1]); print('sum', sum(i * i for i in range(n)))";
  const fs::path out = OutDir("compare_c");
  const auto r = Gilscope("compare -c " + gilscope::testing::Quoted(code) + " --out " + out.string() + " -- " +
                          std::to_string(kN));
  ASSERT_EQ(r.status, 0) << r.output;
  const json c = ReadJson(out / "compare.json");
  EXPECT_EQ(c["script"], "-c " + code);
  EXPECT_EQ(c["args"], json::array({std::to_string(kN)}));
  // Each of the two instances printed the sum its argument asks for (two
  // threads' prints may interleave: the number is looked for, not the line).
  const std::string expected = std::to_string((kN - 1) * kN * (2 * kN - 1) / 6);
  ASSERT_FALSE(c["modes"].empty());
  for (const json& m : c["modes"]) {
    EXPECT_EQ(m["status"], "ok") << m.dump();
    const std::string log = gilscope::testing::ReadText(out / m["mode"].get<std::string>() / "run.log");
    const auto first = log.find(expected);
    ASSERT_NE(first, std::string::npos) << m["mode"] << ": " << log;
    EXPECT_NE(log.find(expected, first + 1), std::string::npos) << m["mode"] << ": " << log;
  }

  const fs::path module_out = OutDir("compare_m");
  const auto rm = Gilscope("compare -m timeit --instances 2 --out " + module_out.string() +
                           " -- -n 2 -r 1 'sum(range(1000))'");
  ASSERT_EQ(rm.status, 0) << rm.output;
  const json cm = ReadJson(module_out / "compare.json");
  EXPECT_EQ(cm["script"], "-m timeit");
  for (const json& m : cm["modes"]) {
    EXPECT_EQ(m["status"], "ok") << m.dump();
    const std::string log = gilscope::testing::ReadText(module_out / m["mode"].get<std::string>() / "run.log");
    EXPECT_NE(log.find("2 loops, best of 1"), std::string::npos) << m["mode"] << ": " << log;
  }
  EXPECT_EQ(Gilscope("compare -m timeit -c pass --out " + module_out.string()).status, 2);
}

// held_by_function in subinterpreters: the frame probe runs on every
// interpreter, and each drains its own code names before it ends.
TEST(ModesTest, SubinterpreterWorkersAreAttributedToTheirFunction) {
  std::vector<std::string> modes = {"shared-subinterpreters"};
  if (kOwnGil) modes.push_back("subinterpreters");
  for (const std::string& mode : modes) {
    const fs::path out = OutDir("attr_" + mode);
    const auto r = Gilscope("run " + Workload("cpu_bound.py") + " --mode " + mode + " --instances 2 --out " +
                            out.string() + " -- --threads 2 --iterations 1500000");
    ASSERT_EQ(r.status, 0) << r.output;
    const json rep = ReadJson(out / "report.json");
    int workers = 0;
    for (const json& t : rep["threads"]) {
      if (t["name"].get<std::string>().rfind("worker-", 0) != 0) continue;
      ++workers;
      // The top named entry: a worker that finishes alone keeps the GIL to
      // its exit, a hold released with no Python frame ("<unknown>").
      json top;
      for (const json& site : t["held_by_function"]) {
        if (site["function"] != "<unknown>") {
          top = site;
          break;
        }
      }
      ASSERT_TRUE(top.is_object()) << mode << ": " << t.dump();
      EXPECT_EQ(top["function"], "worker") << mode << ": " << t["held_by_function"].dump();
      EXPECT_GT(top["held_s"].get<double>(), 0.005) << top.dump();
      EXPECT_NE(top["file"].get<std::string>().find("cpu_bound.py"), std::string::npos) << top.dump();
    }
    EXPECT_EQ(workers, 4) << mode;  // 2 instances x 2 workers
  }
}

// Children that end through os._exit() (multiprocessing.Process with fork)
// skip atexit: they name their code in the _exit hook. Spawned children use
// their own code ids, which may equal the parent's for other functions.
TEST(ModesTest, ChildProcessesNameTheirOwnFunctions) {
  const fs::path dir = OutDir("attr_children_script");
  fs::create_directories(dir);
  const fs::path script = dir / "children.py";
  std::ofstream(script) << "import multiprocessing, sys, time\n"
                           "def child_work(n):\n"
                           "    total = 0\n"
                           "    for _ in range(n):\n"
                           "        for i in range(20000):\n"
                           "            total += i % 7\n"
                           "        time.sleep(0.001)\n"
                           "    return total\n"
                           "if __name__ == '__main__':\n"
                           "    ctx = multiprocessing.get_context(sys.argv[1])\n"
                           "    ps = [ctx.Process(target=child_work, args=(30,)) for _ in range(2)]\n"
                           "    for p in ps: p.start()\n"
                           "    for p in ps: p.join()\n"
                           "    sys.exit(0 if all(p.exitcode == 0 for p in ps) else 1)\n";
  for (const std::string method : {"fork", "spawn"}) {
    const fs::path out = OutDir("attr_children_" + method);
    const auto r = Gilscope("run " + script.string() + " --out " + out.string() + " -- " + method);
    ASSERT_EQ(r.status, 0) << r.output;
    const json rep = ReadJson(out / "report.json");
    std::set<long> children;
    for (const json& p : rep["processes"]) {
      if (p["role"] == method) children.insert(p["pid"].get<long>());
    }
    int named = 0;
    for (const json& t : rep["threads"]) {
      if (!children.count(t["pid"].get<long>())) continue;
      // 30 time.sleep(0.001) calls inside child_work: at least 30 ms released
      // there (the top entry may be start-up imports on a loaded machine).
      for (const json& site : t["released_at"]) {
        if (site["function"] == "child_work" && site["file"].get<std::string>().find("children.py") != std::string::npos &&
            site["released_s"].get<double>() >= 0.025) {
          ++named;
        }
      }
    }
    EXPECT_EQ(named, 2) << method << ": " << rep["threads"].dump();
  }
}

}  // namespace
