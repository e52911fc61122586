// What a finished run hands to analysis: every thread's event stream plus the
// facts about the run that the events do not carry (GILs, CPython's own
// counters, the recording window, what was run and how it ended).
//
// Plain data, no CPython and no I/O: analysis and the writers are pure
// functions of a RunTrace, so tests build one by hand.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "recorder/event.h"

namespace gilscope::report {

struct GilInfo {
  std::uint32_t id = 0;           // the `gil` field of events on this GIL
  std::int64_t interpreter = 0;   // CPython interpreter id owning it (0: main)
  std::uint32_t pid = 0;          // the process it lives in
  int instance = -1;              // the run's instance it belongs to (-1: none)
  // Its own recording window (a subinterpreter's or child's is shorter than
  // the run's); 0 when unknown: then the run's window applies.
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  // CPython's own gil->switch_number at the start and end of the window.
  std::uint64_t cpython_switch_start = 0;
  std::uint64_t cpython_switch_end = 0;
  // PyThreadState that held the GIL when the window opened (0: none), so the
  // first acquisition in the window is compared with the right last holder.
  std::uint64_t holder_tstate_at_start = 0;
};

// A Python code object seen at a GIL release (kFrame events name it by id).
// Ids are per process (an address in it, tagged with the interpreter id):
// kFrame events of a thread are resolved against the code of its pid.
struct CodeInfo {
  std::uint64_t id = 0;
  std::string function;  // co_qualname, e.g. "Worker.run"
  std::string file;      // co_filename
  int first_line = 0;
  std::uint32_t pid = 0;  // the process whose events use the id; 0: any (older files)
};

struct ThreadTrace {
  std::uint64_t native_id = 0;    // gettid()
  std::uint32_t pid = 0;
  std::string name;               // Python thread name; empty when unknown
  std::uint64_t dropped = 0;      // events lost to a full ring
  double cpu_s = -1;              // the thread's CPU time (user+system); < 0: unknown
  std::vector<recorder::Event> events;  // in the order the thread wrote them
};

struct ProcessInfo {
  std::uint32_t pid = 0;
  std::uint32_t parent_pid = 0;
  std::string role;               // "host", "instance", "fork", "spawn"
  // "ok", "error", "crashed", "running" (outlived the run), "ended" (gone
  // without recording its end, e.g. killed by a signal its parent reaped;
  // exit_status -1)
  std::string status;
  int exit_status = 0;
  int instance = -1;
};

struct RunInfo {
  std::string gilscope_version;
  std::string python_version;     // full CPython version, e.g. "3.13.0"
  std::string script;
  std::vector<std::string> args;
  std::string mode = "main";
  int instances = 1;
  std::string status = "ok";      // ok | error | timeout | deadlock | crashed
  int exit_code = 0;
  int signal = 0;                 // the signal that ended it ("crashed"), else 0
  double switch_interval_s = 0.005;
  // Logical CPUs the run had (os.cpu_count() or the affinity mask), for the
  // GIL-tax estimate; 0: unknown, analysis then uses this machine's count.
  int cpu_count = 0;
};

// One thread's state when a deadlock was declared.
struct BlockedThread {
  std::string name;
  std::string waiting_for;         // the lock expression it waits on, e.g. locks['lock_2']
  std::string held_by;             // the thread holding that lock, when known
  std::vector<std::string> holds;  // locks of the `with` blocks it is inside
  std::string stack;               // its Python stack, formatted
};

struct Deadlock {
  std::string summary;             // "thread_1 waits for ... (held by thread_2); ..."
  std::vector<BlockedThread> threads;
};

// An exception that ended a thread of the script (or the script itself):
// what the thread's excepthook or python's traceback printed.
struct ScriptException {
  std::uint32_t pid = 0;
  std::uint64_t native_id = 0;     // the thread's gettid()
  std::string thread;              // its Python name, e.g. "Thread-1 (work)"
  std::string type;                // e.g. "ValueError", "mod.CustomError"
  std::string message;             // str(exception)
  std::string traceback;           // as the traceback module formats it
  bool main = false;               // true: uncaught in the script's main thread
  std::uint64_t time_ns = 0;       // when it was recorded (monotonic)
};

struct RunTrace {
  RunInfo info;
  // The recording window in the events' clock (monotonic ns). Intervals are
  // clipped to it; CPython's counters were read at exactly these moments.
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  std::vector<GilInfo> gils;
  std::vector<ThreadTrace> threads;
  std::vector<ProcessInfo> processes;
  std::vector<CodeInfo> code;               // for kFrame events
  std::vector<std::string> marker_names;    // for kMark / kRegion* events
  Deadlock deadlock;                        // status "deadlock" only
  std::vector<ScriptException> exceptions;  // in the order they happened
  std::uint64_t dropped_no_slot = 0;  // events from threads that found no free recorder slot
  // GILs the run could not record because its GIL table (recorder::kMaxGils)
  // was full: a run of more interpreters than that (a test suite starting
  // hundreds of processes). Their threads' GIL events are missing.
  std::uint64_t gils_lost = 0;
};

}  // namespace gilscope::report
