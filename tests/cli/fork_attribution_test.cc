// Attribution across fork, on a workload whose release sites are known by
// construction: a parent that blocks in one function while its forked child
// runs (imports, stat calls, a sleep in another function), then blocks in a
// third function after the child has gone. Each blocking call must be
// charged to the function that made it, in the process that made it, and a
// child that leaves through os._exit must end there, not when the run does.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "cli_test_util.h"

namespace {

using gilscope::testing::Gilscope;
using gilscope::testing::OutDir;
using gilscope::testing::ReadJson;
using gilscope::testing::Script;
using nlohmann::json;

// The script: the child imports modules the parent never imported (the
// releases of importlib's _path_stat and get_data, in the child) and sleeps
// in child_work; the parent waits for it in wait_for_child, then sleeps in
// parent_after. Sleeps are the workload here: blocking calls whose site is
// known, not synchronisation.
constexpr const char* kForkScript = R"(import os, sys, time

def child_work():
    import decimal, fractions, statistics, ipaddress, difflib
    for _ in range(200):
        os.stat(sys.executable)
    time.sleep(0.3)

def wait_for_child(pid):
    return os.waitpid(pid, 0)[1]

def parent_after():
    time.sleep(0.3)

if __name__ == "__main__":
    pid = os.fork()
    if pid == 0:
        child_work()
        os._exit(0)
    status = wait_for_child(pid)
    parent_after()
    sys.exit(0 if status == 0 else 1)
)";

// Seconds released at each function of a thread's released_at.
std::map<std::string, double> ReleasedBy(const json& thread) {
  std::map<std::string, double> by;
  for (const json& site : thread["released_at"]) by[site["function"].get<std::string>()] += site["released_s"].get<double>();
  return by;
}

TEST(ForkAttributionTest, EachProcessesBlockingCallsGoToTheFunctionThatMadeThem) {
  const auto dir = OutDir("fork_attribution");
  const auto script = Script(dir, "fork_sites.py", kForkScript);
  const auto out = dir / "out";
  const auto r = Gilscope("run " + script.string() + " --out " + out.string());
  ASSERT_EQ(r.status, 0) << r.output;
  const json rep = ReadJson(out / "report.json");

  long runner = -1, child = -1;
  for (const json& p : rep["processes"]) {
    if (p["role"] == "runner") runner = p["pid"].get<long>();
    if (p["role"] == "fork") child = p["pid"].get<long>();
  }
  ASSERT_GT(runner, 0) << rep["processes"].dump();
  ASSERT_GT(child, 0) << rep["processes"].dump();

  const json* parent_thread = nullptr;
  const json* child_thread = nullptr;
  for (const json& t : rep["threads"]) {
    if (t["pid"].get<long>() == runner) parent_thread = &t;
    if (t["pid"].get<long>() == child) child_thread = &t;
  }
  ASSERT_NE(parent_thread, nullptr);
  ASSERT_NE(child_thread, nullptr);

  // The parent: at least the child's 0.3 s sleep in wait_for_child, its own
  // 0.3 s in parent_after, and nothing of the child's import or stat calls.
  const auto parent = ReleasedBy(*parent_thread);
  EXPECT_GE(parent.count("wait_for_child") ? parent.at("wait_for_child") : 0.0, 0.28) << parent_thread->dump();
  EXPECT_GE(parent.count("parent_after") ? parent.at("parent_after") : 0.0, 0.28) << parent_thread->dump();
  for (const auto& [function, seconds] : parent) {
    if (function == "wait_for_child" || function == "parent_after") continue;
    // The parent's own start-up imports release the GIL too, briefly.
    EXPECT_LT(seconds, 0.25) << function << " took the parent's wait: " << parent_thread->dump();
  }

  // The child: its sleep in child_work, its stat calls there too.
  const auto kid = ReleasedBy(*child_thread);
  EXPECT_GE(kid.count("child_work") ? kid.at("child_work") : 0.0, 0.28) << child_thread->dump();
  EXPECT_EQ(kid.count("wait_for_child") + kid.count("parent_after"), 0u) << child_thread->dump();

  // The child ended at its os._exit, before the parent's 0.3 s in
  // parent_after: its life (and its last hold) stops there, not at the end
  // of the run, which the parent's life reaches.
  EXPECT_TRUE((*child_thread)["exited"].get<bool>()) << child_thread->dump();
  EXPECT_LT((*child_thread)["lifetime_s"].get<double>(), (*parent_thread)["lifetime_s"].get<double>() - 0.28)
      << child_thread->dump() << parent_thread->dump();
  EXPECT_LT((*child_thread)["held_s"].get<double>(), (*child_thread)["lifetime_s"].get<double>() - 0.28)
      << child_thread->dump();
}

}  // namespace
