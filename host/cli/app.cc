#include "cli/app.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cli/compare.h"
#include "cli/output.h"
#include "cli/suite.h"
#include "python/interpreter.h"
#include "report/analysis.h"
#include "report/chrome_trace_writer.h"
#include "report/diff_writer.h"
#include "report/html_writer.h"
#include "report/json_writer.h"
#include "report/raw_file.h"
#include "report/text_writer.h"
#include "runner/script_runner.h"

#ifndef GILSCOPE_VERSION
#define GILSCOPE_VERSION "0.0.0"
#endif
#ifndef GILSCOPE_PYTHON_EXECUTABLE
#define GILSCOPE_PYTHON_EXECUTABLE ""
#endif
#ifndef GILSCOPE_GUIDE_DIR
#define GILSCOPE_GUIDE_DIR "scripts/guide"
#endif
#ifndef GILSCOPE_PYTHON_HOME
#define GILSCOPE_PYTHON_HOME ""
#endif

namespace gilscope::cli {
namespace {

namespace fs = std::filesystem;

struct RunCommand {
  // What runs: exactly one of SCRIPT, -m MODULE, -c COMMAND (ChooseProgram).
  std::string script;
  std::string module;
  std::string command;
  python::Program program;
  std::vector<std::string> args;
  std::string python_env;
  // `gilscope python --gilscope-out DIR ARGS`: args is python's own command
  // line; the report is written, not printed (stdout is the program's).
  bool python_command_line = false;
  std::string out;
  std::optional<double> switch_interval;
  bool json = false;
  bool no_hooks = false;
  std::string mode = "main";
  int instances = 1;
  double timeout = 0;
  double deadlock_after = 5;
  std::string memory_limit;
};

std::string VersionText() {
  return std::string("gilscope ") + GILSCOPE_VERSION + " (CPython " + python::LinkedPythonVersion() + ")";
}

// This binary, and the `gilscope-python` link beside it that children run as
// their `python` (falls back to the plain python: children then go untraced).
fs::path SelfExecutable() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : self;
}

std::string ChildExecutable() {
  const fs::path link = SelfExecutable().parent_path() / "gilscope-python";
  std::error_code ec;
  if (fs::exists(link, ec)) return link.string();
  spdlog::warn("{} is missing: spawned child processes will not be traced", link.string());
  return "";
}

std::string ChildExecutableOrSelf() {
  const std::string child = ChildExecutable();
  return child.empty() ? SelfExecutable().string() : child;
}

// Writes every output of a run into `out`, each file whole or not at all.
// `plan` (PlanChromeTrace(analysis)) is made once for the four of them.
// report.html, one of the two large files, is written on a second thread
// while this one writes the others: the writers only read `trace` and
// `analysis`. Its error, if any, is rethrown here once both are done.
void WriteOutputs(const report::RunTrace& trace, const report::Analysis& analysis, const report::TracePlan& plan,
                  const fs::path& out) {
  std::future<void> html = std::async(std::launch::async, [&] {
    WriteFileAtomically(out / "report.html",
                        [&](std::ostream& os) { report::HtmlWriter(os).Write(trace, analysis, plan); });
  });
  // A failure here leaves through `html`'s destructor, which waits for it.
  WriteFileAtomically(out / "report.json",
                      [&](std::ostream& os) { report::JsonWriter(os).Write(trace, analysis, plan); });
  WriteFileAtomically(out / "report.txt",
                      [&](std::ostream& os) { report::TextWriter(os).Write(trace, analysis, plan); });
  WriteFileAtomically(out / "trace.json",
                      [&](std::ostream& os) { report::ChromeTraceWriter(os).Write(trace, analysis, plan); });
  html.get();
  if (plan.aggregated()) spdlog::warn("trace.json is aggregated to stay loadable: {}", plan.reason);
}

// Prints the report in `format` (text or json) to stdout.
void PrintReport(const report::RunTrace& trace, const report::Analysis& analysis, const report::TracePlan& plan,
                 const std::string& format, const fs::path& out) {
  std::cout.flush();
  if (format == "json") {
    report::JsonWriter(std::cout).Write(trace, analysis, plan);
  } else if (format == "html") {
    report::HtmlWriter(std::cout).Write(trace, analysis, plan);
  } else {
    const bool tty = isatty(STDOUT_FILENO) != 0;
    const char* no_color = std::getenv("NO_COLOR");
    const bool color = tty && (no_color == nullptr || *no_color == '\0');
    int width = report::TextWriter::kDefaultWidth;
    winsize ws{};
    if (tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) width = ws.ws_col;
    std::cout << '\n';
    report::TextWriter(std::cout, color, width).Write(trace, analysis, plan);
    std::cout << "\nReports written to " << out.string()
              << "/: report.txt, report.json, report.html (open it in a browser), trace.json (open it in "
                 "ui.perfetto.dev), events.raw\n";
  }
  std::cout.flush();
}

// `text` as a folder name: letters, digits, '.', '-', '_' (any run of
// other bytes becomes one '_'), at most 32 of them.
std::string Slug(const std::string& text) {
  std::string slug;
  for (const char c : text) {
    const bool keep = std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' || c == '_';
    if (keep) {
      slug += c;
    } else if (!slug.empty() && slug.back() != '_') {
      slug += '_';
    }
    if (slug.size() >= 32) break;
  }
  while (!slug.empty() && (slug.back() == '_' || slug.back() == '.')) slug.pop_back();
  return slug;
}

// gilscope-out/<script stem>, gilscope-out/<module> (-m),
// gilscope-out/c-<the command's first words> (-c).
fs::path DefaultOutFolder(const python::Program& program) {
  switch (program.kind) {
    case python::Program::Kind::kModule: {
      const std::string name = Slug(program.text);
      return fs::path("gilscope-out") / (name.empty() ? "module" : name);
    }
    case python::Program::Kind::kCommand: {
      const std::string words = Slug(program.text);
      return fs::path("gilscope-out") / (words.empty() ? "c" : "c-" + words);
    }
    case python::Program::Kind::kScript:
      break;
  }
  return fs::path("gilscope-out") / fs::path(program.text).stem();
}

// `run` and `compare` name exactly one of SCRIPT, -m MODULE and -c COMMAND.
// With -m or -c, the positional words are all the program's arguments (as
// after `python -m MODULE`): the first of them landed in `script`, which is
// cleared.
python::Program ChooseProgram(const std::string& verb, std::string& script, std::vector<std::string>& args,
                              const std::string& module, const std::string& command, bool has_module,
                              bool has_command) {
  if (has_module && has_command) throw runner::UsageError(verb + " takes -m MODULE or -c COMMAND, not both");
  if (!has_module && !has_command) {
    if (script.empty()) {
      throw runner::UsageError(verb + " needs what to run: SCRIPT, -m MODULE or -c COMMAND (see gilscope " + verb +
                               " --help)");
    }
    return {python::Program::Kind::kScript, script};
  }
  if (has_module && module.empty()) throw runner::UsageError("-m needs a module name, e.g. -m http.server");
  if (!script.empty()) args.insert(args.begin(), script);
  script.clear();
  return has_module ? python::Program{python::Program::Kind::kModule, module}
                    : python::Program{python::Program::Kind::kCommand, command};
}

void ChooseProgram(RunCommand& cmd, bool has_module, bool has_command) {
  cmd.program = ChooseProgram("run", cmd.script, cmd.args, cmd.module, cmd.command, has_module, has_command);
}

// A saved run's events.raw, opened for streaming (its facts in memory, its
// events read as analysis goes). Throws UsageError.
std::unique_ptr<report::RawFileSource> OpenRun(const fs::path& folder) {
  const fs::path raw = folder / "events.raw";
  const std::string dir = folder.string();
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw runner::UsageError("'" + dir + "' is not a gilscope output folder");
  if (!fs::exists(raw, ec)) {
    throw runner::UsageError("'" + dir + "' has no events.raw: it is not the output folder of a gilscope run");
  }
  try {
    report::ReadOptions read;
    read.allow_unfinished = true;
    std::unique_ptr<report::RawFileSource> source = report::RawFileSource::Open(raw.string(), read);
    if (!source->finished()) {
      spdlog::warn("{} was not finished (its run did not end cleanly): using what it holds", raw.string());
    }
    return source;
  } catch (const report::RawFileError& e) {
    throw runner::UsageError(e.what());
  }
}

// A saved run analysed: what `report` and `diff` read. A damaged event
// found while streaming is a usage error too, naming the file and byte.
report::Analysis AnalyzeRun(const report::RawFileSource& source) {
  try {
    return report::Analyze(source);
  } catch (const report::RawFileError& e) {
    throw runner::UsageError(e.what());
  }
}

int Run(const RunCommand& cmd) {
  const std::uint64_t memory_limit =
      cmd.memory_limit.empty() ? 0 : runner::ParseSize(cmd.memory_limit, "--memory-limit");
  if (!cmd.python_command_line && cmd.program.kind == python::Program::Kind::kScript) {
    runner::CheckScriptReadable(cmd.program.text);
  }
  runner::RunOptions options;
  options.python_env = runner::ChoosePythonEnv(cmd.python_env);
  const fs::path out = cmd.out.empty() ? DefaultOutFolder(cmd.program) : fs::path(cmd.out);
  EnsureFolder(out);

  options.program = cmd.program;
  options.python_command_line = cmd.python_command_line;
  options.args = cmd.args;
  options.switch_interval_s = cmd.switch_interval;
  options.python_executable = GILSCOPE_PYTHON_EXECUTABLE;
  options.hooks = !cmd.no_hooks;
  options.out_dir = out.string();
  options.timeout_s = cmd.timeout;
  options.deadlock_after_s = cmd.deadlock_after;
  options.python_home = GILSCOPE_PYTHON_HOME;
  options.child_executable = ChildExecutable();
  options.instances = cmd.instances;
  options.memory_limit_bytes = memory_limit;
  const auto mode = runner::ParseMode(cmd.mode);
  if (!mode) throw runner::UsageError("unknown --mode '" + cmd.mode + "'");
  options.mode = *mode;
  (void)runner::RunScript(options);
  // The events stay in the file: analysis streams them in bounded memory.
  const std::unique_ptr<report::RawFileSource> source = OpenRun(out);
  const report::RunTrace& trace = source->meta();
  const report::Analysis analysis = report::Analyze(*source);
  const report::TracePlan plan = report::PlanChromeTrace(analysis);
  WriteOutputs(trace, analysis, plan, out);
  if (cmd.python_command_line) {
    std::cout.flush();
    std::cerr << "gilscope: reports written to " << out.string()
              << "/: report.txt, report.json, report.html, trace.json, events.raw\n";
  } else {
    PrintReport(trace, analysis, plan, cmd.json ? "json" : "text", out);
  }
  return trace.info.exit_code;
}

bool SubinterpretersSupported() {
  for (runner::Mode m : runner::SupportedModes()) {
    if (m == runner::Mode::kSubinterpreters) return true;
  }
  return false;
}

// `gilscope diff A B`.
int Diff(const std::string& a, const std::string& b, const std::string& format) {
  const auto sa = OpenRun(a), sb = OpenRun(b);
  const report::RunTrace &ta = sa->meta(), &tb = sb->meta();
  const report::Analysis aa = AnalyzeRun(*sa), ab = AnalyzeRun(*sb);
  if (format == "json") {
    report::DiffWriter(std::cout).WriteJson(ta, aa, tb, ab);
  } else {
    report::DiffWriter(std::cout).Write(ta, aa, tb, ab);
  }
  return 0;
}

// `gilscope report DIR`: every output again from DIR/events.raw.
int Report(const std::string& dir, const std::string& format) {
  const fs::path folder(dir);
  const auto source = OpenRun(folder);
  const report::RunTrace& trace = source->meta();
  const report::Analysis analysis = AnalyzeRun(*source);
  const report::TracePlan plan = report::PlanChromeTrace(analysis);
  WriteOutputs(trace, analysis, plan, folder);
  PrintReport(trace, analysis, plan, format, folder);
  return 0;
}

void SetUpLogger() {
  auto logger = spdlog::stderr_color_mt("gilscope");
  logger->set_pattern("gilscope: %^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::warn);
}

// Runs a subcommand, turning its failures into a message and an exit status.
int Guarded(const std::function<int()>& subcommand) {
  try {
    return subcommand();
  } catch (const runner::UsageError& e) {
    std::cerr << "gilscope: " << e.what() << '\n';
    return kExitUsage;
  } catch (const OutputError& e) {
    std::cerr << "gilscope: " << e.what() << '\n';
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "gilscope: internal error: " << e.what() << '\n';
    return kExitInternal;
  }
}

// `gilscope python [--gilscope-out DIR] [--python-env DIR] ARGS` (and
// gilscope-python): CPython's own command line with the hooks on. With
// --gilscope-out, recorded by a run of its own whose reports go to DIR;
// without, recording only into a parent run (GILSCOPE_ARENA), if any. The
// leading options are gilscope's (python has no long option of these names).
int PythonCommand(std::vector<std::string> args) {
  std::string out, python_env;
  std::size_t used = 0;
  while (used < args.size()) {
    const std::string& a = args[used];
    std::string* target = nullptr;
    std::string name;
    for (auto [flag, dest] : {std::pair{"--gilscope-out", &out}, std::pair{"--python-env", &python_env}}) {
      if (a == flag || a.rfind(std::string(flag) + "=", 0) == 0) {
        name = flag;
        target = dest;
      }
    }
    if (target == nullptr) break;
    if (a.size() > name.size()) {
      *target = a.substr(name.size() + 1);
      used += 1;
    } else if (used + 1 < args.size()) {
      *target = args[used + 1];
      used += 2;
    } else {
      std::cerr << "gilscope python: " << name << " needs a folder\n";
      return kExitUsage;
    }
    if (target->empty()) {
      std::cerr << "gilscope python: " << name << " needs a folder\n";
      return kExitUsage;
    }
  }
  args.erase(args.begin(), args.begin() + static_cast<std::ptrdiff_t>(used));
  if (!out.empty()) {
    SetUpLogger();
    RunCommand cmd;
    cmd.python_command_line = true;
    cmd.args = std::move(args);
    cmd.out = out;
    cmd.python_env = python_env;
    return Guarded([&] { return Run(cmd); });
  }
  if (!python_env.empty()) {
    try {
      // PythonMain, and every child it starts, finds it there.
      setenv("GILSCOPE_PYTHON_ENV", runner::ChoosePythonEnv(python_env).c_str(), 1);
    } catch (const runner::UsageError& e) {
      std::cerr << "gilscope python: " << e.what() << '\n';
      return kExitUsage;
    }
  }
  args.insert(args.begin(), ChildExecutableOrSelf());
  try {
    return runner::PythonMain(args, args[0], GILSCOPE_PYTHON_HOME);
  } catch (const std::exception& e) {
    std::cerr << "gilscope python: " << e.what() << '\n';
    return kExitInternal;
  }
}

}  // namespace

int Main(int argc, char** argv) {
  // As `python` (gilscope-python, or `gilscope python ...`).
  const std::string program = argc > 0 ? fs::path(argv[0]).filename().string() : "";
  if (program == "gilscope-python" || (argc > 1 && std::string(argv[1]) == "python")) {
    const int skip = program == "gilscope-python" ? 1 : 2;
    return PythonCommand(std::vector<std::string>(argv + skip, argv + argc));
  }

  SetUpLogger();

  CLI::App app{"gilscope: run a Python script and see exactly what its GIL did.", "gilscope"};
  app.set_version_flag("--version", VersionText());
  app.require_subcommand(1);
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "Log detail on stderr: trace, debug, info, warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));

  RunCommand run;
  CLI::App* run_app = app.add_subcommand(
      "run", "Run SCRIPT, -m MODULE or -c COMMAND as __main__ (as python does) with the GIL hooks recording");
  run_app->add_option("script", run.script, "The Python script");
  run_app->add_option("args", run.args,
                      "Arguments for the script or module (those starting with - after --)");
  CLI::Option* module_opt = run_app->add_option(
      "-m", run.module, "Run library module MODULE as a script, as `python -m MODULE` (e.g. -m http.server)");
  CLI::Option* command_opt =
      run_app->add_option("-c", run.command, "Run the Python code COMMAND, as `python -c COMMAND`");
  run_app->add_option("--python-env", run.python_env,
                      "A virtual environment of this CPython's version to run in (default: the activated "
                      "one, VIRTUAL_ENV)");
  run_app->add_option("--out", run.out, "Output folder (default: gilscope-out/<script-stem>)");
  run_app->add_option("--switch-interval", run.switch_interval,
                      "sys.setswitchinterval(S) before the script runs (seconds)")
      ->check(CLI::PositiveNumber);
  run_app->add_flag("--json", run.json, "Print the JSON report instead of the text one");
  run_app->add_option("--mode", run.mode,
                      "How to run it: main, threads, subinterpreters, shared-subinterpreters, processes, "
                      "sequential")
      ->check(CLI::IsMember({"main", "threads", "subinterpreters", "shared-subinterpreters", "processes",
                             "sequential"}));
  run_app->add_option("--instances", run.instances, "How many copies of the script run at once (1-64)")
      ->check(CLI::Range(1, 64));
  run_app->add_option("--timeout", run.timeout,
                      "End the run after S seconds (status timeout, exit 124); the reports are still written")
      ->check(CLI::PositiveNumber);
  run_app->add_option("--deadlock-after", run.deadlock_after,
                      "Call it a deadlock when every thread has been blocked on a lock this long (default 5 s)")
      ->check(CLI::PositiveNumber);
  run_app->add_option("--memory-limit", run.memory_limit,
                      "Cap the script's data memory at SIZE (e.g. 512M, 2G): past it allocations fail and "
                      "the script gets MemoryError instead of the machine swapping");
  run_app->add_flag("--no-hooks", run.no_hooks,
                    "Watch no GIL: the hooks only forward (baseline for measuring gilscope's overhead)");

  CompareOptions compare;
  std::string compare_out;
  CLI::App* compare_app = app.add_subcommand(
      "compare", "Run SCRIPT N times one after another, then N at once in every mode, and compare");
  compare_app->add_option("script", compare.script, "The Python script");
  compare_app->add_option("args", compare.args,
                          "Arguments for the script or module (those starting with - after --)");
  CLI::Option* compare_module_opt =
      compare_app->add_option("-m", compare.module, "Compare library module MODULE, as `python -m MODULE`");
  CLI::Option* compare_command_opt =
      compare_app->add_option("-c", compare.command, "Compare the Python code COMMAND, as `python -c COMMAND`");
  compare_app->add_option("--instances", compare.instances, "How many copies run at once (default 2)")
      ->check(CLI::Range(1, 64));
  compare_app->add_option("--out", compare_out, "Output folder (default: gilscope-out/<script-stem>-compare)");

  std::string report_dir, report_format = "text";
  CLI::App* report_app = app.add_subcommand("report", "Render a saved run's reports again from DIR/events.raw");
  report_app->add_option("dir", report_dir, "The run's output folder")->required();
  report_app->add_option("--format", report_format, "What to print: text, json or html")
      ->check(CLI::IsMember({"text", "json", "html"}));

  std::string diff_a, diff_b, diff_format = "text";
  CLI::App* diff_app = app.add_subcommand("diff", "Compare two saved runs' GIL figures side by side");
  diff_app->add_option("a", diff_a, "The first run's output folder")->required();
  diff_app->add_option("b", diff_b, "The second run's output folder")->required();
  diff_app->add_option("--format", diff_format, "text or json")->check(CLI::IsMember({"text", "json"}));

  std::string scripts_dir = GILSCOPE_GUIDE_DIR;
  CLI::App* list_app = app.add_subcommand("list", "The bundled guide scripts and what each one teaches");
  list_app->add_option("--scripts", scripts_dir, "Folder of scripts with gilscope headers");

  SuiteOptions suite;
  suite.python_version = python::LinkedPythonVersion();
  std::string suite_out = "gilscope-out/suite";
  CLI::App* suite_app =
      app.add_subcommand("suite", "Run every bundled guide script under gilscope and write an index");
  suite_app->add_option("--out", suite_out, "Output folder (default: gilscope-out/suite)");
  suite_app->add_option("--only", suite.only, "Only scripts whose name contains (or matches the glob) PATTERN");
  suite_app->add_option("--mode", suite.mode, "Execution mode for every script (see run --mode)")
      ->check(CLI::IsMember({"main", "threads", "subinterpreters", "shared-subinterpreters", "processes"}));
  suite_app->add_option("--instances", suite.instances, "Instances per script (1-64)")->check(CLI::Range(1, 64));
  suite_app->add_option("--scripts", scripts_dir, "Folder of scripts with gilscope headers");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "gilscope: " << e.what() << "\nRun 'gilscope --help' for usage.\n";
    return kExitUsage;
  }
  spdlog::set_level(spdlog::level::from_str(log_level));

  return Guarded([&]() -> int {
    if (*run_app) {
      ChooseProgram(run, module_opt->count() > 0, command_opt->count() > 0);
      return Run(run);
    }
    if (*report_app) return Report(report_dir, report_format);
    if (*diff_app) return Diff(diff_a, diff_b, diff_format);
    if (*list_app) {
      WriteList(BundledScripts(scripts_dir), std::cout);
      return 0;
    }
    if (*suite_app) {
      if (suite.mode == "subinterpreters" && !SubinterpretersSupported()) {
        throw runner::UsageError("--mode subinterpreters needs CPython 3.12+; this build embeds CPython " +
                                 python::LinkedPythonVersion());
      }
      suite.scripts_dir = scripts_dir;
      suite.out = suite_out;
      suite.color = isatty(1) != 0 && getenv("NO_COLOR") == nullptr;
      return RunSuite(suite, SelfExecutable(), std::cout);
    }
    if (*compare_app) {
      compare.program =
          ChooseProgram("compare", compare.script, compare.args, compare.module, compare.command,
                        compare_module_opt->count() > 0, compare_command_opt->count() > 0);
      if (compare.program.kind == python::Program::Kind::kScript) runner::CheckScriptReadable(compare.script);
      if (compare_out.empty()) {
        const fs::path run_default = DefaultOutFolder(compare.program);
        compare.out = run_default.parent_path() / (run_default.filename().string() + "-compare");
      } else {
        compare.out = compare_out;
      }
      return RunCompare(compare, SelfExecutable(), std::cout);
    }
    return kExitUsage;
  });
}

}  // namespace gilscope::cli
