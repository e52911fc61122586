#include "report/json_writer.h"

#include <nlohmann/json.hpp>

namespace gilscope::report {

nlohmann::ordered_json JsonWriter::ToJson(const RunTrace& trace, const Analysis& analysis) {
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
  doc["wall_s"] = analysis.wall_s;
  doc["switch_interval_s"] = info.switch_interval_s;
  // The raw window lets a reader line report.json up with trace.json and
  // with other tools reading the same monotonic clock.
  doc["window"] = {{"start_ns", analysis.start_ns}, {"end_ns", analysis.end_ns}};

  ordered_json gils = ordered_json::array();
  for (const GilStats& g : analysis.gils) {
    gils.push_back({
        {"id", g.id},
        {"interpreter", g.interpreter},
        {"acquisitions", g.acquisitions},
        {"switches", g.switches},
        {"cpython_switches", g.cpython_switches},
        {"switches_match", g.switches == g.cpython_switches},
        {"drop_requests", g.drop_requests},
        {"busy_fraction", g.busy_fraction},
        {"contended_fraction", g.contended_fraction},
    });
  }
  doc["gils"] = std::move(gils);

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
    row["exited"] = t.exited;
    row["state_at_end"] = GilStateName(t.state_at_end);
    threads.push_back(std::move(row));
  }
  doc["threads"] = std::move(threads);

  doc["events"] = {
      {"recorded", analysis.events_recorded},
      {"dropped", analysis.events_dropped},
      {"unknown_gil", analysis.events_unknown_gil},
  };
  return doc;
}

void JsonWriter::Write(const RunTrace& trace, const Analysis& analysis) const {
  // error_handler_t::replace: a thread name is whatever bytes the script set,
  // and the default (throw) would lose the whole report over one of them.
  out_ << ToJson(trace, analysis).dump(indent_, ' ', /*ensure_ascii=*/false,
                                       nlohmann::ordered_json::error_handler_t::replace)
       << '\n';
}

}  // namespace gilscope::report
