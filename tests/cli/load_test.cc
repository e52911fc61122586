// Under load: hundreds of threads, a thousand short-lived ones, dozens of
// subinterpreters, a pool of many processes, a script that forks and spawns
// many children. Each run completes, every thread and process is in the
// report, nothing is dropped (or the drop is counted), and gilscope's own
// processes stay small. Sizes are modest so CI stays quick, but real.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "cli_test_util.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using gilscope::testing::Gilscope;
using gilscope::testing::OutDir;
using gilscope::testing::ReadJson;
using gilscope::testing::Result;

constexpr bool kOwnGil = GILSCOPE_PYTHON_MINOR >= 12;

json RunScript(const std::string& name, const std::string& body, const std::string& flags = "") {
  const fs::path dir = OutDir(name);
  const fs::path script = gilscope::testing::Script(dir, "load.py", body);
  const Result r = Gilscope("run " + script.string() + " --out " + (dir / "o").string() + " " + flags);
  EXPECT_EQ(r.status, 0) << r.output.substr(0, 4000);
  return ReadJson(dir / "o" / "report.json");
}

// Threads of the report whose name starts with `prefix`.
std::set<std::string> NamedThreads(const json& rep, const std::string& prefix) {
  std::set<std::string> names;
  for (const json& t : rep["threads"]) {
    const std::string n = t["name"].get<std::string>();
    if (n.rfind(prefix, 0) == 0) names.insert(n);
  }
  return names;
}

void ExpectNothingLostAndCountsMatch(const json& rep) {
  EXPECT_EQ(rep["events"]["dropped"], 0) << rep["events"].dump();
  gilscope::testing::ExpectSwitchesMatchCpython(rep);
}

// The largest resident set of any process this test waited for, through
// popen's shell: gilscope's supervisor and runner (and the script's children).
long MaxChildRssMiB() {
  rusage u{};
  getrusage(RUSAGE_CHILDREN, &u);
  return u.ru_maxrss / 1024;
}

TEST(LoadTest, TwoHundredThreadsAllRecorded) {
  const json rep = RunScript("threads200",
                             "import threading\n"
                             "done = []\n"
                             "def work(i):\n"
                             "    n = 0\n"
                             "    for k in range(20000): n += k\n"
                             "    done.append(i)\n"
                             "ts = [threading.Thread(target=work, args=(i,), name='w-%d' % i) for i in range(200)]\n"
                             "[t.start() for t in ts]; [t.join() for t in ts]\n"
                             "assert sorted(done) == list(range(200)), len(done)\n");
  EXPECT_EQ(rep["status"], "ok");
  EXPECT_EQ(NamedThreads(rep, "w-").size(), 200u);
  for (const json& t : rep["threads"]) {
    if (t["name"].get<std::string>().rfind("w-", 0) == 0) {
      EXPECT_GE(t["acquisitions"].get<long>(), 1) << t.dump();
    }
  }
  ExpectNothingLostAndCountsMatch(rep);
  EXPECT_LT(MaxChildRssMiB(), 400);
}

TEST(LoadTest, AThousandShortLivedThreads) {
  const json rep = RunScript("threads1000",
                             "import threading\n"
                             "count = 0\n"
                             "lock = threading.Lock()\n"
                             "def tick():\n"
                             "    global count\n"
                             "    with lock: count += 1\n"
                             "for batch in range(20):\n"
                             "    ts = [threading.Thread(target=tick, name='s-%d' % (batch * 50 + i)) for i in range(50)]\n"
                             "    [t.start() for t in ts]; [t.join() for t in ts]\n"
                             "assert count == 1000, count\n");
  EXPECT_EQ(rep["status"], "ok");
  // Every one has a recorder slot of its own (the arena has 1024).
  EXPECT_EQ(NamedThreads(rep, "s-").size(), 1000u);
  ExpectNothingLostAndCountsMatch(rep);
  EXPECT_LT(MaxChildRssMiB(), 400);
}

TEST(LoadTest, TwentyFourSharedSubinterpreters) {
  const json rep = RunScript("subinterp24",
                             "import threading\n"
                             "def work():\n"
                             "    n = 0\n"
                             "    for k in range(20000): n += k\n"
                             "ts = [threading.Thread(target=work) for _ in range(2)]\n"
                             "[t.start() for t in ts]; [t.join() for t in ts]\n",
                             "--mode shared-subinterpreters --instances 24");
  EXPECT_EQ(rep["status"], "ok");
  // Each instance's thread is its subinterpreter's MainThread; the host's is one more.
  int mains = 0, workers = 0;
  for (const json& t : rep["threads"]) {
    mains += t["name"] == "MainThread";
    workers += t["name"].get<std::string>().find("(work)") != std::string::npos;
  }
  EXPECT_EQ(mains, 25);
  EXPECT_EQ(workers, 48);
  EXPECT_EQ(rep["gils"].size(), 1u);
  ExpectNothingLostAndCountsMatch(rep);
  EXPECT_LT(MaxChildRssMiB(), 600);
}

TEST(LoadTest, SixteenOwnGilSubinterpreters) {
  if (!kOwnGil) GTEST_SKIP() << "own-GIL subinterpreters need CPython 3.12+";
  const json rep = RunScript("ownsub16",
                             "n = 0\n"
                             "for k in range(200000): n += k\n",
                             "--mode subinterpreters --instances 16");
  EXPECT_EQ(rep["status"], "ok");
  int mains = 0;
  for (const json& t : rep["threads"]) mains += t["name"] == "MainThread";
  EXPECT_EQ(mains, 17);                // the host's and each subinterpreter's
  EXPECT_EQ(rep["gils"].size(), 17u);  // the main interpreter's and one per instance
  ExpectNothingLostAndCountsMatch(rep);
  EXPECT_LT(MaxChildRssMiB(), 600);
}

TEST(LoadTest, APoolOfSixteenForkedWorkers) {
  const json rep = RunScript("pool16",
                             "import multiprocessing as mp, os\n"
                             "def square(x):\n"
                             "    n = 0\n"
                             "    for k in range(20000): n += k\n"
                             "    return x * x, os.getpid()\n"
                             "if __name__ == '__main__':\n"
                             "    with mp.get_context('fork').Pool(16) as pool:\n"
                             "        results = pool.map(square, range(256), chunksize=1)\n"
                             "    assert [r for r, _ in results] == [x * x for x in range(256)]\n"
                             "    print('workers used', len({p for _, p in results}))\n");
  EXPECT_EQ(rep["status"], "ok");
  // Pool.__exit__ terminates the workers (SIGTERM, reaped by the pool): a
  // worker killed before it recorded its end is "ended"; none is left
  // "running" and none crashed.
  int forks = 0;
  for (const json& p : rep["processes"]) {
    if (p["role"] == "fork") {
      ++forks;
      EXPECT_TRUE(p["status"] == "ok" || p["status"] == "ended") << p.dump();
    }
  }
  EXPECT_EQ(forks, 16);
  ExpectNothingLostAndCountsMatch(rep);
}

TEST(LoadTest, AScriptThatForksAndSpawnsManyChildren) {
  const json rep = RunScript("forks",
                             "import os, subprocess, sys\n"
                             "pids = []\n"
                             "for i in range(40):\n"
                             "    pid = os.fork()\n"
                             "    if pid == 0:\n"
                             "        n = sum(range(10000))\n"
                             "        os._exit(i % 3)\n"
                             "    pids.append(pid)\n"
                             "codes = sorted(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids)\n"
                             "assert codes == sorted(i % 3 for i in range(40)), codes\n"
                             "procs = [subprocess.Popen([sys.executable, '-c', 'import sys; sys.exit(5)'])\n"
                             "         for _ in range(8)]\n"
                             "assert [p.wait() for p in procs] == [5] * 8\n");
  EXPECT_EQ(rep["status"], "ok");
  std::map<std::string, int> roles;
  std::map<int, int> fork_statuses;
  for (const json& p : rep["processes"]) {
    ++roles[p["role"].get<std::string>()];
    if (p["role"] == "fork") ++fork_statuses[p["exit_status"].get<int>()];
    EXPECT_NE(p["status"], "running") << p.dump();
  }
  EXPECT_EQ(roles["fork"], 40);
  EXPECT_EQ(roles["spawn"], 8);
  EXPECT_EQ(fork_statuses[0], 14);
  EXPECT_EQ(fork_statuses[1], 13);
  EXPECT_EQ(fork_statuses[2], 13);
  ExpectNothingLostAndCountsMatch(rep);
}

}  // namespace
