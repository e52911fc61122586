// Bad input of every kind: each ends with its documented status and a
// message naming the problem, never a hang; and what the script did wrong
// (an exception in a thread, running out of memory) is in the report.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_test_util.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using gilscope::testing::Gilscope;
using gilscope::testing::OutDir;
using gilscope::testing::ReadJson;
using gilscope::testing::Script;
using gilscope::testing::ReadText;
using gilscope::testing::Result;
using gilscope::testing::Workload;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(BadInputTest, ExceptionsInWorkerThreadsAreListedAndStillPrinted) {
  const fs::path dir = OutDir("thread_exc");
  const fs::path s = Script(dir, "exc.py",
                            "import threading\n"
                            "def bad():\n"
                            "    raise ValueError('bad <value>\\nsecond line')\n"
                            "def quiet():\n"
                            "    raise KeyError('k')\n"
                            "def leave():\n"
                            "    raise SystemExit(3)\n"
                            "t = threading.Thread(target=bad, name='</script><img src=x onerror=alert(1)>')\n"
                            "t.start(); t.join()\n"
                            "seen = []\n"
                            "threading.excepthook = lambda args: seen.append(args.exc_type.__name__)\n"
                            "t = threading.Thread(target=quiet, name='quiet'); t.start(); t.join()\n"
                            "t = threading.Thread(target=leave, name='leave'); t.start(); t.join()\n"
                            "print('own hook saw', seen)\n");
  const Result r = Gilscope("run " + s.string() + " --out " + (dir / "o").string());
  // The script's own behaviour is unchanged: status 0, the default hook
  // printed the first, the script's hook saw the second and the SystemExit (which is not listed).
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "Exception in thread </script><img src=x onerror=alert(1)>")) << r.output;
  EXPECT_TRUE(Contains(r.output, "ValueError: bad <value>")) << r.output;
  EXPECT_TRUE(Contains(r.output, "own hook saw ['KeyError', 'SystemExit']")) << r.output;

  const json rep = ReadJson(dir / "o" / "report.json");
  EXPECT_EQ(rep["status"], "ok");
  ASSERT_EQ(rep["exceptions"].size(), 2u) << rep["exceptions"].dump(1);
  const json& first = rep["exceptions"][0];
  EXPECT_EQ(first["thread"], "</script><img src=x onerror=alert(1)>");
  EXPECT_EQ(first["type"], "ValueError");
  EXPECT_EQ(first["message"], "bad <value>\nsecond line");
  EXPECT_EQ(first["main"], false);
  EXPECT_TRUE(Contains(first["traceback"].get<std::string>(), "raise ValueError('bad <value>\\nsecond line')"))
      << first["traceback"];
  EXPECT_TRUE(Contains(first["traceback"].get<std::string>(), "exc.py\", line 3, in bad")) << first["traceback"];
  EXPECT_EQ(rep["exceptions"][1]["thread"], "quiet");
  EXPECT_EQ(rep["exceptions"][1]["type"], "KeyError");
  // The thread is one of the report's threads.
  bool found = false;
  for (const json& t : rep["threads"]) found = found || t["native_id"] == first["native_id"];
  EXPECT_TRUE(found);

  const std::string txt = ReadText(dir / "o" / "report.txt");
  EXPECT_TRUE(Contains(txt, "Exceptions")) << txt;
  EXPECT_TRUE(Contains(txt, "quiet (pid ")) << txt;
  EXPECT_TRUE(Contains(txt, "KeyError: 'k'")) << txt;
  const std::string html = ReadText(dir / "o" / "report.html");
  EXPECT_TRUE(Contains(html, "id=\"exceptions-panel\""));
  EXPECT_TRUE(Contains(html, "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt; (pid "));
  EXPECT_TRUE(Contains(html, "ValueError: bad &lt;value&gt;"));
  EXPECT_FALSE(Contains(html, "<img src=x"));
}

TEST(BadInputTest, TheScriptsOwnUncaughtExceptionIsInTheReport) {
  const fs::path dir = OutDir("main_exc");
  const fs::path s = Script(dir, "boom.py", "class Custom(Exception): pass\ndef f():\n    raise Custom('boom')\nf()\n");
  const Result r = Gilscope("run " + s.string() + " --out " + (dir / "o").string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(Contains(r.output, "Custom: boom")) << r.output;
  const json rep = ReadJson(dir / "o" / "report.json");
  EXPECT_EQ(rep["status"], "error");
  ASSERT_EQ(rep["exceptions"].size(), 1u);
  EXPECT_EQ(rep["exceptions"][0]["type"], "Custom");
  EXPECT_EQ(rep["exceptions"][0]["thread"], "MainThread");
  EXPECT_EQ(rep["exceptions"][0]["main"], true);
  EXPECT_TRUE(Contains(rep["exceptions"][0]["traceback"].get<std::string>(), "line 4, in <module>"));
  // events.raw keeps them: the report renders again with the same list.
  fs::remove(dir / "o" / "report.json");
  ASSERT_EQ(Gilscope("report " + (dir / "o").string() + " --format json").status, 0);
  EXPECT_EQ(ReadJson(dir / "o" / "report.json")["exceptions"], rep["exceptions"]);
}

TEST(BadInputTest, MemoryLimitTurnsRunawayAllocationIntoMemoryError) {
  const fs::path dir = OutDir("memlimit");
  // 16 MiB at a time; says how many it got before MemoryError.
  const fs::path s = Script(dir, "hog.py",
                            "import sys\n"
                            "blocks = []\n"
                            "try:\n"
                            "    while len(blocks) < 256:\n"
                            "        blocks.append(bytearray(16 << 20))\n"
                            "except MemoryError:\n"
                            "    n = len(blocks)\n"
                            "    blocks.clear()\n"
                            "    print('allocated MiB', n * 16)\n"
                            "    raise\n"
                            "print('no MemoryError after 4 GiB')\n");
  const Result r = Gilscope("run " + s.string() + " --memory-limit 256M --out " + (dir / "o").string());
  EXPECT_EQ(r.status, 1) << r.output;
  const auto at = r.output.find("allocated MiB ");
  ASSERT_NE(at, std::string::npos) << r.output;
  const int mib = std::stoi(r.output.substr(at + 14));
  EXPECT_LE(mib, 256);
  EXPECT_GE(mib, 160);  // start-up of CPython and the host take a few tens of MiB, not more
  const json rep = ReadJson(dir / "o" / "report.json");
  EXPECT_EQ(rep["status"], "error");
  ASSERT_EQ(rep["exceptions"].size(), 1u);
  EXPECT_EQ(rep["exceptions"][0]["type"], "MemoryError");
  EXPECT_EQ(rep["exceptions"][0]["main"], true);
}

TEST(BadInputTest, BadMemoryLimitsAreUsageErrors) {
  for (const char* bad : {"abc", "0", "-5M", "12Q", "1e400", "M", "0x10"}) {
    const Result r = Gilscope("run " + Workload("cpu_bound.py") + " --memory-limit " + bad);
    EXPECT_EQ(r.status, 2) << bad << ": " << r.output;
    EXPECT_TRUE(Contains(r.output, "--memory-limit: '" + std::string(bad) + "' is not a size")) << r.output;
  }
}

TEST(BadInputTest, NonUtf8AndBinarySourcesFailAsUnderPython) {
  const fs::path dir = OutDir("binary");
  const fs::path latin = Script(dir, "latin.py", "s = '\xe9t\xe9'\nprint(s)\n");
  Result r = Gilscope("run " + latin.string() + " --out " + (dir / "a").string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(Contains(r.output, "SyntaxError")) << r.output;
  EXPECT_EQ(ReadJson(dir / "a" / "report.json")["exceptions"][0]["type"], "SyntaxError");
  // Declared: then it is fine, as under python.
  const fs::path declared = Script(dir, "declared.py", "# -*- coding: latin-1 -*-\nprint('\xe9t\xe9')\n");
  r = Gilscope("run " + declared.string() + " --out " + (dir / "b").string());
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "\xc3\xa9t\xc3\xa9")) << r.output;
  // NUL bytes: never run up to the first one and stop.
  const fs::path nul = Script(dir, "nul.py", std::string("print('before')\n\0\x01\x02\xff binary", 27));
  r = Gilscope("run " + nul.string() + " --out " + (dir / "c").string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_FALSE(Contains(r.output, "before\n")) << r.output;
  EXPECT_TRUE(Contains(r.output, "null bytes")) << r.output;
  EXPECT_EQ(ReadJson(dir / "c" / "report.json")["status"], "error");
}

TEST(BadInputTest, UnreadableScriptsAreNamedUsageErrors) {
  const fs::path dir = OutDir("unreadable");
  fs::create_directories(dir);
  // A FIFO would block an open() for ever: refused without opening it.
  const fs::path fifo = dir / "fifo.py";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  Result r = Gilscope("run " + fifo.string());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(Contains(r.output, "fifo.py' is not a regular file")) << r.output;
  if (geteuid() != 0) {  // root reads a mode-000 file anyway
    const fs::path locked = Script(dir, "locked.py", "print(1)\n");
    fs::permissions(locked, fs::perms::none);
    r = Gilscope("run " + locked.string());
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_TRUE(Contains(r.output, "Permission denied")) << r.output;
  }
}

TEST(BadInputTest, AnOutputFolderThatCannotBeWrittenIsAUsageErrorBeforeTheRun) {
  const fs::path dir = OutDir("badout");
  const fs::path s = Script(dir, "touch.py", "import sys\nopen(sys.argv[1], 'w').close()\n");
  const fs::path ran = dir / "ran";
  const fs::path file = dir / "plain-file";
  std::ofstream(file) << "x";
  Result r = Gilscope("run " + s.string() + " --out " + (file / "sub").string() + " -- " + ran.string());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(Contains(r.output, "cannot create output folder")) << r.output;
  // /proc refuses new entries even to root.
  r = Gilscope("run " + s.string() + " --out /proc/gilscope-test-out -- " + ran.string());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(Contains(r.output, "gilscope-test-out")) << r.output;
  if (geteuid() != 0) {
    const fs::path ro = dir / "read-only";
    fs::create_directories(ro);
    fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
    r = Gilscope("run " + s.string() + " --out " + ro.string() + " -- " + ran.string());
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_TRUE(Contains(r.output, "cannot write into output folder")) << r.output;
  }
  EXPECT_FALSE(fs::exists(ran));  // the script never ran
}

TEST(BadInputTest, UnknownFlagsAndBadValuesAreUsageErrors) {
  const std::string script = Workload("cpu_bound.py");
  for (const std::string& args : std::vector<std::string>{"run " + script + " --bogus", "run " + script + " --timeout 0", "run " + script + " --timeout abc",
        "run " + script + " --instances 0", "run " + script + " --instances 65", "run " + script + " --mode nope",
        "run " + script + " --deadlock-after -1", "run " + script + " --switch-interval x", std::string("run"),
        std::string("report"), std::string("report /nonexistent-folder"), std::string("diff a"), std::string("suite --mode nope"), "compare " + script + " --instances 0",
        "--log-level loud run " + script}) {
    const Result r = Gilscope(args);
    EXPECT_EQ(r.status, 2) << args << ": " << r.output;
    EXPECT_TRUE(Contains(r.output, "gilscope: ")) << args << ": " << r.output;
  }
}

}  // namespace
