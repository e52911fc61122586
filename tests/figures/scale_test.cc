// Nothing is lost at scale: a release-heavy run of some 2 M events, every
// one of them recorded, written to events.raw, and counted by the report,
// then counted again by `gilscope report DIR` from the file alone. Not timed
// (the benchmark measures time and memory, bench/overhead.py's long case);
// the counts are the same on a loaded machine as on a quiet one.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "cli_test_util.h"
#include "figure_invariants.h"
#include "report/raw_file.h"

namespace {

namespace fs = std::filesystem;
using gilscope::testing::Gilscope;
using gilscope::testing::JoinViolations;
using gilscope::testing::OutDir;
using gilscope::testing::ReadOrderedJson;
using gilscope::testing::ReportFigureViolations;
using gilscope::testing::Result;
using gilscope::testing::Workload;
using nlohmann::ordered_json;

// Each 1-byte os.read releases the GIL and takes it back: at least a release
// and an acquisition (its request folded in when it did not wait), so at
// least 2 events a call whatever the hooks add per call (a frame today).
constexpr std::uint64_t kCalls = 666'667;  // about 2 M events with today's 3 per call

TEST(ScaleTest, TwoMillionEventsAllRecordedWrittenAndCounted) {
  const fs::path out = OutDir("scale");
  const Result run = Gilscope("run " + Workload("release_heavy.py") + " --out " + out.string() + " -- --calls " +
                              std::to_string(kCalls));
  ASSERT_EQ(run.status, 0) << run.output.substr(0, 4000);
  const ordered_json report = ReadOrderedJson(out / "report.json");
  ASSERT_TRUE(report.is_object()) << "no readable report.json";
  const std::uint64_t recorded = report["events"]["recorded"].get<std::uint64_t>();
  EXPECT_EQ(report["events"]["dropped"], 0) << report["events"].dump();
  EXPECT_EQ(report["events"]["unknown_gil"], 0) << report["events"].dump();
  EXPECT_GE(recorded, 2 * kCalls);

  // The file, read on its own (counted, not kept: bounded memory).
  gilscope::report::ReadOptions count_only;
  count_only.keep_events = false;
  const gilscope::report::RawContents raw = gilscope::report::ReadRawFile((out / "events.raw").string(), count_only);
  EXPECT_TRUE(raw.finished);
  EXPECT_EQ(raw.torn_bytes, 0u);
  EXPECT_EQ(raw.events, recorded) << "events.raw holds other events than the run's report counted";

  // The script's thread did every read: a voluntary release and an
  // acquisition each (a few more for start-up imports).
  const ordered_json* main = nullptr;
  for (const ordered_json& t : report["threads"]) {
    if (t["name"] == "MainThread") main = &t;
  }
  ASSERT_NE(main, nullptr);
  EXPECT_GE((*main)["voluntary_releases"].get<std::uint64_t>(), kCalls);
  EXPECT_GE((*main)["acquisitions"].get<std::uint64_t>(), kCalls);
  EXPECT_LT((*main)["acquisitions"].get<std::uint64_t>(), kCalls + 10'000);
  const std::vector<std::string> v = ReportFigureViolations(report);
  EXPECT_TRUE(v.empty()) << JoinViolations(v);

  // The report again from events.raw alone counts the same.
  fs::remove(out / "report.json");
  const Result again = Gilscope("report " + out.string());
  ASSERT_EQ(again.status, 0) << again.output.substr(0, 4000);
  const ordered_json rerun = ReadOrderedJson(out / "report.json");
  ASSERT_TRUE(rerun.is_object()) << "`gilscope report` wrote no readable report.json";
  EXPECT_EQ(rerun["events"]["recorded"].get<std::uint64_t>(), recorded);
  EXPECT_EQ(rerun["events"]["dropped"], 0);
  EXPECT_EQ(rerun["threads"], report["threads"]);

  // Hundreds of MB of trace.json and report.html: not left behind.
  fs::remove_all(out);
}

}  // namespace
