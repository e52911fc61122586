#include "cli/app.h"

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cli/output.h"
#include "python/interpreter.h"
#include "report/analysis.h"
#include "report/chrome_trace_writer.h"
#include "report/json_writer.h"
#include "report/text_writer.h"
#include "runner/script_runner.h"

#ifndef GILSCOPE_VERSION
#define GILSCOPE_VERSION "0.0.0"
#endif
#ifndef GILSCOPE_PYTHON_EXECUTABLE
#define GILSCOPE_PYTHON_EXECUTABLE ""
#endif

namespace gilscope::cli {
namespace {

namespace fs = std::filesystem;

struct RunCommand {
  std::string script;
  std::vector<std::string> args;
  std::string out;
  std::optional<double> switch_interval;
  bool json = false;
  bool no_hooks = false;
};

std::string VersionText() {
  return std::string("gilscope ") + GILSCOPE_VERSION + " (CPython " + python::LinkedPythonVersion() + ")";
}

fs::path DefaultOutFolder(const std::string& script) {
  return fs::path("gilscope-out") / fs::path(script).stem();
}

int Run(const RunCommand& cmd) {
  runner::CheckScriptReadable(cmd.script);
  const fs::path out = cmd.out.empty() ? DefaultOutFolder(cmd.script) : fs::path(cmd.out);
  EnsureFolder(out);

  runner::RunOptions options;
  options.script = cmd.script;
  options.args = cmd.args;
  options.switch_interval_s = cmd.switch_interval;
  options.python_executable = GILSCOPE_PYTHON_EXECUTABLE;
  options.hooks = !cmd.no_hooks;
  const report::RunTrace trace = runner::RunScript(options);
  const report::Analysis analysis = report::Analyze(trace);

  std::uint64_t omitted_slices = 0;
  WriteFileAtomically(out / "report.json",
                      [&](std::ostream& os) { report::JsonWriter(os).Write(trace, analysis); });
  WriteFileAtomically(out / "report.txt",
                      [&](std::ostream& os) { report::TextWriter(os).Write(trace, analysis); });
  WriteFileAtomically(out / "trace.json", [&](std::ostream& os) {
    report::ChromeTraceWriter writer(os);
    writer.Write(trace, analysis);
    omitted_slices = writer.OmittedSlices();
  });
  if (omitted_slices > 0) {
    spdlog::warn("trace.json holds the run's beginning only: {} timeline events were left out to keep it "
                 "loadable", omitted_slices);
  }

  std::cout.flush();
  if (cmd.json) {
    report::JsonWriter(std::cout).Write(trace, analysis);
  } else {
    std::cout << '\n';
    report::TextWriter(std::cout).Write(trace, analysis);
    std::cout << "\nReports written to " << out.string() << "/ (report.txt, report.json, trace.json: open "
              << "it in https://ui.perfetto.dev)\n";
  }
  std::cout.flush();
  return trace.info.exit_code;
}

}  // namespace

int Main(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("gilscope");
  logger->set_pattern("gilscope: %^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::warn);

  CLI::App app{"gilscope: run a Python script and see exactly what its GIL did.", "gilscope"};
  app.set_version_flag("--version", VersionText());
  app.require_subcommand(1);
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "Log detail on stderr: trace, debug, info, warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));

  RunCommand run;
  CLI::App* run_app = app.add_subcommand("run", "Run SCRIPT as __main__ with the GIL hooks recording");
  run_app->add_option("script", run.script, "The Python script")->required();
  run_app->add_option("args", run.args, "Arguments for the script (put them after --)");
  run_app->add_option("--out", run.out, "Output folder (default: gilscope-out/<script-stem>)");
  run_app->add_option("--switch-interval", run.switch_interval,
                      "sys.setswitchinterval(S) before the script runs (seconds)")
      ->check(CLI::PositiveNumber);
  run_app->add_flag("--json", run.json, "Print the JSON report instead of the text one");
  run_app->add_flag("--no-hooks", run.no_hooks,
                    "Watch no GIL: the hooks only forward (baseline for measuring gilscope's overhead)");

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

  try {
    if (*run_app) return Run(run);
  } catch (const runner::ScriptError& e) {
    std::cerr << "gilscope: " << e.what() << '\n';
    return kExitUsage;
  } catch (const OutputError& e) {
    std::cerr << "gilscope: " << e.what() << '\n';
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "gilscope: internal error: " << e.what() << '\n';
    return kExitInternal;
  }
  return kExitUsage;
}

}  // namespace gilscope::cli
