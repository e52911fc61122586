#include "report/json_writer.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "report/chrome_trace_writer.h"
#include "report/findings.h"

namespace gilscope::report {
namespace {

// A run can set markers in a hot loop; report.json keeps the first ones and
// says how many it left out (trace.json and report.html draw all that the
// analysis kept: the first kMaxKeptMarkers).
constexpr std::size_t kMaxJsonMarkers = 10'000;

nlohmann::ordered_json SiteTimes(const std::vector<SiteTime>& times, const char* seconds_key) {
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const SiteTime& s : times) {
    rows.push_back({{"function", s.function}, {"file", s.file}, {"line", s.line}, {seconds_key, s.seconds}});
  }
  return rows;
}

double Seconds(std::uint64_t ns) { return static_cast<double>(ns) / 1e9; }

double Share(std::uint64_t part, std::uint64_t whole) {
  return whole == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(whole);
}

// phases[]: each phase's window, why it begins there, and its figures: per
// GIL as in gils[], per thread alive in it as in threads[] (shares of the
// thread's lifetime inside the phase), `thread` indexing threads[].
nlohmann::ordered_json Phases(const Analysis& analysis) {
  using nlohmann::ordered_json;
  ordered_json phases = ordered_json::array();
  for (const Phase& p : analysis.phases) {
    ordered_json gils = ordered_json::array();
    for (const GilStats& g : p.gils) {
      gils.push_back({{"id", g.id},
                      {"busy_fraction", g.busy_fraction},
                      {"contended_fraction", g.contended_fraction},
                      {"handoff_fraction", g.handoff_fraction},
                      {"acquisitions", g.acquisitions},
                      {"switches", g.switches},
                      {"hold_p50_ms", g.hold_p50_ms}});
    }
    ordered_json threads = ordered_json::array();
    for (std::size_t i = 0; i < p.threads.size(); ++i) {
      const ThreadStats& t = p.threads[i];
      if (t.lifetime_ns == 0) continue;
      threads.push_back({{"thread", i},
                         {"name", t.name},
                         {"lifetime_s", t.lifetime_s},
                         {"held_fraction", Share(t.held_ns, t.lifetime_ns)},
                         {"waiting_fraction", Share(t.waiting_ns, t.lifetime_ns)},
                         {"released_fraction", Share(t.released_ns, t.lifetime_ns)},
                         {"acquisitions", t.acquisitions},
                         {"forced_releases", t.forced_releases},
                         {"voluntary_releases", t.voluntary_releases},
                         {"waits", t.waits},
                         {"wait_p50_ms", t.wait_p50_ms},
                         {"wait_p99_ms", t.wait_p99_ms},
                         {"wait_max_ms", t.wait_max_ms},
                         {"io_waits", t.io_waits},
                         {"io_wait_p50_ms", t.io_wait_p50_ms}});
    }
    phases.push_back({{"start_s", Seconds(p.start_ns - analysis.start_ns)},
                      {"end_s", Seconds(p.end_ns - analysis.start_ns)},
                      {"source", p.source},
                      {"gils", std::move(gils)},
                      {"threads", std::move(threads)}});
  }
  return phases;
}

}  // namespace

nlohmann::ordered_json JsonWriter::ToJson(const RunTrace& trace, const Analysis& analysis) {
  return ToJson(trace, analysis, PlanChromeTrace(analysis));
}

nlohmann::ordered_json JsonWriter::ToJson(const RunTrace& trace, const Analysis& analysis, const TracePlan& plan) {
  using nlohmann::ordered_json;
  const RunInfo& info = trace.info;

  ordered_json doc;
  doc["schema_version"] = kSchemaVersion;
  doc["gilscope_version"] = info.gilscope_version;
  doc["python"] = {{"version", info.python_version}};
  doc["script"] = info.script;
  doc["args"] = info.args;
  doc["mode"] = info.mode;
  doc["instances"] = info.instances;
  doc["status"] = info.status;
  doc["exit_code"] = info.exit_code;
  if (info.signal != 0) doc["signal"] = info.signal;
  doc["wall_s"] = analysis.wall_s;
  doc["switch_interval_s"] = info.switch_interval_s;
  // The raw window lets a reader line report.json up with trace.json and
  // with other tools reading the same monotonic clock.
  doc["window"] = {{"start_ns", analysis.start_ns}, {"end_ns", analysis.end_ns}};

  const GilTax& tax = analysis.gil_tax;
  doc["gil_tax"] = {
      {"waiting_thread_s", tax.waiting_thread_s},
      {"ideal_wall_s", tax.ideal_wall_s},
      {"speedup_bound", tax.speedup_bound},
      {"cpu_count", tax.cpu_count},
  };

  ordered_json findings = ordered_json::array();
  for (const Finding& f : FindIssues(trace, analysis)) {
    ordered_json figures = ordered_json::object();
    for (const auto& [name, value] : f.figures) figures[name] = value;
    findings.push_back({{"kind", f.kind},
                        {"thread", f.thread},
                        {"gil", f.gil >= 0 ? ordered_json(f.gil) : ordered_json(nullptr)},
                        {"detail", f.detail},
                        {"advice", f.advice},
                        {"figures", std::move(figures)},
                        {"start_s", Seconds(f.start_ns - analysis.start_ns)},
                        {"end_s", Seconds(f.end_ns - analysis.start_ns)},
                        {"phase", f.phase >= 0 ? ordered_json(f.phase) : ordered_json(nullptr)}});
  }
  doc["findings"] = std::move(findings);

  ordered_json gils = ordered_json::array();
  for (std::size_t gi = 0; gi < analysis.gils.size(); ++gi) {
    const GilStats& g = analysis.gils[gi];
    const GilInfo* source = gi < trace.gils.size() ? &trace.gils[gi] : nullptr;
    gils.push_back({
        {"id", g.id},
        {"interpreter", g.interpreter},
        {"pid", source ? source->pid : 0},
        {"instance", source ? source->instance : -1},
        {"acquisitions", g.acquisitions},
        {"switches", g.switches},
        // null: CPython's count is unknown (the GIL was never closed).
        {"cpython_switches", g.cpython_switches_known ? nlohmann::ordered_json(g.cpython_switches) : nullptr},
        {"switches_match", g.cpython_switches_known ? nlohmann::ordered_json(g.switches == g.cpython_switches) : nullptr},
        {"drop_requests", g.drop_requests},
        {"window_s", g.window_s},
        {"busy_fraction", g.busy_fraction},
        {"contended_fraction", g.contended_fraction},
        {"handoff_fraction", g.handoff_fraction},
        {"hold_p50_ms", g.hold_p50_ms},
    });
  }
  doc["gils"] = std::move(gils);

  ordered_json processes = ordered_json::array();
  for (const ProcessInfo& p : trace.processes) {
    processes.push_back({{"pid", p.pid},
                         {"parent_pid", p.parent_pid},
                         {"role", p.role},
                         {"status", p.status},
                         {"exit_status", p.exit_status},
                         {"instance", p.instance}});
  }
  doc["processes"] = std::move(processes);
  if (!trace.deadlock.summary.empty() || !trace.deadlock.threads.empty()) {
    ordered_json threads = ordered_json::array();
    for (const BlockedThread& b : trace.deadlock.threads) {
      threads.push_back({{"name", b.name},
                         {"waiting_for", b.waiting_for},
                         {"held_by", b.held_by},
                         {"holds", b.holds},
                         {"stack", b.stack}});
    }
    doc["deadlock"] = {{"summary", trace.deadlock.summary}, {"threads", std::move(threads)}};
  }

  if (!trace.exceptions.empty()) {
    ordered_json exceptions = ordered_json::array();
    for (const ScriptException& e : trace.exceptions) {
      exceptions.push_back({{"thread", e.thread},
                            {"native_id", e.native_id},
                            {"pid", e.pid},
                            {"main", e.main},
                            {"type", e.type},
                            {"message", e.message},
                            {"traceback", e.traceback},
                            {"time_s", e.time_ns >= analysis.start_ns ? Seconds(e.time_ns - analysis.start_ns) : 0.0}});
    }
    doc["exceptions"] = std::move(exceptions);
  }

  ordered_json threads = ordered_json::array();
  for (const ThreadStats& t : analysis.threads) {
    ordered_json row = {
        {"name", t.name},
        {"native_id", t.native_id},
        {"pid", t.pid},
    };
    row["gil"] = t.main_gil >= 0 ? ordered_json(t.main_gil) : ordered_json(nullptr);
    row["lifetime_s"] = t.lifetime_s;
    row["held_s"] = t.held_s;
    row["waiting_s"] = t.waiting_s;
    row["released_s"] = t.released_s;
    row["acquisitions"] = t.acquisitions;
    row["forced_releases"] = t.forced_releases;
    row["voluntary_releases"] = t.voluntary_releases;
    row["waits"] = t.waits;
    row["wait_p50_ms"] = t.wait_p50_ms;
    row["wait_p99_ms"] = t.wait_p99_ms;
    row["wait_max_ms"] = t.wait_max_ms;
    row["io_waits"] = t.io_waits;
    row["io_wait_p50_ms"] = t.io_wait_p50_ms;
    row["exited"] = t.exited;
    row["state_at_end"] = GilStateName(t.state_at_end);
    row["cpu_s"] = t.cpu_s >= 0 ? ordered_json(t.cpu_s) : ordered_json(nullptr);
    row["hold_p50_ms"] = t.hold_p50_ms;
    row["longest_hold_ms"] = static_cast<double>(t.longest_hold.end_ns - t.longest_hold.start_ns) / 1e6;
    row["held_by_function"] = SiteTimes(t.held_by_function, "held_s");
    row["released_at"] = SiteTimes(t.released_at, "released_s");
    threads.push_back(std::move(row));
  }
  doc["threads"] = std::move(threads);
  doc["phases"] = Phases(analysis);

  ordered_json markers = ordered_json::array();
  const std::size_t kept = std::min(analysis.markers.size(), kMaxJsonMarkers);
  for (std::size_t k = 0; k < kept; ++k) {
    const Marker& m = analysis.markers[k];
    markers.push_back({{"name", m.name},
                       {"kind", m.region ? "region" : "mark"},
                       {"thread", m.thread < analysis.threads.size() ? analysis.threads[m.thread].name : ""},
                       {"thread_index", m.thread},
                       {"start_s", Seconds(m.start_ns - analysis.start_ns)},
                       {"duration_s", Seconds(m.end_ns - m.start_ns)},
                       {"depth", m.depth},
                       {"open", m.open}});
  }
  doc["markers"] = std::move(markers);
  doc["markers_omitted"] = analysis.markers.size() - kept + analysis.markers_left_out;

  // What trace.json holds: complete, or aggregated to stay loadable (the
  // plan is the one ChromeTraceWriter follows with its default limit).
  doc["timeline"] = {
      {"aggregated", analysis.timeline_merge_below_ns > 0},
      {"merge_below_s", Seconds(analysis.timeline_merge_below_ns)},
  };
  doc["trace"] = {
      {"file", "trace.json"},
      {"events", plan.events},
      {"full_events", plan.full_events},
      {"max_events", plan.max_events},
      {"aggregated", plan.aggregated()},
      {"reason", plan.reason},
      {"flows", plan.flows},
      {"merge_below_s", Seconds(plan.merge_below_ns)},
      {"markers_omitted", plan.markers_omitted},
  };

  doc["events"] = {
      {"recorded", analysis.events_recorded},
      {"dropped", analysis.events_dropped},
      {"unknown_gil", analysis.events_unknown_gil},
      {"gils_lost", analysis.gils_lost},
  };
  return doc;
}

void JsonWriter::Write(const RunTrace& trace, const Analysis& analysis) const {
  Write(trace, analysis, PlanChromeTrace(analysis));
}

void JsonWriter::Write(const RunTrace& trace, const Analysis& analysis, const TracePlan& plan) const {
  // error_handler_t::replace: a thread name is whatever bytes the script set,
  // and the default (throw) would lose the whole report over one of them.
  out_ << ToJson(trace, analysis, plan).dump(indent_, ' ', /*ensure_ascii=*/false,
                                       nlohmann::ordered_json::error_handler_t::replace)
       << '\n';
}

}  // namespace gilscope::report
