// `gilscope list` and `gilscope suite` without CPython: header parsing (the
// bundled guide scripts' own headers included), --only, skipped modes, the
// pass/fail rule, the index files, and RunSuite end to end against a fake
// `gilscope` (a shell script that writes the report.json a run would,
// with a status chosen by the script's name).
//
// Regenerate the golden index after an intended change with
//   GILSCOPE_UPDATE_GOLDEN=1 ./suite_tests
// and review the diff before committing it.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/suite.h"
#include "figure_invariants.h"
#include "runner/script_runner.h"

#ifndef GILSCOPE_GOLDEN_DIR
#error "GILSCOPE_GOLDEN_DIR must name tests/golden"
#endif
#ifndef GILSCOPE_SOURCE_DIR
#error "GILSCOPE_SOURCE_DIR must name the source tree"
#endif

namespace gilscope::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// The fake `gilscope run`: records its arguments in OUT/args.txt, prints a
// line to its log, and ends as the script's name says.
constexpr const char* kFakeGilscope = R"(#!/bin/sh
script="$2"
out=""
prev=""
for a in "$@"; do
  if [ "$prev" = "--out" ]; then out="$a"; fi
  prev="$a"
done
printf '%s\n' "$@" > "$out/args.txt"
name=$(basename "$script" .py)
echo "fake gilscope: running $name"
busy=0.5; contended=0.25; busy2=0.3; contended2=0.28; findings='[]'
case "$name" in
  *deadlock*) status=deadlock; code=3
     findings='[{"kind": "gil_bound", "detail": "not this one"}, {"kind": "deadlock", "detail": "thread_1 waits for lock_2, held by thread_2, which waits for lock_1"}]' ;;
  *boom*) status=error; code=1; echo "ValueError: the property did not hold" >&2 ;;
  *noreport*) printf 'Traceback: RuntimeError: no report \377 here\n' >&2; exit 1 ;;
  *hang*) exec sleep 60 ;;
  *free*) status=ok; code=0; busy=0.12; contended=0.01; busy2=0.05; contended2=0 ;;
  *) status=ok; code=0 ;;
esac
cat > "$out/report.json" <<EOF
{"status": "$status", "exit_code": $code, "wall_s": 1.5,
 "gils": [{"id": 0, "busy_fraction": $busy, "contended_fraction": $contended},
          {"id": 1, "busy_fraction": $busy2, "contended_fraction": $contended2}],
 "findings": $findings}
EOF
echo "<html>$name</html>" > "$out/report.html"
exit $code
)";

// A fresh folder per test, removed after it.
class SuiteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::path(::testing::TempDir()) /
            ("gilscope_suite_" + std::to_string(getpid()) + "_" + info->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "guide");
    fake_ = root_ / "fake-gilscope";
    WriteText(fake_, kFakeGilscope);
    chmod(fake_.c_str(), 0755);
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path Script(const std::string& file, const std::string& header,
                  const std::string& body = "\"\"\"Docstring.\"\"\"\nprint('hi')\n") {
    const fs::path p = root_ / "guide" / file;
    WriteText(p, header + body);
    return p;
  }

  static std::string Header(const std::string& title, const std::string& modes, const std::string& expect = "ok",
                            const std::string& extra = "") {
    return "# gilscope: title = " + title + "\n# gilscope: lesson = the lesson of " + title +
           "\n# gilscope: expect = " + expect + "\n# gilscope: timeout = 10\n# gilscope: modes = " + modes + "\n" +
           extra;
  }

  // Four scripts: a counter, one for main and processes only (with a
  // reason), the deadlock, and one whose GIL is mostly free.
  void MakeGuide() {
    Script("01_counter.py", Header("Counter", "main, threads, subinterpreters"));
    Script("05_procs.py", Header("Processes", "main, processes", "ok",
                                 "# gilscope: skip-reason = multiprocessing cannot fork from here\n"));
    Script("08_deadlock.py", Header("Deadlock", "main", "deadlock"));
    Script("13_free.py", Header("Free GIL", "main, threads"));
  }

  SuiteOptions Options(const std::string& mode = "main") const {
    SuiteOptions o;
    o.scripts_dir = root_ / "guide";
    o.out = root_ / "out";
    o.mode = mode;
    o.live_progress = false;
    return o;
  }

  static json Index(const SuiteOptions& o) { return json::parse(ReadAll(o.out / "index.json")); }

  static const json& Entry(const json& index, const std::string& name) {
    for (const json& e : index["scripts"]) {
      if (e["name"] == name) return e;
    }
    ADD_FAILURE() << "no entry " << name;
    static const json kNone;
    return kNone;
  }

  fs::path root_;
  fs::path fake_;
};

// ---- headers ---------------------------------------------------------------

TEST_F(SuiteTest, ReadsEveryHeaderKeyAndSkipsShebangAndProse) {
  const fs::path p = Script("08_deadlock.py",
                            "#!/usr/bin/env python3\n# -*- coding: utf-8 -*-\n\n"
                            "# gilscope: title = Deadlock: two locks\n"
                            "#gilscope:lesson=the GIL goes idle = no thread runs\n"
                            "# gilscope: expect = deadlock\n"
                            "# gilscope: timeout = 12.5\n"
                            "# gilscope: modes = main ,processes\n"
                            "# some prose between header lines\n"
                            "# gilscope: skip-reason = never ends by design\n",
                            "\"\"\"Doc.\n# gilscope: title = not a header line\n\"\"\"\n");
  const ScriptHeader h = ReadScriptHeader(p);
  EXPECT_EQ(h.name, "08_deadlock");
  EXPECT_EQ(h.path, p);
  EXPECT_EQ(h.title, "Deadlock: two locks");
  EXPECT_EQ(h.lesson, "the GIL goes idle = no thread runs");  // only the first '=' splits
  EXPECT_EQ(h.expect, "deadlock");
  EXPECT_DOUBLE_EQ(h.timeout_s, 12.5);
  EXPECT_EQ(h.modes, (std::vector<std::string>{"main", "processes"}));
  EXPECT_EQ(h.skip_reason, "never ends by design");
}

TEST_F(SuiteTest, PerVersionModesReplaceModesOnThatVersionOnly) {
  const fs::path p = Script("12_async.py",
                            "# gilscope: title = Async\n"
                            "# gilscope: modes = main, threads, subinterpreters\n"
                            "# gilscope: skip-reason = no processes\n"
                            "# gilscope: modes-3.12 = main, threads\n"
                            "# gilscope: skip-reason-3.12 = 3.12.1 aborts at teardown\n"
                            "# gilscope: modes-3.11 = main\n",
                            "");
  const ScriptHeader h = ReadScriptHeader(p);
  EXPECT_EQ(h.modes, (std::vector<std::string>{"main", "threads", "subinterpreters"}));
  ASSERT_EQ(h.modes_by_version.size(), 2U);

  const ScriptHeader on312 = ForPythonVersion(h, "3.12.1");
  EXPECT_EQ(on312.modes, (std::vector<std::string>{"main", "threads"}));
  EXPECT_EQ(on312.skip_reason, "on CPython 3.12: 3.12.1 aborts at teardown");
  // A version with modes but no reason of its own keeps the general one.
  const ScriptHeader on311 = ForPythonVersion(h, "3.11.2");
  EXPECT_EQ(on311.modes, std::vector<std::string>{"main"});
  EXPECT_EQ(on311.skip_reason, "no processes");
  // 3.13 (and 3.1, which is not 3.12's prefix) get the plain lines.
  for (const char* version : {"3.13.0", "3.1", ""}) {
    SCOPED_TRACE(version);
    const ScriptHeader other = ForPythonVersion(h, version);
    EXPECT_EQ(other.modes, h.modes);
    EXPECT_EQ(other.skip_reason, "no processes");
  }
}

TEST_F(SuiteTest, SuiteSkipsByTheEmbeddedVersionsModes) {
  MakeGuide();
  Script("12_async.py",
         "# gilscope: title = Async\n# gilscope: modes = main, threads\n"
         "# gilscope: modes-3.12 = main\n# gilscope: skip-reason-3.12 = aborts on 3.12.1\n",
         "");
  SuiteOptions o = Options("threads");
  o.python_version = "3.12.1";
  std::ostringstream out;
  EXPECT_EQ(RunSuite(o, fake_, out), 0) << out.str();
  EXPECT_EQ(Entry(Index(o), "12_async")["skip_reason"], "on CPython 3.12: aborts on 3.12.1");
  o.python_version = "3.13.0";
  EXPECT_EQ(RunSuite(o, fake_, out), 0) << out.str();
  EXPECT_EQ(Entry(Index(o), "12_async")["outcome"], "PASS");
}

TEST_F(SuiteTest, HeaderDefaultsWhenOnlyTitleGiven) {
  const ScriptHeader h = ReadScriptHeader(Script("x.py", "# gilscope: title = Only a title\n"));
  EXPECT_EQ(h.expect, "ok");
  EXPECT_DOUBLE_EQ(h.timeout_s, 60);
  EXPECT_EQ(h.modes, std::vector<std::string>{"main"});
  EXPECT_TRUE(h.lesson.empty());
}

struct Malformed {
  const char* case_name;
  const char* header;
  int line;
  const char* message;
};

TEST_F(SuiteTest, MalformedHeadersNameFileLineAndFault) {
  const Malformed cases[] = {
      {"unknown key", "# gilscope: title = T\n# gilscope: colour = red\n", 2, "unknown key 'colour'"},
      {"version not 3.N", "# gilscope: title = T\n# gilscope: modes-3.x = main\n", 2, "unknown key 'modes-3.x'"},
      {"version mode", "# gilscope: title = T\n# gilscope: modes-3.12 = main, fibers\n", 2, "unknown mode 'fibers'"},
      {"timeout word", "# gilscope: title = T\n# gilscope: timeout = soon\n", 2, "not 'soon'"},
      {"timeout unit", "# gilscope: title = T\n# gilscope: timeout = 5s\n", 2, "not '5s'"},
      {"timeout zero", "# gilscope: title = T\n# gilscope: timeout = 0\n", 2, "above 0"},
      {"timeout negative", "# gilscope: title = T\n# gilscope: timeout = -3\n", 2, "not '-3'"},
      {"timeout nan", "# gilscope: title = T\n# gilscope: timeout = nan\n", 2, "not 'nan'"},
      {"unknown mode", "# gilscope: title = T\n\n# gilscope: modes = main, fibers\n", 3, "unknown mode 'fibers'"},
      {"empty mode", "# gilscope: title = T\n# gilscope: modes = main,,threads\n", 2, "empty entry in modes"},
      {"repeated mode", "# gilscope: title = T\n# gilscope: modes = main, main\n", 2, "listed twice"},
      {"bad expect", "# gilscope: title = T\n# gilscope: expect = crashed\n", 2, "not 'crashed'"},
      {"no equals", "# gilscope: title = T\n# gilscope: lesson\n", 2, "expected 'key = value'"},
      {"repeated key", "# gilscope: title = T\n# gilscope: title = U\n", 2, "'title' given twice"},
      {"empty title", "# gilscope: title =\n", 1, "empty title"},
      {"missing title", "# gilscope: expect = ok\n# gilscope: timeout = 5\n", 1, "no '# gilscope: title = ...'"},
  };
  for (const Malformed& c : cases) {
    SCOPED_TRACE(c.case_name);
    // A line of code ends the header: the title below it must not count.
    const fs::path p = Script("bad.py", c.header, "import os\n# gilscope: title = too late\n");
    try {
      ReadScriptHeader(p);
      ADD_FAILURE() << "no error";
    } catch (const runner::UsageError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(p.string() + ":" + std::to_string(c.line) + ": "), std::string::npos) << what;
      EXPECT_NE(what.find(c.message), std::string::npos) << what;
    }
  }
}

TEST_F(SuiteTest, HeaderEndsAtFirstCodeLine) {
  const fs::path p = Script("late.py", "import sys\n# gilscope: title = After code\n", "");
  EXPECT_THROW(ReadScriptHeader(p), runner::UsageError);
}

TEST_F(SuiteTest, BundledScriptsSortedByNameAndOnlyPython) {
  MakeGuide();
  WriteText(root_ / "guide" / "README.md", "# gilscope: not a script\n");
  const std::vector<ScriptHeader> s = BundledScripts(root_ / "guide");
  ASSERT_EQ(s.size(), 4U);
  EXPECT_EQ(s[0].name, "01_counter");
  EXPECT_EQ(s[1].name, "05_procs");
  EXPECT_EQ(s[2].name, "08_deadlock");
  EXPECT_EQ(s[3].name, "13_free");
  EXPECT_THROW(BundledScripts(root_ / "missing"), runner::UsageError);
}

// The guide scripts as shipped: every header parses, and 08 is the one
// expected to deadlock.
TEST(GuideScripts, ShippedHeadersParse) {
  const std::vector<ScriptHeader> s = BundledScripts(fs::path(GILSCOPE_SOURCE_DIR) / "scripts" / "guide");
  ASSERT_EQ(s.size(), 15U);
  int deadlocks = 0;
  for (const ScriptHeader& h : s) {
    SCOPED_TRACE(h.name);
    EXPECT_FALSE(h.title.empty());
    EXPECT_FALSE(h.lesson.empty());
    EXPECT_NE(std::find(h.modes.begin(), h.modes.end(), "main"), h.modes.end());
    if (h.modes.size() < HeaderModes().size()) {
      EXPECT_FALSE(h.skip_reason.empty()) << "modes left out, no reason";
    }
    for (const auto& [version, modes] : h.modes_by_version) {
      SCOPED_TRACE(version);
      EXPECT_NE(std::find(modes.begin(), modes.end(), "main"), modes.end());
      EXPECT_EQ(h.skip_reason_by_version.count(version), 1U) << "per-version modes, no reason";
    }
    if (h.expect == "deadlock") {
      ++deadlocks;
      EXPECT_EQ(h.name, "08_deadlock");
    } else {
      EXPECT_EQ(h.expect, "ok");
    }
  }
  EXPECT_EQ(deadlocks, 1);
  EXPECT_EQ(s.front().name, "01_gil_counter");
  EXPECT_EQ(s.back().name, "15_ml_pool");
}

// ---- list, --only, run arguments -----------------------------------------

TEST_F(SuiteTest, ListShowsNameTitleAndLesson) {
  MakeGuide();
  std::ostringstream out;
  WriteList(BundledScripts(root_ / "guide"), out);
  const std::string text = out.str();
  EXPECT_NE(text.find("01_counter   Counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("             the lesson of Counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("08_deadlock  Deadlock  [expected: deadlock]\n"), std::string::npos) << text;
  EXPECT_NE(text.find("4 scripts."), std::string::npos) << text;
}

TEST_F(SuiteTest, OnlyFiltersBySubstringOrGlob) {
  MakeGuide();
  const std::vector<ScriptHeader> all = BundledScripts(root_ / "guide");
  auto names = [](const std::vector<ScriptHeader>& s) {
    std::vector<std::string> n;
    for (const ScriptHeader& h : s) n.push_back(h.name);
    return n;
  };
  EXPECT_EQ(names(FilterScripts(all, "")).size(), 4U);
  EXPECT_EQ(names(FilterScripts(all, "08")), std::vector<std::string>{"08_deadlock"});
  EXPECT_EQ(names(FilterScripts(all, "dead")), std::vector<std::string>{"08_deadlock"});
  EXPECT_EQ(names(FilterScripts(all, "0[15]_*")), (std::vector<std::string>{"01_counter", "05_procs"}));
  EXPECT_EQ(names(FilterScripts(all, "*.py")).size(), 4U);  // a glob may match the file name too
  EXPECT_EQ(names(FilterScripts(all, "1*")), (std::vector<std::string>{"13_free"}));
  try {
    FilterScripts(all, "99");
    ADD_FAILURE() << "no error";
  } catch (const runner::UsageError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("--only '99' matches no script"), std::string::npos) << what;
    EXPECT_NE(what.find("01_counter, 05_procs, 08_deadlock, 13_free"), std::string::npos) << what;
  }
}

TEST_F(SuiteTest, RunArgsCarryModeInstancesTimeoutAndDeadlockWatch) {
  ScriptHeader h;
  h.path = "/g/08_deadlock.py";
  h.timeout_s = 10;
  SuiteOptions o;
  o.mode = "subinterpreters";
  o.instances = 2;
  EXPECT_EQ(RunArgs(h, o, "/o/08_deadlock"),
            (std::vector<std::string>{"run", "/g/08_deadlock.py", "--out", "/o/08_deadlock", "--mode",
                                      "subinterpreters", "--instances", "2", "--timeout", "10",
                                      "--deadlock-after", "5"}));
  h.timeout_s = 2.5;
  EXPECT_EQ(RunArgs(h, o, "/o/x")[9], "2.5");
}

// ---- RunSuite against the fake gilscope ----------------------------------

TEST_F(SuiteTest, MainModeRunsAllAndDeadlockPassesWhenExpected) {
  MakeGuide();
  const SuiteOptions o = Options();
  std::ostringstream out;
  EXPECT_EQ(RunSuite(o, fake_, out), 0) << out.str();

  // Each script ran once with the suite's flags, into its own folder.
  EXPECT_EQ(ReadAll(o.out / "08_deadlock" / "args.txt"),
            "run\n" + (o.scripts_dir / "08_deadlock.py").string() + "\n--out\n" + (o.out / "08_deadlock").string() +
                "\n--mode\nmain\n--instances\n1\n--timeout\n10\n--deadlock-after\n5\n");
  EXPECT_NE(ReadAll(o.out / "01_counter" / "run.log").find("fake gilscope: running 01_counter"), std::string::npos);

  const json index = Index(o);
  EXPECT_EQ(index["schema_version"], 1);
  EXPECT_EQ(index["mode"], "main");
  EXPECT_EQ(index["instances"], 1);
  ASSERT_EQ(index["scripts"].size(), 4U);
  EXPECT_EQ(index["passed"], 4);
  EXPECT_EQ(index["failed"], 0);

  const json& dl = Entry(index, "08_deadlock");
  EXPECT_EQ(dl["status"], "deadlock");
  EXPECT_EQ(dl["expected_status"], "deadlock");
  EXPECT_EQ(dl["passed"], true);
  EXPECT_EQ(dl["exit_code"], 3);
  EXPECT_EQ(dl["title"], "Deadlock");
  EXPECT_EQ(dl["lesson"], "the lesson of Deadlock");
  // The deadlock's own finding, not the first one in the list.
  EXPECT_EQ(dl["verdict"], "thread_1 waits for lock_2, held by thread_2, which waits for lock_1");
  EXPECT_EQ(dl["report"], "08_deadlock/report.json");
  EXPECT_TRUE(dl["skip_reason"].is_null());

  const json& counter = Entry(index, "01_counter");
  EXPECT_EQ(counter["status"], "ok");
  EXPECT_DOUBLE_EQ(counter["wall_s"].get<double>(), 1.5);
  // Both figures of one GIL, the busiest, though the other is the more
  // contended: each is a share of its own GIL's window.
  EXPECT_EQ(counter["busiest_gil"], 0);
  EXPECT_DOUBLE_EQ(counter["gil_busy_fraction"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(counter["gil_contended_fraction"].get<double>(), 0.25);
  EXPECT_EQ(counter["gils"], 2);
  // Every figure of the index is its report's (figure_invariants.h), and a
  // figure taken from another GIL would be caught.
  const auto ordered = nlohmann::ordered_json::parse(ReadAll(o.out / "index.json"));
  EXPECT_TRUE(gilscope::testing::IndexFigureViolations(ordered, o.out).empty())
      << gilscope::testing::JoinViolations(gilscope::testing::IndexFigureViolations(ordered, o.out));
  auto mixed = ordered;
  for (auto& e : mixed["scripts"]) {
    if (e["name"] == "01_counter") e["gil_contended_fraction"] = 0.28;
  }
  EXPECT_EQ(gilscope::testing::IndexFigureViolations(mixed, o.out).size(), 1U);
  EXPECT_EQ(counter["verdict"], "GIL busy 50%, contended 25%: threads often waited for it");
  EXPECT_EQ(Entry(index, "13_free")["verdict"],
            "GIL mostly free (busy 12%): the threads waited without it (I/O, sleeps, locks, child processes)");

  // index.txt is what was printed at the end.
  const std::string txt = ReadAll(o.out / "index.txt");
  EXPECT_NE(out.str().find(txt), std::string::npos);
  EXPECT_NE(txt.find("4 passed, 0 failed, 0 skipped"), std::string::npos) << txt;
  // Without a terminal: one line per script at its end, no redraws.
  EXPECT_EQ(out.str().find('\r'), std::string::npos);
  EXPECT_NE(out.str().find("[3/4] 08_deadlock  deadlock  PASS  "), std::string::npos) << out.str();
}

TEST_F(SuiteTest, ScriptsOutsideTheModeAreListedAsSkippedWithReasons) {
  MakeGuide();
  const SuiteOptions o = Options("threads");
  std::ostringstream out;
  EXPECT_EQ(RunSuite(o, fake_, out), 0) << out.str();
  const json index = Index(o);
  ASSERT_EQ(index["scripts"].size(), 4U);  // none dropped
  EXPECT_EQ(index["skipped"], 2);
  EXPECT_EQ(index["passed"], 2);
  EXPECT_EQ(index["mode"], "threads");

  const json& procs = Entry(index, "05_procs");
  EXPECT_EQ(procs["status"], "skipped");
  EXPECT_EQ(procs["outcome"], "SKIP");
  EXPECT_EQ(procs["passed"], false);
  EXPECT_EQ(procs["skip_reason"], "multiprocessing cannot fork from here");
  EXPECT_TRUE(procs["report"].is_null());
  // No header reason: one built from its modes.
  EXPECT_EQ(Entry(index, "08_deadlock")["skip_reason"], "not meant to run in mode threads (its header lists: main)");
  EXPECT_FALSE(fs::exists(o.out / "05_procs"));  // never run
  EXPECT_EQ(ReadAll(o.out / "01_counter" / "args.txt").find("--mode\nthreads\n") != std::string::npos, true);

  EXPECT_NE(out.str().find("[2/4] 05_procs  SKIP  multiprocessing cannot fork from here"), std::string::npos)
      << out.str();
  EXPECT_NE(ReadAll(o.out / "index.txt").find("skipped: multiprocessing cannot fork from here"), std::string::npos);
}

TEST_F(SuiteTest, FailuresSetTheExitStatusAndSayWhy) {
  Script("03_boom.py", Header("Boom", "main"));
  Script("04_noreport.py", Header("No report", "main"));
  Script("06_no_cycle.py", Header("Should deadlock", "main", "deadlock"));
  Script("07_ok.py", Header("Fine", "main"));
  SuiteOptions o = Options();
  // A report from an earlier suite must not be read as this run's.
  fs::create_directories(o.out / "04_noreport");
  WriteText(o.out / "04_noreport" / "report.json", R"({"status": "ok", "wall_s": 1})");
  std::ostringstream out;
  EXPECT_EQ(RunSuite(o, fake_, out), 1) << out.str();
  const json index = Index(o);
  EXPECT_EQ(index["failed"], 3);
  EXPECT_EQ(index["passed"], 1);
  EXPECT_EQ(index["all_passed"], false);

  const json& boom = Entry(index, "03_boom");
  EXPECT_EQ(boom["status"], "error");
  EXPECT_EQ(boom["passed"], false);
  EXPECT_EQ(boom["verdict"], "error (exit status 1): ValueError: the property did not hold");

  const json& none = Entry(index, "04_noreport");
  EXPECT_EQ(none["status"], "failed");
  EXPECT_EQ(none["exit_code"], 1);
  EXPECT_TRUE(none["report"].is_null());
  // The invalid UTF-8 byte the log held is replaced, not fatal to index.json.
  EXPECT_EQ(none["verdict"], "no readable report.json (exit status 1): Traceback: RuntimeError: no report \uFFFD here");

  // Ending "ok" is a failure for a script expected to deadlock.
  const json& nd = Entry(index, "06_no_cycle");
  EXPECT_EQ(nd["status"], "ok");
  EXPECT_EQ(nd["outcome"], "FAIL");
  EXPECT_EQ(Entry(index, "07_ok")["outcome"], "PASS");
}

TEST_F(SuiteTest, OnlySelectsAndUnknownModeOrPatternIsAUsageError) {
  MakeGuide();
  SuiteOptions o = Options();
  o.only = "08";
  std::ostringstream out;
  EXPECT_EQ(RunSuite(o, fake_, out), 0);
  EXPECT_EQ(Index(o)["scripts"].size(), 1U);
  EXPECT_FALSE(fs::exists(o.out / "01_counter"));

  o.only = "nothing*";
  EXPECT_THROW(RunSuite(o, fake_, out), runner::UsageError);
  o.only.clear();
  o.mode = "fibers";
  EXPECT_THROW(RunSuite(o, fake_, out), runner::UsageError);
  o.mode = "main";
  EXPECT_THROW(RunSuite(o, root_ / "no-such-gilscope", out), std::runtime_error);
}

TEST_F(SuiteTest, ChildOutlivingItsTimeoutIsKilled) {
  const std::string header =
      "# gilscope: title = Hang\n# gilscope: timeout = 0.2\n# gilscope: modes = main\n";
  Script("02_hang.py", header);
  SuiteOptions o = Options();
  o.kill_grace_s = 0.3;
  std::ostringstream out;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(RunSuite(o, fake_, out), 1);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(took, 10.0);  // the fake would sleep 60 s
  const json index = Index(o);
  const json& e = Entry(index, "02_hang");
  EXPECT_EQ(e["status"], "failed");
  EXPECT_EQ(e["exit_code"], 128 + SIGTERM);
  EXPECT_EQ(e["verdict"].get<std::string>().rfind("still running 0.3 s after its 0.2 s timeout: killed by the suite", 0),
            0U)
      << e["verdict"];
}

TEST_F(SuiteTest, LiveProgressRedrawsOneLine) {
  MakeGuide();
  SuiteOptions o = Options();
  o.only = "01";
  o.live_progress = true;
  o.color = true;
  std::ostringstream out;
  EXPECT_EQ(RunSuite(o, fake_, out), 0);
  const std::string text = out.str();
  EXPECT_EQ(text.rfind("\r[1/1] 01_counter  0.0 s\x1b[K", 0), 0U) << text;
  EXPECT_NE(text.find("\r[1/1] 01_counter  ok  \x1b[32mPASS\x1b[0m  "), std::string::npos) << text;
  // Colour only on the terminal, never in the files.
  EXPECT_EQ(ReadAll(o.out / "index.txt").find('\x1b'), std::string::npos);
}

// ---- index files ------------------------------------------------------------

TEST_F(SuiteTest, HostileTitleIsEscapedInHtmlAndDefusedInText) {
  const std::string hostile = "</script><img src=x onerror=alert(1)>";
  Script("01_evil.py", "# gilscope: title = " + hostile + "\x1b]0;owned\x07\n# gilscope: lesson = a & b \"q\"\n");
  const SuiteOptions o = Options();
  std::ostringstream out;
  EXPECT_EQ(RunSuite(o, fake_, out), 0);
  const std::string html = ReadAll(o.out / "index.html");
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_EQ(html.find("</script>"), std::string::npos);
  EXPECT_NE(html.find("&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"), std::string::npos);
  EXPECT_NE(html.find("a &amp; b &quot;q&quot;"), std::string::npos);
  EXPECT_NE(html.find("<a href=\"01_evil/report.html\">report.html</a>"), std::string::npos);
  EXPECT_NE(html.find("<a href=\"01_evil/report.txt\">report.txt</a>"), std::string::npos);
  // Offline: nothing to fetch, and a policy forbidding it.
  EXPECT_EQ(html.find("http:"), std::string::npos);
  EXPECT_EQ(html.find("https:"), std::string::npos);
  EXPECT_EQ(html.find("//"), std::string::npos);
  EXPECT_NE(html.find("default-src 'none'"), std::string::npos);
  // The terminal gets no escape sequence from a title.
  EXPECT_EQ(out.str().find('\x1b'), std::string::npos);
  EXPECT_NE(out.str().find(hostile + "?]0;owned?"), std::string::npos);
  EXPECT_EQ(Entry(Index(o), "01_evil")["title"], hostile + "\x1b]0;owned\x07");  // JSON keeps the data
}

TEST(HtmlEscape, EscapesAllFiveSpecials) {
  EXPECT_EQ(HtmlEscape("<a href='x'>\"&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;");
  EXPECT_EQ(HtmlEscape("plain"), "plain");
}

TEST(SuiteIndexText, MatchesGolden) {
  SuiteOptions o;
  o.out = "suite-out";
  o.mode = "main";
  auto header = [](std::string name, std::string title, std::string expect) {
    ScriptHeader h;
    h.name = std::move(name);
    h.title = std::move(title);
    h.expect = std::move(expect);
    return h;
  };
  std::vector<ScriptResult> results(4);
  results[0].script = header("01_gil_counter", "The GIL does not make += atomic", "ok");
  results[0].status = "ok";
  results[0].passed = true;
  results[0].wall_s = 1.234;
  results[0].gil_busy_fraction = 0.981;
  results[0].gil_contended_fraction = 0.942;
  results[0].verdict = "GIL busy 98%, contended 94%: threads took turns on it";
  results[1].script = header("05_processes", "Processes with multiprocessing", "ok");
  results[1] = SkippedResult(results[1].script, "subinterpreters");
  results[2].script = header("08_deadlock", "Deadlock: two locks taken in opposite orders", "deadlock");
  results[2].status = "deadlock";
  results[2].passed = true;
  results[2].wall_s = 5.5;
  results[2].gil_busy_fraction = 0.01;
  results[2].gil_contended_fraction = 0;
  results[2].verdict = "thread_1 waits for lock_2, held by thread_2, which waits for lock_1";
  results[3].script = header("13_web_scraping", "Fetching web pages with threads", "ok");
  results[3].status = "failed";
  results[3].verdict = "no readable report.json (exit status 2): cannot start";
  std::ostringstream out;
  WriteSuiteIndexText(o, results, out);
  const std::string path = std::string(GILSCOPE_GOLDEN_DIR) + "/suite_index.txt";
  if (std::getenv("GILSCOPE_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path, std::ios::binary) << out.str();
    GTEST_SKIP() << "rewrote " << path;
  }
  EXPECT_EQ(ReadAll(path), out.str()) << "output differs from " << path;
}

}  // namespace
}  // namespace gilscope::cli
