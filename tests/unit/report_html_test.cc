// HtmlWriter: the page is self-contained and offline, hostile strings stay
// data (escaped in the page, intact once parsed), invalid UTF-8 cannot break
// it, and the embedded timeline carries exactly the analysed intervals.
// (tests/browser opens the page in Chromium; these tests read the file.)

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "report/analysis.h"
#include "report/html_writer.h"
#include "report_test_traces.h"

namespace gilscope::report {
namespace {

using namespace gilscope::report::testing;  // NOLINT: test vocabulary
using nlohmann::json;

constexpr const char* kEvil = "</script><img src=x onerror=alert(1)>";
constexpr const char* kDataOpen = "<script type=\"application/json\" id=\"gilscope-data\">";

std::string Html(const RunTrace& run) {
  std::ostringstream out;
  HtmlWriter(out).Write(run, Analyze(run));
  return out.str();
}

// The JSON text of the data block (up to the first "</script>" after it).
std::string DataText(const std::string& html) {
  const std::size_t open = html.find(kDataOpen);
  if (open == std::string::npos) return {};
  const std::size_t from = open + std::strlen(kDataOpen);
  const std::size_t close = html.find("</script>", from);
  return close == std::string::npos ? std::string() : html.substr(from, close - from);
}

std::size_t Count(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

bool ValidUtf8(const std::string& s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

std::vector<std::uint8_t> Base64UrlDecode(const std::string& text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
  };
  std::vector<std::uint8_t> out;
  std::uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    const int v = value(c);
    if (v < 0) break;  // padding
    bits = bits << 6 | static_cast<std::uint32_t>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<std::uint8_t>(bits >> count));
    }
  }
  return out;
}

template <typename T>
std::vector<T> Decode(const std::string& text) {
  const std::vector<std::uint8_t> bytes = Base64UrlDecode(text);
  std::vector<T> out(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));  // little-endian test host
  return out;
}

RunTrace HostileRun() {
  RunTrace run = ConvoyRun(44, kEvil);
  run.info.script = "bad\xff\xfe.py";
  run.info.args = {"--x", "</script>", "a&b"};
  run.code[0].function = "worker\xe2\x80\xa8line\xe2\x80\xa9para";
  run.code[1].file = "http://example.com/evil.py";
  run.marker_names[0] = "<b>mark</b>";
  run.threads[0].name = "Main\x80Thread";
  return run;
}

TEST(ReportHtmlWriter, HostileThreadNameIsEscapedInThePageAndIntactInTheData) {
  const std::string html = Html(HostileRun());
  EXPECT_EQ(html.find("<img src=x"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_EQ(html.find("<b>"), std::string::npos);
  // Exactly the page's own two script elements close.
  EXPECT_EQ(Count(html, "</script>"), 2u);
  EXPECT_NE(html.find("\\u003c\\/script\\u003e\\u003cimg src=x onerror=alert(1)\\u003e"), std::string::npos);

  const json data = json::parse(DataText(html));
  EXPECT_EQ(data["report"]["threads"][3]["name"], kEvil);
  EXPECT_EQ(data["report"]["args"][1], "</script>");
  EXPECT_EQ(data["report"]["args"][2], "a&b");
  EXPECT_EQ(data["timeline"]["marker_names"][0], "<b>mark</b>");
  bool finding_names_it = false;
  for (const json& f : data["report"]["findings"]) finding_names_it |= f["thread"] == kEvil;
  EXPECT_TRUE(finding_names_it) << "the convoy finding names the hostile thread";
}

TEST(ReportHtmlWriter, PhasesReachThePageAsDataAndAHostileRegionNameStaysText) {
  // ConvoyRun's region, renamed: it ends at 112.1 ms and names phase 2.
  RunTrace run = ConvoyRun(44);
  run.marker_names[1] = std::string("crunch") + kEvil;
  const std::string html = Html(run);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_EQ(Count(html, "</script>"), 2u);
  EXPECT_NE(html.find("id=\"phases-panel\" hidden"), std::string::npos) << "shown by the script";
  const json data = json::parse(DataText(html));
  const json& phases = data["report"]["phases"];
  ASSERT_EQ(phases.size(), 2u);
  EXPECT_EQ(phases[1]["source"], std::string("after region crunch") + kEvil);
  EXPECT_DOUBLE_EQ(phases[1]["start_s"].get<double>(), 0.1121);
  for (const json& f : data["report"]["findings"]) EXPECT_TRUE(f.contains("start_s") && f.contains("phase"));
}

TEST(ReportHtmlWriter, LineSeparatorsAndInvalidUtf8CannotBreakThePage) {
  const std::string html = Html(HostileRun());
  EXPECT_TRUE(ValidUtf8(html));
  EXPECT_EQ(html.find("\xe2\x80\xa8"), std::string::npos) << "raw U+2028 in a script element";
  EXPECT_EQ(html.find("\xe2\x80\xa9"), std::string::npos) << "raw U+2029 in a script element";
  const json data = json::parse(DataText(html));
  const std::string replacement = "\xef\xbf\xbd";
  EXPECT_EQ(data["report"]["script"], "bad" + replacement + replacement + ".py");
  EXPECT_EQ(data["report"]["threads"][0]["name"], "Main" + replacement + "Thread");
  bool found = false;
  for (const json& site : data["timeline"]["sites"]) found |= site[0] == "worker\xe2\x80\xa8line\xe2\x80\xa9para";
  EXPECT_TRUE(found) << "U+2028/2029 survive as data";
}

TEST(ReportHtmlWriter, MakesNoNetworkReference) {
  const std::string html = Html(HostileRun());  // one file name is an http URL
  EXPECT_EQ(html.find("//"), std::string::npos) << "no URL can be written without //";
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  const std::regex reference(R"((src|href)\s*=\s*["']?\s*(https?:|//))", std::regex::icase);
  EXPECT_FALSE(std::regex_search(html, reference));
  // The policy that makes the browser refuse any request and any other script.
  EXPECT_NE(html.find("default-src 'none'; script-src 'sha256-"), std::string::npos);
  EXPECT_EQ(html.find("@@"), std::string::npos) << "every template slot was filled";
}

TEST(ReportHtmlWriter, EscapesEveryDangerousCharacter) {
  EXPECT_EQ(HtmlWriter::EscapeForScript(R"({"a":"</script>&<!--\/x"})"),
            R"({"a":"\u003c\/script\u003e\u0026\u003c!--\/x"})");
  EXPECT_EQ(HtmlWriter::EscapeForScript("\"\xe2\x80\xa8\xe2\x80\xa9\xe2\x80\xa7\""), "\"\\u2028\\u2029\xe2\x80\xa7\"");
  // Still the same JSON value after escaping.
  const std::string text = json({{"k", "</script>\xe2\x80\xa8/&\\</\\/"}}).dump();
  EXPECT_EQ(json::parse(HtmlWriter::EscapeForScript(text)), json::parse(text));
}

TEST(ReportHtmlWriter, EmbedsTheReportAndEveryInterval) {
  const RunTrace run = SmallRun();
  const Analysis analysis = Analyze(run);
  const json data = json::parse(DataText(Html(run)));
  EXPECT_EQ(data["report"]["schema_version"], 1);
  EXPECT_EQ(data["report"]["threads"].size(), 2u);
  EXPECT_EQ(data["timeline"]["window_ns"], 100 * kMs);

  // MainThread: hold 0..20 (forced), wait 30..40, hold 40..70 (voluntary).
  const json& main = data["timeline"]["threads"][0];
  EXPECT_EQ(main["start_ns"], 0u);
  EXPECT_EQ(main["end_ns"], 90 * kMs);
  ASSERT_EQ(main["count"], 3);
  EXPECT_EQ(Decode<double>(main["starts"]), (std::vector<double>{0, 30e6, 40e6}));
  EXPECT_EQ(Decode<float>(main["durations"]), (std::vector<float>{20e6f, 10e6f, 30e6f}));
  const std::vector<std::uint32_t> codes = Decode<std::uint32_t>(main["codes"]);
  ASSERT_EQ(codes.size(), 3u);
  EXPECT_EQ(codes[0] >> 31, 1u);  // holding
  EXPECT_EQ(codes[1] >> 31, 0u);  // waiting
  EXPECT_EQ((codes[2] >> 23) & 0xFF, 0u);  // GIL 0
  EXPECT_EQ(codes[2] & 0x7FFFFF, kUnknownSite);
  std::size_t total = 0;
  for (const ThreadStats& t : analysis.threads) total += t.intervals.size();
  std::size_t embedded = 0;
  for (const json& t : data["timeline"]["threads"]) embedded += t["count"].get<std::size_t>();
  EXPECT_EQ(embedded, total);
}

// The typed arrays are encoded a block of 3072 intervals at a time: a row
// longer than a block, whose byte counts are not multiples of 3 (padding
// "=" and "=="), decodes to exactly the analysed intervals.
TEST(ReportHtmlWriter, EncodesRowsLongerThanOneBlockExactly) {
  RunTrace run = EmptyRun(20'000);
  run.gils = {Gil(0, 0xA, 0)};
  std::vector<Event> events = {Tstate(0xA)};
  for (std::int64_t i = 0; i < 1700; ++i) {  // wait 10i..10i+2, hold to 10i+5, I/O to 10i+10
    events.push_back(Request(10 * i));
    events.push_back(Acquired(10 * i + 2));
    events.push_back(Released(10 * i + 5, false));
  }
  run.threads.push_back(Thread("MainThread", 1001, events));
  const Analysis analysis = Analyze(run);
  const std::vector<StateInterval>& ivs = analysis.threads[0].intervals;
  ASSERT_EQ(ivs.size(), 3400u);

  const json data = json::parse(DataText(Html(run)));
  const json& row = data["timeline"]["threads"][0];
  ASSERT_EQ(row["count"], 3400);
  const std::string starts = row["starts"], durations = row["durations"], codes = row["codes"];
  // 27200 bytes: 9067 groups, the last with two bytes; 13600: one byte.
  EXPECT_EQ(starts.size(), 9067u * 4);
  EXPECT_EQ(starts.back(), '=');
  EXPECT_NE(starts[starts.size() - 2], '=');
  EXPECT_EQ(durations.size(), 4534u * 4);
  EXPECT_EQ(durations.substr(durations.size() - 2), "==");
  const std::vector<double> start_values = Decode<double>(starts);
  const std::vector<float> duration_values = Decode<float>(durations);
  const std::vector<std::uint32_t> code_values = Decode<std::uint32_t>(codes);
  ASSERT_EQ(start_values.size(), ivs.size());
  ASSERT_EQ(duration_values.size(), ivs.size());
  ASSERT_EQ(code_values.size(), ivs.size());
  for (std::size_t k = 0; k < ivs.size(); ++k) {
    ASSERT_EQ(start_values[k], static_cast<double>(ivs[k].start_ns - run.start_ns)) << k;
    ASSERT_EQ(duration_values[k], static_cast<float>(ivs[k].end_ns - ivs[k].start_ns)) << k;
    ASSERT_EQ(code_values[k] >> 31, ivs[k].state == GilState::kHolding ? 1u : 0u) << k;
  }
  // Every wait completed: 1700 of 2 ms, bucket [2, 5) ms.
  EXPECT_EQ(row["wait_histogram"][11], 1700);
}

TEST(ReportHtmlWriter, HistogramCountsCompletedWaitsInLogBuckets) {
  EXPECT_EQ(HtmlWriter::HistogramBucket(0), 0u);
  EXPECT_EQ(HtmlWriter::HistogramBucket(999), 0u);
  EXPECT_EQ(HtmlWriter::HistogramBucket(1'000), 1u);
  EXPECT_EQ(HtmlWriter::HistogramBucket(1'999), 1u);
  EXPECT_EQ(HtmlWriter::HistogramBucket(2'000), 2u);
  EXPECT_EQ(HtmlWriter::HistogramBucket(999'999'999), 18u);
  EXPECT_EQ(HtmlWriter::HistogramBucket(1'000'000'000), 19u);
  EXPECT_EQ(HtmlWriter::HistogramBucket(50'000'000'000), HtmlWriter::kHistogramBuckets - 1);

  // SmallRun: MainThread's wait 30..40 (10 ms: bucket [10, 20) ms = 13);
  // worker-1's 5..20 (15 ms: 13) and 80..82 (2 ms: [2, 5) ms = 11).
  const json data = json::parse(DataText(Html(SmallRun())));
  std::vector<std::uint64_t> main(HtmlWriter::kHistogramBuckets, 0), worker = main;
  main[13] = 1;
  worker[13] = 1;
  worker[11] = 1;
  EXPECT_EQ(data["timeline"]["threads"][0]["wait_histogram"].get<std::vector<std::uint64_t>>(), main);
  EXPECT_EQ(data["timeline"]["threads"][1]["wait_histogram"].get<std::vector<std::uint64_t>>(), worker);
}

TEST(ReportHtmlWriter, EmbedsMarkersAndSites) {
  const RunTrace run = ConvoyRun(44);
  const Analysis analysis = Analyze(run);
  const json data = json::parse(DataText(Html(run)));
  // [thread, start, end, name, region, depth, open]: "start" at 1 ms on
  // MainThread, "crunch" on worker-0 from 2 ms to boundary 22 (112 ms + 0.1).
  const json& markers = data["timeline"]["markers"];
  ASSERT_EQ(markers.size(), 2u);
  EXPECT_EQ(markers[0], json({0, 1 * kMs, 1 * kMs, 0, 0, 0, 0}));
  EXPECT_EQ(markers[1], json({1, 2 * kMs, 112'100'000, 1, 1, 0, 0}));
  EXPECT_EQ(data["timeline"]["marker_names"], json({"start", "crunch"}));
  ASSERT_EQ(data["timeline"]["sites"].size(), analysis.sites.size());
  EXPECT_EQ(data["timeline"]["sites"][0], json({"<unknown>", "", 0}));
}

TEST(ReportHtmlWriter, EmptyRunStillMakesAPage) {
  const std::string html = Html(EmptyRun(0));
  const json data = json::parse(DataText(html));
  EXPECT_TRUE(data["timeline"]["threads"].empty());
  EXPECT_NE(html.find("</html>"), std::string::npos);
}

}  // namespace
}  // namespace gilscope::report
