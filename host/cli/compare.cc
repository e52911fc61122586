#include "cli/compare.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "cli/output.h"
#include "runner/script_runner.h"

namespace gilscope::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

// Runs `self` with `args`, its output going to `log`. Returns its exit status
// (128 + signal when killed).
int RunChild(const fs::path& self, const std::vector<std::string>& args, const fs::path& log) {
  std::vector<std::string> all = {self.string()};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return 127;
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  int raw = 0;
  while (waitpid(pid, &raw, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
}

std::string Fixed(double v, int digits) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(digits) << v;
  return os.str();
}

const ModeResult* Find(const std::vector<ModeResult>& modes, const std::string& name) {
  for (const ModeResult& m : modes) {
    if (m.mode == name) return &m;
  }
  return nullptr;
}

double Speedup(double base, double wall) { return wall > 0 ? base / wall : 0; }

// What the table means, in one line.
std::string Verdict(const CompareOptions& options, const ModeResult& sequential,
                    const std::vector<ModeResult>& modes) {
  const ModeResult* threads = Find(modes, "threads");
  const ModeResult* subi = Find(modes, "subinterpreters");
  const ModeResult* procs = Find(modes, "processes");
  const ModeResult* best_parallel = subi && subi->status == "ok" ? subi : procs;
  if (threads == nullptr || threads->status != "ok" || best_parallel == nullptr ||
      best_parallel->status != "ok") {
    return "Some modes failed: see their run.log in the output folder.";
  }
  const double threads_gain = Speedup(sequential.wall_s, threads->wall_s);
  const double parallel_gain = Speedup(threads->wall_s, best_parallel->wall_s);
  const std::string name = best_parallel->mode == "subinterpreters" ? "own-GIL subinterpreters" : "processes";
  if (threads_gain < 1.25 && parallel_gain >= 1.25) {
    return "The GIL serialises this script: " + std::to_string(options.instances) + " threads ran it " +
           Fixed(threads_gain, 1) + "x as fast as one after another, " + name + " " +
           Fixed(parallel_gain, 1) + "x faster than threads.";
  }
  if (threads_gain >= 1.25) {
    return "Threads already overlap this script (it spends its time without the GIL: I/O, sleeps, C code "
           "that releases it): threads " + Fixed(threads_gain, 1) + "x faster than one after another; " +
           name + " " + Fixed(parallel_gain, 1) + "x against threads.";
  }
  return "No mode ran this script much faster than one after another (threads " + Fixed(threads_gain, 1) +
         "x, " + name + " " + Fixed(Speedup(sequential.wall_s, best_parallel->wall_s), 1) +
         "x): its time goes to something all instances share (cores, I/O, a lock).";
}

}  // namespace

ModeResult ReadModeResult(const std::string& mode, const fs::path& folder, int exit_code) {
  ModeResult r;
  r.mode = mode;
  r.folder = folder;
  r.exit_code = exit_code;
  std::ifstream in(folder / "report.json");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!in || j.is_discarded() || !j.is_object()) {
    r.status = "failed";
    return r;
  }
  r.status = j.value("status", "error");
  r.wall_s = j.value("wall_s", 0.0);
  if (j.contains("gils") && j["gils"].is_array()) {
    r.gils = static_cast<int>(j["gils"].size());
    for (const auto& g : j["gils"]) {
      r.busy_fraction += g.value("busy_fraction", 0.0);
      r.contended_fraction += g.value("contended_fraction", 0.0);
    }
  }
  if (j.contains("threads") && j["threads"].is_array()) {
    double cpu = 0;
    bool known = false;
    for (const auto& t : j["threads"]) {
      if (t.contains("cpu_s") && t["cpu_s"].is_number() && t["cpu_s"].get<double>() >= 0) {
        cpu += t["cpu_s"].get<double>();
        known = true;
      }
    }
    if (known) r.cpu_s = cpu;
  }
  if (j.contains("gil_tax") && j["gil_tax"].is_object()) r.speedup_bound = j["gil_tax"].value("speedup_bound", 0.0);
  return r;
}

std::vector<std::string> ProgramWords(const CompareOptions& options) {
  switch (options.program.kind) {
    case python::Program::Kind::kModule:
      return {"-m", options.program.text};
    case python::Program::Kind::kCommand:
      return {"-c", options.program.text};
    case python::Program::Kind::kScript:
      break;
  }
  return {options.program.text};
}

std::string ProgramLabel(const CompareOptions& options) {
  const std::vector<std::string> words = ProgramWords(options);
  return words.size() == 1 ? words[0] : words[0] + " " + words[1];
}

ordered_json CompareJson(const CompareOptions& options, const ModeResult& sequential,
                         const std::vector<ModeResult>& modes) {
  ordered_json j;
  j["schema_version"] = 1;
  // What ran, as `gilscope run` was given it ("-m http.server" for a module).
  j["script"] = ProgramLabel(options);
  j["args"] = options.args;
  j["instances"] = options.instances;
  j["sequential_wall_s"] = sequential.wall_s;
  j["sequential_status"] = sequential.status;
  const ModeResult* threads = Find(modes, "threads");
  j["modes"] = ordered_json::array();
  for (const ModeResult& m : modes) {
    ordered_json e;
    e["mode"] = m.mode;
    e["wall_s"] = m.wall_s;
    e["status"] = m.status;
    e["exit_code"] = m.exit_code;
    e["gils"] = m.gils;
    e["speedup_vs_sequential"] = Speedup(sequential.wall_s, m.wall_s);
    e["speedup_vs_threads"] = threads ? Speedup(threads->wall_s, m.wall_s) : 0.0;
    e["gil_busy"] = m.busy_fraction;
    e["gil_contended"] = m.contended_fraction;
    e["cpu_s"] = m.cpu_s >= 0 ? ordered_json(m.cpu_s) : ordered_json(nullptr);
    e["report"] = (m.folder / "report.json").string();
    j["modes"].push_back(e);
  }
  if (threads && threads->speedup_bound > 0) j["threads_gil_tax_speedup_bound"] = threads->speedup_bound;
  j["verdict"] = Verdict(options, sequential, modes);
  return j;
}

void WriteCompareTable(const CompareOptions& options, const ModeResult& sequential,
                       const std::vector<ModeResult>& modes, std::ostream& out) {
  const ModeResult* threads = Find(modes, "threads");
  out << "gilscope compare: " << ProgramLabel(options) << ", " << options.instances << " instances\n\n";
  out << std::left << std::setw(24) << "mode" << std::right << std::setw(9) << "wall s" << std::setw(12)
      << "vs sequent." << std::setw(12) << "vs threads" << std::setw(6) << "GILs" << std::setw(12)
      << "GILs busy" << std::setw(13) << "contended" << std::setw(9) << "CPU s" << "  status\n";
  auto row = [&](const ModeResult& m, bool is_sequential) {
    out << std::left << std::setw(24) << (is_sequential ? "sequential (baseline)" : m.mode) << std::right
        << std::setw(9) << Fixed(m.wall_s, 3) << std::setw(12)
        << (is_sequential ? "1.00x" : Fixed(Speedup(sequential.wall_s, m.wall_s), 2) + "x") << std::setw(12)
        << (threads && !is_sequential ? Fixed(Speedup(threads->wall_s, m.wall_s), 2) + "x" : "-")
        << std::setw(6) << m.gils << std::setw(12) << Fixed(m.busy_fraction, 2) << std::setw(13)
        << Fixed(m.contended_fraction, 2) << std::setw(9) << (m.cpu_s >= 0 ? Fixed(m.cpu_s, 2) : "-") << "  "
        << m.status << '\n';
  };
  row(sequential, true);
  for (const ModeResult& m : modes) row(m, false);
  out << "\nGILs busy / contended: summed over the run's GILs, as a share of its wall time (2.00 = two GILs\n"
         "busy all the time). CPU s: the threads' CPU time.\n";
  if (threads && threads->speedup_bound > 0) {
    out << "gilscope's estimate from the threads run alone: up to " << Fixed(threads->speedup_bound, 1)
        << "x faster without the GIL.\n";
  }
  out << '\n' << Verdict(options, sequential, modes) << '\n';
}

int RunCompare(const CompareOptions& options, const fs::path& self, std::ostream& progress) {
  EnsureFolder(options.out);
  auto run_mode = [&](const std::string& mode, int index, int total) {
    const fs::path folder = options.out / mode;
    EnsureFolder(folder);
    progress << "compare: [" << index << "/" << total << "] " << mode << " x" << options.instances << " ..."
             << std::flush;
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::string> args = {"run"};
    for (std::string& word : ProgramWords(options)) args.push_back(std::move(word));
    for (std::string word : {std::string("--mode"), mode, std::string("--instances"),
                             std::to_string(options.instances), std::string("--out"), folder.string()}) {
      args.push_back(std::move(word));
    }
    args.insert(args.end(), options.extra_run_flags.begin(), options.extra_run_flags.end());
    args.push_back("--");
    args.insert(args.end(), options.args.begin(), options.args.end());
    const int status = RunChild(self, args, folder / "run.log");
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ModeResult r = ReadModeResult(mode, folder, status);
    progress << " " << r.status << " (" << Fixed(took, 1) << " s)\n";
    return r;
  };
  std::vector<runner::Mode> supported = runner::SupportedModes();
  const int total = static_cast<int>(supported.size()) + 1;
  const ModeResult sequential = run_mode("sequential", 1, total);
  std::vector<ModeResult> modes;
  int index = 2;
  for (runner::Mode m : supported) modes.push_back(run_mode(runner::ModeName(m), index++, total));

  const ordered_json j = CompareJson(options, sequential, modes);
  WriteFileAtomically(options.out / "compare.json", [&](std::ostream& os) { os << j.dump(2) << '\n'; });
  std::ostringstream table;
  WriteCompareTable(options, sequential, modes, table);
  WriteFileAtomically(options.out / "compare.txt", [&](std::ostream& os) { os << table.str(); });
  progress << '\n' << table.str() << "\nWritten to " << options.out.string() << "/ (compare.json, compare.txt, "
           << "and each mode's full report in its folder)\n";
  bool all_ok = sequential.status == "ok";
  for (const ModeResult& m : modes) all_ok = all_ok && m.status == "ok";
  return all_ok ? 0 : 1;
}

}  // namespace gilscope::cli
