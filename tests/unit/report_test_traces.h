// Hand-built RunTraces for the report tests, with the answers worked out by
// hand in the comments. Times are written in milliseconds relative to the
// window start kStart (negative: before the window), so timelines read like
// the diagrams in the comments.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "recorder/event.h"
#include "report/run_trace.h"

namespace gilscope::report::testing {

using recorder::Event;
using recorder::EventKind;

inline constexpr std::uint64_t kMs = 1'000'000;
// 1000 s on the monotonic clock: far enough from 0 for negative offsets.
inline constexpr std::uint64_t kStart = 1'000'000 * kMs;

inline std::uint64_t At(std::int64_t ms) {
  return static_cast<std::uint64_t>(static_cast<std::int64_t>(kStart) + ms * static_cast<std::int64_t>(kMs));
}

inline Event Make(EventKind kind, std::uint64_t ts, std::uint8_t gil, std::uint16_t flags) {
  return Event{ts, kind, gil, flags, 0};
}
inline Event Request(std::int64_t ms, std::uint8_t gil = 0) { return Make(EventKind::kRequest, At(ms), gil, 0); }
inline Event Timeout(std::int64_t ms, bool drop_request, std::uint8_t gil = 0) {
  return Make(EventKind::kWaitTimeout, At(ms), gil, drop_request ? recorder::kFlagDropRequest : 0);
}
inline Event Acquired(std::int64_t ms, std::uint8_t gil = 0) { return Make(EventKind::kAcquired, At(ms), gil, 0); }
inline Event AcquiredAtStart(std::uint8_t gil = 0) {
  return Make(EventKind::kAcquired, kStart, gil, recorder::kFlagAtStart);
}
inline Event Released(std::int64_t ms, bool forced, std::uint8_t gil = 0) {
  return Make(EventKind::kReleased, At(ms), gil, forced ? recorder::kFlagForced : 0);
}
inline Event Tstate(std::uint64_t address) { return Make(EventKind::kThreadState, address, 0, 0); }
inline Event Exit(std::int64_t ms) { return Make(EventKind::kThreadExit, At(ms), 0, 0); }

inline ThreadTrace Thread(std::string name, std::uint64_t native_id, std::vector<Event> events) {
  ThreadTrace t;
  t.native_id = native_id;
  t.pid = 4242;
  t.name = std::move(name);
  t.events = std::move(events);
  return t;
}

inline RunTrace EmptyRun(std::int64_t window_ms) {
  RunTrace run;
  run.info.gilscope_version = "0.1.0";
  run.info.python_version = "3.13.0";
  run.info.script = "demo.py";
  run.info.args = {"--n", "3"};
  run.start_ns = kStart;
  run.end_ns = At(window_ms);
  return run;
}

inline GilInfo Gil(std::uint32_t id, std::uint64_t holder_at_start, std::uint64_t cpython_switches) {
  GilInfo g;
  g.id = id;
  g.cpython_switch_start = 100;
  g.cpython_switch_end = 100 + cpython_switches;
  g.holder_tstate_at_start = holder_at_start;
  return g;
}

// Two threads taking turns on one GIL in a 100 ms window:
//
//   ms        0    5   10   20   30   35   38 40        70  80 82  90  100
//   A (0xA)   HHHHHHHHHHHHHH|....|WWWWWWWWWW|HHHHHHHHHHHHHH|.........X
//   B (0xB)        WWWWWWWWW|HHHHHHHHHHHHH|..................WW|HHHHHHHH
//
// A holds at window start (synthetic), is forced off at 20, waits 30..40
// (its timeout at 35 sets a drop request), holds 40..70, releases
// voluntarily and exits at 90. B waits 5..20 (drop request at 10), holds
// 20..38 (forced off), waits 80..82 and still holds at the end.
//
// A: lifetime 90 = held 50 + waiting 10 + released 30; 1 acquisition
//    (at-start excluded), 1 forced, 1 voluntary, waits {10}.
// B: lifetime 95 = held 36 + waiting 17 + released 42; 2 acquisitions,
//    1 forced, waits {15, 2}: p50 2, p99 15, max 15.
// GIL 0 (last holder 0xA at start): B@20, A@40, B@82 = 3 switches; 2 drop
//    requests; busy 20+18+30+18 = 86 ms; contended (someone waits while
//    someone holds) 5..20 + 30..38 = 23 ms.
inline RunTrace SmallRun() {
  RunTrace run = EmptyRun(100);
  run.gils = {Gil(0, 0xA, 3)};
  run.threads.push_back(Thread("MainThread", 1001,
                               {Tstate(0xA), AcquiredAtStart(), Released(20, true), Request(30),
                                Timeout(35, true), Acquired(40), Released(70, false), Exit(90)}));
  run.threads.push_back(Thread("worker-1", 1002,
                               {Tstate(0xB), Request(5), Timeout(10, true), Acquired(20), Released(38, true),
                                Request(80), Acquired(82)}));
  return run;
}

}  // namespace gilscope::report::testing
