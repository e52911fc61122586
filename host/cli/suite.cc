#include "cli/suite.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include "cli/output.h"
#include "runner/script_runner.h"

namespace gilscope::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kHeaderTag = "gilscope:";
// The statuses a header may expect: the ones `run` can end with on purpose.
// ("crashed" is never a correct outcome, so a header cannot ask for it.)
const std::set<std::string, std::less<>> kExpectable = {"ok", "deadlock", "timeout", "error"};
constexpr double kMaxTimeoutS = 24 * 3600;
// run --deadlock-after: long enough that no guide script's ordinary lock
// waits (09's back-off, 11's queue) look like a deadlock, short enough that
// 08 ends well within the 10 s the issue allows.
constexpr int kDeadlockAfterS = 5;
// How often the live progress line is redrawn, and how often the child is
// polled between redraws (its end shows up within one poll).
constexpr auto kRedrawEvery = std::chrono::milliseconds(200);
constexpr auto kPollEvery = std::chrono::milliseconds(20);
// After SIGTERM, how long a child gets to write its report before SIGKILL.
constexpr double kTermToKillS = 5;
// Thresholds of the built verdict line (used when report.json has no finding).
constexpr double kContendedTurns = 0.5;  // contended at least half the run: threads took turns
constexpr double kContendedOften = 0.15;
constexpr double kBusyMostly = 0.8;
constexpr double kFreeMostly = 0.3;
// What the index's two GIL columns are, under the table of each index file.
constexpr std::string_view kColumnsNote =
    "GIL busy / contended: of the run's busiest GIL, the share of its own lifetime it was held, and held\n"
    "while another thread waited for it (a child process's or a subinterpreter's GIL lives less than the run).";

std::string Trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n\f\v");
  if (first == std::string_view::npos) return "";
  const auto last = s.find_last_not_of(" \t\r\n\f\v");
  return std::string(s.substr(first, last - first + 1));
}

std::string Join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += sep;
    out += item;
  }
  return out;
}

std::string Fixed(double v, int digits) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(digits) << v;
  return os.str();
}

// Seconds as a person wrote them: 10, 2.5 (no trailing zeros).
std::string Seconds(double s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

std::string Percent(double fraction) {
  return fraction < 0 ? "-" : Fixed(fraction * 100, 0) + "%";
}

// Script titles, verdicts and run.log lines are user data: before they reach
// a terminal, control bytes (ESC starting an escape sequence, CR rewriting
// the line) and the C1 controls in their UTF-8 form (U+0080..U+009F, which
// some terminals obey) become '?'.
std::string Printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      out += '?';
    } else if (c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
      out += '?';
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// A path segment for an href: unreserved characters kept, the rest %XX.
std::string UrlSegment(std::string_view segment) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char ch : segment) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

[[noreturn]] void HeaderError(const fs::path& path, int line, const std::string& message) {
  throw runner::UsageError(path.string() + ":" + std::to_string(line) + ": " + message);
}

double ParseTimeout(const fs::path& path, int line, const std::string& value) {
  double v = 0;
  const char* begin = value.data();
  const char* end = begin + value.size();
  const auto [ptr, ec] = std::from_chars(begin, end, v);
  if (ec != std::errc() || ptr != end || !std::isfinite(v) || v <= 0 || v > kMaxTimeoutS) {
    HeaderError(path, line,
                "timeout must be a number of seconds above 0 and at most " + Fixed(kMaxTimeoutS, 0) + ", not '" +
                    value + "'");
  }
  return v;
}

std::vector<std::string> ParseModes(const fs::path& path, int line, const std::string& value) {
  std::vector<std::string> modes;
  std::stringstream in(value);
  std::string item;
  while (std::getline(in, item, ',')) {
    std::string mode = Trim(item);
    if (mode.empty()) HeaderError(path, line, "empty entry in modes '" + value + "'");
    const auto& known = HeaderModes();
    if (std::find(known.begin(), known.end(), mode) == known.end()) {
      HeaderError(path, line, "unknown mode '" + mode + "' (known: " + Join(known, ", ") + ")");
    }
    if (std::find(modes.begin(), modes.end(), mode) != modes.end()) {
      HeaderError(path, line, "mode '" + mode + "' listed twice");
    }
    modes.push_back(std::move(mode));
  }
  if (modes.empty()) HeaderError(path, line, "modes lists no mode");
  return modes;
}

// "3.12" for key "modes-3.12" and prefix "modes-"; empty when the key is not
// the prefix followed by a CPython minor version (3.N).
std::string VersionSuffix(const std::string& key, std::string_view prefix) {
  if (key.size() <= prefix.size() || key.compare(0, prefix.size(), prefix) != 0) return {};
  const std::string version = key.substr(prefix.size());
  if (version.size() < 3 || version.compare(0, 2, "3.") != 0) return {};
  if (!std::all_of(version.begin() + 2, version.end(), [](char c) { return c >= '0' && c <= '9'; })) return {};
  return version;
}

// "3.12" from "3.12.1" (or "3.12", or "3.13.0rc1").
std::string MinorVersion(std::string_view version) {
  const auto first = version.find('.');
  if (first == std::string_view::npos) return std::string(version);
  const auto second = version.find_first_not_of("0123456789", first + 1);
  return std::string(version.substr(0, second));
}

bool IsGlob(const std::string& pattern) { return pattern.find_first_of("*?[") != std::string::npos; }

bool Matches(const ScriptHeader& script, const std::string& only) {
  if (only.empty()) return true;
  if (IsGlob(only)) {
    return fnmatch(only.c_str(), script.name.c_str(), 0) == 0 ||
           fnmatch(only.c_str(), script.path.filename().c_str(), 0) == 0;
  }
  return script.name.find(only) != std::string::npos;
}

// The last non-blank line of a run.log, at most 200 bytes of it: usually
// the exception or the error gilscope printed last. A closing pointer to
// --help (after a usage error) says less than the line before it.
std::string LastLogLine(const fs::path& log) {
  std::ifstream in(log, std::ios::binary);
  std::string line;
  std::string last;
  std::string before_help;
  while (std::getline(in, line)) {
    std::string t = Trim(line);
    if (t.empty()) continue;
    if (t.find("--help") != std::string::npos && !last.empty()) {
      before_help = last;
    } else {
      before_help.clear();
    }
    last = std::move(t);
  }
  if (!before_help.empty()) last = std::move(before_help);
  if (last.size() > 200) last = last.substr(0, 200) + "...";
  return last;
}

std::string StringAt(const nlohmann::json& j, const char* key) {
  if (j.is_object() && j.contains(key) && j[key].is_string()) return j[key].get<std::string>();
  return "";
}

// A report's figure, 0 when absent or not a number (a malformed report must
// not cost the index).
double NumberAt(const nlohmann::json& j, const char* key) {
  if (j.is_object() && j.contains(key) && j[key].is_number()) return j[key].get<double>();
  return 0;
}

// The verdict of a run that wrote a report: what report.json says about the
// way it ended, else its first finding, else a line built from the figures.
std::string ReportVerdict(const nlohmann::json& report, const ScriptResult& r, const fs::path& folder) {
  const nlohmann::json empty;
  const nlohmann::json& findings = report.contains("findings") ? report["findings"] : empty;
  if (r.status != "ok") {
    // A finding of the ending's own kind (deadlock, timeout), or a section
    // of that name with a one-line summary.
    if (findings.is_array()) {
      for (const auto& f : findings) {
        if (StringAt(f, "kind") == r.status && !StringAt(f, "detail").empty()) return StringAt(f, "detail");
      }
    }
    if (report.contains(r.status)) {
      for (const char* key : {"summary", "detail", "message"}) {
        const std::string s = StringAt(report[r.status], key);
        if (!s.empty()) return s;
      }
    }
    if (r.status == "deadlock") return "deadlock: the watchdog ended the run (see report.txt for the locks and stacks)";
    if (r.status == "timeout") {
      return "timeout: still running after " + Seconds(r.script.timeout_s) + " s, ended by --timeout";
    }
    const std::string last = LastLogLine(folder / "run.log");
    return r.status + " (exit status " + std::to_string(r.exit_code) + ")" + (last.empty() ? "" : ": " + last);
  }
  if (findings.is_array() && !findings.empty() && !StringAt(findings[0], "detail").empty()) {
    return StringAt(findings[0], "detail");
  }
  const double busy = r.gil_busy_fraction;
  const double contended = r.gil_contended_fraction;
  if (busy < 0) return "no GIL recorded";
  if (contended >= kContendedTurns) {
    return "GIL busy " + Percent(busy) + ", contended " + Percent(contended) + ": threads took turns on it";
  }
  if (contended >= kContendedOften) {
    return "GIL busy " + Percent(busy) + ", contended " + Percent(contended) + ": threads often waited for it";
  }
  if (busy >= kBusyMostly) {
    return "GIL busy " + Percent(busy) + ", seldom contended (" + Percent(contended) +
           "): one thread at a time wanted it";
  }
  if (busy < kFreeMostly) {
    return "GIL mostly free (busy " + Percent(busy) +
           "): the threads waited without it (I/O, sleeps, locks, child processes)";
  }
  return "GIL busy " + Percent(busy) + ", seldom contended (" + Percent(contended) + ")";
}

std::string Outcome(const ScriptResult& r) { return r.skipped ? "SKIP" : r.passed ? "PASS" : "FAIL"; }

std::string Colored(const std::string& outcome, bool color) {
  if (!color) return outcome;
  const char* code = outcome == "PASS" ? "32" : outcome == "FAIL" ? "31;1" : "33";
  return std::string("\x1b[") + code + "m" + outcome + "\x1b[0m";
}

struct Counts {
  int passed = 0;
  int failed = 0;
  int skipped = 0;
};

Counts Count(const std::vector<ScriptResult>& results) {
  Counts c;
  for (const ScriptResult& r : results) {
    if (r.skipped) {
      ++c.skipped;
    } else if (r.passed) {
      ++c.passed;
    } else {
      ++c.failed;
    }
  }
  return c;
}

std::string Plural(int n, const std::string& word) { return std::to_string(n) + " " + word + (n == 1 ? "" : "s"); }

bool IsTerminal(const std::ostream& out) {
  if (&out == &std::cout) return isatty(STDOUT_FILENO) == 1;
  if (&out == &std::cerr || &out == &std::clog) return isatty(STDERR_FILENO) == 1;
  return false;
}

// A running child `gilscope run`. Everything the child needs is built
// before fork(): between fork and exec only async-signal-safe calls.
class Child {
 public:
  Child(const fs::path& exe, const std::vector<std::string>& args, const fs::path& log) {
    std::vector<std::string> all = {exe.string()};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string log_path = log.string();
    pid_ = fork();
    if (pid_ == 0) {
      const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
      }
      // A guide script never reads input; a terminal's would block it.
      const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }

  bool started() const { return pid_ > 0; }

  // The exit status (128 + signal when killed) once the child has ended.
  std::optional<int> Poll() {
    int raw = 0;
    const pid_t r = waitpid(pid_, &raw, WNOHANG);
    if (r == pid_) return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
    if (r < 0 && errno != EINTR) return 127;  // not our child any more: nothing to wait for
    return std::nullopt;
  }

  void Signal(int sig) const { kill(pid_, sig); }

 private:
  pid_t pid_ = -1;
};

}  // namespace

const std::vector<std::string>& HeaderModes() {
  static const std::vector<std::string> kModes = {"main", "threads", "subinterpreters", "shared-subinterpreters",
                                                  "processes"};
  return kModes;
}

ScriptHeader ForPythonVersion(const ScriptHeader& script, std::string_view python_version) {
  ScriptHeader applied = script;
  if (python_version.empty()) return applied;
  const std::string minor = MinorVersion(python_version);
  if (const auto m = script.modes_by_version.find(minor); m != script.modes_by_version.end()) {
    applied.modes = m->second;
  }
  if (const auto r = script.skip_reason_by_version.find(minor); r != script.skip_reason_by_version.end()) {
    applied.skip_reason = "on CPython " + minor + ": " + r->second;
  }
  return applied;
}

ScriptHeader ReadScriptHeader(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw runner::UsageError("cannot open script '" + path.string() + "'");
  ScriptHeader h;
  h.path = path;
  h.name = path.stem().string();
  std::set<std::string, std::less<>> seen;
  std::string raw;
  int line = 0;
  while (std::getline(in, raw)) {
    ++line;
    std::string_view text = raw;
    if (line == 1 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // UTF-8 BOM
    const std::string trimmed = Trim(text);
    if (trimmed.empty()) continue;
    if (trimmed[0] != '#') break;  // the header ends at the first line of code or docstring
    const std::string comment = Trim(std::string_view(trimmed).substr(1));
    if (comment.compare(0, kHeaderTag.size(), kHeaderTag) != 0) continue;  // shebang, coding, prose
    const std::string entry = comment.substr(kHeaderTag.size());
    const auto eq = entry.find('=');
    if (eq == std::string::npos) HeaderError(path, line, "expected 'key = value' after '# gilscope:'");
    const std::string key = Trim(std::string_view(entry).substr(0, eq));
    const std::string value = Trim(std::string_view(entry).substr(eq + 1));
    if (!seen.insert(key).second) HeaderError(path, line, "'" + key + "' given twice");
    if (key == "title") {
      if (value.empty()) HeaderError(path, line, "empty title");
      h.title = value;
    } else if (key == "lesson") {
      h.lesson = value;
    } else if (key == "expect") {
      if (kExpectable.count(value) == 0) {
        HeaderError(path, line, "expect must be ok, deadlock, timeout or error, not '" + value + "'");
      }
      h.expect = value;
    } else if (key == "timeout") {
      h.timeout_s = ParseTimeout(path, line, value);
    } else if (key == "modes") {
      h.modes = ParseModes(path, line, value);
    } else if (key == "skip-reason") {
      h.skip_reason = value;
    } else if (const std::string version = VersionSuffix(key, "modes-"); !version.empty()) {
      h.modes_by_version[version] = ParseModes(path, line, value);
    } else if (const std::string version = VersionSuffix(key, "skip-reason-"); !version.empty()) {
      h.skip_reason_by_version[version] = value;
    } else {
      HeaderError(path, line,
                  "unknown key '" + key +
                      "' (known: title, lesson, expect, timeout, modes, skip-reason, modes-3.N, skip-reason-3.N)");
    }
  }
  if (h.title.empty()) {
    throw runner::UsageError(path.string() +
                             ":1: no '# gilscope: title = ...' line in the header (the comment lines before "
                             "the first line of code)");
  }
  return h;
}

std::vector<ScriptHeader> BundledScripts(const fs::path& scripts_dir) {
  std::error_code ec;
  if (!fs::is_directory(scripts_dir, ec)) {
    throw runner::UsageError("the guide scripts' folder '" + scripts_dir.string() + "' does not exist");
  }
  std::vector<fs::path> files;
  for (const fs::directory_entry& e : fs::directory_iterator(scripts_dir)) {
    if (e.path().extension() == ".py" && e.is_regular_file()) files.push_back(e.path());
  }
  if (files.empty()) throw runner::UsageError("no .py script in '" + scripts_dir.string() + "'");
  std::vector<ScriptHeader> scripts;
  for (const fs::path& f : files) scripts.push_back(ReadScriptHeader(f));
  std::sort(scripts.begin(), scripts.end(),
            [](const ScriptHeader& a, const ScriptHeader& b) { return a.name < b.name; });
  return scripts;
}

std::vector<ScriptHeader> FilterScripts(const std::vector<ScriptHeader>& scripts, const std::string& only) {
  std::vector<ScriptHeader> kept;
  for (const ScriptHeader& s : scripts) {
    if (Matches(s, only)) kept.push_back(s);
  }
  if (kept.empty()) {
    std::vector<std::string> names;
    for (const ScriptHeader& s : scripts) names.push_back(s.name);
    throw runner::UsageError("--only '" + only + "' matches no script (" +
                             (IsGlob(only) ? "a glob on the name" : "a part of the name") +
                             "); the scripts: " + Join(names, ", "));
  }
  return kept;
}

void WriteList(const std::vector<ScriptHeader>& scripts, std::ostream& out) {
  std::size_t width = 0;
  for (const ScriptHeader& s : scripts) width = std::max(width, s.name.size());
  const std::string indent(width + 2, ' ');
  for (const ScriptHeader& s : scripts) {
    out << std::left << std::setw(static_cast<int>(width)) << Printable(s.name) << "  " << Printable(s.title);
    if (s.expect != "ok") out << "  [expected: " << s.expect << "]";
    out << '\n';
    if (!s.lesson.empty()) out << indent << Printable(s.lesson) << '\n';
  }
  out << '\n'
      << scripts.size() << " scripts. Run one: gilscope run SCRIPT; run them all: gilscope suite [--only PATTERN].\n";
}

std::vector<std::string> RunArgs(const ScriptHeader& script, const SuiteOptions& options, const fs::path& folder) {
  return {"run",
          script.path.string(),
          "--out",
          folder.string(),
          "--mode",
          options.mode,
          "--instances",
          std::to_string(options.instances),
          "--timeout",
          Seconds(script.timeout_s),
          "--deadlock-after",
          std::to_string(kDeadlockAfterS)};
}

ScriptResult SkippedResult(const ScriptHeader& script, const std::string& mode) {
  ScriptResult r;
  r.script = script;
  r.status = "skipped";
  r.skipped = true;
  r.verdict = !script.skip_reason.empty()
                  ? script.skip_reason
                  : "not meant to run in mode " + mode + " (its header lists: " + Join(script.modes, ", ") + ")";
  return r;
}

ScriptResult ReadScriptResult(const ScriptHeader& script, const fs::path& folder, int exit_code, double elapsed_s) {
  ScriptResult r;
  r.script = script;
  r.exit_code = exit_code;
  r.elapsed_s = elapsed_s;
  r.wall_s = elapsed_s;
  std::ifstream in(folder / "report.json", std::ios::binary);
  const nlohmann::json j = in ? nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false)
                              : nlohmann::json(nlohmann::json::value_t::discarded);
  if (j.is_discarded() || !j.is_object() || !j.contains("status") || !j["status"].is_string()) {
    r.status = "failed";
    const std::string last = LastLogLine(folder / "run.log");
    r.verdict = "no readable report.json (exit status " + std::to_string(exit_code) + ")" +
                (last.empty() ? "" : ": " + last);
    return r;
  }
  r.has_report = true;
  std::error_code ec;
  r.has_html = fs::exists(folder / "report.html", ec);
  r.status = j["status"].get<std::string>();
  if (j.contains("wall_s") && j["wall_s"].is_number()) r.wall_s = j["wall_s"].get<double>();
  if (j.contains("gils") && j["gils"].is_array()) {
    // Both figures of one GIL, the busiest (ties: the more contended): each
    // is a share of that GIL's own window, and the run's GILs live over
    // different windows (forked children, subinterpreters), so no sum or
    // mix of them is a share of anything.
    for (const auto& g : j["gils"]) {
      if (!g.is_object()) continue;
      ++r.gils;
      const double busy = NumberAt(g, "busy_fraction");
      const double contended = NumberAt(g, "contended_fraction");
      if (std::make_pair(busy, contended) > std::make_pair(r.gil_busy_fraction, r.gil_contended_fraction)) {
        r.gil_busy_fraction = busy;
        r.gil_contended_fraction = contended;
        r.busiest_gil = g.contains("id") && g["id"].is_number_integer() ? g["id"].get<int>() : r.gils - 1;
      }
    }
  }
  r.passed = r.status == script.expect;
  r.verdict = ReportVerdict(j, r, folder);
  return r;
}

ordered_json SuiteIndexJson(const SuiteOptions& options, const std::vector<ScriptResult>& results) {
  const Counts c = Count(results);
  auto number_or_null = [](double v) { return v < 0 ? ordered_json(nullptr) : ordered_json(v); };
  ordered_json j;
  j["schema_version"] = 1;
  j["mode"] = options.mode;
  j["instances"] = options.instances;
  j["only"] = options.only;
  j["passed"] = c.passed;
  j["failed"] = c.failed;
  j["skipped"] = c.skipped;
  j["all_passed"] = c.failed == 0;
  j["scripts"] = ordered_json::array();
  for (const ScriptResult& r : results) {
    const std::string& name = r.script.name;
    ordered_json e;
    e["name"] = name;
    e["title"] = r.script.title;
    e["lesson"] = r.script.lesson;
    e["status"] = r.status;
    e["expected_status"] = r.script.expect;
    e["passed"] = r.passed;
    e["outcome"] = Outcome(r);  // PASS | FAIL | SKIP: a skipped script is not a failure
    e["exit_code"] = r.skipped ? ordered_json(nullptr) : ordered_json(r.exit_code);
    e["wall_s"] = number_or_null(r.wall_s);
    e["elapsed_s"] = number_or_null(r.elapsed_s);
    e["gils"] = r.gils;
    e["busiest_gil"] = r.busiest_gil < 0 ? ordered_json(nullptr) : ordered_json(r.busiest_gil);
    e["gil_busy_fraction"] = number_or_null(r.gil_busy_fraction);
    e["gil_contended_fraction"] = number_or_null(r.gil_contended_fraction);
    e["verdict"] = r.verdict;
    e["report"] = r.has_report ? ordered_json(name + "/report.json") : ordered_json(nullptr);
    e["log"] = r.skipped ? ordered_json(nullptr) : ordered_json(name + "/run.log");
    e["timeout_s"] = r.script.timeout_s;
    e["modes"] = r.script.modes;
    e["skip_reason"] = r.skipped ? ordered_json(r.verdict) : ordered_json(nullptr);
    j["scripts"].push_back(std::move(e));
  }
  return j;
}

void WriteSuiteIndexText(const SuiteOptions& options, const std::vector<ScriptResult>& results, std::ostream& out,
                         bool color) {
  const Counts c = Count(results);
  std::size_t width = 6;  // "script"
  for (const ScriptResult& r : results) width = std::max(width, r.script.name.size());
  const int w = static_cast<int>(width);
  const std::string indent(width + 2, ' ');
  out << "gilscope suite: " << Plural(static_cast<int>(results.size()), "script") << ", mode " << options.mode
      << ", " << Plural(options.instances, "instance") << "\n"
      << c.passed << " passed, " << c.failed << " failed, " << c.skipped << " skipped\n\n";
  out << std::left << std::setw(w) << "script" << "  " << std::setw(10) << "expected" << std::setw(10) << "status"
      << std::setw(6) << "result" << std::right << std::setw(9) << "wall s" << std::setw(10) << "GIL busy"
      << std::setw(11) << "contended" << '\n';
  for (const ScriptResult& r : results) {
    const std::string outcome = Outcome(r);
    out << std::left << std::setw(w) << Printable(r.script.name) << "  " << std::setw(10) << r.script.expect
        << std::setw(10) << Printable(r.status) << Colored(outcome, color) << std::string(6 - outcome.size(), ' ')
        << std::right << std::setw(9) << (r.wall_s < 0 ? "-" : Fixed(r.wall_s, 2)) << std::setw(10)
        << Percent(r.gil_busy_fraction) << std::setw(11) << Percent(r.gil_contended_fraction) << '\n';
    out << indent << Printable(r.script.title) << '\n';
    out << indent << (r.skipped ? "skipped: " : "") << Printable(r.verdict) << '\n';
  }
  out << "\n" << kColumnsNote << "\n"
         "Each script's full report: " << options.out.string() << "/<script>/report.txt (and report.json, "
         "run.log); index.html links them all.\n";
}

void WriteSuiteIndexHtml(const SuiteOptions& options, const std::vector<ScriptResult>& results, std::ostream& out) {
  const Counts c = Count(results);
  // The page is opened from disk next to the reports: no script, no remote
  // resource, and a policy that forbids loading any.
  out << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
         "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
         "<title>gilscope suite: mode "
      << HtmlEscape(options.mode) << "</title>\n<style>\n"
      << "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\n"
         "table{border-collapse:collapse;width:100%}\n"
         "th,td{border-bottom:1px solid #ddd;padding:.4em .6em;text-align:left;vertical-align:top}\n"
         "td.num{text-align:right;font-variant-numeric:tabular-nums}\n"
         ".PASS{color:#176f2c;font-weight:bold}.FAIL{color:#b00020;font-weight:bold}.SKIP{color:#8a6d00}\n"
         ".title{font-weight:600}.lesson,.verdict{color:#555;font-size:.9em}\n"
         "code{font-size:.95em}\n"
      << "</style>\n</head>\n<body>\n";
  out << "<h1>gilscope suite</h1>\n<p>Mode <code>" << HtmlEscape(options.mode) << "</code>, "
      << HtmlEscape(Plural(options.instances, "instance")) << ", "
      << HtmlEscape(Plural(static_cast<int>(results.size()), "script")) << ": " << c.passed << " passed, "
      << c.failed << " failed, " << c.skipped << " skipped.</p>\n";
  out << "<table>\n<thead><tr><th>script</th><th>expected</th><th>status</th><th>result</th><th>wall s</th>"
         "<th>GIL busy</th><th>contended</th><th>verdict</th><th>reports</th></tr></thead>\n<tbody>\n";
  for (const ScriptResult& r : results) {
    const std::string outcome = Outcome(r);
    const std::string dir = UrlSegment(r.script.name);
    out << "<tr><td><code>" << HtmlEscape(r.script.name) << "</code><br><span class=\"title\">"
        << HtmlEscape(r.script.title) << "</span>";
    if (!r.script.lesson.empty()) out << "<br><span class=\"lesson\">" << HtmlEscape(r.script.lesson) << "</span>";
    out << "</td><td>" << HtmlEscape(r.script.expect) << "</td><td>" << HtmlEscape(r.status)
        << "</td><td class=\"" << outcome << "\">" << outcome << "</td><td class=\"num\">"
        << (r.wall_s < 0 ? "-" : Fixed(r.wall_s, 2)) << "</td><td class=\"num\">" << Percent(r.gil_busy_fraction)
        << "</td><td class=\"num\">" << Percent(r.gil_contended_fraction) << "</td><td class=\"verdict\">"
        << (r.skipped ? "skipped: " : "") << HtmlEscape(r.verdict) << "</td><td>";
    if (!r.skipped) {
      std::vector<std::string> links;
      if (r.has_report) {
        if (r.has_html) links.push_back("<a href=\"" + dir + "/report.html\">report.html</a>");
        links.push_back("<a href=\"" + dir + "/report.txt\">report.txt</a>");
        links.push_back("<a href=\"" + dir + "/report.json\">report.json</a>");
      }
      links.push_back("<a href=\"" + dir + "/run.log\">run.log</a>");
      out << Join(links, " ");
    }
    out << "</td></tr>\n";
  }
  out << "</tbody>\n</table>\n<p class=\"verdict\">" << HtmlEscape(kColumnsNote)
      << " Written by gilscope suite.</p>\n</body>\n</html>\n";
}

std::string HtmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char ch : text) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += ch;
    }
  }
  return out;
}

int RunSuite(const SuiteOptions& options, const fs::path& gilscope_exe, std::ostream& out) {
  const auto& known = HeaderModes();
  if (std::find(known.begin(), known.end(), options.mode) == known.end()) {
    throw runner::UsageError("suite: unknown --mode '" + options.mode + "' (known: " + Join(known, ", ") + ")");
  }
  if (options.instances < 1) throw runner::UsageError("suite: --instances must be at least 1");
  if (access(gilscope_exe.c_str(), X_OK) != 0) {
    throw std::runtime_error("suite: cannot run '" + gilscope_exe.string() + "' (the gilscope executable)");
  }
  std::vector<ScriptHeader> scripts = FilterScripts(BundledScripts(options.scripts_dir), options.only);
  for (ScriptHeader& s : scripts) s = ForPythonVersion(s, options.python_version);
  EnsureFolder(options.out);
  const bool live = options.live_progress.value_or(IsTerminal(out));
  const int total = static_cast<int>(scripts.size());
  std::vector<ScriptResult> results;
  for (int i = 0; i < total; ++i) {
    const ScriptHeader& script = scripts[static_cast<std::size_t>(i)];
    const std::string counter = "[" + std::to_string(i + 1) + "/" + std::to_string(total) + "] ";
    const std::string shown = Printable(script.name);
    const bool runs_here = std::find(script.modes.begin(), script.modes.end(), options.mode) != script.modes.end();
    if (!runs_here) {
      results.push_back(SkippedResult(script, options.mode));
      out << (live ? "\r" : "") << counter << shown << "  " << Colored("SKIP", options.color) << "  "
          << Printable(results.back().verdict) << (live ? "\x1b[K" : "") << '\n'
          << std::flush;
      continue;
    }
    const fs::path folder = options.out / script.name;
    EnsureFolder(folder);
    // A report left by an earlier suite must not stand in for this run's.
    std::error_code ec;
    fs::remove(folder / "report.json", ec);
    const auto start = Clock::now();
    auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
    if (live) out << '\r' << counter << shown << "  0.0 s\x1b[K" << std::flush;
    Child child(gilscope_exe, RunArgs(script, options, folder), folder / "run.log");
    int exit_code = 127;
    bool killed = false;
    if (child.started()) {
      const double term_at = script.timeout_s + options.kill_grace_s;
      bool termed = false;
      bool killed_hard = false;
      auto next_draw = start + kRedrawEvery;
      for (;;) {
        if (const std::optional<int> status = child.Poll()) {
          exit_code = *status;
          break;
        }
        const double t = elapsed();
        if (!termed && t >= term_at) {
          child.Signal(SIGTERM);
          termed = killed = true;
        } else if (termed && !killed_hard && t >= term_at + kTermToKillS) {
          child.Signal(SIGKILL);
          killed_hard = true;
        }
        if (live && Clock::now() >= next_draw) {
          out << '\r' << counter << shown << "  " << Fixed(t, 1) << " s\x1b[K" << std::flush;
          next_draw += kRedrawEvery;
        }
        std::this_thread::sleep_for(kPollEvery);
      }
    }
    ScriptResult r = ReadScriptResult(script, folder, exit_code, elapsed());
    if (killed) {
      r.killed_by_suite = true;
      r.passed = false;
      r.verdict = "still running " + Seconds(options.kill_grace_s) + " s after its " + Seconds(script.timeout_s) +
                  " s timeout: killed by the suite (" + r.verdict + ")";
    }
    out << (live ? "\r" : "") << counter << shown << "  " << Printable(r.status) << "  "
        << Colored(Outcome(r), options.color) << "  " << Fixed(r.elapsed_s, 1) << " s" << (live ? "\x1b[K" : "")
        << '\n'
        << std::flush;
    results.push_back(std::move(r));
  }

  const ordered_json index = SuiteIndexJson(options, results);
  // error_handler_t::replace: titles and run.log lines are whatever bytes
  // the scripts hold or printed; invalid UTF-8 must not cost the index.
  WriteFileAtomically(options.out / "index.json", [&](std::ostream& os) {
    os << index.dump(2, ' ', false, ordered_json::error_handler_t::replace) << '\n';
  });
  WriteFileAtomically(options.out / "index.txt",
                      [&](std::ostream& os) { WriteSuiteIndexText(options, results, os, /*color=*/false); });
  WriteFileAtomically(options.out / "index.html",
                      [&](std::ostream& os) { WriteSuiteIndexHtml(options, results, os); });
  out << '\n';
  WriteSuiteIndexText(options, results, out, options.color);
  out << "\nWritten to " << options.out.string() << "/ (index.txt, index.json, index.html)\n" << std::flush;
  return Count(results).failed == 0 ? 0 : 1;
}

}  // namespace gilscope::cli
