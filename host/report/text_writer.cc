#include "report/text_writer.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace gilscope::report {
namespace {

std::string Format(const char* format, ...) __attribute__((format(printf, 1, 2)));

std::string Format(const char* format, ...) {
  char buffer[256];
  va_list args;
  va_start(args, format);
  const int n = std::vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  if (n < 0) return {};
  if (static_cast<std::size_t>(n) < sizeof buffer) return std::string(buffer, static_cast<std::size_t>(n));
  std::string big(static_cast<std::size_t>(n) + 1, '\0');
  va_start(args, format);
  std::vsnprintf(big.data(), big.size(), format, args);
  va_end(args);
  big.resize(static_cast<std::size_t>(n));
  return big;
}

// Length of the valid UTF-8 sequence at s[i], or 0 if it is not one
// (overlong forms, surrogates and code points above U+10FFFF are invalid).
std::size_t Utf8SequenceLength(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  std::size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < len; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return len;
}

// Valid UTF-8 with no control characters (C0, DEL, C1): safe for one cell.
std::string Sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out.push_back(b < 0x20 || b == 0x7F ? '?' : static_cast<char>(b));
      ++i;
      continue;
    }
    const std::size_t len = Utf8SequenceLength(s, i);
    // C1 controls are U+0080..U+009F, encoded C2 80..C2 9F.
    const bool c1 = len == 2 && b == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0;
    if (len == 0 || c1) {
      out.push_back('?');
      i += len == 0 ? 1 : len;
    } else {
      out.append(s.substr(i, len));
      i += len;
    }
  }
  return out;
}

// Columns are aligned on code points: right for CJK and emoji would need
// wcwidth tables, and a slightly ragged row for those names is acceptable.
std::size_t DisplayWidth(std::string_view utf8) {
  return static_cast<std::size_t>(std::count_if(utf8.begin(), utf8.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

std::string ShellWord(const std::string& arg) {
  const std::string clean = Sanitize(arg);
  if (!clean.empty() && clean.find_first_of(" \t'\"") == std::string::npos) return clean;
  std::string quoted = "'";
  for (char c : clean) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

std::string Percent(std::uint64_t part, std::uint64_t whole) {
  if (whole == 0) return "-";
  return Format("%.1f", 100.0 * static_cast<double>(part) / static_cast<double>(whole));
}

std::string Count(std::uint64_t n) { return Format("%llu", static_cast<unsigned long long>(n)); }

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

void PrintHeader(std::ostream& out, const RunTrace& trace, const Analysis& analysis) {
  const RunInfo& info = trace.info;
  std::string command = Sanitize(info.script);
  for (const std::string& arg : info.args) command += " " + ShellWord(arg);

  out << "gilscope report";
  if (!info.gilscope_version.empty()) out << " (gilscope " << Sanitize(info.gilscope_version) << ")";
  out << '\n';
  out << "  script           " << command << '\n';
  out << "  python           CPython " << Sanitize(info.python_version) << '\n';
  out << "  status           " << Sanitize(info.status) << ", exit code " << info.exit_code << '\n';
  out << "  wall time        " << Format("%.3f s", analysis.wall_s) << '\n';
  out << "  switch interval  " << Format("%.3f ms", info.switch_interval_s * 1e3) << '\n';
  out << "  mode             " << Sanitize(info.mode) << ", " << info.instances
      << (info.instances == 1 ? " instance" : " instances") << '\n';
}

void PrintGils(std::ostream& out, const Analysis& analysis) {
  out << "\nGILs\n";
  if (analysis.gils.empty()) {
    out << "  none recorded\n";
    return;
  }
  const std::uint64_t window = analysis.end_ns - analysis.start_ns;
  for (const GilStats& g : analysis.gils) {
    // The recorded count is checked against CPython's gil->switch_number:
    // a mismatch means the hooks missed (or invented) acquisitions.
    std::string check;
    if (g.switches == g.cpython_switches) {
      check = "match";
    } else if (g.switches < g.cpython_switches) {
      check = "MISMATCH: " + Count(g.cpython_switches - g.switches) + " not recorded";
    } else {
      check = "MISMATCH: " + Count(g.switches - g.cpython_switches) + " more recorded";
    }
    out << "  GIL " << g.id << " (interpreter " << g.interpreter << "): " << Count(g.switches)
        << " switches, CPython counted " << Count(g.cpython_switches) << " (" << check << "); "
        << Count(g.drop_requests) << " drop requests; busy " << Percent(g.busy_ns, window)
        << "%, contended " << Percent(g.contended_ns, window) << "%\n";
  }
}

void PrintThreads(std::ostream& out, const Analysis& analysis) {
  out << "\nThreads (held/waiting/released as % of each thread's lifetime)\n";
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
      {"released %", false}, {"acquired", false},    {"forced/voluntary", false},
      {"wait p50 ms", false}, {"p99 ms", false},     {"max ms", false},
  };
  columns.insert(columns.end(), figures.begin(), figures.end());

  std::vector<std::vector<std::string>> rows;
  rows.reserve(analysis.threads.size());
  for (const ThreadStats& t : analysis.threads) {
    std::vector<std::string> row = {t.name.empty() ? "(unnamed)" : Sanitize(t.name), Count(t.native_id)};
    if (show_gil) row.push_back(t.main_gil >= 0 ? std::to_string(t.main_gil) : "-");
    row.push_back(Format("%.3f", t.lifetime_s));
    row.push_back(Percent(t.held_ns, t.lifetime_ns));
    row.push_back(Percent(t.waiting_ns, t.lifetime_ns));
    row.push_back(Percent(t.released_ns, t.lifetime_ns));
    row.push_back(Count(t.acquisitions));
    row.push_back(Count(t.forced_releases) + "/" + Count(t.voluntary_releases));
    row.push_back(Format("%.3f", t.wait_p50_ms));
    row.push_back(Format("%.3f", t.wait_p99_ms));
    row.push_back(Format("%.3f", t.wait_max_ms));
    rows.push_back(std::move(row));
  }
  PrintTable(out, columns, rows);
}

void PrintEvents(std::ostream& out, const Analysis& analysis) {
  out << "\nEvents: " << Count(analysis.events_recorded) << " recorded, ";
  if (analysis.events_dropped == 0) {
    out << "0 dropped\n";
  } else {
    out << Count(analysis.events_dropped) << " DROPPED\n"
        << "  !! " << Count(analysis.events_dropped)
        << " events were lost (a full ring buffer, or a thread with no free recorder slot).\n"
        << "  !! Figures above are computed from what was kept and may be off.\n";
  }
  if (analysis.events_unknown_gil != 0) {
    out << "  !! " << Count(analysis.events_unknown_gil)
        << " events named a GIL that was not registered; they count for their thread only.\n";
  }
}

void PrintLegend(std::ostream& out) {
  out << "\nheld: the thread owned the GIL and could run Python code.\n"
         "waiting: it asked for the GIL and was blocked until another thread let go.\n"
         "released: it did not need the GIL (sleep, blocking I/O, C code that dropped it).\n"
         "forced/voluntary: gave the GIL up because another thread asked / on its own.\n";
}

}  // namespace

void TextWriter::Write(const RunTrace& trace, const Analysis& analysis) const {
  PrintHeader(out_, trace, analysis);
  PrintGils(out_, analysis);
  PrintThreads(out_, analysis);
  PrintEvents(out_, analysis);
  PrintLegend(out_);
}

}  // namespace gilscope::report
