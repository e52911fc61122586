// Analyze(): one pass over each thread's stream, then one time-ordered merge
// of all threads' intervals for the per-GIL figures.
//
// How a stream is read (see event.h for the kinds):
//   - Times are clipped into [start_ns, end_ns] and made non-decreasing per
//     thread, so no duration can be negative whatever the clock or a gap did.
//   - Events before the window move the state machine (a wait that began
//     before it is a wait at start_ns) but count nothing. The first event
//     after end_ns ends the walk: streams are in time order, so nothing later
//     can fall inside.
//   - kThreadState carries an address, not a time; it only sets the thread
//     state that later acquisitions are attributed to.
//   - Gaps left by dropped events are bridged by trusting the next event: a
//     kAcquired with no kRequest still starts a hold (but yields no latency),
//     a kWaitTimeout outside a wait starts one, a kRequest while holding ends
//     the hold. Counts (acquisitions, releases) are of events actually seen.

#include "report/analysis.h"

#include <algorithm>
#include <array>
#include <functional>
#include <queue>
#include <utility>

namespace gilscope::report {
namespace {

using recorder::Event;
using recorder::EventKind;

constexpr double kNsPerSecond = 1e9;
constexpr double kNsPerMs = 1e6;
// Events name their GIL with a uint8_t, so 256 GILs at most can be told apart.
constexpr std::size_t kGilValues = 256;
constexpr int kNoSlot = -1;

// Maps an event's `gil` value to the index of its GilInfo in RunTrace::gils.
using GilSlots = std::array<int, kGilValues>;

GilSlots MakeGilSlots(const std::vector<GilInfo>& gils) {
  GilSlots slots;
  slots.fill(kNoSlot);
  for (std::size_t i = 0; i < gils.size(); ++i) {
    // An id an event cannot carry can never be matched; a duplicate id keeps
    // the first entry so the mapping stays a function.
    if (gils[i].id < kGilValues && slots[gils[i].id] == kNoSlot) {
      slots[gils[i].id] = static_cast<int>(i);
    }
  }
  return slots;
}

// One in-window acquisition, kept to replay CPython's switch counter.
struct Acquisition {
  std::uint64_t ts = 0;      // raw event time
  std::uint64_t tstate = 0;  // the thread's PyThreadState at that moment
  std::uint32_t thread = 0;
  std::uint32_t seq = 0;     // position in the thread's stream
};

// Nearest-rank percentile (p in whole percent) of n samples: the value at
// 1-based rank ceil(p * n / 100), computed in integers so that p50 of two
// samples is exactly the smaller one.
std::size_t NearestRank(std::size_t p, std::size_t n) {
  return std::max<std::size_t>(1, (p * n + 99) / 100);
}

// Fills the wait figures from the latencies (in ns). Reorders `latencies`.
void SetWaitPercentiles(std::vector<std::uint64_t>& latencies, ThreadStats& out) {
  out.waits = latencies.size();
  if (latencies.empty()) return;
  const std::size_t n = latencies.size();
  // nth_element twice is O(n): the p99 pass leaves every smaller rank in
  // front of it, so the p50 pass may search only that prefix.
  const auto p99 = latencies.begin() + static_cast<std::ptrdiff_t>(NearestRank(99, n) - 1);
  std::nth_element(latencies.begin(), p99, latencies.end());
  const auto p50 = latencies.begin() + static_cast<std::ptrdiff_t>(NearestRank(50, n) - 1);
  std::nth_element(latencies.begin(), p50, p99 + 1);
  const std::uint64_t max = *std::max_element(p99, latencies.end());
  out.wait_p50_ms = static_cast<double>(*p50) / kNsPerMs;
  out.wait_p99_ms = static_cast<double>(*p99) / kNsPerMs;
  out.wait_max_ms = static_cast<double>(max) / kNsPerMs;
}

// The state machine of one thread's stream. Owns nothing; writes into the
// ThreadStats it was given and into the per-GIL accumulators.
class ThreadWalker {
 public:
  ThreadWalker(std::uint64_t window_start, std::uint64_t window_end, const GilSlots& slots,
               std::vector<std::vector<Acquisition>>& acquisitions,
               std::vector<GilStats>& gil_stats, std::vector<std::uint64_t>& latencies)
      : window_start_(window_start),
        window_end_(window_end),
        slots_(slots),
        acquisitions_(acquisitions),
        gil_stats_(gil_stats),
        latencies_(latencies) {}

  // Holding / waiting intervals stored by all Walk() calls on one GIL.
  std::size_t HoldingIntervals(std::size_t gil) const { return holding_intervals_[gil]; }
  std::size_t WaitingIntervals(std::size_t gil) const { return waiting_intervals_[gil]; }

  // Returns how many of the thread's events named an unknown GIL.
  std::uint64_t Walk(const ThreadTrace& in, std::uint32_t index, ThreadStats& out) {
    out_ = &out;
    state_ = GilState::kReleased;
    gil_ = 0;
    state_start_ = window_start_;
    held_by_gil_.fill(0);
    latencies_.clear();
    std::uint64_t unknown_gil = 0;
    std::uint64_t tstate = 0;
    std::uint64_t wait_start = 0;
    std::uint64_t cursor = 0;  // latest time seen: keeps time non-decreasing
    bool started = false;
    bool exited = false;

    // Each timed event closes at most one interval, plus the final close.
    // Capacity left unused (timeouts, thread states) is never written, so it
    // costs address space, not resident memory; and no regrowth copies.
    out.intervals.reserve(in.events.size() + 1);
    const std::size_t n = in.events.size();
    for (std::size_t seq = 0; seq < n && !exited; ++seq) {
      const Event& e = in.events[seq];
      if (e.kind == EventKind::kThreadState) {
        tstate = e.ts;
        continue;
      }
      if (!IsTimed(e.kind)) continue;  // a kind this build does not know
      const bool at_start = e.kind == EventKind::kAcquired && (e.flags & recorder::kFlagAtStart) != 0;
      // The synthetic acquisition stands for "held when the window opened",
      // whatever its ts says.
      const std::uint64_t raw = at_start ? window_start_ : e.ts;
      if (raw > window_end_) break;
      const bool inside = raw >= window_start_;
      std::uint64_t t = std::max(raw, window_start_);
      if (!started) {
        started = true;
        out.lifetime_start_ns = t;
        state_start_ = t;
        cursor = t;
      }
      t = std::max(t, cursor);
      cursor = t;

      int slot = kNoSlot;
      if (e.kind != EventKind::kThreadExit) {
        slot = slots_[e.gil];
        if (slot == kNoSlot) ++unknown_gil;
      }

      switch (e.kind) {
        case EventKind::kRequest:
          // A second request for the same GIL means the acquire/release in
          // between was dropped; keep the wait that is already running.
          if (state_ != GilState::kWaiting || gil_ != e.gil) {
            Enter(GilState::kWaiting, e.gil, t);
            wait_start = t;
          }
          break;
        case EventKind::kWaitTimeout:
          if (inside && (e.flags & recorder::kFlagDropRequest) != 0 && slot != kNoSlot) {
            ++gil_stats_[static_cast<std::size_t>(slot)].drop_requests;
          }
          if (state_ != GilState::kWaiting) {  // its kRequest was dropped
            Enter(GilState::kWaiting, e.gil, t);
            wait_start = t;
          }
          break;
        case EventKind::kAcquired:
          if (inside && !at_start) {
            ++out.acquisitions;
            if (state_ == GilState::kWaiting && gil_ == e.gil) latencies_.push_back(t - wait_start);
            if (slot != kNoSlot) {
              acquisitions_[static_cast<std::size_t>(slot)].push_back(
                  {raw, tstate, index, static_cast<std::uint32_t>(seq)});
            }
          }
          Enter(GilState::kHolding, e.gil, t);
          break;
        case EventKind::kReleased:
          if (inside) {
            if ((e.flags & recorder::kFlagForced) != 0) {
              ++out.forced_releases;
            } else {
              ++out.voluntary_releases;
            }
          }
          Enter(GilState::kReleased, e.gil, t);
          break;
        case EventKind::kThreadExit:
          Close(t);
          out.lifetime_end_ns = t;
          exited = true;
          break;
        case EventKind::kThreadState:
          break;  // handled above
      }
    }

    if (!started) {
      out.lifetime_start_ns = window_start_;
      out.lifetime_end_ns = window_start_;
    } else if (!exited) {
      Close(window_end_);
      out.lifetime_end_ns = window_end_;
    }
    out.exited = exited;
    out.state_at_end = state_;
    out.lifetime_ns = out.lifetime_end_ns - out.lifetime_start_ns;
    out.lifetime_s = static_cast<double>(out.lifetime_ns) / kNsPerSecond;
    out.held_s = static_cast<double>(out.held_ns) / kNsPerSecond;
    out.waiting_s = static_cast<double>(out.waiting_ns) / kNsPerSecond;
    out.released_s = static_cast<double>(out.released_ns) / kNsPerSecond;
    SetWaitPercentiles(latencies_, out);

    std::uint64_t best = 0;
    for (std::size_t g = 0; g < kGilValues; ++g) {
      if (held_by_gil_[g] > best) {
        best = held_by_gil_[g];
        out.main_gil = static_cast<int>(g);
      }
    }
    return unknown_gil;
  }

 private:
  static bool IsTimed(EventKind kind) {
    switch (kind) {
      case EventKind::kRequest:
      case EventKind::kWaitTimeout:
      case EventKind::kAcquired:
      case EventKind::kReleased:
      case EventKind::kThreadExit:
        return true;
      case EventKind::kThreadState:
        return false;
    }
    return false;
  }

  // Ends the current interval at t (t >= state_start_ by the cursor rule).
  void Close(std::uint64_t t) {
    if (t <= state_start_) return;
    const std::uint64_t d = t - state_start_;
    switch (state_) {
      case GilState::kReleased:
        out_->released_ns += d;
        break;
      case GilState::kWaiting:
        out_->waiting_ns += d;
        out_->intervals.push_back({state_start_, t, state_, gil_});
        ++waiting_intervals_[gil_];
        break;
      case GilState::kHolding:
        out_->held_ns += d;
        held_by_gil_[gil_] += d;
        out_->intervals.push_back({state_start_, t, state_, gil_});
        ++holding_intervals_[gil_];
        break;
    }
    state_start_ = t;
  }

  void Enter(GilState state, std::uint8_t gil, std::uint64_t t) {
    // Released twice in a row (a dropped acquisition) is one released stretch.
    if (state == GilState::kReleased && state_ == GilState::kReleased) return;
    Close(t);
    state_ = state;
    gil_ = gil;
    state_start_ = t;
  }

  const std::uint64_t window_start_;
  const std::uint64_t window_end_;
  const GilSlots& slots_;
  std::vector<std::vector<Acquisition>>& acquisitions_;
  std::vector<GilStats>& gil_stats_;
  std::vector<std::uint64_t>& latencies_;  // scratch, reused across threads

  ThreadStats* out_ = nullptr;
  GilState state_ = GilState::kReleased;
  std::uint8_t gil_ = 0;
  std::uint64_t state_start_ = 0;
  std::array<std::uint64_t, kGilValues> held_by_gil_{};
  // Intervals stored so far, all threads, by GIL value.
  std::array<std::size_t, kGilValues> holding_intervals_{};
  std::array<std::size_t, kGilValues> waiting_intervals_{};
};

// Replays CPython's rule (take_gil: if tstate != last_holder, ++switch_number)
// over the window's acquisitions of one GIL in time order.
std::uint64_t CountSwitches(std::vector<Acquisition>& acquisitions, std::uint64_t holder_at_start) {
  // Two threads cannot acquire one GIL in the same nanosecond, so ties only
  // break deterministically; within a thread, stream order is time order.
  std::sort(acquisitions.begin(), acquisitions.end(), [](const Acquisition& a, const Acquisition& b) {
    if (a.ts != b.ts) return a.ts < b.ts;
    if (a.thread != b.thread) return a.thread < b.thread;
    return a.seq < b.seq;
  });
  std::uint64_t switches = 0;
  std::uint64_t last_holder = holder_at_start;
  for (const Acquisition& a : acquisitions) {
    if (a.tstate != last_holder) {
      ++switches;
      last_holder = a.tstate;
    }
  }
  return switches;
}

// Per-GIL running state of the sweep line.
struct Sweep {
  std::uint64_t last_ts = 0;
  std::uint32_t holding = 0;
  std::uint32_t waiting = 0;
};

void Advance(Sweep& sweep, GilStats& gil, std::uint64_t ts) {
  if (ts <= sweep.last_ts) return;
  const std::uint64_t d = ts - sweep.last_ts;
  if (sweep.holding > 0) {
    gil.busy_ns += d;
    if (sweep.waiting > 0) gil.contended_ns += d;
  }
  sweep.last_ts = ts;
}

// Records the waiting count after a change at ts. Several changes at one
// instant collapse into one step, and a step that restores the previous
// value disappears, so each stored step is a real change. Changes at the
// window end are dropped: they are where clipping cut the intervals off,
// not threads that stopped waiting.
void StepWaiting(std::vector<WaitingStep>& steps, std::uint64_t window_end, std::uint64_t ts,
                 std::uint32_t waiting) {
  if (ts >= window_end) return;
  if (steps.back().ts_ns == ts) {
    steps.back().waiting = waiting;
    if (steps.size() >= 2 && steps[steps.size() - 2].waiting == waiting) steps.pop_back();
  } else if (steps.back().waiting != waiting) {
    steps.push_back({ts, waiting});
  }
}

// Busy/contended time, holder intervals and the waiting series of every GIL,
// from one merge of all threads' intervals in time order: O(n log threads),
// and no array of all boundaries is ever built.
void SweepGils(const GilSlots& slots, const ThreadWalker& counts, std::uint64_t window_start,
               std::uint64_t window_end, Analysis& analysis) {
  if (analysis.gils.empty()) return;
  std::vector<Sweep> sweeps(analysis.gils.size());
  for (std::size_t g = 0; g < analysis.gils.size(); ++g) {
    sweeps[g].last_ts = window_start;
    // Sized up front: at 10M events, regrowing these vectors costs more
    // than the sweep itself. Each wait makes at most two steps.
    const std::uint32_t id = analysis.gils[g].id;
    if (id < kGilValues && slots[id] == static_cast<int>(g)) {
      analysis.gils[g].holders.reserve(counts.HoldingIntervals(id));
      analysis.gils[g].waiting.reserve(2 * counts.WaitingIntervals(id) + 1);
    }
    analysis.gils[g].waiting.push_back({window_start, 0});
  }

  // Each thread exposes the boundaries of its waiting/holding intervals on
  // known GILs, a non-decreasing sequence because its intervals are.
  struct Cursor {
    std::size_t interval = 0;
    bool at_end = false;
  };
  std::vector<Cursor> cursors(analysis.threads.size());
  auto relevant = [&](const StateInterval& iv) { return slots[iv.gil] != kNoSlot; };
  auto skip_to_relevant = [&](std::size_t thread) {
    const auto& ivs = analysis.threads[thread].intervals;
    Cursor& c = cursors[thread];
    while (c.interval < ivs.size() && !relevant(ivs[c.interval])) ++c.interval;
    return c.interval < ivs.size();
  };
  auto boundary = [&](std::size_t thread) {
    const StateInterval& iv = analysis.threads[thread].intervals[cursors[thread].interval];
    return cursors[thread].at_end ? iv.end_ns : iv.start_ns;
  };

  using Entry = std::pair<std::uint64_t, std::uint32_t>;  // (time, thread)
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  for (std::uint32_t t = 0; t < analysis.threads.size(); ++t) {
    if (skip_to_relevant(t)) heap.push({boundary(t), t});
  }
  while (!heap.empty()) {
    const auto [ts, thread] = heap.top();
    heap.pop();
    Cursor& c = cursors[thread];
    const StateInterval& iv = analysis.threads[thread].intervals[c.interval];
    const auto g = static_cast<std::size_t>(slots[iv.gil]);
    GilStats& gil = analysis.gils[g];
    Sweep& sweep = sweeps[g];
    Advance(sweep, gil, ts);
    const bool holding = iv.state == GilState::kHolding;
    if (!c.at_end) {
      if (holding) {
        ++sweep.holding;
        gil.holders.push_back({iv.start_ns, iv.end_ns, thread});
      } else {
        ++sweep.waiting;
        StepWaiting(gil.waiting, window_end, ts, sweep.waiting);
      }
      c.at_end = true;
    } else {
      if (holding) {
        --sweep.holding;
      } else {
        --sweep.waiting;
        StepWaiting(gil.waiting, window_end, ts, sweep.waiting);
      }
      c.at_end = false;
      ++c.interval;
    }
    if (skip_to_relevant(thread)) heap.push({boundary(thread), thread});
  }
}

double Fraction(std::uint64_t part, std::uint64_t whole) {
  return whole == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(whole);
}

}  // namespace

const char* GilStateName(GilState state) {
  switch (state) {
    case GilState::kReleased:
      return "released";
    case GilState::kWaiting:
      return "waiting";
    case GilState::kHolding:
      return "holding";
  }
  return "unknown";
}

Analysis Analyze(const RunTrace& trace) {
  Analysis analysis;
  analysis.start_ns = trace.start_ns;
  analysis.end_ns = std::max(trace.end_ns, trace.start_ns);
  const std::uint64_t window = analysis.end_ns - analysis.start_ns;
  analysis.wall_s = static_cast<double>(window) / kNsPerSecond;

  const GilSlots slots = MakeGilSlots(trace.gils);
  analysis.gils.resize(trace.gils.size());
  for (std::size_t g = 0; g < trace.gils.size(); ++g) {
    const GilInfo& info = trace.gils[g];
    GilStats& gil = analysis.gils[g];
    gil.id = info.id;
    gil.interpreter = info.interpreter;
    gil.cpython_switches = info.cpython_switch_end >= info.cpython_switch_start
                               ? info.cpython_switch_end - info.cpython_switch_start
                               : 0;
  }

  analysis.events_dropped = trace.dropped_no_slot;
  // Count first so each list is allocated once (see SweepGils).
  std::array<std::size_t, kGilValues> acquired_events{};
  for (const ThreadTrace& in : trace.threads) {
    for (const Event& e : in.events) acquired_events[e.gil] += e.kind == EventKind::kAcquired;
  }
  std::vector<std::vector<Acquisition>> acquisitions(trace.gils.size());
  for (std::size_t g = 0; g < kGilValues; ++g) {
    if (slots[g] != kNoSlot) acquisitions[static_cast<std::size_t>(slots[g])].reserve(acquired_events[g]);
  }
  std::vector<std::uint64_t> latencies;
  ThreadWalker walker(analysis.start_ns, analysis.end_ns, slots, acquisitions, analysis.gils, latencies);
  analysis.threads.resize(trace.threads.size());
  for (std::size_t i = 0; i < trace.threads.size(); ++i) {
    const ThreadTrace& in = trace.threads[i];
    ThreadStats& out = analysis.threads[i];
    out.name = in.name;
    out.native_id = in.native_id;
    out.pid = in.pid;
    analysis.events_recorded += in.events.size();
    analysis.events_dropped += in.dropped;
    analysis.events_unknown_gil += walker.Walk(in, static_cast<std::uint32_t>(i), out);
  }

  for (std::size_t g = 0; g < trace.gils.size(); ++g) {
    analysis.gils[g].acquisitions = acquisitions[g].size();
    analysis.gils[g].switches = CountSwitches(acquisitions[g], trace.gils[g].holder_tstate_at_start);
    std::vector<Acquisition>().swap(acquisitions[g]);  // free before the sweep allocates
  }

  SweepGils(slots, walker, analysis.start_ns, analysis.end_ns, analysis);
  for (GilStats& gil : analysis.gils) {
    gil.busy_fraction = Fraction(gil.busy_ns, window);
    gil.contended_fraction = Fraction(gil.contended_ns, window);
  }
  return analysis;
}

}  // namespace gilscope::report
