#include "runner/collect.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace gilscope::runner {

void CollectInto(recorder::Arena& arena, std::vector<recorder::ThreadLog> logs,
                 std::uint64_t dropped_no_slot, report::RunTrace& trace) {
  std::uint64_t start = std::numeric_limits<std::uint64_t>::max(), end = 0;
  bool any_open = false;
  for (std::uint32_t i = 0; i < arena.gil_count(); ++i) {
    recorder::GilRecord& r = arena.gil(i);
    // acquire: pairs with the release that opened or closed the record.
    const std::uint32_t state = r.state.load(std::memory_order_acquire);
    if (state == recorder::GilRecord::kUnused) continue;
    report::GilInfo g;
    g.id = i;
    g.interpreter = r.interpreter;
    g.pid = r.pid;
    g.instance = r.instance;
    g.start_ns = r.start_ns;
    g.end_ns = state == recorder::GilRecord::kClosed ? r.end_ns : 0;
    any_open = any_open || state != recorder::GilRecord::kClosed;
    g.cpython_switch_start = r.switch_start;
    g.cpython_switch_end = r.switch_end;
    g.holder_tstate_at_start = r.holder_tstate_at_start;
    start = std::min(start, g.start_ns);
    end = std::max(end, g.end_ns);
    trace.gils.push_back(g);
  }
  // A GIL still open at the end (its process was killed: a timeout, a
  // crash) never recorded its window's end; the run then lasted until the
  // supervisor saw its processes end (their records' end_ns), not just to
  // the last GIL that closed (a run killed in time.sleep would have no
  // wall time at all).
  if (any_open) {
    for (std::uint32_t i = 0; i < arena.process_count(); ++i) {
      const recorder::ProcessRecord& r = arena.process(i);
      if (r.state.load(std::memory_order_acquire) == recorder::ProcessRecord::kExited) end = std::max(end, r.end_ns);
    }
  }
  if (trace.start_ns == 0 && start != std::numeric_limits<std::uint64_t>::max()) trace.start_ns = start;
  if (trace.end_ns == 0) trace.end_ns = end;

  for (std::uint32_t i = 0; i < arena.process_count(); ++i) {
    recorder::ProcessRecord& r = arena.process(i);
    const std::uint32_t state = r.state.load(std::memory_order_acquire);
    if (state == recorder::ProcessRecord::kUnused) continue;
    report::ProcessInfo p;
    p.pid = r.pid;
    p.parent_pid = r.parent_pid;
    p.role.assign(r.role, strnlen(r.role, recorder::kRoleSize));
    p.instance = r.instance;
    p.exit_status = r.exit_status;
    if (state == recorder::ProcessRecord::kRunning) {
      p.status = "running";
    } else {
      p.status = r.exit_status == 0 ? "ok" : (r.exit_status >= 128 ? "crashed" : "error");
    }
    trace.processes.push_back(std::move(p));
  }

  for (recorder::ThreadLog& log : logs) {
    report::ThreadTrace t;
    t.native_id = log.native_id;
    t.pid = log.pid;
    t.name = std::move(log.name);
    t.dropped = log.dropped;
    t.cpu_s = log.cpu_s;
    t.events = std::move(log.events);
    trace.threads.push_back(std::move(t));
  }
  trace.dropped_no_slot = dropped_no_slot;
  // relaxed: a counter read once the run's processes are done.
  trace.gils_lost = arena.header().gils_lost.load(std::memory_order_relaxed);
}

}  // namespace gilscope::runner
