// The in-memory analysis gilscope used before it streamed (issue 13), kept
// as the oracle the streaming Analyze() is tested against: it walks each
// thread's events into a full list of intervals, then sweeps all of them at
// once; percentiles are exact (nth_element over every sample), the switch
// count a sort of every acquisition. Obviously right and O(events) in
// memory, which is why it is only a test now.
//
// ReferenceAnalyzeWindow(trace, start, end) gives what AnalyzeWindow() gives
// (no activity series, no phases), every interval kept.

#include "reference_analysis.h"

#include "report/huge_pages.h"
#include <algorithm>
#include <array>
#include <climits>
#include <functional>
#include <queue>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>

namespace gilscope::report::reference {
namespace {

using recorder::Event;
using recorder::EventKind;

constexpr double kNsPerSecond = 1e9;
constexpr double kNsPerMs = 1e6;
// Events name their GIL with a uint8_t, so 256 GILs at most can be told apart.
constexpr std::size_t kGilValues = 256;
constexpr int kNoSlot = -1;
constexpr const char* kThreadExitName = "<thread exit>";

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
  std::uint64_t ts = 0;      // raw event time (CPython's counter window)
  std::uint64_t tstate = 0;  // the thread's PyThreadState at that moment
  std::uint32_t thread = 0;
  std::uint32_t seq = 0;     // position in the thread's stream
  std::uint64_t t = 0;       // the time analysis reads it at (clipped, non-decreasing): the order
  // Not an acquisition: a release whose thread state differs from the one
  // that acquired (drop_gil's last_holder fix-up after PyThreadState_Swap).
  // It changes the last holder without counting a switch.
  bool fixup = false;
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

// Median (nearest rank) of `samples` in ms; 0 when empty. Reorders them.
double MedianMs(std::vector<std::uint64_t>& samples) {
  if (samples.empty()) return 0;
  const auto mid = samples.begin() + static_cast<std::ptrdiff_t>(NearestRank(50, samples.size()) - 1);
  std::nth_element(samples.begin(), mid, samples.end());
  return static_cast<double>(*mid) / kNsPerMs;
}

// Resolves (pid, code id, line) of kFrame events to Analysis::sites
// indices, creating each site once. Code ids are per process, so a thread's
// frames are named by its own process's code; a forked child that could not
// name its code (killed before it wrote its names) falls back to its
// parent's, which it inherited; entries with pid 0 (older files) match any
// process. Two code objects with the same qualname, file and line (a module
// reloaded, a function redefined, the same code in two processes) share one
// site, so a report never lists the same line twice.
class SiteTable {
 public:
  SiteTable(const std::vector<CodeInfo>& code, const std::vector<ProcessInfo>& processes,
            std::vector<CodeSite>& sites)
      : code_(code), sites_(sites) {
    code_index_.reserve(code.size());
    for (std::size_t i = 0; i < code.size(); ++i) code_index_[code[i].id].push_back(i);
    for (const ProcessInfo& p : processes) {
      if (p.role == "fork") fork_parent_[p.pid] = p.parent_pid;
    }
    sites_.push_back({"<unknown>", "", 0});
  }

  // The site of a hold that ended with its thread (kThreadExit, or its
  // GIL's window closing under it: the process or interpreter ended):
  // "<thread exit>", created the first time it is needed.
  std::uint32_t ThreadExitSite() {
    std::string key = kThreadExitName;
    key.append(2, '\0');
    key += "0";
    const auto [it, inserted] = by_name_.emplace(std::move(key), static_cast<std::uint32_t>(sites_.size()));
    if (inserted) sites_.push_back({kThreadExitName, "", 0});
    return it->second;
  }

  std::uint32_t Resolve(std::uint32_t pid, std::uint64_t code_id, std::uint32_t line) {
    // A thread usually releases from the same place many times in a row
    // (a loop calling sleep, a worker forced off in its hot loop).
    if (has_last_ && code_id == last_code_ && line == last_line_ && pid == last_pid_) return last_site_;
    const FrameKey key{code_id, line, pid};
    auto found = by_frame_.find(key);
    std::uint32_t site;
    if (found != by_frame_.end()) {
      site = found->second;
    } else {
      CodeSite named;
      if (const CodeInfo* code = Find(pid, code_id)) {
        named.function = code->function;
        named.file = code->file;
      } else {
        named.function = "<unknown>";
      }
      named.line = line > static_cast<std::uint32_t>(INT_MAX) ? 0 : static_cast<int>(line);
      std::string name_key = named.function;
      name_key.push_back('\0');
      name_key += named.file;
      name_key.push_back('\0');
      name_key += std::to_string(named.line);
      const auto [it, inserted] = by_name_.emplace(std::move(name_key), static_cast<std::uint32_t>(sites_.size()));
      if (inserted) sites_.push_back(std::move(named));
      site = it->second;
      by_frame_.emplace(key, site);
    }
    has_last_ = true;
    last_code_ = code_id;
    last_line_ = line;
    last_pid_ = pid;
    last_site_ = site;
    return site;
  }

 private:
  struct FrameKey {
    std::uint64_t code;
    std::uint32_t line;
    std::uint32_t pid;
    bool operator==(const FrameKey& o) const { return code == o.code && line == o.line && pid == o.pid; }
  };
  struct FrameHash {
    std::size_t operator()(const FrameKey& k) const {
      return std::hash<std::uint64_t>()(k.code * 0x9E3779B97F4A7C15ull ^ (std::uint64_t{k.pid} << 32 | k.line));
    }
  };

  // The code named `id` in process `pid`, its fork ancestors, or any (pid 0).
  const CodeInfo* Find(std::uint32_t pid, std::uint64_t id) const {
    const auto found = code_index_.find(id);
    if (found == code_index_.end()) return nullptr;
    auto in = [&](std::uint32_t p) -> const CodeInfo* {
      for (std::size_t i : found->second) {
        if (code_[i].pid == p) return &code_[i];
      }
      return nullptr;
    };
    std::uint32_t p = pid;
    for (int depth = 0; depth < 64; ++depth) {  // bounded: a corrupt file may loop
      if (const CodeInfo* c = in(p)) return c;
      const auto parent = fork_parent_.find(p);
      if (parent == fork_parent_.end()) break;
      p = parent->second;
    }
    return pid != 0 ? in(0) : nullptr;
  }

  const std::vector<CodeInfo>& code_;
  std::vector<CodeSite>& sites_;
  std::unordered_map<std::uint64_t, std::vector<std::size_t>> code_index_;
  std::unordered_map<std::uint32_t, std::uint32_t> fork_parent_;
  std::unordered_map<FrameKey, std::uint32_t, FrameHash> by_frame_;
  std::unordered_map<std::string, std::uint32_t> by_name_;
  bool has_last_ = false;
  std::uint64_t last_code_ = 0;
  std::uint32_t last_line_ = 0;
  std::uint32_t last_pid_ = 0;
  std::uint32_t last_site_ = kUnknownSite;
};

// Per-thread time by site: a dense array over all sites, and the list of
// entries touched so that clearing it between threads costs only those.
class SiteTotals {
 public:
  void Add(std::uint32_t site, std::uint64_t ns) {
    if (site >= ns_.size()) ns_.resize(static_cast<std::size_t>(site) + 1, 0);
    if (ns_[site] == 0) touched_.push_back(site);
    ns_[site] += ns;
  }

  // Moves the totals out, longest first, and clears them.
  std::vector<SiteTime> Take(const std::vector<CodeSite>& sites) {
    std::vector<SiteTime> out;
    out.reserve(touched_.size());
    for (std::uint32_t site : touched_) {
      const CodeSite& named = sites[site];
      out.push_back({site, named.function, named.file, named.line, ns_[site],
                     static_cast<double>(ns_[site]) / kNsPerSecond});
      ns_[site] = 0;
    }
    touched_.clear();
    std::sort(out.begin(), out.end(), [](const SiteTime& a, const SiteTime& b) {
      if (a.ns != b.ns) return a.ns > b.ns;
      if (a.function != b.function) return a.function < b.function;
      if (a.file != b.file) return a.file < b.file;
      return a.line < b.line;
    });
    return out;
  }

 private:
  std::vector<std::uint64_t> ns_;
  std::vector<std::uint32_t> touched_;
};

// The state machine of one thread's stream. Owns nothing; writes into the
// ThreadStats it was given and into the per-GIL accumulators.
class ThreadWalker {
 public:
  ThreadWalker(std::uint64_t window_start, std::uint64_t window_end, const GilSlots& slots,
               std::vector<std::vector<Acquisition>>& acquisitions,
               std::vector<GilStats>& gil_stats, std::vector<std::uint64_t>& latencies, SiteTable& site_table,
               const std::vector<CodeSite>& sites, const std::vector<std::string>& marker_names,
               std::vector<Marker>& markers, std::vector<std::vector<std::uint64_t>>& drop_times)
      : window_start_(window_start),
        window_end_(window_end),
        slots_(slots),
        acquisitions_(acquisitions),
        gil_stats_(gil_stats),
        latencies_(latencies),
        site_table_(site_table),
        sites_(sites),
        marker_names_(marker_names),
        markers_(markers),
        drop_times_(drop_times) {}

  // Frees the scratch lists (after the last Walk): at 10M events they hold
  // ~55 MB that the GIL sweep can use.
  void ReleaseScratch() {
    std::vector<std::uint64_t>().swap(latencies_);
    std::vector<std::uint64_t>().swap(stretch_lengths_);
    std::vector<std::uint64_t>().swap(io_latencies_);
  }

  // Holding / waiting intervals stored by all Walk() calls on one GIL.
  std::size_t HoldingIntervals(std::size_t gil) const { return holding_intervals_[gil]; }
  std::size_t WaitingIntervals(std::size_t gil) const { return waiting_intervals_[gil]; }

  // Returns how many of the thread's events named an unknown GIL.
  // `acquired` and `requested`: its kAcquired and kRequest events, which
  // bound how many holds, waits and released stretches it can have.
  std::uint64_t Walk(const ThreadTrace& in, std::uint32_t index, std::size_t acquired, std::size_t requested,
                     ThreadStats& out) {
    out_ = &out;
    index_ = index;
    state_ = GilState::kReleased;
    gil_ = 0;
    state_start_ = window_start_;
    held_by_gil_.fill(0);
    latencies_.clear();
    stretch_lengths_.clear();
    io_latencies_.clear();
    // A hold or a completed wait starts with a kAcquired; a released
    // stretch ends with a request (a folded one is a kAcquired). Sized once,
    // the scratch never regrows mid-walk (and has room for the holds after).
    ReserveHuge(latencies_, acquired);
    ReserveHuge(io_latencies_, acquired);
    ReserveHuge(stretch_lengths_, requested + acquired);
    regions_.clear();
    frame_site_ = kUnknownSite;
    closing_site_ = kUnknownSite;
    stretch_site_ = kUnknownSite;
    stretch_voluntary_ = false;
    std::uint64_t unknown_gil = 0;
    std::uint64_t tstate = 0;
    std::uint64_t acquired_tstate = 0;  // tstate of the thread's latest acquisition
    std::uint64_t wait_start = 0;
    // The running wait began on the way back from a blocking call and found
    // the GIL held (ThreadStats::io_waits).
    bool io_wait = false;
    std::uint64_t cursor = 0;  // latest time seen: keeps time non-decreasing
    bool started = false;
    bool exited = false;

    // Each timed event closes at most one interval, plus the final close.
    // Capacity left unused (timeouts, thread states) is never written, so it
    // costs address space, not resident memory; and no regrowth copies.
    ReserveHuge(out.intervals, in.events.size() + 1);
    const std::size_t n = in.events.size();
    // A kAcquired with kFlagRequestFolded stands for its kRequest and
    // itself: the request is replayed first (same seq), then the acquisition.
    bool replaying_request = false;
    Event request;
    for (std::size_t seq = 0; seq < n && !exited; ++seq) {
      const Event* ep = &in.events[seq];
      if (ep->kind == EventKind::kAcquired && (ep->flags & recorder::kFlagRequestFolded) != 0) {
        replaying_request = !replaying_request;
        if (replaying_request) {
          request = Event{ep->ts - std::min<std::uint64_t>(ep->aux, ep->ts), EventKind::kRequest, ep->gil, 0, 0};
          ep = &request;
          --seq;  // this acquisition again, next round (unsigned wrap-around is fine)
        }
      }
      const Event& e = *ep;
      if (e.kind == EventKind::kThreadState) {
        tstate = e.ts;
        continue;
      }
      if (e.kind == EventKind::kFrame) {
        frame_site_ = site_table_.Resolve(in.pid, e.ts, e.aux);
        continue;
      }
      if (IsMarker(e.kind)) {
        if (e.ts > window_end_) break;  // the same rule as for timed events
        Mark(e, std::max(e.ts, cursor));
        continue;
      }
      if (!IsTimed(e.kind)) continue;  // a kind this build does not know
      const bool at_start = e.kind == EventKind::kAcquired && (e.flags & recorder::kFlagAtStart) != 0;
      // The synthetic acquisition stands for "held when the GIL's window
      // opened" (the run's, or later for a subinterpreter's or a forked
      // child's GIL), whatever its ts says.
      std::uint64_t raw = e.ts;
      if (at_start) {
        raw = window_start_;
        if (slots_[e.gil] != kNoSlot) raw = gil_stats_[static_cast<std::size_t>(slots_[e.gil])].start_ns;
      }
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
            // The blocking call that followed a voluntary release is over.
            if (state_ == GilState::kReleased && stretch_voluntary_ && t > state_start_) {
              stretch_lengths_.push_back(t - state_start_);
            }
            // A replayed request is a folded one: the GIL was free.
            io_wait = state_ == GilState::kReleased && stretch_voluntary_ && !replaying_request;
            Enter(GilState::kWaiting, e.gil, t);
            wait_start = t;
          }
          break;
        case EventKind::kWaitTimeout:
          if (inside && (e.flags & recorder::kFlagDropRequest) != 0 && slot != kNoSlot) {
            ++gil_stats_[static_cast<std::size_t>(slot)].drop_requests;
            drop_times_[static_cast<std::size_t>(slot)].push_back(t);
          }
          if (state_ != GilState::kWaiting) {  // its kRequest was dropped
            io_wait = false;
            Enter(GilState::kWaiting, e.gil, t);
            wait_start = t;
          }
          break;
        case EventKind::kAcquired:
          if (inside && !at_start) {
            ++out.acquisitions;
            if (state_ == GilState::kWaiting && gil_ == e.gil) {
              latencies_.push_back(t - wait_start);
              if (io_wait) io_latencies_.push_back(t - wait_start);
            }
            if (slot != kNoSlot) {
              acquisitions_[static_cast<std::size_t>(slot)].push_back(
                  {raw, tstate, index, static_cast<std::uint32_t>(seq), t});
            }
          }
          acquired_tstate = tstate;
          io_wait = false;
          Enter(GilState::kHolding, e.gil, t);
          // A frame names the release right after it; one left over from a
          // release that was dropped must not name a later one.
          frame_site_ = kUnknownSite;
          break;
        case EventKind::kReleased: {
          const bool voluntary = (e.flags & recorder::kFlagForced) == 0;
          if (inside) ++(voluntary ? out.voluntary_releases : out.forced_releases);
          if (inside && slot != kNoSlot && tstate != acquired_tstate) {
            Acquisition fixup{raw, tstate, index, static_cast<std::uint32_t>(seq), t};
            fixup.fixup = true;
            acquisitions_[static_cast<std::size_t>(slot)].push_back(fixup);
          }
          if (state_ != GilState::kReleased) {
            // The hold (if it is one) ends here and the frame before this
            // release names it, and the call site the released stretch is
            // spent in when the release was voluntary.
            closing_site_ = frame_site_;
            closing_forced_ = !voluntary;
            Enter(GilState::kReleased, e.gil, t);
            stretch_site_ = frame_site_;
            stretch_voluntary_ = voluntary;
          }
          frame_site_ = kUnknownSite;
          break;
        }
        case EventKind::kThreadExit:
          if (state_ == GilState::kHolding) closing_site_ = site_table_.ThreadExitSite();
          Close(t);
          out.lifetime_end_ns = t;
          exited = true;
          break;
        case EventKind::kThreadState:
        case EventKind::kFrame:
        case EventKind::kMark:
        case EventKind::kRegionBegin:
        case EventKind::kRegionEnd:
          break;  // handled above
      }
    }

    if (!started) {
      out.lifetime_start_ns = window_start_;
      out.lifetime_end_ns = window_start_;
    } else if (!exited) {
      // A GIL's own window closes when its process exits (a forked child
      // calls _exit holding the GIL, with no kThreadExit) or its interpreter
      // is finalized. A thread whose last state was on such a GIL, with no
      // event after, ended there: running it on to the run's end made a
      // child's thread hold its GIL for longer than the GIL existed.
      std::uint64_t end = window_end_;
      if (const int slot = slots_[gil_]; slot != kNoSlot) {
        end = std::clamp(gil_stats_[static_cast<std::size_t>(slot)].end_ns, cursor, window_end_);
      }
      if (state_ == GilState::kHolding && end < window_end_) closing_site_ = site_table_.ThreadExitSite();
      Close(end);
      out.lifetime_end_ns = end;
    }
    out.exited = exited;
    out.state_at_end = state_;
    // Regions still open end with the thread (or the window).
    while (!regions_.empty()) {
      Marker m = std::move(regions_.back());
      regions_.pop_back();
      m.end_ns = std::max(m.start_ns, out.lifetime_end_ns);
      m.open = true;
      markers_.push_back(std::move(m));
    }
    out.io_waits = io_latencies_.size();
    out.io_wait_p50_ms = MedianMs(io_latencies_);
    out.voluntary_stretches = stretch_lengths_.size();
    out.voluntary_released_p50_ms = MedianMs(stretch_lengths_);
    // Every hold of the walk is one holding interval (Close stores each
    // non-empty one): their lengths go through the stretch scratch, free
    // again, rather than a list of their own filled during the walk.
    stretch_lengths_.clear();
    for (const StateInterval& iv : out.intervals) {
      if (iv.state == GilState::kHolding) stretch_lengths_.push_back(iv.end_ns - iv.start_ns);
    }
    out.holds = stretch_lengths_.size();
    out.hold_p50_ms = MedianMs(stretch_lengths_);
    out.held_by_function = held_by_site_.Take(sites_);
    out.released_at = released_by_site_.Take(sites_);
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
      case EventKind::kFrame:
      case EventKind::kMark:
      case EventKind::kRegionBegin:
      case EventKind::kRegionEnd:
        return false;
    }
    return false;
  }

  static bool IsMarker(EventKind kind) {
    return kind == EventKind::kMark || kind == EventKind::kRegionBegin || kind == EventKind::kRegionEnd;
  }

  std::string MarkerName(std::uint32_t aux) const {
    return aux < marker_names_.size() ? marker_names_[aux] : "marker " + std::to_string(aux);
  }

  // A marker event at raw time t (already non-decreasing, maybe before the
  // window). Instants outside the window are dropped; regions are clipped.
  void Mark(const Event& e, std::uint64_t t) {
    switch (e.kind) {
      case EventKind::kMark:
        if (t >= window_start_) {
          markers_.push_back({MarkerName(e.aux), index_, t, t, false, false,
                              static_cast<std::uint32_t>(regions_.size())});
        }
        break;
      case EventKind::kRegionBegin:
        regions_.push_back({MarkerName(e.aux), index_, std::max(t, window_start_), 0, true, false,
                            static_cast<std::uint32_t>(regions_.size())});
        break;
      case EventKind::kRegionEnd:
        // An end with no begin (its begin was dropped) closes nothing.
        if (!regions_.empty()) {
          Marker m = std::move(regions_.back());
          regions_.pop_back();
          if (t >= window_start_) {
            m.end_ns = std::max(t, m.start_ns);
            markers_.push_back(std::move(m));
          }
        }
        break;
      default:
        break;
    }
  }

  // Ends the current interval at t (t >= state_start_ by the cursor rule).
  void Close(std::uint64_t t) {
    // Whatever closes a hold other than a kReleased (the window end, an exit,
    // a dropped release) has no frame to name it.
    const std::uint32_t site = closing_site_;
    closing_site_ = kUnknownSite;
    const bool forced = closing_forced_;
    closing_forced_ = false;
    if (t <= state_start_) return;
    const std::uint64_t d = t - state_start_;
    switch (state_) {
      case GilState::kReleased:
        out_->released_ns += d;
        if (stretch_voluntary_) released_by_site_.Add(stretch_site_, d);
        break;
      case GilState::kWaiting:
        out_->waiting_ns += d;
        out_->intervals.push_back({state_start_, t, state_, gil_, false, kUnknownSite});
        ++waiting_intervals_[gil_];
        break;
      case GilState::kHolding:
        out_->held_ns += d;
        held_by_gil_[gil_] += d;
        out_->intervals.push_back({state_start_, t, state_, gil_, forced, site});
        ++holding_intervals_[gil_];
        held_by_site_.Add(site, d);
        if (d > out_->longest_hold.end_ns - out_->longest_hold.start_ns) {
          out_->longest_hold = HoldRecord{state_start_, t, /*blocked_ns=*/0, /*unheeded_ns=*/0, site};
        }
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
    // Only a kReleased starts an attributed released stretch (it sets these
    // again right after); the stretch before a thread's first request is not
    // a blocking call.
    stretch_voluntary_ = false;
    stretch_site_ = kUnknownSite;
  }

  const std::uint64_t window_start_;
  const std::uint64_t window_end_;
  const GilSlots& slots_;
  std::vector<std::vector<Acquisition>>& acquisitions_;
  std::vector<GilStats>& gil_stats_;
  std::vector<std::uint64_t>& latencies_;  // scratch, reused across threads
  SiteTable& site_table_;
  const std::vector<CodeSite>& sites_;
  const std::vector<std::string>& marker_names_;
  std::vector<Marker>& markers_;
  std::vector<std::vector<std::uint64_t>>& drop_times_;  // by GIL slot, in-window drop requests

  // Scratch reused across threads, so a walk allocates only when a thread
  // has more of something than every thread before it.
  std::vector<std::uint64_t> stretch_lengths_;
  std::vector<std::uint64_t> io_latencies_;
  std::vector<Marker> regions_;  // open regions, innermost last
  SiteTotals held_by_site_;
  SiteTotals released_by_site_;

  ThreadStats* out_ = nullptr;
  std::uint32_t index_ = 0;
  // The site of the last kFrame, until the kReleased it describes.
  std::uint32_t frame_site_ = kUnknownSite;
  // The site of the hold being closed by the current kReleased, and
  // whether that release was forced.
  std::uint32_t closing_site_ = kUnknownSite;
  bool closing_forced_ = false;
  // The current released stretch: begun by a voluntary release at stretch_site_?
  std::uint32_t stretch_site_ = kUnknownSite;
  bool stretch_voluntary_ = false;
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
    if (a.t != b.t) return a.t < b.t;
    if (a.thread != b.thread) return a.thread < b.thread;
    return a.seq < b.seq;
  });
  std::uint64_t switches = 0;
  std::uint64_t last_holder = holder_at_start;
  for (const Acquisition& a : acquisitions) {
    if (a.fixup) {
      last_holder = a.tstate;
    } else if (a.tstate != last_holder) {
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
  // The hold that started last and is not over: its waited-under time.
  bool hold_open = false;
  std::uint32_t hold_thread = 0;
  std::uint64_t hold_start = 0;
  std::uint64_t hold_end = 0;
  std::uint32_t hold_site = kUnknownSite;
  std::uint64_t hold_blocked = 0;
};

void Advance(Sweep& sweep, GilStats& gil, std::uint64_t ts) {
  if (ts <= sweep.last_ts) return;
  // Only the part inside the GIL's own window counts: its fractions divide
  // by that window, so time outside it (a wait before a forked child's GIL
  // opened, a hold after it closed) would push them past 100%.
  const std::uint64_t from = std::max(sweep.last_ts, gil.start_ns);
  const std::uint64_t to = std::min(ts, gil.end_ns);
  sweep.last_ts = ts;
  if (to <= from) return;
  const std::uint64_t d = to - from;
  if (sweep.holding > 0) {
    gil.busy_ns += d;
    if (sweep.waiting > 0) {
      gil.contended_ns += d;
      sweep.hold_blocked += d;
    }
  } else if (sweep.waiting > 0) {
    gil.handoff_ns += d;
  }
}

// Ends the sweep's open hold, keeping it as its thread's most blocking hold
// when it kept the GIL longer after a drop request (ties: others waited
// longer under it, then the longer hold). `drops`: the GIL's drop-request
// times, sorted.
void FinishHold(Sweep& sweep, const std::vector<std::uint64_t>& drops, std::vector<ThreadStats>& threads) {
  if (!sweep.hold_open) return;
  sweep.hold_open = false;
  std::uint64_t unheeded = 0;
  const auto first = std::lower_bound(drops.begin(), drops.end(), sweep.hold_start);
  if (first != drops.end() && *first < sweep.hold_end) unheeded = sweep.hold_end - *first;
  HoldRecord& best = threads[sweep.hold_thread].most_blocking_hold;
  const std::uint64_t length = sweep.hold_end - sweep.hold_start;
  const auto key = std::make_tuple(unheeded, sweep.hold_blocked, length);
  if (key > std::make_tuple(best.unheeded_ns, best.blocked_ns, best.end_ns - best.start_ns)) {
    best = HoldRecord{sweep.hold_start, sweep.hold_end, sweep.hold_blocked, unheeded, sweep.hold_site};
  }
}

// Replays the run's Python progress rate against what it could have been
// with parallel GILs (see GilTax in analysis.h), in ns of ideal time.
class IdealClock {
 public:
  IdealClock(std::uint64_t start, int cores) : last_(start), cores_(static_cast<std::uint32_t>(cores)) {}

  void Advance(std::uint64_t ts) {
    if (ts <= last_) return;
    const double d = static_cast<double>(ts - last_);
    if (busy_gils_ == 0) {
      ideal_ns_ += d;  // no Python progress to speed up: I/O, sleep, idle, hand-off
    } else {
      ideal_ns_ += d * static_cast<double>(std::min(busy_gils_, cores_)) /
                   static_cast<double>(std::min(runnable_, cores_));
    }
    last_ = ts;
  }
  // A thread became runnable (+1) or stopped being (-1) on a GIL; a GIL
  // became busy (+1) or idle (-1).
  void Runnable(int delta) { runnable_ = static_cast<std::uint32_t>(static_cast<int>(runnable_) + delta); }
  void Busy(int delta) { busy_gils_ = static_cast<std::uint32_t>(static_cast<int>(busy_gils_) + delta); }
  double IdealNs() const { return ideal_ns_; }

 private:
  std::uint64_t last_;
  const std::uint32_t cores_;  // >= 1
  std::uint32_t runnable_ = 0;
  std::uint32_t busy_gils_ = 0;
  double ideal_ns_ = 0;
};

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
               std::uint64_t window_end, const std::vector<std::vector<std::uint64_t>>& drop_times,
               IdealClock& ideal, Analysis& analysis) {
  if (analysis.gils.empty()) return;
  std::vector<Sweep> sweeps(analysis.gils.size());
  for (std::size_t g = 0; g < analysis.gils.size(); ++g) {
    sweeps[g].last_ts = window_start;
    // Sized up front: at 10M events, regrowing these vectors costs more
    // than the sweep itself. Each wait makes at most two steps.
    const std::uint32_t id = analysis.gils[g].id;
    if (id < kGilValues && slots[id] == static_cast<int>(g)) {
      ReserveHuge(analysis.gils[g].holders, counts.HoldingIntervals(id));
      ReserveHuge(analysis.gils[g].waiting, 2 * counts.WaitingIntervals(id) + 1);
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
  // Threads forced off a GIL that have not asked again yet: still runnable
  // for the ideal clock (see GilTax).
  std::vector<bool> forced_off(analysis.threads.size(), false);
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
  // The thread that just moved usually comes first again (always, when it
  // is the only one left): it then goes on without a trip through the heap.
  // The order is the heap's either way: (time, thread) ascending.
  Entry next{};
  bool have_next = false;
  while (have_next || !heap.empty()) {
    if (!have_next) {
      next = heap.top();
      heap.pop();
    }
    have_next = false;
    const auto [ts, thread] = next;
    Cursor& c = cursors[thread];
    const StateInterval& iv = analysis.threads[thread].intervals[c.interval];
    const auto g = static_cast<std::size_t>(slots[iv.gil]);
    GilStats& gil = analysis.gils[g];
    Sweep& sweep = sweeps[g];
    Advance(sweep, gil, ts);
    ideal.Advance(ts);
    const bool holding = iv.state == GilState::kHolding;
    if (!c.at_end) {
      if (forced_off[thread]) {
        forced_off[thread] = false;  // it was counted as runnable all along
      } else {
        ideal.Runnable(+1);
      }
      if (holding) {
        if (sweep.holding == 0) ideal.Busy(+1);
        ++sweep.holding;
        gil.holders.push_back({iv.start_ns, iv.end_ns, thread});
        FinishHold(sweep, drop_times[g], analysis.threads);
        sweep.hold_open = true;
        sweep.hold_thread = thread;
        sweep.hold_start = iv.start_ns;
        sweep.hold_end = iv.end_ns;
        sweep.hold_site = iv.site;
        sweep.hold_blocked = 0;
      } else {
        ++sweep.waiting;
        StepWaiting(gil.waiting, window_end, ts, sweep.waiting);
      }
      c.at_end = true;
    } else {
      // Forced off: stays runnable until its next interval starts.
      if (holding && iv.forced_end) {
        forced_off[thread] = true;
      } else {
        ideal.Runnable(-1);
      }
      if (holding) {
        --sweep.holding;
        if (sweep.holding == 0) ideal.Busy(-1);
        if (sweep.hold_open && sweep.hold_thread == thread && sweep.hold_start == iv.start_ns) {
          FinishHold(sweep, drop_times[g], analysis.threads);
        }
      } else {
        --sweep.waiting;
        StepWaiting(gil.waiting, window_end, ts, sweep.waiting);
      }
      c.at_end = false;
      ++c.interval;
    }
    if (skip_to_relevant(thread)) {
      const Entry after{boundary(thread), thread};
      if (heap.empty() || after < heap.top()) {
        next = after;
        have_next = true;
      } else {
        heap.push(after);
      }
    } else if (forced_off[thread]) {
      // Forced off and never asked again (it exited): runnable no longer.
      forced_off[thread] = false;
      ideal.Runnable(-1);
    }
  }
  for (std::size_t g = 0; g < sweeps.size(); ++g) FinishHold(sweeps[g], drop_times[g], analysis.threads);
}

// Median hold of each GIL, from its holder slices.
void SetGilHoldMedians(Analysis& analysis) {
  std::vector<std::uint64_t> lengths;
  for (GilStats& gil : analysis.gils) {
    lengths.clear();
    ReserveHuge(lengths, gil.holders.size());
    for (const HolderInterval& h : gil.holders) {
      if (h.end_ns > h.start_ns) lengths.push_back(h.end_ns - h.start_ns);
    }
    gil.holds = lengths.size();
    gil.hold_p50_ms = MedianMs(lengths);
  }
}

int CoresFor(const RunInfo& info) {
  if (info.cpu_count > 0) return info.cpu_count;
  const unsigned here = std::thread::hardware_concurrency();
  return here > 0 ? static_cast<int>(here) : 1;
}

void SetGilTax(const Analysis& analysis, int cores, double ideal_ns, GilTax& tax) {
  tax.cpu_count = cores;
  std::uint64_t waiting = 0, held = 0, max_held = 0;
  for (const ThreadStats& t : analysis.threads) {
    waiting += t.waiting_ns;
    held += t.held_ns;
    max_held = std::max(max_held, t.held_ns);
  }
  tax.waiting_thread_s = static_cast<double>(waiting) / kNsPerSecond;
  const double window = static_cast<double>(analysis.end_ns - analysis.start_ns);
  double ideal = std::max({ideal_ns, static_cast<double>(max_held), static_cast<double>(held) / cores});
  ideal = std::min(ideal, window);
  tax.ideal_wall_s = ideal / kNsPerSecond;
  tax.speedup_bound = ideal > 0 ? window / ideal : 1.0;
}

double Fraction(std::uint64_t part, std::uint64_t whole) {
  return whole == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(whole);
}

}  // namespace

Analysis ReferenceAnalyzeWindow(const RunTrace& trace, std::uint64_t start_ns, std::uint64_t end_ns) {
  Analysis analysis;
  analysis.start_ns = start_ns;
  analysis.end_ns = std::max(end_ns, start_ns);
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
    gil.start_ns = std::clamp(info.start_ns != 0 ? info.start_ns : analysis.start_ns, analysis.start_ns,
                              analysis.end_ns);
    gil.end_ns = std::clamp(info.end_ns != 0 ? info.end_ns : analysis.end_ns, gil.start_ns, analysis.end_ns);
    gil.window_s = static_cast<double>(gil.end_ns - gil.start_ns) / kNsPerSecond;
  }

  analysis.events_dropped = trace.dropped_no_slot;
  // Count first so each list is allocated once (see SweepGils).
  std::array<std::size_t, kGilValues> acquired_events{};
  std::vector<std::size_t> thread_acquired(trace.threads.size()), thread_requested(trace.threads.size());
  for (std::size_t i = 0; i < trace.threads.size(); ++i) {
    for (const Event& e : trace.threads[i].events) {
      acquired_events[e.gil] += e.kind == EventKind::kAcquired;
      thread_acquired[i] += e.kind == EventKind::kAcquired;
      thread_requested[i] += e.kind == EventKind::kRequest;
    }
  }
  std::vector<std::vector<Acquisition>> acquisitions(trace.gils.size());
  for (std::size_t g = 0; g < kGilValues; ++g) {
    if (slots[g] != kNoSlot) ReserveHuge(acquisitions[static_cast<std::size_t>(slots[g])], acquired_events[g]);
  }
  std::vector<std::uint64_t> latencies;
  SiteTable site_table(trace.code, trace.processes, analysis.sites);
  std::vector<std::vector<std::uint64_t>> drop_times(trace.gils.size());
  ThreadWalker walker(analysis.start_ns, analysis.end_ns, slots, acquisitions, analysis.gils, latencies,
                      site_table, analysis.sites, trace.marker_names, analysis.markers, drop_times);
  analysis.threads.resize(trace.threads.size());
  for (std::size_t i = 0; i < trace.threads.size(); ++i) {
    const ThreadTrace& in = trace.threads[i];
    ThreadStats& out = analysis.threads[i];
    out.name = in.name;
    out.native_id = in.native_id;
    out.pid = in.pid;
    out.cpu_s = in.cpu_s;
    analysis.events_recorded += in.events.size();
    analysis.events_dropped += in.dropped;
    analysis.events_unknown_gil +=
        walker.Walk(in, static_cast<std::uint32_t>(i), thread_acquired[i], thread_requested[i], out);
  }
  walker.ReleaseScratch();

  for (std::size_t g = 0; g < trace.gils.size(); ++g) {
    // CPython's counter covers the GIL's own window only.
    std::erase_if(acquisitions[g], [&](const Acquisition& a) {
      return a.ts < analysis.gils[g].start_ns || a.ts > analysis.gils[g].end_ns;
    });
    analysis.gils[g].acquisitions = static_cast<std::uint64_t>(std::count_if(
        acquisitions[g].begin(), acquisitions[g].end(), [](const Acquisition& a) { return !a.fixup; }));
    analysis.gils[g].switches = CountSwitches(acquisitions[g], trace.gils[g].holder_tstate_at_start);
    std::vector<Acquisition>().swap(acquisitions[g]);  // free before the sweep allocates
  }

  const int cores = CoresFor(trace.info);
  IdealClock ideal(analysis.start_ns, cores);
  for (auto& drops : drop_times) std::sort(drops.begin(), drops.end());
  SweepGils(slots, walker, analysis.start_ns, analysis.end_ns, drop_times, ideal, analysis);
  ideal.Advance(analysis.end_ns);
  for (GilStats& gil : analysis.gils) {
    const std::uint64_t own = gil.end_ns - gil.start_ns;
    gil.busy_fraction = Fraction(gil.busy_ns, own);
    gil.contended_fraction = Fraction(gil.contended_ns, own);
    gil.handoff_fraction = Fraction(gil.handoff_ns, own);
  }
  SetGilHoldMedians(analysis);
  SetGilTax(analysis, cores, ideal.IdealNs(), analysis.gil_tax);

  std::stable_sort(analysis.markers.begin(), analysis.markers.end(), [](const Marker& a, const Marker& b) {
    if (a.start_ns != b.start_ns) return a.start_ns < b.start_ns;
    if (a.thread != b.thread) return a.thread < b.thread;
    return a.depth < b.depth;
  });
  return analysis;
}

}  // namespace gilscope::report::reference
