// Runs that end badly still leave complete reports: a crash in C code, a
// timeout, a deadlock, Ctrl-C; and a saved run renders again the same.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "cli_test_util.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using gilscope::testing::Gilscope;
using gilscope::testing::OutDir;
using gilscope::testing::ReadJson;
using gilscope::testing::Script;
using gilscope::testing::Workload;

TEST(ReliabilityTest, SegfaultInCCodeKeepsTheEventsAndSaysCrashed) {
  const fs::path dir = OutDir("segv");
  const fs::path s = Script(dir, "segv.py",
                            "import threading, ctypes\n"
                            "def work():\n    n = 0\n    for i in range(300000): n += i\n"
                            "ts = [threading.Thread(target=work) for _ in range(2)]\n"
                            "[t.start() for t in ts]; [t.join() for t in ts]\n"
                            "ctypes.string_at(0)\n");
  const auto r = Gilscope("run " + s.string() + " --out " + (dir / "o").string());
  EXPECT_EQ(r.status, 139) << r.output;
  const json rep = ReadJson(dir / "o" / "report.json");
  EXPECT_EQ(rep["status"], "crashed");
  EXPECT_EQ(rep["exit_code"], 139);
  EXPECT_GT(rep["events"]["recorded"].get<long>(), 20);
  // The run lasted until the crash, and its two workers took turns: the
  // recorded figures are real. CPython's counter was never read at the end
  // (the process died with its GIL open), so that count is unknown.
  EXPECT_GT(rep["wall_s"].get<double>(), 0.0);
  EXPECT_GE(rep["gils"][0]["switches"].get<long>(), 2);
  EXPECT_TRUE(rep["gils"][0]["cpython_switches"].is_null()) << rep["gils"][0].dump();
}

TEST(ReliabilityTest, TimeoutEndsAnInfiniteLoopWithStatus124) {
  const fs::path dir = OutDir("spin");
  const fs::path s = Script(dir, "spin.py", "while True:\n    pass\n");
  const auto start = std::chrono::steady_clock::now();
  const auto r = Gilscope("run " + s.string() + " --timeout 1 --out " + (dir / "o").string());
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.status, 124) << r.output;
  EXPECT_LT(took, 10.0);
  EXPECT_EQ(ReadJson(dir / "o" / "report.json")["status"], "timeout");
}

// Killed by the timeout in time.sleep: no GIL window closed, so the run's
// end is when the supervisor saw the runner end. The report must show the
// second it ran (it showed 0.000 s), the main thread released all of it,
// and CPython's own switch count as unknown, not as a mismatch.
TEST(ReliabilityTest, SleepEndedByTimeoutReportsItsWallTime) {
  const fs::path dir = OutDir("sleep_timeout");
  const fs::path s = Script(dir, "sleeps.py", "import time\ntime.sleep(30)\n");
  const auto r = Gilscope("run " + s.string() + " --timeout 1 --out " + (dir / "o").string());
  EXPECT_EQ(r.status, 124) << r.output;
  const json rep = ReadJson(dir / "o" / "report.json");
  EXPECT_EQ(rep["status"], "timeout");
  const double wall = rep["wall_s"].get<double>();
  EXPECT_GT(wall, 0.9) << r.output;
  EXPECT_LT(wall, 10.0) << r.output;
  ASSERT_FALSE(rep["threads"].empty());
  EXPECT_GT(rep["threads"][0]["released_s"].get<double>(), 0.8 * wall) << rep["threads"][0].dump();
  EXPECT_TRUE(rep["gils"][0]["cpython_switches"].is_null()) << rep["gils"][0].dump();
  EXPECT_EQ(r.output.find("MISMATCH"), std::string::npos) << r.output;
}

// A run of more interpreters than the GIL table holds (each forked child's
// GIL is a new one) records the first ones and counts the rest, in
// report.json and report.txt: nothing is lost silently.
TEST(ReliabilityTest, GilsBeyondTheTableAreCountedAsLost) {
  const fs::path dir = OutDir("gils_lost");
  constexpr int kChildren = 260;
  const fs::path s = Script(dir, "forks.py",
                            "import os\n"
                            "for _ in range(" + std::to_string(kChildren) + "):\n"
                            "    pid = os.fork()\n"
                            "    if pid == 0:\n"
                            "        os._exit(0)\n"
                            "    os.waitpid(pid, 0)\n");
  const auto r = Gilscope("run " + s.string() + " --out " + (dir / "o").string());
  ASSERT_EQ(r.status, 0) << r.output;
  const json rep = ReadJson(dir / "o" / "report.json");
  const auto recorded = rep["gils"].size();
  const auto lost = rep["events"]["gils_lost"].get<std::uint64_t>();
  // The parent's GIL and one per child: every one recorded or counted.
  EXPECT_EQ(recorded + lost, 1u + kChildren) << rep["events"].dump();
  EXPECT_GT(lost, 0u);
  const std::string text = gilscope::testing::ReadText(dir / "o" / "report.txt");
  EXPECT_NE(text.find(std::to_string(lost) + " GILs were not recorded"), std::string::npos) << text;
  // The saved run says the same when rendered again.
  fs::remove(dir / "o" / "report.json");
  const auto again = Gilscope("report " + (dir / "o").string() + " --format json");
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_EQ(ReadJson(dir / "o" / "report.json")["events"]["gils_lost"].get<std::uint64_t>(), lost);
}

TEST(ReliabilityTest, LockCycleIsADeadlockNamedWithItsThreads) {
  const fs::path dir = OutDir("deadlock");
  const fs::path s = Script(dir, "cycle.py",
                            "import threading\n"
                            "a, b, c = threading.Lock(), threading.Lock(), threading.Lock()\n"
                            "go = threading.Barrier(3)\n"
                            "def take(first, second):\n"
                            "    with first:\n"
                            "        go.wait()\n"
                            "        with second:\n"
                            "            pass\n"
                            "ts = [threading.Thread(target=take, args=p, name=n) for n, p in\n"
                            "      (('t1', (a, b)), ('t2', (b, c)), ('t3', (c, a)))]\n"
                            "[t.start() for t in ts]; [t.join() for t in ts]\n");
  const auto start = std::chrono::steady_clock::now();
  const auto r = Gilscope("run " + s.string() + " --deadlock-after 1 --out " + (dir / "o").string());
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_LT(took, 10.0);
  const json rep = ReadJson(dir / "o" / "report.json");
  EXPECT_EQ(rep["status"], "deadlock");
  const std::string summary = rep["deadlock"]["summary"].get<std::string>();
  EXPECT_NE(summary.find("t1 waits for b (held by t2)"), std::string::npos) << summary;
  EXPECT_NE(summary.find("t2 waits for c (held by t3)"), std::string::npos) << summary;
  EXPECT_NE(summary.find("t3 waits for a (held by t1)"), std::string::npos) << summary;
}

TEST(ReliabilityTest, BusyLoopIsNotADeadlock) {
  const fs::path dir = OutDir("busy");
  const fs::path s = Script(dir, "busy.py",
                            "import threading, time\n"
                            "ev = threading.Event()\n"
                            "t = threading.Thread(target=ev.wait)\n"
                            "t.start()\n"
                            "end = time.monotonic() + 2\n"
                            "while time.monotonic() < end:\n    pass\n"
                            "ev.set(); t.join()\n");
  const auto r = Gilscope("run " + s.string() + " --deadlock-after 1 --out " + (dir / "o").string());
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(ReadJson(dir / "o" / "report.json")["status"], "ok");
}

TEST(ReliabilityTest, CtrlCEndsTheRunAndStillWritesTheReports) {
  const fs::path dir = OutDir("sigint");
  const fs::path ready = dir / "ready";
  const fs::path s = Script(dir, "wait.py",
                            "import sys, time\n"
                            "open(sys.argv[1], 'w').close()\n"
                            "while True:\n    time.sleep(0.01)\n");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setpgid(0, 0);  // its own process group, as a terminal's foreground job
    const std::string out = (dir / "o").string();
    execl(GILSCOPE_EXE, GILSCOPE_EXE, "run", s.c_str(), "--out", out.c_str(), "--", ready.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(pid, pid);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!fs::exists(ready) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling a file the script writes
  }
  ASSERT_TRUE(fs::exists(ready));
  kill(-pid, SIGINT);  // what the terminal does on Ctrl-C
  int raw = 0;
  waitpid(pid, &raw, 0);
  ASSERT_TRUE(WIFEXITED(raw));
  EXPECT_EQ(WEXITSTATUS(raw), 130);
  const json rep = ReadJson(dir / "o" / "report.json");
  EXPECT_EQ(rep["status"], "interrupted");
  EXPECT_GT(rep["events"]["recorded"].get<long>(), 10);
}

TEST(ReliabilityTest, ReportRendersTheSavedRunAgainIdentically) {
  const fs::path out = OutDir("rerender");
  ASSERT_EQ(Gilscope("run " + Workload("cpu_bound.py") + " --out " + out.string() +
                     " -- --iterations 1000000").status, 0);
  const json before = ReadJson(out / "report.json");
  fs::remove(out / "report.json");
  const auto r = Gilscope("report " + out.string() + " --format json");
  ASSERT_EQ(r.status, 0) << r.output;
  const json after = ReadJson(out / "report.json");
  EXPECT_EQ(before["gils"], after["gils"]);
  EXPECT_EQ(before["threads"], after["threads"]);
}

TEST(ReliabilityTest, ReportOnAFolderWithoutARunIsAUsageError) {
  const fs::path dir = OutDir("not_a_run");
  fs::create_directories(dir);
  auto r = Gilscope("report " + dir.string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("no events.raw"), std::string::npos) << r.output;
  std::ofstream(dir / "events.raw") << "this is not a raw events file";
  r = Gilscope("report " + dir.string());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("events.raw"), std::string::npos) << r.output;
}

}  // namespace
