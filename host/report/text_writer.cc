#include "report/text_writer.h"
#include "report/text_util.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "report/chrome_trace_writer.h"
#include "report/findings.h"

namespace gilscope::report {
namespace {

// ANSI SGR sequences, or nothing when colour is off.
class Style {
 public:
  explicit Style(bool color) : color_(color) {}
  std::string Wrap(std::string_view text, const char* sgr) const {
    if (!color_ || text.empty()) return std::string(text);
    return std::string("\x1b[") + sgr + "m" + std::string(text) + "\x1b[0m";
  }
  std::string Bold(std::string_view text) const { return Wrap(text, "1"); }
  std::string Dim(std::string_view text) const { return Wrap(text, "2"); }
  std::string Red(std::string_view text) const { return Wrap(text, "31"); }
  std::string Yellow(std::string_view text) const { return Wrap(text, "33"); }
  std::string Green(std::string_view text) const { return Wrap(text, "32"); }
  bool on() const { return color_; }

 private:
  bool color_;
};

// Letters for the timeline's GIL rows: A-Z, a-z, then '*' for the rest.
char ThreadLetter(std::size_t index) {
  if (index < 26) return static_cast<char>('A' + index);
  if (index < 52) return static_cast<char>('a' + (index - 26));
  return '*';
}

std::string Percent(std::uint64_t part, std::uint64_t whole) {
  if (whole == 0) return "-";
  return Format("%.1f", 100.0 * static_cast<double>(part) / static_cast<double>(whole));
}

std::string Count(std::uint64_t n) { return Format("%llu", static_cast<unsigned long long>(n)); }

constexpr double kDefaultIntervalMs = 5.0;  // CPython's default switch interval

struct Column {
  const char* header;
  bool left_aligned;
};

void PrintTable(std::ostream& out, const std::vector<Column>& columns,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths(columns.size());
  for (std::size_t c = 0; c < columns.size(); ++c) {
    widths[c] = DisplayWidth(columns[c].header);
    for (const auto& row : rows) widths[c] = std::max(widths[c], DisplayWidth(row[c]));
  }
  auto print_row = [&](auto cell_at) {
    std::string line = "  ";
    for (std::size_t c = 0; c < columns.size(); ++c) {
      const std::string_view cell = cell_at(c);
      const std::string pad(widths[c] - DisplayWidth(cell), ' ');
      if (c > 0) line += "  ";
      line += columns[c].left_aligned ? std::string(cell) + pad : pad + std::string(cell);
    }
    // The last column may be left-aligned: no trailing blanks in the file.
    line.erase(line.find_last_not_of(' ') + 1);
    out << line << '\n';
  };
  print_row([&](std::size_t c) { return std::string_view(columns[c].header); });
  for (const auto& row : rows) {
    print_row([&](std::size_t c) { return std::string_view(row[c]); });
  }
}

void PrintHeader(std::ostream& out, const Style& style, const RunTrace& trace, const Analysis& analysis) {
  const RunInfo& info = trace.info;
  std::string command = Sanitize(info.script);
  for (const std::string& arg : info.args) command += " " + ShellWord(arg);

  out << style.Bold("gilscope report");
  if (!info.gilscope_version.empty()) out << " (gilscope " << Sanitize(info.gilscope_version) << ")";
  out << '\n';
  out << "  script           " << command << '\n';
  out << "  python           CPython " << Sanitize(info.python_version) << '\n';
  const std::string status = Sanitize(info.status);
  out << "  status           " << (info.status == "ok" ? style.Green(status) : style.Red(status)) << ", exit code "
      << info.exit_code << '\n';
  out << "  wall time        " << Format("%.3f s", analysis.wall_s) << '\n';
  out << "  switch interval  " << Format("%.3f ms", info.switch_interval_s * 1e3) << '\n';
  out << "  mode             " << Sanitize(info.mode) << ", " << info.instances
      << (info.instances == 1 ? " instance" : " instances") << '\n';
}

// The one sentence every report opens with: what did the GIL cost?
void PrintGilTax(std::ostream& out, const Style& style, const Analysis& analysis) {
  const GilTax& tax = analysis.gil_tax;
  out << '\n'
      << style.Bold(Format("The GIL cost this run %.3f s of thread time waiting; with every thread's Python work in "
                           "parallel it could take ~%.3f s (up to %.1fx faster).",
                           tax.waiting_thread_s, tax.ideal_wall_s, tax.speedup_bound))
      << '\n'
      << style.Dim(Format("  (estimate for %d cores: each stretch of the run shortened by how many threads were "
                          "runnable on a GIL; see the legend)",
                          tax.cpu_count))
      << '\n';
}

void PrintFindings(std::ostream& out, const Style& style, const std::vector<Finding>& findings) {
  out << '\n' << style.Bold("Findings") << '\n';
  if (findings.empty()) {
    out << "  none: nothing matched a known GIL problem (convoy, gil_bound, long_hold, switch_storm)\n";
    return;
  }
  for (const Finding& f : findings) {
    const bool severe = f.kind == "gil_bound" || f.kind == "long_hold";
    const std::string kind = "! " + f.kind;
    out << "  " << (severe ? style.Red(kind) : style.Yellow(kind)) << ": " << Sanitize(f.detail) << '\n'
        << "    " << style.Dim("-> " + Sanitize(f.advice)) << '\n';
  }
}

void PrintGils(std::ostream& out, const Style& style, const Analysis& analysis) {
  out << '\n' << style.Bold("GILs") << '\n';
  if (analysis.gils.empty()) {
    out << "  none recorded\n";
    return;
  }
  const std::uint64_t window = analysis.end_ns - analysis.start_ns;
  for (const GilStats& g : analysis.gils) {
    const std::uint64_t own = g.end_ns - g.start_ns;
    // The recorded count is checked against CPython's gil->switch_number:
    // a mismatch means the hooks missed (or invented) acquisitions.
    std::string check;
    if (!g.cpython_switches_known) {
      // The window never closed (the process was killed or crashed), so
      // CPython's counter was not read at its end: nothing to compare.
      check = "CPython's own count unknown: the GIL was never closed";
    } else if (g.switches == g.cpython_switches) {
      check = "CPython counted " + Count(g.cpython_switches) + " (match)";
    } else if (g.switches < g.cpython_switches) {
      check = "CPython counted " + Count(g.cpython_switches) + " (MISMATCH: " +
              Count(g.cpython_switches - g.switches) + " not recorded)";
    } else {
      check = "CPython counted " + Count(g.cpython_switches) + " (MISMATCH: " +
              Count(g.switches - g.cpython_switches) + " more recorded)";
    }
    out << "  GIL " << g.id << " (interpreter " << g.interpreter << "): " << Count(g.switches) << " switches, "
        << check << "; " << Count(g.drop_requests) << " drop requests; busy " << Percent(g.busy_ns, own)
        << "%, contended " << Percent(g.contended_ns, own) << "%";
    // The same figures as report.json's: shares of the GIL's own window,
    // named when it is not the run's (a forked child's, a subinterpreter's).
    if (own != window) out << " of its " << Format("%.3f", g.window_s) << " s";
    out << '\n';
  }
}

// A wait median that hides a slower story: the largest median a thread
// showed in one phase, or after blocking calls that found the GIL held
// (ThreadStats::io_wait_p50_ms), when it dwarfs its whole-run median.
struct HiddenWait {
  double ms = 0;
  int phase = -1;     // index into Analysis::phases; -1: the whole run
  bool io = false;    // the median of io waits, not of every wait
};

// Io waits fewer than this make no median worth pointing at (the convoy
// finding's own minimum).
constexpr std::uint64_t kMinIoWaitsShown = 20;
// A phase median is "the story" when it is at least this many times the
// whole-run one...
constexpr double kHiddenWaitRatio = 4;
// ...and at least a quarter of a switch interval: smaller waits are not
// worth a second look whatever the ratio.
constexpr double kHiddenWaitIntervals = 0.25;

HiddenWait FindHiddenWait(const Analysis& analysis, std::size_t i, double interval_ms) {
  HiddenWait best;
  auto consider = [&](const ThreadStats& t, int phase) {
    if (t.wait_p50_ms > best.ms) best = {t.wait_p50_ms, phase, false};
    if (t.io_waits >= kMinIoWaitsShown && t.io_wait_p50_ms > best.ms) best = {t.io_wait_p50_ms, phase, true};
  };
  // Phases first: on a tie the narrower window tells more.
  if (analysis.phases.size() > 1) {
    for (std::size_t p = 0; p < analysis.phases.size(); ++p) {
      if (i < analysis.phases[p].threads.size()) consider(analysis.phases[p].threads[i], static_cast<int>(p));
    }
  }
  consider(analysis.threads[i], -1);
  const double whole = analysis.threads[i].wait_p50_ms;
  if (best.ms < kHiddenWaitRatio * whole || best.ms < kHiddenWaitIntervals * interval_ms) return {};
  return best;
}

std::string PhaseWindow(const Analysis& analysis, std::size_t p) {
  const Phase& phase = analysis.phases[p];
  return Format("%.3f-%.3f s", static_cast<double>(phase.start_ns - analysis.start_ns) / 1e9,
                static_cast<double>(phase.end_ns - analysis.start_ns) / 1e9);
}

void PrintThreads(std::ostream& out, const Style& style, const Analysis& analysis, double interval_ms) {
  out << '\n' << style.Bold("Threads") << " (held/waiting/released as % of each thread's lifetime)\n";
  if (analysis.threads.empty()) {
    out << "  none recorded\n";
    return;
  }
  // Which GIL a thread used only tells something when there are several.
  const bool show_gil = analysis.gils.size() > 1;
  std::vector<Column> columns = {{"thread", true}, {"native id", false}};
  if (show_gil) columns.push_back({"GIL", false});
  const std::vector<Column> figures = {
      {"lifetime s", false}, {"held %", false},      {"waiting %", false},
      {"released %", false}, {"cpu s", false},       {"acquired", false},    {"forced/voluntary", false},
      {"wait p50 ms", false}, {"p99 ms", false},     {"max ms", false},
  };
  columns.insert(columns.end(), figures.begin(), figures.end());

  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> notes;
  rows.reserve(analysis.threads.size());
  for (std::size_t i = 0; i < analysis.threads.size(); ++i) {
    const ThreadStats& t = analysis.threads[i];
    const HiddenWait hidden = FindHiddenWait(analysis, i, interval_ms);
    std::vector<std::string> row = {t.name.empty() ? "(unnamed)" : Sanitize(t.name), Count(t.native_id)};
    if (show_gil) row.push_back(t.main_gil >= 0 ? std::to_string(t.main_gil) : "-");
    row.push_back(Format("%.3f", t.lifetime_s));
    row.push_back(Percent(t.held_ns, t.lifetime_ns));
    row.push_back(Percent(t.waiting_ns, t.lifetime_ns));
    row.push_back(Percent(t.released_ns, t.lifetime_ns));
    row.push_back(t.cpu_s >= 0 ? Format("%.3f", t.cpu_s) : "-");
    row.push_back(Count(t.acquisitions));
    row.push_back(Count(t.forced_releases) + "/" + Count(t.voluntary_releases));
    row.push_back(Format(hidden.ms > 0 ? "%.3f*" : "%.3f", t.wait_p50_ms));
    row.push_back(Format("%.3f", t.wait_p99_ms));
    row.push_back(Format("%.3f", t.wait_max_ms));
    rows.push_back(std::move(row));
    if (hidden.ms > 0) {
      std::string note = Format("%s: wait p50 %.3f ms over the run, but a median %.3f ms", DescribeThread(t).c_str(),
                                t.wait_p50_ms, hidden.ms);
      if (hidden.io) note += " after blocking calls that found the GIL held";
      if (hidden.phase >= 0) {
        note += Format(hidden.io ? ", in phase %d (%s)" : " in phase %d (%s)", hidden.phase + 1,
                       PhaseWindow(analysis, static_cast<std::size_t>(hidden.phase)).c_str());
      }
      notes.push_back(Sanitize(note));
    }
  }
  PrintTable(out, columns, rows);
  for (const std::string& note : notes) out << "  * " << note << '\n';
  if (!notes.empty()) {
    out << style.Dim(analysis.phases.size() > 1 ? "    (a whole-run median can hide a slower phase: see Phases)"
                                                : "    (a thread's many fast waits can hide its slow ones)")
        << '\n';
  }
}

// Each phase: its window, why it begins there, its GILs' busy and contended
// shares, and its threads (those that held or waited in it, most waiting
// first, at most kPhaseThreads) with their shares of their lifetime in the
// phase and their wait medians. Printed when the run has several phases.
constexpr std::size_t kPhaseThreads = 6;

void PrintPhases(std::ostream& out, const Style& style, const Analysis& analysis) {
  if (analysis.phases.size() <= 1) return;
  out << '\n' << style.Bold("Phases")
      << " (the run cut where GIL contention or a thread's waiting changed; figures inside each phase)\n";
  const std::vector<Column> columns = {{"thread", true},     {"held %", false},      {"waiting %", false},
                                       {"released %", false}, {"acquired", false},   {"wait p50 ms", false},
                                       {"p99 ms", false},     {"io waits", false},   {"io p50 ms", false}};
  for (std::size_t p = 0; p < analysis.phases.size(); ++p) {
    const Phase& phase = analysis.phases[p];
    const std::uint64_t length = phase.end_ns - phase.start_ns;
    out << "  " << style.Bold(Format("phase %zu", p + 1)) << "  " << PhaseWindow(analysis, p) << " ("
        << Sanitize(phase.source) << ", " << Format("%.3f s", static_cast<double>(length) / 1e9) << ")";
    for (const GilStats& g : phase.gils) {
      if (g.busy_ns == 0) continue;  // idle, or not alive in this phase
      out << "; GIL " << g.id << " busy " << Percent(g.busy_ns, g.end_ns - g.start_ns) << "%, contended "
          << Percent(g.contended_ns, g.end_ns - g.start_ns) << "%";
    }
    out << '\n';
    std::vector<std::size_t> shown;
    for (std::size_t i = 0; i < phase.threads.size(); ++i) {
      const ThreadStats& t = phase.threads[i];
      if (t.held_ns > 0 || t.waiting_ns > 0) shown.push_back(i);
    }
    std::stable_sort(shown.begin(), shown.end(), [&](std::size_t a, std::size_t b) {
      return phase.threads[a].waiting_ns > phase.threads[b].waiting_ns;
    });
    const std::size_t more = shown.size() > kPhaseThreads ? shown.size() - kPhaseThreads : 0;
    shown.resize(shown.size() - more);
    if (shown.empty()) continue;
    std::vector<std::vector<std::string>> rows;
    for (std::size_t i : shown) {
      const ThreadStats& t = phase.threads[i];
      rows.push_back({Sanitize(DescribeThread(t)), Percent(t.held_ns, t.lifetime_ns),
                      Percent(t.waiting_ns, t.lifetime_ns), Percent(t.released_ns, t.lifetime_ns),
                      Count(t.acquisitions), Format("%.3f", t.wait_p50_ms), Format("%.3f", t.wait_p99_ms),
                      Count(t.io_waits), Format("%.3f", t.io_wait_p50_ms)});
    }
    std::ostringstream table;
    PrintTable(table, columns, rows);
    // Indented one step further than the phase line.
    std::string line;
    std::istringstream lines(table.str());
    while (std::getline(lines, line)) out << "  " << line << '\n';
    if (more > 0) out << "      ... " << more << " more threads in report.json\n";
  }
  out << style.Dim("  io waits: waits after a blocking call that found the GIL held (a convoy's waits)") << '\n';
}

// Top sites per thread: where its holds ended and where it blocked.
constexpr std::size_t kTopSites = 3;

void PrintSites(std::ostream& out, const char* label, const std::vector<SiteTime>& sites, std::uint64_t total_ns) {
  for (std::size_t k = 0; k < std::min(sites.size(), kTopSites); ++k) {
    const SiteTime& s = sites[k];
    const CodeSite site{s.function, s.file, s.line};
    out << "    " << (k == 0 ? label : "        ") << "  " << Format("%8.3f s %5s%%", s.seconds,
                                                                           Percent(s.ns, total_ns).c_str())
        << "  " << Sanitize(DescribeSite(site)) << '\n';
  }
  if (sites.size() > kTopSites) {
    out << "                      ... " << sites.size() - kTopSites << " more in report.json\n";
  }
}

void PrintAttribution(std::ostream& out, const Style& style, const Analysis& analysis) {
  out << '\n' << style.Bold("Where the GIL went")
      << " (held: the function running when each hold ended; released: the call site of each voluntary release)\n";
  if (analysis.sites.size() <= 1) {
    // Only the "<unknown>" site: every line would say so.
    out << "  no Python frames were recorded in this run, so time cannot be attributed to functions\n";
    return;
  }
  bool any = false;
  for (const ThreadStats& t : analysis.threads) {
    if (t.held_by_function.empty() && t.released_at.empty()) continue;
    any = true;
    out << "  " << Sanitize(DescribeThread(t)) << '\n';
    PrintSites(out, "held    ", t.held_by_function, t.held_ns);
    std::uint64_t voluntary_ns = 0;
    for (const SiteTime& s : t.released_at) voluntary_ns += s.ns;
    PrintSites(out, "released", t.released_at, voluntary_ns);
  }
  if (!any) out << "  nothing held or released the GIL in the window\n";
}

// Per column of the timeline, the time (ns, as double) spent in a state.
class Columns {
 public:
  Columns(std::uint64_t start, std::uint64_t end, std::size_t n)
      : start_(start), per_column_(static_cast<double>(end - start) / static_cast<double>(n)), ns_(n, 0.0) {}

  void Add(std::uint64_t from, std::uint64_t to) {
    if (to <= from) return;
    const double a = static_cast<double>(from - start_) / per_column_;
    const double b = static_cast<double>(to - start_) / per_column_;
    const std::size_t n = ns_.size();
    auto first = static_cast<std::size_t>(a);
    const auto last = std::min(static_cast<std::size_t>(b), n - 1);
    if (first >= n) return;
    for (std::size_t c = first; c <= last; ++c) {
      const double lo = std::max(a, static_cast<double>(c));
      const double hi = std::min(b, static_cast<double>(c + 1));
      if (hi > lo) ns_[c] += (hi - lo) * per_column_;
    }
  }
  double operator[](std::size_t c) const { return ns_[c]; }
  double PerColumn() const { return per_column_; }
  void Clear() { std::fill(ns_.begin(), ns_.end(), 0.0); }

 private:
  std::uint64_t start_;
  double per_column_;
  std::vector<double> ns_;
};

// Colours runs of equal characters in a timeline bar.
std::string ColourBar(const Style& style, const std::string& bar, const std::vector<std::size_t>& holder) {
  if (!style.on()) return bar;
  static const char* const kThreadColours[] = {"34", "35", "36", "94", "95", "96"};
  std::string out;
  for (std::size_t i = 0; i < bar.size();) {
    std::size_t j = i;
    while (j < bar.size() && bar[j] == bar[i]) ++j;
    const std::string run = bar.substr(i, j - i);
    if (bar[i] == '#') {
      out += style.Wrap(run, "32");
    } else if (bar[i] == '.') {
      out += style.Wrap(run, "33");
    } else if (bar[i] == ' ') {
      out += run;
    } else {
      out += style.Wrap(run, kThreadColours[holder[i] % 6]);
    }
    i = j;
  }
  return out;
}

void PrintTimeline(std::ostream& out, const Style& style, const Analysis& analysis, int width) {
  const std::uint64_t window = analysis.end_ns - analysis.start_ns;
  // A row: "  X " + the name clipped or padded to kNameWidth + " |" + the
  // columns + "|", exactly `width` characters.
  constexpr std::size_t kNameWidth = 18;
  constexpr std::size_t kFrame = 4 + kNameWidth + 2 + 1;
  const std::size_t columns = static_cast<std::size_t>(width) - kFrame;
  out << '\n' << style.Bold("Timeline");
  if (window == 0 || (analysis.threads.empty() && analysis.gils.empty())) {
    out << ": nothing recorded in the window\n";
    return;
  }
  const double per_column_ms = static_cast<double>(window) / static_cast<double>(columns) / 1e6;
  out << Format(" (0 to %.3f s, %.3f ms per column; '#' holding, '.' waiting, ' ' released; GIL rows: who held it)\n",
                analysis.wall_s, per_column_ms);

  auto name_cell = [&](const std::string& name) {
    std::string clean = Sanitize(name);
    // Cut on a code point boundary, then pad.
    std::string cut;
    std::size_t points = 0;
    for (std::size_t i = 0; i < clean.size() && points < kNameWidth; ++points) {
      std::size_t len = 1;
      while (i + len < clean.size() && (static_cast<unsigned char>(clean[i + len]) & 0xC0) == 0x80) ++len;
      cut.append(clean, i, len);
      i += len;
    }
    return cut + std::string(kNameWidth - points, ' ');
  };

  Columns hold(analysis.start_ns, analysis.end_ns, columns), wait(analysis.start_ns, analysis.end_ns, columns),
      alive(analysis.start_ns, analysis.end_ns, columns);
  // GIL rows: the best holder per column so far and its time.
  std::vector<std::vector<double>> best(analysis.gils.size(), std::vector<double>(columns, 0.0));
  std::vector<std::vector<std::size_t>> best_thread(analysis.gils.size(), std::vector<std::size_t>(columns, 0));
  std::vector<std::vector<double>> busy(analysis.gils.size(), std::vector<double>(columns, 0.0));
  std::vector<Columns> held_on(analysis.gils.size(), Columns(analysis.start_ns, analysis.end_ns, columns));
  std::vector<int> slot_of(256, -1);
  for (std::size_t g = 0; g < analysis.gils.size(); ++g) {
    const std::uint32_t id = analysis.gils[g].id;
    if (id < 256 && slot_of[id] < 0) slot_of[id] = static_cast<int>(g);
  }

  std::vector<std::string> rows;
  const std::vector<std::size_t> no_holders(columns, 0);
  for (std::size_t i = 0; i < analysis.threads.size(); ++i) {
    const ThreadStats& t = analysis.threads[i];
    hold.Clear();
    wait.Clear();
    alive.Clear();
    for (Columns& c : held_on) c.Clear();
    alive.Add(t.lifetime_start_ns, t.lifetime_end_ns);
    for (const StateInterval& iv : t.intervals) {
      if (iv.state == GilState::kHolding) {
        hold.Add(iv.start_ns, iv.end_ns);
        if (slot_of[iv.gil] >= 0) held_on[static_cast<std::size_t>(slot_of[iv.gil])].Add(iv.start_ns, iv.end_ns);
      } else {
        wait.Add(iv.start_ns, iv.end_ns);
      }
    }
    std::string bar(columns, ' ');
    for (std::size_t c = 0; c < columns; ++c) {
      const double blank = hold.PerColumn() - hold[c] - wait[c];  // released or not alive
      if (hold[c] > 0 && hold[c] >= wait[c] && hold[c] >= blank) {
        bar[c] = '#';
      } else if (wait[c] > 0 && wait[c] >= blank) {
        bar[c] = '.';
      }
    }
    for (std::size_t g = 0; g < analysis.gils.size(); ++g) {
      for (std::size_t c = 0; c < columns; ++c) {
        busy[g][c] += held_on[g][c];
        if (held_on[g][c] > best[g][c]) {
          best[g][c] = held_on[g][c];
          best_thread[g][c] = i;
        }
      }
    }
    std::string letter(1, ThreadLetter(i));
    if (style.on()) letter = style.Wrap(letter, "1");
    rows.push_back("  " + letter + " " + name_cell(t.name.empty() ? "thread " + std::to_string(t.native_id) : t.name) +
                   " |" + ColourBar(style, bar, no_holders) + "|");
  }
  for (std::size_t g = 0; g < analysis.gils.size(); ++g) {
    std::string bar(columns, ' ');
    for (std::size_t c = 0; c < columns; ++c) {
      // The top holder shows when the GIL was held more than it was free.
      if (best[g][c] > 0 && best[g][c] >= hold.PerColumn() - busy[g][c]) bar[c] = ThreadLetter(best_thread[g][c]);
    }
    out << "    " << name_cell("GIL " + std::to_string(analysis.gils[g].id)) << " |"
        << ColourBar(style, bar, best_thread[g]) << "|\n";
  }
  for (const std::string& row : rows) out << row << '\n';
}

void PrintEvents(std::ostream& out, const Analysis& analysis, const TracePlan& plan) {
  out << "\nEvents: " << Count(analysis.events_recorded) << " recorded, ";
  if (analysis.events_dropped == 0) {
    out << "0 dropped\n";
  } else {
    out << Count(analysis.events_dropped) << " DROPPED\n"
        << "  !! " << Count(analysis.events_dropped)
        << " events were lost (a full ring buffer, or a thread with no free recorder slot).\n"
        << "  !! Figures above are computed from what was kept and may be off.\n";
  }
  if (analysis.gils_lost != 0) {
    out << "  !! " << Count(analysis.gils_lost)
        << (analysis.gils_lost == 1 ? " GIL was" : " GILs were")
        << " not recorded: the run had more interpreters (processes, subinterpreters) than gilscope's GIL\n"
           "  !! table holds; their threads' GIL events are missing from every figure above.\n";
  }
  if (plan.aggregated()) out << "  trace.json is aggregated to stay loadable: " << plan.reason << ".\n";
  if (analysis.events_unknown_gil != 0) {
    out << "  !! " << Count(analysis.events_unknown_gil)
        << " events named a GIL that was not registered; they count for their thread only.\n";
  }
}

void PrintLegend(std::ostream& out) {
  out << "\nheld: the thread owned the GIL and could run Python code.\n"
         "waiting: it asked for the GIL and was blocked until another thread let go.\n"
         "released: it did not need the GIL (sleep, blocking I/O, C code that dropped it).\n"
         "forced/voluntary: gave the GIL up because another thread asked / on its own.\n"
         "timeline: each column shows what dominated that slice of the run: '#' holding, '.' waiting,\n"
         "  ' ' released or not running; a GIL row shows the letter of the thread holding it most.\n"
         "GIL tax: waiting summed over threads; the ideal time replays the run as if every GIL's\n"
         "  runnable threads ran in parallel on the cores, never faster than its busiest thread.\n";
}

}  // namespace

namespace {

// Multi-line text (a stack, a traceback), each line sanitised and indented.
void PrintIndented(std::ostream& out, const std::string& text) {
  std::size_t begin = 0;
  while (begin < text.size()) {
    std::size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    out << "    " << Sanitize(std::string_view(text).substr(begin, end - begin)) << '\n';
    begin = end + 1;
  }
}

}  // namespace

// A deadlock: who waits for which lock, who holds it, and every stack.
void PrintDeadlock(std::ostream& out, const Style& style, const RunTrace& trace) {
  const Deadlock& d = trace.deadlock;
  if (d.summary.empty() && d.threads.empty()) return;
  out << '\n' << style.Red(style.Bold("Deadlock")) << ": " << Sanitize(d.summary) << '\n';
  for (const BlockedThread& b : d.threads) {
    out << "  " << Sanitize(b.name);
    if (!b.waiting_for.empty()) {
      out << " waits for " << Sanitize(b.waiting_for);
      if (!b.held_by.empty()) out << " (held by " << Sanitize(b.held_by) << ")";
    }
    if (!b.holds.empty()) {
      out << "; holds";
      for (const std::string& h : b.holds) out << ' ' << Sanitize(h);
    }
    out << '\n';
    PrintIndented(out, b.stack);
  }
  out << "  Fix: take the locks in one global order, or acquire(timeout=...) and back off "
         "(scripts/guide/09_lock_ordering.py).\n";
}

// Uncaught exceptions: which thread, what, and the traceback it printed.
void PrintExceptions(std::ostream& out, const Style& style, const RunTrace& trace) {
  if (trace.exceptions.empty()) return;
  out << '\n' << style.Red(style.Bold("Exceptions")) << " (uncaught, each ended its thread)\n";
  for (const ScriptException& e : trace.exceptions) {
    out << "  " << Sanitize(e.thread) << " (pid " << e.pid << ", native id " << e.native_id
        << "): " << Sanitize(e.type);
    if (!e.message.empty()) out << ": " << Sanitize(e.message);
    out << '\n';
    PrintIndented(out, e.traceback);
  }
}

// Several processes: who they were and how each ended.
void PrintProcesses(std::ostream& out, const Style& style, const RunTrace& trace) {
  if (trace.processes.size() <= 1) return;
  out << '\n' << style.Bold("Processes") << '\n';
  for (const ProcessInfo& p : trace.processes) {
    out << "  pid " << p.pid << " (" << Sanitize(p.role);
    if (p.instance >= 0) out << ", instance " << p.instance;
    out << ", parent " << p.parent_pid << "): " << Sanitize(p.status);
    if (p.status != "running") out << ", exit status " << p.exit_status;
    out << '\n';
  }
}

void TextWriter::Write(const RunTrace& trace, const Analysis& analysis) const {
  Write(trace, analysis, PlanChromeTrace(analysis));
}

void TextWriter::Write(const RunTrace& trace, const Analysis& analysis, const TracePlan& plan) const {
  const Style style(color_);
  PrintHeader(out_, style, trace, analysis);
  PrintDeadlock(out_, style, trace);
  PrintExceptions(out_, style, trace);
  PrintGilTax(out_, style, analysis);
  PrintFindings(out_, style, FindIssues(trace, analysis));
  PrintGils(out_, style, analysis);
  PrintThreads(out_, style, analysis,
               trace.info.switch_interval_s > 0 ? trace.info.switch_interval_s * 1e3 : kDefaultIntervalMs);
  PrintPhases(out_, style, analysis);
  PrintProcesses(out_, style, trace);
  PrintAttribution(out_, style, analysis);
  PrintTimeline(out_, style, analysis, width_);
  PrintEvents(out_, analysis, plan);
  PrintLegend(out_);
}

}  // namespace gilscope::report
