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
// The frame running at the release that follows: code id and line.
inline Event Frame(std::uint64_t code, std::uint32_t line) { return Event{code, EventKind::kFrame, 0, 0, line}; }
inline Event Mark(std::int64_t ms, std::uint32_t name) { return Event{At(ms), EventKind::kMark, 0, 0, name}; }
inline Event RegionBegin(std::int64_t ms, std::uint32_t name) {
  return Event{At(ms), EventKind::kRegionBegin, 0, 0, name};
}
inline Event RegionEnd(std::int64_t ms, std::uint32_t name) { return Event{At(ms), EventKind::kRegionEnd, 0, 0, name}; }
// Sub-millisecond times: `us` microseconds after the window start.
inline std::uint64_t AtUs(std::int64_t us) {
  return static_cast<std::uint64_t>(static_cast<std::int64_t>(kStart) + us * 1000);
}

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
  run.info.cpu_count = 2;  // fixed, so figures do not depend on the test machine
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

inline CodeInfo Code(std::uint64_t id, std::string function, std::string file, int first_line) {
  CodeInfo c;
  c.id = id;
  c.function = std::move(function);
  c.file = std::move(file);
  c.first_line = first_line;
  return c;
}

// Code ids of ConvoyRun's frames.
inline constexpr std::uint64_t kWorkerCode = 0x100;
inline constexpr std::uint64_t kRecvCode = 0x200;
inline constexpr std::uint64_t kMainCode = 0x300;

// A CPU-bound pair and an I/O thread stuck behind it, over `slots` switch
// intervals of 5 ms (boundaries b_k = 2 + 5k ms):
//
//   MainThread  holds 0..2 (at start), releases voluntarily in main.py:9
//               (a join) and stays released.
//   worker-0/1  take turns: worker k%2 holds slot k until b_k+1, is forced
//               off (frame worker, workload.py:27), asks again at once and
//               waits for its next slot.
//   io          (named `io_name`) every second boundary k >= 2: asked at
//               b_k - 6, gets the GIL at b_k, holds 0.1 ms, releases
//               voluntarily in Connection.recv (client.py:88); the worker
//               whose slot it is starts 0.1 ms late.
//
// Markers: "start" (an instant on MainThread at 1 ms), region "crunch" on
// worker-0 from 2 ms to boundary slots/2 (when that slot is worker-0's; else
// it stays open), unless `crunch` is false. The window ends at b_slots.
// A top-level region of 100 ms or more is a phase boundary (phases.h): with
// 44 slots "crunch" ends at 112.1 ms and cuts the run in two phases.
// For `slots` = 44: io makes 21 round trips, each a 6 ms wait (1.2 switch
// intervals) after a 3.9 ms released stretch: a convoy; the GIL is busy the
// whole run with three threads competing: gil_bound.
inline RunTrace ConvoyRun(std::size_t slots, std::string io_name = "io", bool crunch = true) {
  const auto b = [](std::size_t k) { return AtUs(2000 + 5000 * static_cast<std::int64_t>(k)); };
  RunTrace run;
  run.info.gilscope_version = "0.1.0";
  run.info.python_version = "3.13.0";
  run.info.script = "convoy.py";
  run.info.cpu_count = 2;
  run.start_ns = kStart;
  run.end_ns = b(slots);
  run.gils = {Gil(0, 0xA, 0)};
  run.code = {Code(kWorkerCode, "worker", "workload.py", 20), Code(kRecvCode, "Connection.recv", "client.py", 80),
              Code(kMainCode, "<module>", "main.py", 1)};
  run.marker_names = {"start", "crunch"};

  ThreadTrace main = Thread("MainThread", 1001, {Tstate(0xA), AcquiredAtStart(), Mark(1, 0), Frame(kMainCode, 9),
                                                 Released(2, false)});
  main.cpu_s = 0.002;
  std::vector<Event> workers[2] = {{Tstate(0xB0)}, {Tstate(0xB1)}};
  std::vector<Event> io = {Tstate(0xC)};
  auto starts_late = [](std::size_t k) { return k >= 2 && k % 2 == 0; };
  std::size_t io_rounds = 0;
  workers[0].push_back(Make(EventKind::kRequest, AtUs(500), 0, 0));
  if (crunch) workers[0].push_back(RegionBegin(2, 1));
  workers[1].push_back(Make(EventKind::kRequest, AtUs(600), 0, 0));
  for (std::size_t k = 0; k < slots; ++k) {
    std::vector<Event>& w = workers[k % 2];
    const std::uint64_t start = starts_late(k) ? b(k) + 100'000 : b(k);
    if (starts_late(k)) {
      ++io_rounds;
      io.push_back(Make(EventKind::kRequest, b(k) - 6 * kMs, 0, 0));
      io.push_back(Make(EventKind::kAcquired, b(k), 0, 0));
      io.push_back(Frame(kRecvCode, 88));
      io.push_back(Make(EventKind::kReleased, b(k) + 100'000, 0, 0));
    }
    w.push_back(Make(EventKind::kAcquired, start, 0, 0));
    if (crunch && k == slots / 2 && k % 2 == 0) w.push_back(Event{start, EventKind::kRegionEnd, 0, 0, 1});
    if (k + 1 < slots) {
      w.push_back(Frame(kWorkerCode, 27));
      w.push_back(Make(EventKind::kReleased, b(k + 1), 0, recorder::kFlagForced));
      w.push_back(Make(EventKind::kRequest, b(k + 1), 0, 0));
    }
  }
  run.threads.push_back(std::move(main));
  for (int i = 0; i < 2; ++i) {
    ThreadTrace t = Thread("worker-" + std::to_string(i), 1002 + static_cast<std::uint64_t>(i), std::move(workers[i]));
    t.cpu_s = 0.0025 * static_cast<double>(slots);
    run.threads.push_back(std::move(t));
  }
  ThreadTrace io_thread = Thread(std::move(io_name), 1004, std::move(io));
  io_thread.cpu_s = 0.0001 * static_cast<double>(slots);
  run.threads.push_back(std::move(io_thread));
  // Every acquisition hands the GIL to another thread state.
  run.gils[0].cpython_switch_end = run.gils[0].cpython_switch_start + slots + io_rounds;
  return run;
}

// Beazley's echo server in two phases over a 2 s window, to the microsecond:
//
//   echo-server (0xE)  alone, 0..1000 ms: a request every 2 ms (k = 0..499,
//        t = 2k ms) finds the GIL free: folded acquisition at t + 10 us
//        (requested at t), hold to t + 30 us, voluntary release (send),
//        folded acquisition at t + 45 us (requested at t + 40: the send did
//        not block), hold to t + 50 us, voluntary release (recv).
//   cpu (0xC)  from 999.5 ms (folded acquisition, 1 us wait): holds the GIL,
//        forced off each time echo-server's timed wait runs out.
//   echo-server beside it, 1000..2000 ms: round trip k (k = 0..165,
//        r = 1000 + 6k ms): request at r (explicit: the GIL is held), drop
//        request at r + 5, cpu forced off at r + 5 and asks again at once,
//        echo-server acquires at r + 5 (a 5 ms wait), sends (released at
//        r + 5.020), re-acquires folded at r + 5.035 (asked at r + 5.030:
//        the GIL still free, a 5 us wait), releases for recv at r + 5.045,
//        and cpu acquires then (a 45 us wait).
//
// Phase 2 [1000, 2000) by hand, echo-server: 332 acquisitions and waits
// (166 of 5 ms, 166 of 5 us: p50 5 us), of which the 166 after recv found
// the GIL held (io waits, p50 5 ms); waiting 166 x 5.005 ms = 830.83 ms of
// its 1000 ms; 332 voluntary releases; 331 released stretches ending in a
// request (166 of 10 us, 165 of 0.955 ms: p50 10 us). GIL: free 15 us per
// round trip (between the send and the folded re-acquisition, while cpu
// waits): busy 1000 - 166 x 0.015 = 997.51 ms; contended while echo-server
// waits under cpu (5 ms) and cpu under echo-server (20 + 10 us): 166 x 5.030
// = 834.98 ms. cpu waits 45 us per 6 ms (0.75%).
// Phase 1 [0, 1000): echo-server's 1000 waits are all folded (10 and 5 us),
// nobody waits under a holder: contended 0.
inline RunTrace EchoPhasesRun() {
  RunTrace run = EmptyRun(2000);
  run.info.script = "echo_phases.py";
  run.gils = {Gil(0, 0, 0)};
  auto at = [](std::int64_t us) { return AtUs(us); };
  auto folded = [](std::uint64_t ts, std::uint32_t waited_ns) {
    return Event{ts, EventKind::kAcquired, 0, recorder::kFlagRequestFolded, waited_ns};
  };
  auto event = [](EventKind kind, std::uint64_t ts, std::uint16_t flags = 0) { return Make(kind, ts, 0, flags); };
  std::vector<Event> echo = {Tstate(0xE)};
  std::vector<Event> cpu = {Tstate(0xC), folded(at(999'500), 1'000)};
  std::uint64_t switches = 0;
  for (std::int64_t k = 0; k < 500; ++k) {
    const std::int64_t t = 2000 * k;
    echo.push_back(folded(at(t + 10), 10'000));
    echo.push_back(event(EventKind::kReleased, at(t + 30)));
    echo.push_back(folded(at(t + 45), 5'000));
    echo.push_back(event(EventKind::kReleased, at(t + 50)));
  }
  switches += 1;  // echo-server's first acquisition (nobody held it before)
  switches += 1;  // cpu at 999.5 ms
  for (std::int64_t k = 0; k < 166; ++k) {
    const std::int64_t r = 1'000'000 + 6000 * k;
    echo.push_back(event(EventKind::kRequest, at(r)));
    echo.push_back(event(EventKind::kWaitTimeout, at(r + 5000), recorder::kFlagDropRequest));
    cpu.push_back(event(EventKind::kReleased, at(r + 5000), recorder::kFlagForced));
    cpu.push_back(event(EventKind::kRequest, at(r + 5000)));
    echo.push_back(event(EventKind::kAcquired, at(r + 5000)));
    echo.push_back(event(EventKind::kReleased, at(r + 5020)));
    echo.push_back(folded(at(r + 5035), 5'000));
    echo.push_back(event(EventKind::kReleased, at(r + 5045)));
    cpu.push_back(event(EventKind::kAcquired, at(r + 5045)));
    switches += 2;
  }
  run.gils[0].cpython_switch_end = run.gils[0].cpython_switch_start + switches;
  run.threads.push_back(Thread("echo-server", 7, std::move(echo)));
  run.threads.push_back(Thread("cpu", 8, std::move(cpu)));
  return run;
}

}  // namespace gilscope::report::testing
