// Every figure of real runs obeys figure_invariants.h: the whole guide suite
// under `gilscope suite` (forks, pools, subprocess waits, a deadlock,
// asyncio: the scripts whose index once showed "GIL busy 187%"), its
// index.json, index.txt and index.html, and each script's report.json; then
// the two scripts with child processes again in processes mode, where every
// instance is a forked process with GILs of its own.
//
// The assertions are on figures, not on the scripts' own pass/fail: a guide
// script that misses its lesson under load says nothing about the figures.

#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>
#include <string>

#include "cli_test_util.h"
#include "figure_invariants.h"

namespace {

namespace fs = std::filesystem;
using gilscope::testing::Gilscope;
using gilscope::testing::IndexFigureViolations;
using gilscope::testing::JoinViolations;
using gilscope::testing::OutDir;
using gilscope::testing::ReadOrderedJson;
using gilscope::testing::ReadText;
using gilscope::testing::Result;
using nlohmann::ordered_json;

std::set<std::string> GuideNames() {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(fs::path(GILSCOPE_SOURCE_DIR) / "scripts" / "guide")) {
    if (e.path().extension() == ".py") names.insert(e.path().stem().string());
  }
  return names;
}

// Every "N%" printed in `text` is at most 100; returns the offenders.
std::vector<std::string> PercentagesOver100(const std::string& text) {
  std::vector<std::string> over;
  static const std::regex kPercent(R"((\d+(?:\.\d+)?)%)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kPercent); it != std::sregex_iterator(); ++it) {
    if (std::stod((*it)[1].str()) > 100) over.push_back(it->str());
  }
  return over;
}

// Runs `suite ARGS --out DIR` and checks everything it wrote. Returns the
// index, for the caller's own expectations.
ordered_json CheckSuite(const std::string& name, const std::string& args) {
  const fs::path out = OutDir(name);
  const Result r = Gilscope("suite " + args + " --out " + out.string());
  // 0: all passed, 1: some script missed its lesson; anything else is
  // gilscope failing.
  EXPECT_TRUE(r.status == 0 || r.status == 1) << r.output.substr(0, 4000);
  const ordered_json index = ReadOrderedJson(out / "index.json");

  const std::vector<std::string> v = IndexFigureViolations(index, out);
  EXPECT_TRUE(v.empty()) << name << ":" << JoinViolations(v);
  for (const char* file : {"index.txt", "index.html"}) {
    const std::vector<std::string> over = PercentagesOver100(ReadText(out / file));
    EXPECT_TRUE(over.empty()) << file << " shows " << (over.empty() ? "" : over.front());
  }
  return index;
}

TEST(SuiteFigures, EveryFigureOfTheGuideSuiteHolds) {
  const ordered_json index = CheckSuite("suite_main", "");
  ASSERT_TRUE(index.contains("scripts")) << "no readable index.json";
  const std::set<std::string> guide = GuideNames();
  ASSERT_EQ(index["scripts"].size(), guide.size());
  int reports = 0;
  for (const ordered_json& s : index["scripts"]) {
    // In main mode every script runs, and every run writes a report.
    EXPECT_TRUE(s["report"].is_string()) << s.dump();
    reports += s["report"].is_string();
  }
  EXPECT_EQ(reports, static_cast<int>(guide.size()));
  // The scripts that broke the index: children with GILs of their own.
  for (const ordered_json& s : index["scripts"]) {
    if (s["name"] == "05_processes" || s["name"] == "06_threads_vs_processes") {
      EXPECT_GT(s["gils"].get<int>(), 1) << s.dump();
    }
  }
}

TEST(SuiteFigures, ProcessesModeFiguresHold) {
  const ordered_json index = CheckSuite("suite_processes", "--only '0[56]_*' --mode processes --instances 2");
  ASSERT_TRUE(index.contains("scripts")) << "no readable index.json";
  ASSERT_EQ(index["scripts"].size(), 2u);
  for (const ordered_json& s : index["scripts"]) {
    ASSERT_TRUE(s["report"].is_string()) << s.dump();
    // Two instances, each with its children: more than two GILs.
    EXPECT_GT(s["gils"].get<int>(), 2) << s.dump();
  }
}

}  // namespace
