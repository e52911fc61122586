// What people run: `gilscope run -m MODULE` and `-c COMMAND`, `gilscope
// python --gilscope-out DIR ARGS`, virtual environments, and the promise
// that the host changes nothing the program can see: sys.argv, sys.path,
// sys.orig_argv and sys.modules are compared with what the embedded CPython's
// own python shows for the same command line.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "cli_test_util.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using gilscope::testing::Gilscope;
using gilscope::testing::OutDir;
using gilscope::testing::Quoted;
using gilscope::testing::ReadJson;
using gilscope::testing::ReadText;
using gilscope::testing::Result;
using gilscope::testing::Script;
using gilscope::testing::Shell;

const std::string kPython = GILSCOPE_PYTHON_EXECUTABLE;
const std::string kGilscope = GILSCOPE_EXE;
const std::string kMinor = "3." + std::to_string(GILSCOPE_PYTHON_MINOR);

bool Contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The JSON printed on the line starting with `tag` + " " (a program's own
// report of what it saw), or null when there is none.
json Tagged(const std::string& output, const std::string& tag) {
  std::size_t at = 0;
  while ((at = output.find(tag + " ", at)) != std::string::npos) {
    if (at == 0 || output[at - 1] == '\n') {
      const std::size_t end = output.find('\n', at);
      return json::parse(output.substr(at + tag.size() + 1, end - at - tag.size() - 1));
    }
    at += tag.size();
  }
  return nullptr;
}

// A module that prints what python set up for it.
constexpr const char* kShow =
    "import sys, json\n"
    "print('SEEN ' + json.dumps({'argv': sys.argv, 'path': sys.path, 'orig_argv': sys.orig_argv[1:],\n"
    "                            'modules': sorted(sys.modules)}))\n";

TEST(ProgramTest, ModuleSeesArgvPathAndModulesExactlyAsUnderPython) {
  const fs::path dir = OutDir("prog_m");
  Script(dir, "showme.py", kShow);
  const Result py = Shell("cd " + dir.string() + " && " + kPython + " -m showme a '-b c' --flag");
  const Result gs = Shell("cd " + dir.string() + " && " + kGilscope + " run -m showme --out o -- a '-b c' --flag");
  ASSERT_EQ(py.status, 0) << py.output;
  ASSERT_EQ(gs.status, 0) << gs.output;
  const json want = Tagged(py.output, "SEEN"), got = Tagged(gs.output, "SEEN");
  ASSERT_FALSE(want.is_null()) << py.output;
  // sys.argv[0] is the module's file and sys.path[0] the current directory,
  // as runpy and python's main set them; nothing more is imported.
  EXPECT_EQ(want["argv"][0], (dir / "showme.py").string());
  EXPECT_EQ(want["path"][0], dir.string());
  EXPECT_EQ(got["argv"], want["argv"]);
  EXPECT_EQ(got["path"], want["path"]);
  EXPECT_EQ(got["orig_argv"], want["orig_argv"]);
  EXPECT_EQ(got["modules"], want["modules"]);
  // The report says what ran.
  const json rep = ReadJson(dir / "o" / "report.json");
  EXPECT_EQ(rep["script"], "-m showme");
  EXPECT_EQ(rep["args"], json::array({"a", "-b c", "--flag"}));
  EXPECT_TRUE(Contains(ReadText(dir / "o" / "report.txt"), "  script           -m showme a '-b c' --flag\n"));
}

TEST(ProgramTest, CommandSeesArgvPathAndModulesExactlyAsUnderPython) {
  const fs::path dir = OutDir("prog_c");
  fs::create_directories(dir);
  const std::string code = std::string(kShow) + "print('done')\n";
  const Result py = Shell("cd " + dir.string() + " && " + kPython + " -c " + Quoted(code) + " x 'y z'");
  const Result gs =
      Shell("cd " + dir.string() + " && " + kGilscope + " run --out o -c " + Quoted(code) + " x 'y z'");
  ASSERT_EQ(py.status, 0) << py.output;
  ASSERT_EQ(gs.status, 0) << gs.output;
  const json want = Tagged(py.output, "SEEN"), got = Tagged(gs.output, "SEEN");
  EXPECT_EQ(want["argv"], json::array({"-c", "x", "y z"}));
  EXPECT_EQ(want["path"][0], "");
  EXPECT_EQ(got["argv"], want["argv"]);
  EXPECT_EQ(got["path"], want["path"]);
  EXPECT_EQ(got["orig_argv"], want["orig_argv"]);
  EXPECT_EQ(got["modules"], want["modules"]);
  const json rep = ReadJson(dir / "o" / "report.json");
  EXPECT_EQ(rep["script"], "-c " + Quoted(code));
  EXPECT_EQ(rep["args"], json::array({"x", "y z"}));
}

TEST(ProgramTest, ScriptAndPythonCommandLineImportNothingPythonWouldNot) {
  const fs::path dir = OutDir("prog_modules");
  const fs::path show = Script(dir, "show.py", kShow);
  const Result py = Shell(kPython + " " + show.string() + " 1");
  ASSERT_EQ(py.status, 0) << py.output;
  const json want = Tagged(py.output, "SEEN");
  // The modules python itself loads before a script, and neither threading
  // nor atexit, which the host once imported first.
  for (const char* name : {"site", "os", "io"}) EXPECT_NE(std::find(want["modules"].begin(), want["modules"].end(), name), want["modules"].end());
  for (const char* name : {"threading", "atexit", "gilscope"}) {
    EXPECT_EQ(std::find(want["modules"].begin(), want["modules"].end(), name), want["modules"].end()) << name;
  }
  for (const std::string& how : {"run " + show.string() + " --out " + (dir / "o").string() + " -- 1",
                                 "python " + show.string() + " 1",
                                 "python --gilscope-out " + (dir / "p").string() + " " + show.string() + " 1"}) {
    const Result gs = Gilscope(how);
    ASSERT_EQ(gs.status, 0) << how << '\n' << gs.output;
    const json got = Tagged(gs.output, "SEEN");
    EXPECT_EQ(got["modules"], want["modules"]) << how;
    EXPECT_EQ(got["argv"], want["argv"]) << how;
    EXPECT_EQ(got["path"], want["path"]) << how;
  }
}

TEST(ProgramTest, SpawnedChildImportsNothingPythonsChildWouldNot) {
  const fs::path dir = OutDir("prog_spawn_modules");
  const fs::path s = Script(dir, "spawned.py",
                            "import json, multiprocessing as mp, sys\n"
                            "def seen():\n"
                            "    return sorted(sys.modules)\n"
                            "if __name__ == '__main__':\n"
                            "    with mp.get_context('spawn').Pool(1) as pool:\n"
                            "        print('CHILD ' + json.dumps(pool.apply(seen)))\n");
  const Result py = Shell(kPython + " " + s.string());
  const Result gs = Gilscope("run " + s.string() + " --out " + (dir / "o").string());
  ASSERT_EQ(py.status, 0) << py.output;
  ASSERT_EQ(gs.status, 0) << gs.output;
  const json want = Tagged(py.output, "CHILD");
  ASSERT_TRUE(want.is_array());
  EXPECT_EQ(Tagged(gs.output, "CHILD"), want);
  // The child was recorded (it is gilscope-python, sys.executable).
  const json rep = ReadJson(dir / "o" / "report.json");
  int spawned = 0;
  for (const json& p : rep["processes"]) spawned += p["role"] == "spawn";
  EXPECT_GE(spawned, 1);
}

TEST(ProgramTest, ThreadsAreNamedAndTheirExceptionsRecordedWhenThreadingIsImportedLate) {
  const fs::path dir = OutDir("prog_late_threading");
  const fs::path s = Script(dir, "late.py",
                            "import sys\n"
                            "assert 'threading' not in sys.modules\n"
                            "import threading\n"
                            "def work():\n"
                            "    sum(range(100000))\n"
                            "def fail():\n"
                            "    raise RuntimeError('late failure')\n"
                            "t = threading.Thread(target=work, name='late-worker'); t.start(); t.join()\n"
                            "t = threading.Thread(target=fail, name='late-failer'); t.start(); t.join()\n");
  const Result r = Gilscope("run " + s.string() + " --out " + (dir / "o").string());
  ASSERT_EQ(r.status, 0) << r.output;
  const json rep = ReadJson(dir / "o" / "report.json");
  std::vector<std::string> names;
  for (const json& t : rep["threads"]) names.push_back(t["name"]);
  EXPECT_NE(std::find(names.begin(), names.end(), "late-worker"), names.end()) << rep["threads"].dump();
  EXPECT_NE(std::find(names.begin(), names.end(), "MainThread"), names.end());
  ASSERT_EQ(rep["exceptions"].size(), 1u) << rep.dump();
  EXPECT_EQ(rep["exceptions"][0]["thread"], "late-failer");
  EXPECT_EQ(rep["exceptions"][0]["type"], "RuntimeError");
  const std::string tb = rep["exceptions"][0]["traceback"];
  EXPECT_TRUE(Contains(tb, "Traceback (most recent call last):\n")) << tb;
  EXPECT_TRUE(Contains(tb, "late.py\", line 7, in fail")) << tb;
  EXPECT_TRUE(Contains(tb, "RuntimeError: late failure\n")) << tb;
  // The default hook printed it, as under python.
  EXPECT_TRUE(Contains(r.output, "Exception in thread late-failer")) << r.output;
}

TEST(ProgramTest, ChainedMainExceptionIsRecordedWithItsCause) {
  const fs::path dir = OutDir("prog_chain");
  const std::string code =
      "try:\n"
      "    {}['k']\n"
      "except KeyError as e:\n"
      "    raise ValueError('wrapped') from e\n";
  const Result r = Gilscope("run --out " + (dir / "o").string() + " -c " + Quoted(code));
  EXPECT_EQ(r.status, 1) << r.output;
  const json rep = ReadJson(dir / "o" / "report.json");
  ASSERT_EQ(rep["exceptions"].size(), 1u);
  EXPECT_EQ(rep["exceptions"][0]["main"], true);
  const std::string tb = rep["exceptions"][0]["traceback"];
  const auto cause = tb.find("KeyError: 'k'"), direct = tb.find("direct cause"), wrapped = tb.find("ValueError: wrapped");
  ASSERT_NE(cause, std::string::npos) << tb;
  ASSERT_NE(direct, std::string::npos) << tb;
  ASSERT_NE(wrapped, std::string::npos) << tb;
  EXPECT_LT(cause, direct);
  EXPECT_LT(direct, wrapped);
}

TEST(ProgramTest, JsonToolAndUnittestBehaveAsUnderPython) {
  const fs::path dir = OutDir("prog_stdlib");
  Script(dir, "in.json", "{\"b\": [1, 2], \"a\": null}");
  Script(dir, "test_sample.py",
         "import unittest\n"
         "class T(unittest.TestCase):\n"
         "    def test_ok(self):\n"
         "        self.assertEqual(1 + 1, 2)\n"
         "    def test_fails(self):\n"
         "        self.assertEqual(1, 2)\n");
  const std::string cd = "cd " + dir.string() + " && ";
  const Result py_json = Shell(cd + kPython + " -m json.tool --sort-keys in.json");
  const Result gs_json = Shell(cd + kGilscope + " run -m json.tool --out oj -- --sort-keys in.json");
  ASSERT_EQ(py_json.status, 0) << py_json.output;
  EXPECT_EQ(gs_json.status, 0) << gs_json.output;
  EXPECT_TRUE(Contains(gs_json.output, py_json.output)) << gs_json.output;
  // unittest finds test_sample through sys.path[0] (the current directory)
  // and its exit status says one test failed, as under python.
  const Result py_ut = Shell(cd + kPython + " -m unittest test_sample");
  const Result gs_ut = Shell(cd + kGilscope + " run -m unittest --out ou -- test_sample");
  EXPECT_EQ(py_ut.status, 1) << py_ut.output;
  EXPECT_EQ(gs_ut.status, py_ut.status) << gs_ut.output;
  EXPECT_TRUE(Contains(gs_ut.output, "Ran 2 tests")) << gs_ut.output;
  EXPECT_TRUE(Contains(gs_ut.output, "FAILED (failures=1)")) << gs_ut.output;
  EXPECT_EQ(ReadJson(dir / "ou" / "report.json")["exit_code"], 1);
}

TEST(ProgramTest, PytestRunsWhereInstalled) {
  if (Shell(kPython + " -c 'import pytest'").status != 0) {
    GTEST_SKIP() << "pytest is not installed for " << kPython;
  }
  const fs::path dir = OutDir("prog_pytest");
  Script(dir, "test_p.py", "def test_one():\n    assert 2 * 2 == 4\n");
  const Result r = Shell("cd " + dir.string() + " && " + kGilscope + " run -m pytest --out o -- -q -p no:cacheprovider test_p.py");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "1 passed")) << r.output;
}

TEST(ProgramTest, DefaultOutputFoldersNameTheModuleAndTheCommand) {
  const fs::path dir = OutDir("prog_default_out");
  fs::create_directories(dir);
  Script(dir, "in.json", "[1]");
  const std::string cd = "cd " + dir.string() + " && ";
  ASSERT_EQ(Shell(cd + kGilscope + " run -m json.tool in.json").status, 0);
  ASSERT_EQ(Shell(cd + kGilscope + " run -c 'import sys; print(sys.argv)'").status, 0);
  EXPECT_EQ(ReadJson(dir / "gilscope-out" / "json.tool" / "report.json")["script"], "-m json.tool");
  EXPECT_EQ(ReadJson(dir / "gilscope-out" / "c-import_sys_print_sys.argv" / "report.json")["script"],
            "-c 'import sys; print(sys.argv)'");
}

// Python 3.12+ warns when a multi-threaded process forks. gilscope's own
// thread in the script's process (the deadlock watchdog) starts only when a
// thread first blocks on a lock, so a script with one thread forks as under
// python: no warning, the same output. A script that then blocks in a
// deadlock is still caught (the watchdog starts at its first blocking wait).
TEST(ProgramTest, ForkInAThreadlessScriptIsNotWarnedAbout) {
  const fs::path dir = OutDir("prog_fork_warn");
  Script(dir, "forks.py",
         "import os, sys, warnings\n"
         "warnings.simplefilter('always')\n"
         "pid = os.fork()\n"
         "if pid == 0:\n"
         "    os._exit(0)\n"
         "os.waitpid(pid, 0)\n"
         "print('forked', file=sys.stderr)\n");
  const Result py = Shell("cd " + dir.string() + " && " + kPython + " forks.py");
  const Result gs = Shell("cd " + dir.string() + " && " + kGilscope + " run forks.py --out o");
  ASSERT_EQ(py.status, 0) << py.output;
  ASSERT_EQ(gs.status, 0) << gs.output;
  EXPECT_FALSE(Contains(py.output, "multi-threaded")) << py.output;
  EXPECT_FALSE(Contains(gs.output, "multi-threaded")) << gs.output;
  EXPECT_TRUE(Contains(gs.output, "forked")) << gs.output;
}

TEST(ProgramTest, AThreadWaitingForItsOwnLockIsADeadlock) {
  const fs::path dir = OutDir("prog_self_deadlock");
  Script(dir, "self_lock.py",
         "import threading\n"
         "lock = threading.Lock()\n"
         "lock.acquire()\n"
         "lock.acquire()\n");
  const Result gs = Shell("cd " + dir.string() + " && " + kGilscope +
                          " run self_lock.py --out o --deadlock-after 0.5 --timeout 60");
  EXPECT_EQ(gs.status, 3) << gs.output;
  EXPECT_TRUE(Contains(gs.output, "deadlock")) << gs.output;
}

TEST(ProgramTest, ExitStatusesAndMessagesAreThoseOfPython) {
  const fs::path dir = OutDir("prog_status");
  EXPECT_EQ(Gilscope("run --out " + (dir / "a").string() + " -c 'import sys; sys.exit(3)'").status, 3);
  const Result missing = Gilscope("run --out " + (dir / "b").string() + " -m no_such_module_here");
  EXPECT_EQ(missing.status, 1);
  EXPECT_TRUE(Contains(missing.output, "No module named no_such_module_here")) << missing.output;
  // gilscope's own usage errors: exit 2 with a message naming the problem.
  const Result neither = Gilscope("run --out " + (dir / "c").string());
  EXPECT_EQ(neither.status, 2);
  EXPECT_TRUE(Contains(neither.output, "SCRIPT, -m MODULE or -c COMMAND")) << neither.output;
  const Result both = Gilscope("run -m json.tool -c 1");
  EXPECT_EQ(both.status, 2);
  EXPECT_TRUE(Contains(both.output, "not both")) << both.output;
  const Result empty = Gilscope("run -m ''");
  EXPECT_EQ(empty.status, 2);
  EXPECT_TRUE(Contains(empty.output, "-m needs a module name")) << empty.output;
}

TEST(ProgramTest, ModuleAndCommandRunInEveryMode) {
  const fs::path dir = OutDir("prog_modes");
  // One write per line: instances share the process's stdout.
  Script(dir, "inst.py", "import os, sys\nos.write(1, ('INSTANCE ' + __name__ + ' ' + sys.argv[0] + '\\n').encode())\n");
  std::vector<std::string> modes = {"threads", "shared-subinterpreters", "processes", "sequential"};
  if (GILSCOPE_PYTHON_MINOR >= 12) modes.push_back("subinterpreters");
  for (const std::string& mode : modes) {
    const std::string flags = " --mode " + mode + " --instances 2 --out ";
    const Result m = Shell("cd " + dir.string() + " && " + kGilscope + " run -m inst" + flags + "om-" + mode);
    ASSERT_EQ(m.status, 0) << mode << '\n' << m.output;
    const std::string line = "INSTANCE __main__ " + (dir / "inst.py").string() + "\n";
    std::size_t seen = 0;
    for (std::size_t at = 0; (at = m.output.find(line, at)) != std::string::npos; at += line.size()) ++seen;
    EXPECT_EQ(seen, 2u) << mode << '\n' << m.output;
    const Result c = Gilscope("run -c \"import os; os.write(1, ('COMMAND ' + __name__ + '\\n').encode())\"" + flags +
                              (dir / ("oc-" + mode)).string());
    ASSERT_EQ(c.status, 0) << mode << '\n' << c.output;
    seen = 0;
    for (std::size_t at = 0; (at = c.output.find("COMMAND __main__\n", at)) != std::string::npos; ++at) ++seen;
    EXPECT_EQ(seen, 2u) << mode << '\n' << c.output;
  }
}

TEST(ProgramTest, PythonWithGilscopeOutRecordsTheUsersOwnCommandLine) {
  const fs::path dir = OutDir("prog_python_out");
  const fs::path s = Script(dir, "work.py",
                            "import sys, threading\n"
                            "def spin():\n"
                            "    n = 0\n"
                            "    for k in range(300000): n += k\n"
                            "ts = [threading.Thread(target=spin, name=f'spin-{i}') for i in range(2)]\n"
                            "[t.start() for t in ts]; [t.join() for t in ts]\n"
                            "print('OPTIMIZE', sys.flags.optimize, sys.argv[1:])\n"
                            "sys.exit(5)\n");
  const Result r = Gilscope("python --gilscope-out " + (dir / "o").string() + " -O " + s.string() + " a b");
  // python's own options apply (-O), the script's status is the run's, and
  // stdout holds only the program's output: the report goes to DIR.
  EXPECT_EQ(r.status, 5) << r.output;
  EXPECT_TRUE(Contains(r.output, "OPTIMIZE 1 ['a', 'b']\n")) << r.output;
  EXPECT_FALSE(Contains(r.output, "Threads (held/waiting")) << r.output;
  EXPECT_TRUE(Contains(r.output, "reports written to " + (dir / "o").string())) << r.output;
  const json rep = ReadJson(dir / "o" / "report.json");
  EXPECT_EQ(rep["script"], "python");
  EXPECT_EQ(rep["args"], json::array({"-O", s.string(), "a", "b"}));
  EXPECT_EQ(rep["exit_code"], 5);
  int spinners = 0;
  for (const json& t : rep["threads"]) spinners += t["name"].get<std::string>().rfind("spin-", 0) == 0;
  EXPECT_EQ(spinners, 2);
  EXPECT_EQ(rep["events"]["dropped"], 0);
  gilscope::testing::ExpectSwitchesMatchCpython(rep);
  // -m, and start-up's own exits, as python.
  const std::string missing_file = " -m json.tool " + (dir / "none.json").string();
  const int python_status = Shell(kPython + missing_file).status;
  EXPECT_NE(python_status, 0);
  EXPECT_EQ(Gilscope("python --gilscope-out " + (dir / "m").string() + missing_file).status, python_status);
  const Result version = Gilscope("python -V");
  EXPECT_EQ(version.status, 0);
  EXPECT_TRUE(Contains(version.output, "Python " + kMinor)) << version.output;
  EXPECT_EQ(Gilscope("python --no-such-python-option").status, 2);
  EXPECT_EQ(Gilscope("python --gilscope-out").status, 2);
}

// A virtual environment made by the embedded CPython's own venv, holding a
// package of this test's.
fs::path MakeVenv(const fs::path& dir) {
  fs::remove_all(dir);
  const Result made = Shell(kPython + " -m venv --without-pip " + dir.string());
  EXPECT_EQ(made.status, 0) << made.output;
  Script(dir / "lib" / ("python" + kMinor) / "site-packages" / "venvpkg", "__init__.py",
         "import os\nWHERE = os.path.dirname(__file__)\n");
  return dir;
}

constexpr const char* kVenvShow =
    "import json, multiprocessing as mp, sys, venvpkg\n"
    "def child():\n"
    "    import venvpkg\n"
    "    return [sys.prefix, sys.path, venvpkg.WHERE]\n"
    "if __name__ == '__main__':\n"
    "    print('VENV ' + json.dumps({'prefix': sys.prefix, 'base_prefix': sys.base_prefix,\n"
    "                                'exec_prefix': sys.exec_prefix, 'path': sys.path,\n"
    "                                'pkg': venvpkg.WHERE, 'modules': sorted(sys.modules)}))\n"
    "    print('EXE ' + json.dumps(sys.executable))\n"
    "    if sys.argv[1:] == ['spawn']:\n"
    "        with mp.get_context('spawn').Pool(1) as pool:\n"
    "            print('SPAWNED ' + json.dumps(pool.apply(child)))\n";

TEST(ProgramTest, VirtualEnvironmentIsSeenExactlyAsByItsOwnPython) {
  const fs::path dir = OutDir("prog_venv");
  const fs::path venv = MakeVenv(dir / "env");
  const fs::path s = Script(dir, "show.py", kVenvShow);
  const Result own = Shell((venv / "bin" / "python").string() + " " + s.string() + " spawn");
  ASSERT_EQ(own.status, 0) << own.output;
  const json want = Tagged(own.output, "VENV");
  EXPECT_EQ(want["prefix"], venv.string());
  EXPECT_EQ(want["pkg"], (venv / "lib" / ("python" + kMinor) / "site-packages" / "venvpkg").string());
  const json want_child = Tagged(own.output, "SPAWNED");
  for (const std::string& how :
       {kGilscope + " run --python-env " + venv.string() + " " + s.string() + " --out " + (dir / "a").string() +
            " -- spawn",
        "VIRTUAL_ENV=" + venv.string() + " " + kGilscope + " run " + s.string() + " --out " + (dir / "b").string() +
            " -- spawn",
        "VIRTUAL_ENV=" + venv.string() + " " + kGilscope + " python " + s.string() + " spawn",
        kGilscope + " python --python-env " + venv.string() + " --gilscope-out " + (dir / "c").string() + " " +
            s.string() + " spawn"}) {
    const Result r = Shell(how);
    ASSERT_EQ(r.status, 0) << how << '\n' << r.output;
    EXPECT_EQ(Tagged(r.output, "VENV"), want) << how;
    // A spawned child (gilscope-python) is in the same environment.
    EXPECT_EQ(Tagged(r.output, "SPAWNED"), want_child) << how;
    EXPECT_EQ(Tagged(r.output, "EXE"), kGilscope + "-python") << how;
  }
  // Subinterpreters start from the main interpreter's configuration: in the
  // venv too, with gilscope-python as sys.executable.
  const Result sub = Shell(kGilscope + " run --python-env " + venv.string() +
                           " --mode shared-subinterpreters --instances 1 " + s.string() + " --out " +
                           (dir / "d").string());
  ASSERT_EQ(sub.status, 0) << sub.output;
  const json got = Tagged(sub.output, "VENV");
  EXPECT_EQ(got["prefix"], want["prefix"]);
  EXPECT_EQ(got["path"], want["path"]);
  EXPECT_EQ(got["pkg"], want["pkg"]);
  EXPECT_EQ(Tagged(sub.output, "EXE"), kGilscope + "-python");
}

TEST(ProgramTest, VirtualEnvironmentOfAnotherVersionIsAUsageError) {
  const fs::path dir = OutDir("prog_venv_other");
  const fs::path venv = dir / "old";
  Script(venv, "pyvenv.cfg", "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.9.7\n");
  const fs::path s = Script(dir, "s.py", "print('ran')\n");
  for (const std::string& how : {kGilscope + " run --python-env " + venv.string() + " " + s.string(),
                                 "VIRTUAL_ENV=" + venv.string() + " " + kGilscope + " run " + s.string(),
                                 "VIRTUAL_ENV=" + venv.string() + " " + kGilscope + " python " + s.string()}) {
    const Result r = Shell(how);
    EXPECT_EQ(r.status, 2) << how << '\n' << r.output;
    EXPECT_TRUE(Contains(r.output, "is for Python 3.9 (3.9.7)")) << r.output;
    EXPECT_TRUE(Contains(r.output, "embeds CPython " + kMinor + ".")) << r.output;
    EXPECT_FALSE(Contains(r.output, "ran\n")) << r.output;
  }
  const Result not_venv = Gilscope("run --python-env " + dir.string() + " " + s.string());
  EXPECT_EQ(not_venv.status, 2);
  EXPECT_TRUE(Contains(not_venv.output, "has no pyvenv.cfg")) << not_venv.output;
}

// A child in a process group of its own, its stdout and stderr on a pipe.
struct Background {
  pid_t pid = -1;
  int out = -1;
  std::string text;

  explicit Background(const std::string& command) {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      signal(SIGINT, SIG_DFL);  // a terminal's Ctrl-C reaches a foreground job
      dup2(fds[1], 1);
      dup2(fds[1], 2);
      close(fds[0]);
      close(fds[1]);
      execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    out = fds[0];
  }
  // Reads until `pattern` matches the output or `seconds` pass; the match.
  std::smatch WaitFor(const std::regex& pattern, double seconds) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    std::smatch m;
    while (!std::regex_search(text, m, pattern) && std::chrono::steady_clock::now() < deadline) {
      pollfd p{out, POLLIN, 0};
      if (poll(&p, 1, 200) > 0) {
        char buf[4096];
        const ssize_t n = read(out, buf, sizeof buf);
        if (n <= 0) break;
        text.append(buf, static_cast<std::size_t>(n));
      }
    }
    return m;
  }
  int Wait() {
    char buf[4096];
    ssize_t n;
    while ((n = read(out, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
    int raw = 0;
    waitpid(pid, &raw, 0);
    close(out);
    return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  }
};

TEST(ProgramTest, HttpServerModuleServesUntilInterrupted) {
  const fs::path dir = OutDir("prog_http");
  Script(dir, "hello.txt", "hello from gilscope\n");
  // Port 0: the kernel picks a free one, which http.server prints.
  Background server("cd " + dir.string() + " && PYTHONUNBUFFERED=1 exec " + kGilscope +
                    " run -m http.server --out o -- 0 --bind 127.0.0.1");
  ASSERT_GT(server.pid, 0);
  const std::smatch port = server.WaitFor(std::regex("port ([0-9]+)"), 60);
  ASSERT_FALSE(port.empty()) << server.text;
  // One request, answered by the server's request thread.
  const int sock = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(port[1].str())));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string request = "GET /hello.txt HTTP/1.0\r\n\r\n";
  ASSERT_EQ(write(sock, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = read(sock, buf, sizeof buf)) > 0) response.append(buf, static_cast<std::size_t>(n));
  close(sock);
  EXPECT_TRUE(Contains(response, "200")) << response;
  EXPECT_TRUE(Contains(response, "hello from gilscope")) << response;
  // Ctrl-C: http.server says so and exits 0; the run is "interrupted".
  kill(-server.pid, SIGINT);
  const int status = server.Wait();
  EXPECT_EQ(status, 0) << server.text;
  EXPECT_TRUE(Contains(server.text, "Keyboard interrupt received, exiting.")) << server.text;
  const json rep = ReadJson(dir / "o" / "report.json");
  EXPECT_EQ(rep["script"], "-m http.server");
  EXPECT_EQ(rep["status"], "interrupted");
  bool request_thread = false;
  for (const json& t : rep["threads"]) {
    request_thread = request_thread || Contains(t["name"].get<std::string>(), "process_request_thread");
  }
  EXPECT_TRUE(request_thread) << rep["threads"].dump();
}

}  // namespace
