#include "report/diff_writer.h"
#include "report/text_util.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gilscope::report {
namespace {

using nlohmann::ordered_json;

std::string Command(const RunInfo& info) {
  std::string command = Sanitize(info.script);
  for (const std::string& arg : info.args) command += " " + ShellWord(arg);
  return command;
}

// ---------------------------------------------------------------- figures

// A figure that may be missing (the thread or GIL is absent from one run, or
// a percentage of an empty lifetime).
using Figure = std::optional<double>;

Figure Fraction(std::uint64_t part, std::uint64_t whole) {
  if (whole == 0) return std::nullopt;
  return static_cast<double>(part) / static_cast<double>(whole);
}

// B against A for counts and times: a ratio; 1 when both are zero (nothing
// changed), none when only A's is zero.
Figure Ratio(Figure a, Figure b) {
  if (!a || !b) return std::nullopt;
  if (*a == 0) return *b == 0 ? Figure(1.0) : std::nullopt;
  return *b / *a;
}

Figure Difference(Figure a, Figure b) {
  if (!a || !b) return std::nullopt;
  return *b - *a;
}

std::string RatioText(Figure a, Figure b) {
  if (!a || !b) return "-";
  if (*a == 0) return *b == 0 ? "=" : "new";
  return Format("x%.2f", *b / *a);
}

std::string PercentText(Figure fraction) { return fraction ? Format("%.1f", 100 * *fraction) : "-"; }
std::string PointsText(Figure a, Figure b) {
  const Figure d = Difference(a, b);
  return d ? Format("%+.1f", 100 * *d) : "-";
}
std::string MsText(Figure ms) { return ms ? Format("%.3f", *ms) : "-"; }
std::string CountText(Figure n) { return n ? Format("%.0f", *n) : "-"; }

ordered_json JsonFigure(Figure f) { return f ? ordered_json(*f) : ordered_json(nullptr); }

struct GilFigures {
  Figure switches, busy, contended, drop_requests;
};

GilFigures FiguresOf(const GilStats* g, const Analysis& analysis) {
  if (g == nullptr) return {};
  const std::uint64_t window = analysis.end_ns - analysis.start_ns;
  return {static_cast<double>(g->switches), Fraction(g->busy_ns, window), Fraction(g->contended_ns, window),
          static_cast<double>(g->drop_requests)};
}

struct ThreadFigures {
  Figure held, waiting, p50_ms, p99_ms;
};

ThreadFigures FiguresOf(const ThreadStats* t) {
  if (t == nullptr) return {};
  return {Fraction(t->held_ns, t->lifetime_ns), Fraction(t->waiting_ns, t->lifetime_ns), t->wait_p50_ms,
          t->wait_p99_ms};
}

struct GilPair {
  std::uint32_t id = 0;
  std::int64_t interpreter = 0;
  const GilStats* a = nullptr;
  const GilStats* b = nullptr;
};

// A's GILs in A's order, then those only B has.
std::vector<GilPair> MatchGils(const Analysis& aa, const Analysis& ab) {
  std::vector<GilPair> pairs;
  std::map<std::uint32_t, std::size_t> index;  // id -> pairs[i]
  for (const GilStats& g : aa.gils) {
    if (index.count(g.id) != 0) continue;  // a duplicated id: the first one speaks for it
    index[g.id] = pairs.size();
    pairs.push_back({g.id, g.interpreter, &g, nullptr});
  }
  for (const GilStats& g : ab.gils) {
    const auto it = index.find(g.id);
    if (it == index.end()) {
      index[g.id] = pairs.size();
      pairs.push_back({g.id, g.interpreter, nullptr, &g});
    } else if (pairs[it->second].b == nullptr) {
      pairs[it->second].b = &g;
    }
  }
  return pairs;
}

struct ThreadPair {
  std::string name;
  const ThreadStats* a = nullptr;
  const ThreadStats* b = nullptr;
};

// The k-th thread named X in A with the k-th named X in B; A's order, then
// B's unmatched threads in B's order.
std::vector<ThreadPair> MatchThreads(const Analysis& aa, const Analysis& ab) {
  std::map<std::string, std::deque<const ThreadStats*>> by_name;
  for (const ThreadStats& t : ab.threads) by_name[t.name].push_back(&t);
  std::vector<ThreadPair> pairs;
  std::map<const ThreadStats*, bool> matched;
  for (const ThreadStats& t : aa.threads) {
    ThreadPair pair{t.name, &t, nullptr};
    auto& candidates = by_name[t.name];
    if (!candidates.empty()) {
      pair.b = candidates.front();
      matched[pair.b] = true;
      candidates.pop_front();
    }
    pairs.push_back(pair);
  }
  for (const ThreadStats& t : ab.threads) {
    if (!matched[&t]) pairs.push_back({t.name, nullptr, &t});
  }
  return pairs;
}

// ---------------------------------------------------------------- text

struct Column {
  std::string header;
  bool left_aligned = false;
};

// Prints a table; `groups` (label, columns spanned) adds a line above the
// headers naming each group of columns (an empty label spans nothing).
void PrintTable(std::ostream& out, const std::vector<std::pair<std::string, std::size_t>>& groups,
                const std::vector<Column>& columns, const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths(columns.size());
  for (std::size_t c = 0; c < columns.size(); ++c) {
    widths[c] = DisplayWidth(columns[c].header);
    for (const auto& row : rows) widths[c] = std::max(widths[c], DisplayWidth(row[c]));
  }
  // A group label wider than its columns widens the last of them.
  for (std::size_t g = 0, c = 0; g < groups.size(); c += groups[g].second, ++g) {
    if (groups[g].second == 0) continue;
    std::size_t span = 2 * (groups[g].second - 1);
    for (std::size_t k = c; k < c + groups[g].second; ++k) span += widths[k];
    const std::size_t label = DisplayWidth(groups[g].first);
    if (label > span) widths[c + groups[g].second - 1] += label - span;
  }
  const auto finish = [&](std::string line) {
    line.erase(line.find_last_not_of(' ') + 1);
    out << line << '\n';
  };
  if (!groups.empty()) {
    std::string line = "  ";
    for (std::size_t g = 0, c = 0; g < groups.size(); c += groups[g].second, ++g) {
      std::size_t span = groups[g].second == 0 ? 0 : 2 * (groups[g].second - 1);
      for (std::size_t k = c; k < c + groups[g].second; ++k) span += widths[k];
      if (g > 0) line += "  ";
      const std::size_t label = DisplayWidth(groups[g].first);
      const std::size_t left = (span - label) / 2;  // centred over its columns
      line += std::string(left, ' ') + groups[g].first + std::string(span - label - left, ' ');
    }
    finish(line);
  }
  const auto print_row = [&](auto cell_at) {
    std::string line = "  ";
    for (std::size_t c = 0; c < columns.size(); ++c) {
      const std::string& cell = cell_at(c);
      const std::string pad(widths[c] - DisplayWidth(cell), ' ');
      if (c > 0) line += "  ";
      line += columns[c].left_aligned ? cell + pad : pad + cell;
    }
    finish(line);
  };
  print_row([&](std::size_t c) -> const std::string& { return columns[c].header; });
  for (const auto& row : rows) print_row([&](std::size_t c) -> const std::string& { return row[c]; });
}

std::string Status(const RunInfo& info) { return Sanitize(info.status) + ", exit code " + std::to_string(info.exit_code); }
std::string Mode(const RunInfo& info) {
  return Sanitize(info.mode) + ", " + std::to_string(info.instances) + (info.instances == 1 ? " instance" : " instances");
}

void PrintHeader(std::ostream& out, const RunTrace& a, const Analysis& aa, const RunTrace& b, const Analysis& ab) {
  out << "gilscope diff: run B against run A\n\n";
  const std::vector<Column> columns = {{"", true}, {"A", true}, {"B", true}, {"change", false}};
  const auto same = [](const std::string& x, const std::string& y) { return x == y ? "" : "differs"; };
  std::vector<std::vector<std::string>> rows;
  const auto row = [&](const char* label, const std::string& x, const std::string& y, std::string change) {
    rows.push_back({label, x, y, std::move(change)});
  };
  row("script", Command(a.info), Command(b.info), same(Command(a.info), Command(b.info)));
  const std::string pa = "CPython " + Sanitize(a.info.python_version);
  const std::string pb = "CPython " + Sanitize(b.info.python_version);
  row("python", pa, pb, same(pa, pb));
  row("mode", Mode(a.info), Mode(b.info), same(Mode(a.info), Mode(b.info)));
  row("status", Status(a.info), Status(b.info), same(Status(a.info), Status(b.info)));
  row("wall time", Format("%.3f s", aa.wall_s), Format("%.3f s", ab.wall_s), RatioText(aa.wall_s, ab.wall_s));
  PrintTable(out, {}, columns, rows);
}

void PrintGils(std::ostream& out, const Analysis& aa, const Analysis& ab) {
  out << "\nGILs (busy/contended: % of the recording window)\n";
  const std::vector<GilPair> pairs = MatchGils(aa, ab);
  if (pairs.empty()) {
    out << "  none recorded\n";
    return;
  }
  const std::vector<std::pair<std::string, std::size_t>> groups = {
      {"", 2}, {"switches", 3}, {"busy %", 3}, {"contended %", 3}, {"drop requests", 3}};
  std::vector<Column> columns = {{"GIL", true}, {"interp", false}};
  for (int g = 0; g < 4; ++g) {
    columns.push_back({"A", false});
    columns.push_back({"B", false});
    columns.push_back({"change", false});
  }
  std::vector<std::vector<std::string>> rows;
  for (const GilPair& p : pairs) {
    const GilFigures fa = FiguresOf(p.a, aa);
    const GilFigures fb = FiguresOf(p.b, ab);
    rows.push_back({std::to_string(p.id), std::to_string(p.interpreter), CountText(fa.switches),
                    CountText(fb.switches), RatioText(fa.switches, fb.switches), PercentText(fa.busy),
                    PercentText(fb.busy), PointsText(fa.busy, fb.busy), PercentText(fa.contended),
                    PercentText(fb.contended), PointsText(fa.contended, fb.contended), CountText(fa.drop_requests),
                    CountText(fb.drop_requests), RatioText(fa.drop_requests, fb.drop_requests)});
  }
  PrintTable(out, groups, columns, rows);
}

void PrintThreads(std::ostream& out, const Analysis& aa, const Analysis& ab) {
  out << "\nThreads (matched by name; held/waiting: % of each thread's lifetime)\n";
  const std::vector<ThreadPair> pairs = MatchThreads(aa, ab);
  if (pairs.empty()) {
    out << "  none recorded\n";
    return;
  }
  const std::vector<std::pair<std::string, std::size_t>> groups = {
      {"", 1}, {"held %", 3}, {"waiting %", 3}, {"wait p50 ms", 3}, {"wait p99 ms", 3}};
  std::vector<Column> columns = {{"thread", true}};
  for (int g = 0; g < 4; ++g) {
    columns.push_back({"A", false});
    columns.push_back({"B", false});
    columns.push_back({"change", false});
  }
  std::vector<std::vector<std::string>> rows;
  for (const ThreadPair& p : pairs) {
    const ThreadFigures fa = FiguresOf(p.a);
    const ThreadFigures fb = FiguresOf(p.b);
    std::string name = p.name.empty() ? "(unnamed)" : Sanitize(p.name);
    if (p.a == nullptr) name += " (B only)";
    if (p.b == nullptr) name += " (A only)";
    rows.push_back({name, PercentText(fa.held), PercentText(fb.held), PointsText(fa.held, fb.held),
                    PercentText(fa.waiting), PercentText(fb.waiting), PointsText(fa.waiting, fb.waiting),
                    MsText(fa.p50_ms), MsText(fb.p50_ms), RatioText(fa.p50_ms, fb.p50_ms), MsText(fa.p99_ms),
                    MsText(fb.p99_ms), RatioText(fa.p99_ms, fb.p99_ms)});
  }
  PrintTable(out, groups, columns, rows);
}

void PrintWarnings(std::ostream& out, const Analysis& aa, const Analysis& ab) {
  bool any = false;
  const auto warn = [&](const char* run, const Analysis& an) {
    if (an.events_dropped == 0) return;
    if (!any) out << '\n';
    any = true;
    out << "!! run " << run << " lost " << an.events_dropped << " events; its figures may be off.\n";
  };
  warn("A", aa);
  warn("B", ab);
}

void PrintLegend(std::ostream& out) {
  out << "\nchange: B against A; for percentages the difference in points, for counts and times the\n"
         "ratio B/A (\"=\": both zero, \"new\": zero in A only, \"-\": missing from one run).\n";
}

// ---------------------------------------------------------------- JSON

ordered_json RunJson(const RunTrace& trace, const Analysis& analysis) {
  const RunInfo& info = trace.info;
  return {{"script", info.script},
          {"args", info.args},
          {"python_version", info.python_version},
          {"mode", info.mode},
          {"instances", info.instances},
          {"status", info.status},
          {"exit_code", info.exit_code},
          {"wall_s", analysis.wall_s},
          {"events_recorded", analysis.events_recorded},
          {"events_dropped", analysis.events_dropped}};
}

ordered_json GilJson(const GilStats* g, const GilFigures& f) {
  if (g == nullptr) return nullptr;
  return {{"switches", g->switches},
          {"busy_fraction", JsonFigure(f.busy)},
          {"contended_fraction", JsonFigure(f.contended)},
          {"drop_requests", g->drop_requests}};
}

ordered_json ThreadJson(const ThreadStats* t, const ThreadFigures& f) {
  if (t == nullptr) return nullptr;
  return {{"native_id", t->native_id},
          {"pid", t->pid},
          {"held_fraction", JsonFigure(f.held)},
          {"waiting_fraction", JsonFigure(f.waiting)},
          {"wait_p50_ms", t->wait_p50_ms},
          {"wait_p99_ms", t->wait_p99_ms}};
}

}  // namespace

ordered_json DiffWriter::ToJson(const RunTrace& a, const Analysis& aa, const RunTrace& b, const Analysis& ab) {
  ordered_json doc;
  doc["schema_version"] = kSchemaVersion;
  doc["a"] = RunJson(a, aa);
  doc["b"] = RunJson(b, ab);
  doc["wall_ratio"] = JsonFigure(Ratio(aa.wall_s, ab.wall_s));

  ordered_json gils = ordered_json::array();
  for (const GilPair& p : MatchGils(aa, ab)) {
    const GilFigures fa = FiguresOf(p.a, aa);
    const GilFigures fb = FiguresOf(p.b, ab);
    gils.push_back({{"id", p.id},
                    {"interpreter", p.interpreter},
                    {"a", GilJson(p.a, fa)},
                    {"b", GilJson(p.b, fb)},
                    {"change",
                     {{"switches_ratio", JsonFigure(Ratio(fa.switches, fb.switches))},
                      {"busy_fraction_diff", JsonFigure(Difference(fa.busy, fb.busy))},
                      {"contended_fraction_diff", JsonFigure(Difference(fa.contended, fb.contended))},
                      {"drop_requests_ratio", JsonFigure(Ratio(fa.drop_requests, fb.drop_requests))}}}});
  }
  doc["gils"] = std::move(gils);

  ordered_json threads = ordered_json::array();
  for (const ThreadPair& p : MatchThreads(aa, ab)) {
    const ThreadFigures fa = FiguresOf(p.a);
    const ThreadFigures fb = FiguresOf(p.b);
    threads.push_back({{"name", p.name},
                       {"a", ThreadJson(p.a, fa)},
                       {"b", ThreadJson(p.b, fb)},
                       {"change",
                        {{"held_fraction_diff", JsonFigure(Difference(fa.held, fb.held))},
                         {"waiting_fraction_diff", JsonFigure(Difference(fa.waiting, fb.waiting))},
                         {"wait_p50_ratio", JsonFigure(Ratio(fa.p50_ms, fb.p50_ms))},
                         {"wait_p99_ratio", JsonFigure(Ratio(fa.p99_ms, fb.p99_ms))}}}});
  }
  doc["threads"] = std::move(threads);
  return doc;
}

void DiffWriter::Write(const RunTrace& a, const Analysis& aa, const RunTrace& b, const Analysis& ab) const {
  PrintHeader(out_, a, aa, b, ab);
  PrintGils(out_, aa, ab);
  PrintThreads(out_, aa, ab);
  PrintWarnings(out_, aa, ab);
  PrintLegend(out_);
}

void DiffWriter::WriteJson(const RunTrace& a, const Analysis& aa, const RunTrace& b, const Analysis& ab,
                           int indent) const {
  // replace: thread names and args are whatever bytes the script used.
  out_ << ToJson(a, aa, b, ab).dump(indent, ' ', /*ensure_ascii=*/false, ordered_json::error_handler_t::replace)
       << '\n';
}

}  // namespace gilscope::report
