#include "figure_invariants.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <string_view>

namespace gilscope::testing {
namespace {

using nlohmann::ordered_json;

// Durations are whole nanoseconds divided by 1e9, so sums of them agree to
// well under a nanosecond; 2 ns of slack absorbs the rounding of each term
// and nothing a reader could see. Shares get 1e-9: 100.0000001% is still a
// bug, but a share computed as 5/5 in another order is not.
constexpr double kSecondsSlack = 2e-9;
constexpr double kShareSlack = 1e-9;

// Keys whose numbers may be negative by design: exit statuses (-1 when
// unknown), instance numbers (-1: none), source lines (-1: unknown).
const std::set<std::string, std::less<>> kSigned = {"exit_code", "exit_status", "instance", "line", "first_line"};

bool EndsWith(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

std::string Num(double v) {
  std::ostringstream os;
  os.precision(12);
  os << v;
  return os.str();
}

bool SameSeconds(double a, double b) {
  return std::abs(a - b) <= kSecondsSlack + 1e-12 * std::max(std::abs(a), std::abs(b));
}

bool Has(const ordered_json& j, const char* key) { return j.is_object() && j.contains(key) && j[key].is_number(); }
double At(const ordered_json& j, const char* key) { return Has(j, key) ? j[key].get<double>() : 0.0; }

class Checker {
 public:
  std::vector<std::string> Take() { return std::move(out_); }

  void Fail(const std::string& path, const std::string& what) { out_.push_back(path + ": " + what); }

  // The rules that apply wherever a key or a group of keys appears.
  void Walk(const ordered_json& j, const std::string& path, double wall_s) {
    if (j.is_array()) {
      for (std::size_t i = 0; i < j.size(); ++i) Walk(j[i], path + "[" + std::to_string(i) + "]", wall_s);
      return;
    }
    if (!j.is_object()) return;
    for (const auto& [key, value] : j.items()) {
      const std::string at = path + "." + key;
      if (value.is_number()) {
        const double v = value.get<double>();
        if (!std::isfinite(v)) Fail(at, "not a finite number");
        if (v < 0 && kSigned.count(key) == 0) Fail(at, Num(v) + " is negative");
        if ((EndsWith(key, "_fraction") || EndsWith(key, "_share")) && (v < 0 || v > 1 + kShareSlack)) {
          Fail(at, Num(v) + " is a share outside 0-100%");
        }
        if ((EndsWith(key, "_percent") || EndsWith(key, "_pct")) && (v < 0 || v > 100 + 100 * kShareSlack)) {
          Fail(at, Num(v) + " is a percentage outside 0-100");
        }
      } else if (value.is_null() && (EndsWith(key, "_fraction") || EndsWith(key, "_ms"))) {
        // nlohmann writes NaN and infinities as null.
        Fail(at, "null where a figure belongs (NaN or infinity written as null?)");
      }
      Walk(value, at, wall_s);
    }
    GroupRules(j, path, wall_s);
  }

 private:
  void GroupRules(const ordered_json& j, const std::string& path, double wall_s) {
    // A thread's lifetime, every nanosecond in exactly one state.
    if (Has(j, "lifetime_s") && Has(j, "held_s") && Has(j, "waiting_s") && Has(j, "released_s")) {
      const double sum = At(j, "held_s") + At(j, "waiting_s") + At(j, "released_s");
      if (!SameSeconds(sum, At(j, "lifetime_s"))) {
        Fail(path, "held + waiting + released = " + Num(sum) + " s, lifetime " + Num(At(j, "lifetime_s")) + " s");
      }
      if (wall_s >= 0 && At(j, "lifetime_s") > wall_s + kSecondsSlack) {
        Fail(path, "lifetime " + Num(At(j, "lifetime_s")) + " s is longer than the run's " + Num(wall_s) + " s");
      }
    }
    // A GIL (or a phase's view of one): contended time is busy time.
    if (Has(j, "busy_fraction") && Has(j, "contended_fraction") &&
        At(j, "contended_fraction") > At(j, "busy_fraction") + kShareSlack) {
      Fail(path, "contended " + Num(At(j, "contended_fraction")) + " > busy " + Num(At(j, "busy_fraction")));
    }
    // Held and hand-off (nobody holding, someone waiting) are disjoint.
    if (Has(j, "busy_fraction") && Has(j, "handoff_fraction") &&
        At(j, "busy_fraction") + At(j, "handoff_fraction") > 1 + kShareSlack) {
      Fail(path, "busy + hand-off = " + Num(At(j, "busy_fraction") + At(j, "handoff_fraction")) + " > 100%");
    }
    if (Has(j, "window_s") && wall_s >= 0 && At(j, "window_s") > wall_s + kSecondsSlack) {
      Fail(path, "window " + Num(At(j, "window_s")) + " s is longer than the run's " + Num(wall_s) + " s");
    }
    if (Has(j, "switches") && Has(j, "acquisitions") && At(j, "switches") > At(j, "acquisitions")) {
      Fail(path, Num(At(j, "switches")) + " switches but " + Num(At(j, "acquisitions")) + " acquisitions");
    }
    // Percentiles in order (a median above the maximum is no median).
    if (Has(j, "wait_p50_ms") && Has(j, "wait_p99_ms") && Has(j, "wait_max_ms")) {
      const double p50 = At(j, "wait_p50_ms"), p99 = At(j, "wait_p99_ms"), max = At(j, "wait_max_ms");
      if (p50 > p99 || p99 > max) {
        Fail(path, "wait p50 " + Num(p50) + " ms, p99 " + Num(p99) + " ms, max " + Num(max) + " ms out of order");
      }
    }
    if (Has(j, "hold_p50_ms") && Has(j, "longest_hold_ms") && At(j, "hold_p50_ms") > At(j, "longest_hold_ms")) {
      Fail(path, "median hold " + Num(At(j, "hold_p50_ms")) + " ms > longest " + Num(At(j, "longest_hold_ms")) + " ms");
    }
    if (Has(j, "waits") && Has(j, "acquisitions") && At(j, "waits") > At(j, "acquisitions")) {
      Fail(path, Num(At(j, "waits")) + " completed waits but " + Num(At(j, "acquisitions")) + " acquisitions");
    }
    // Anything placed in time lies inside the run.
    if (Has(j, "start_s") && Has(j, "end_s")) {
      const double start = At(j, "start_s"), end = At(j, "end_s");
      if (start > end) Fail(path, "starts at " + Num(start) + " s, after its end " + Num(end) + " s");
      if (wall_s >= 0 && end > wall_s + kSecondsSlack) {
        Fail(path, "ends at " + Num(end) + " s, after the run's " + Num(wall_s) + " s");
      }
    }
    if (Has(j, "start_s") && Has(j, "duration_s") && wall_s >= 0 &&
        At(j, "start_s") + At(j, "duration_s") > wall_s + kSecondsSlack) {
      Fail(path, "ends at " + Num(At(j, "start_s") + At(j, "duration_s")) + " s, after the run's " + Num(wall_s) +
                     " s");
    }
    if (Has(j, "time_s") && wall_s >= 0 && At(j, "time_s") > wall_s + kSecondsSlack) {
      Fail(path, "at " + Num(At(j, "time_s")) + " s, after the run's " + Num(wall_s) + " s");
    }
  }

  std::vector<std::string> out_;
};

double SumOf(const ordered_json& rows, const char* key) {
  double sum = 0;
  if (rows.is_array()) {
    for (const ordered_json& r : rows) sum += At(r, key);
  }
  return sum;
}

void ThreadRules(Checker& c, const ordered_json& t, const std::string& path) {
  // Attribution loses nothing: every held nanosecond is some function's
  // (`<unknown>` included); released time is attributed only after a
  // voluntary release, so it may add up to less.
  if (t.contains("held_by_function")) {
    const double held = SumOf(t["held_by_function"], "held_s");
    if (!SameSeconds(held, At(t, "held_s"))) {
      c.Fail(path, "held_by_function adds up to " + Num(held) + " s, held " + Num(At(t, "held_s")) + " s");
    }
  }
  if (t.contains("released_at")) {
    const double released = SumOf(t["released_at"], "released_s");
    if (released > At(t, "released_s") + kSecondsSlack) {
      c.Fail(path, "released_at adds up to " + Num(released) + " s, more than released " +
                       Num(At(t, "released_s")) + " s");
    }
  }
}

}  // namespace

std::vector<std::string> ReportFigureViolations(const ordered_json& report) {
  Checker c;
  if (!report.is_object()) {
    c.Fail("", "not a JSON object");
    return c.Take();
  }
  const double wall = Has(report, "wall_s") ? At(report, "wall_s") : -1;
  if (wall < 0) c.Fail(".wall_s", "missing");
  c.Walk(report, "", wall);

  if (report.contains("window") && Has(report["window"], "start_ns") && Has(report["window"], "end_ns")) {
    const ordered_json& w = report["window"];
    const double ns = At(w, "end_ns") - At(w, "start_ns");
    if (ns < 0 || std::abs(ns / 1e9 - wall) > 1e-6) {
      c.Fail(".window", "end - start = " + Num(ns) + " ns, wall_s " + Num(wall));
    }
  }

  double held_s = 0, waiting_s = 0;
  if (report.contains("threads") && report["threads"].is_array()) {
    const ordered_json& threads = report["threads"];
    for (std::size_t i = 0; i < threads.size(); ++i) {
      ThreadRules(c, threads[i], ".threads[" + std::to_string(i) + "]");
      held_s += At(threads[i], "held_s");
      waiting_s += At(threads[i], "waiting_s");
    }
  }
  // Each GIL's busy time is the union of its holds, which are the threads'
  // held time on it: all GILs' busy time cannot exceed all held time.
  double busy_s = 0;
  if (report.contains("gils") && report["gils"].is_array()) {
    for (const ordered_json& g : report["gils"]) busy_s += At(g, "busy_fraction") * At(g, "window_s");
  }
  if (busy_s > held_s + 1e-6 * std::max(1.0, held_s)) {
    c.Fail(".gils", "busy " + Num(busy_s) + " s in all, more than the threads' " + Num(held_s) + " s held");
  }

  if (report.contains("gil_tax")) {
    const ordered_json& tax = report["gil_tax"];
    if (!SameSeconds(At(tax, "waiting_thread_s"), waiting_s)) {
      c.Fail(".gil_tax.waiting_thread_s", Num(At(tax, "waiting_thread_s")) + " s, threads waited " +
                                              Num(waiting_s) + " s in all");
    }
    if (At(tax, "ideal_wall_s") > wall + kSecondsSlack) {
      c.Fail(".gil_tax.ideal_wall_s", Num(At(tax, "ideal_wall_s")) + " s is longer than the run");
    }
    if (Has(tax, "speedup_bound") && At(tax, "speedup_bound") < 1 - kShareSlack) {
      c.Fail(".gil_tax.speedup_bound", Num(At(tax, "speedup_bound")) + " is a slow-down");
    }
    if (Has(tax, "cpu_count") && At(tax, "cpu_count") < 1) c.Fail(".gil_tax.cpu_count", "below 1");
  }

  if (report.contains("events")) {
    const ordered_json& e = report["events"];
    if (At(e, "unknown_gil") > At(e, "recorded")) {
      c.Fail(".events", Num(At(e, "unknown_gil")) + " on unknown GILs of " + Num(At(e, "recorded")) + " recorded");
    }
  }

  if (report.contains("trace")) {
    const ordered_json& t = report["trace"];
    const bool aggregated = t.value("aggregated", false);
    if (At(t, "events") > At(t, "full_events")) c.Fail(".trace", "more events written than the full trace has");
    if (aggregated && At(t, "events") > At(t, "max_events")) c.Fail(".trace", "aggregated, still over max_events");
    if (!aggregated && At(t, "events") != At(t, "full_events")) c.Fail(".trace", "complete, yet events != full_events");
  }
  return c.Take();
}

std::vector<std::string> IndexFigureViolations(const ordered_json& index, const std::filesystem::path& suite_dir) {
  Checker c;
  if (!index.is_object() || !index.contains("scripts") || !index["scripts"].is_array()) {
    c.Fail("", "no scripts[]");
    return c.Take();
  }
  c.Walk(index, "", -1);
  const ordered_json& scripts = index["scripts"];
  int passed = 0, failed = 0, skipped = 0;
  for (std::size_t i = 0; i < scripts.size(); ++i) {
    const ordered_json& s = scripts[i];
    const std::string at = ".scripts[" + std::to_string(i) + "] (" + s.value("name", "?") + ")";
    const std::string outcome = s.value("outcome", "");
    (outcome == "PASS" ? passed : outcome == "SKIP" ? skipped : failed) += 1;
    if (!s.contains("report") || !s["report"].is_string()) {
      if (!s["gil_busy_fraction"].is_null() || !s["gil_contended_fraction"].is_null()) {
        c.Fail(at, "GIL figures without a report");
      }
      continue;
    }
    const ordered_json report = ReadOrderedJson(suite_dir / s["report"].get<std::string>());
    if (report.is_discarded()) {
      c.Fail(at, "its report " + s["report"].get<std::string>() + " is not readable JSON");
      continue;
    }
    for (const std::string& v : ReportFigureViolations(report)) c.Fail(at + " report", v);

    // The index's figures are one GIL's, the busiest, as its report says.
    const ordered_json* busiest = nullptr;
    if (report.contains("gils") && report["gils"].is_array()) {
      for (const ordered_json& g : report["gils"]) {
        if (busiest == nullptr ||
            std::make_pair(At(g, "busy_fraction"), At(g, "contended_fraction")) >
                std::make_pair(At(*busiest, "busy_fraction"), At(*busiest, "contended_fraction"))) {
          busiest = &g;
        }
      }
      if (s.value("gils", -1) != static_cast<int>(report["gils"].size())) {
        c.Fail(at, "gils " + s["gils"].dump() + ", the report has " + std::to_string(report["gils"].size()));
      }
    }
    if (busiest == nullptr) {
      if (!s["gil_busy_fraction"].is_null()) c.Fail(at, "a GIL busy figure, but its report has no GIL");
    } else {
      for (const char* key : {"busy_fraction", "contended_fraction"}) {
        const std::string index_key = std::string("gil_") + key;
        if (!s.contains(index_key) || !s[index_key].is_number() || s[index_key].get<double>() != At(*busiest, key)) {
          c.Fail(at, index_key + " " + (s.contains(index_key) ? s[index_key].dump() : "missing") +
                         ", the busiest GIL's " + key + " is " + Num(At(*busiest, key)));
        }
      }
      if (s.contains("busiest_gil") && (*busiest).contains("id") && s["busiest_gil"] != (*busiest)["id"]) {
        c.Fail(at, "busiest_gil " + s["busiest_gil"].dump() + ", the report's is " + (*busiest)["id"].dump());
      }
    }
    if (Has(s, "wall_s") && Has(report, "wall_s") && At(s, "wall_s") != At(report, "wall_s")) {
      c.Fail(at, "wall_s " + Num(At(s, "wall_s")) + ", the report's " + Num(At(report, "wall_s")));
    }
    if (s.value("status", "") != report.value("status", "")) {
      c.Fail(at, "status " + s.value("status", "") + ", the report's " + report.value("status", ""));
    }
  }
  if (index.value("passed", -1) != passed || index.value("failed", -1) != failed ||
      index.value("skipped", -1) != skipped) {
    c.Fail("", "passed/failed/skipped " + std::to_string(index.value("passed", -1)) + "/" +
                   std::to_string(index.value("failed", -1)) + "/" + std::to_string(index.value("skipped", -1)) +
                   ", the scripts' outcomes say " + std::to_string(passed) + "/" + std::to_string(failed) + "/" +
                   std::to_string(skipped));
  }
  if (index.value("all_passed", false) != (failed == 0)) c.Fail(".all_passed", "disagrees with the outcomes");
  return c.Take();
}

ordered_json ReadOrderedJson(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ordered_json(ordered_json::value_t::discarded);
  return ordered_json::parse(in, nullptr, /*allow_exceptions=*/false);
}

std::string JoinViolations(const std::vector<std::string>& violations) {
  std::string all;
  for (const std::string& v : violations) all += "\n  " + v;
  return all;
}

}  // namespace gilscope::testing
