// Writes report.html (and report.json, report.txt) for a synthetic run, for
// the headless-browser test: ConvoyRun from the unit tests' traces, with a
// thread named like an XSS payload, a marker named like one, a U+2028 in a
// function name and invalid UTF-8 in the script path, so the page is checked
// against hostile strings in a real browser.
//
//   report_html_fixture OUT_DIR SLOTS
//
// SLOTS: switch intervals to simulate; each adds about 2.2 intervals, so
// 450000 makes a run of a million intervals.

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "report/analysis.h"
#include "report/html_writer.h"
#include "report/json_writer.h"
#include "report/text_writer.h"
#include "report_test_traces.h"

namespace {

using namespace gilscope::report;           // NOLINT: a test tool
using namespace gilscope::report::testing;  // NOLINT

constexpr const char* kEvilName = "</script><img src=x onerror=alert(1)>";

template <typename Writer>
bool WriteFile(const std::filesystem::path& path, const RunTrace& run, const Analysis& analysis, Writer&& write) {
  std::ofstream out(path, std::ios::binary);
  write(out, run, analysis);
  out.close();
  if (!out) {
    std::fprintf(stderr, "report_html_fixture: cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: report_html_fixture OUT_DIR SLOTS\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::size_t slots = 0;
  const std::string_view arg = argv[2];
  if (std::from_chars(arg.data(), arg.data() + arg.size(), slots).ec != std::errc() || slots < 4) {
    std::fprintf(stderr, "report_html_fixture: SLOTS must be a number >= 4\n");
    return 2;
  }
  std::filesystem::create_directories(dir);

  RunTrace run = ConvoyRun(slots, kEvilName);
  run.info.script = "demo/\xff\xfe""convoy.py";
  run.info.args = {"--mode", "<b>fast</b>"};
  run.code[1].function = "Connection.recv\xe2\x80\xa8(line separator)";
  run.marker_names[0] = "<img src=y onerror=alert(2)> start";
  const Analysis analysis = Analyze(run);

  const bool ok =
      WriteFile(dir / "report.html", run, analysis,
                [](std::ostream& out, const RunTrace& r, const Analysis& a) { HtmlWriter(out).Write(r, a); }) &&
      WriteFile(dir / "report.json", run, analysis,
                [](std::ostream& out, const RunTrace& r, const Analysis& a) { JsonWriter(out).Write(r, a); }) &&
      WriteFile(dir / "report.txt", run, analysis,
                [](std::ostream& out, const RunTrace& r, const Analysis& a) { TextWriter(out).Write(r, a); });
  if (!ok) return 1;
  std::size_t intervals = 0;
  for (const ThreadStats& t : analysis.threads) intervals += t.intervals.size();
  std::printf("report_html_fixture: %zu threads, %zu GILs, %zu intervals -> %s\n", analysis.threads.size(),
              analysis.gils.size(), intervals, (dir / "report.html").c_str());
  return 0;
}
