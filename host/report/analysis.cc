// Analyze(): one streaming pass over every thread's events at once, in time
// order, in memory bounded by the number of threads and GILs, never by the
// number of events.
//
// Each thread's stream is read through an EventSource cursor by a
// ThreadStream, the state machine below, which turns events into that
// thread's waiting and holding intervals one at a time. A sweep line pulls
// the next interval boundary of every thread through a heap, so all threads'
// intervals are visited in time order, and keeps each GIL's figures as it
// goes (busy, contended and hand-off time, holders, the waiting count, the
// switch counter replayed in acquisition order, the most blocking hold).
// Percentiles come from QuantileSketch (exact up to 2,048 samples per
// figure, within 1% beyond). Only the timeline the writers draw grows with
// the run, and past kExactTimelineEvents it is aggregated at a width chosen
// so that it stays under about a million pieces (Analysis::
// timeline_merge_below_ns).
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
//   - kFrame carries a code id, not a time; it names the code running at the
//     kReleased that follows it, and is forgotten after that release (a
//     release with no kFrame right before it goes to "<unknown>").
//   - kMark / kRegionBegin / kRegionEnd are timed but leave the GIL state
//     alone; regions pair up per thread as a stack.
//   - A kAcquired with kFlagRequestFolded (take_gil found the GIL free) is
//     read as its kRequest, `aux` ns earlier, followed by the kAcquired.
//   - Gaps left by dropped events are bridged by trusting the next event: a
//     kAcquired with no kRequest still starts a hold (but yields no latency),
//     a kWaitTimeout outside a wait starts one, a kRequest while holding ends
//     the hold. Counts (acquisitions, releases) are of events actually seen.
//
// Why the sweep sees everything in order although each thread is read
// lazily: a thread's next boundary in the heap is the start (or end) of an
// interval it has already closed, so its cursor has read every event before
// that boundary. When the sweep is at time T, every thread has therefore
// read all its events before T: all acquisitions and drop requests before T
// are known, and the ones the sweep consumes (those before T) come out in
// exactly the order a sort of all of them would give.

#include "report/analysis.h"
#include "report/huge_pages.h"
#include "report/phase_reference.h"
#include "report/quantile_sketch.h"

#include <algorithm>
#include <array>
#include <climits>
#include <deque>
#include <functional>
#include <memory>
#include <queue>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
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
constexpr const char* kThreadExitName = "<thread exit>";
// Events a ThreadStream reads from its cursor at a time.
constexpr std::size_t kReadBatch = 512;
// An aggregated timeline piece grows to at most this many merge widths, so
// a thread that cycles fast all run long still shows where its time went.
constexpr std::uint64_t kMaxPieceWidths = 8;

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

// One in-window acquisition, kept until the sweep passes its time to replay
// CPython's switch counter in acquisition order.
struct Acquisition {
  // The time analysis reads it at (clipped, non-decreasing per thread): the
  // replay's order. A thread's clock never runs back, but a stream damaged
  // by dropped events may seem to, and only this time is known to be seen
  // in order by the sweep.
  std::uint64_t t = 0;
  std::uint64_t ts = 0;      // raw event time: CPython's counter window
  std::uint64_t tstate = 0;  // the thread's PyThreadState at that moment
  std::uint32_t thread = 0;
  std::uint32_t slot = 0;    // the GIL's index in Analysis::gils
  std::uint64_t seq = 0;     // position in the thread's stream
  // Not an acquisition: a release whose thread state differs from the one
  // that acquired (drop_gil's last_holder fix-up after PyThreadState_Swap).
  // It changes the last holder without counting a switch.
  bool fixup = false;
};

// Heap order: the earliest first; two threads cannot acquire one GIL in the
// same nanosecond, so ties only break deterministically (thread, then stream
// position).
struct LaterAcquisition {
  bool operator()(const Acquisition& a, const Acquisition& b) const {
    return std::tie(a.t, a.thread, a.seq) > std::tie(b.t, b.thread, b.seq);
  }
};

double Ms(std::uint64_t ns) { return static_cast<double>(ns) / kNsPerMs; }

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


// Per-thread time by site, for the attribution tables.
class SiteTotals {
 public:
  void Add(std::uint32_t site, std::uint64_t ns) { ns_[site] += ns; }

  // The totals, longest first.
  std::vector<SiteTime> Take(const std::vector<CodeSite>& sites) {
    std::vector<SiteTime> out;
    out.reserve(ns_.size());
    for (const auto& [site, ns] : ns_) {
      if (ns == 0) continue;
      const CodeSite& named = sites[site];
      out.push_back({site, named.function, named.file, named.line, ns, static_cast<double>(ns) / kNsPerSecond});
    }
    ns_.clear();
    std::sort(out.begin(), out.end(), [](const SiteTime& a, const SiteTime& b) {
      if (a.ns != b.ns) return a.ns > b.ns;
      if (a.function != b.function) return a.function < b.function;
      if (a.file != b.file) return a.file < b.file;
      return a.line < b.line;
    });
    return out;
  }

 private:
  std::unordered_map<std::uint32_t, std::uint64_t> ns_;
};

// The markers an analysis keeps, in memory bounded by kMaxKeptMarkers and
// the run's length, not by how many markers the script set: the first
// kMaxKeptMarkers in report order, in a heap whose top is the latest of
// them, and aside, the later ones that may set a phase boundary (outermost
// regions of 100 ms or more: one per 100 ms per thread at most, as a
// thread's outermost regions do not overlap).
class MarkerKeeper {
 public:
  void Add(Marker m) {
    Keyed k{std::move(m), met_++};
    if (kept_.size() < kMaxKeptMarkers) {
      kept_.push_back(std::move(k));
      std::push_heap(kept_.begin(), kept_.end(), Earlier);
      return;
    }
    if (Earlier(k, kept_.front())) {
      std::pop_heap(kept_.begin(), kept_.end(), Earlier);
      std::swap(k, kept_.back());
      std::push_heap(kept_.begin(), kept_.end(), Earlier);
    }
    ++left_out_;
    if (MaySetPhaseBoundary(k.marker)) aside_.push_back(std::move(k));
  }

  std::uint64_t left_out() const { return left_out_; }

  // The kept markers in report order, into `markers`. When markers that
  // may set a phase boundary were set aside, and `for_phases` is given, it
  // gets every such marker, kept or set aside, in that order (FindPhases
  // reads nothing else), and Finish returns true.
  bool Finish(std::vector<Marker>& markers, std::vector<Marker>* for_phases) {
    std::sort_heap(kept_.begin(), kept_.end(), Earlier);
    const bool aside = for_phases != nullptr && !aside_.empty();
    if (aside) {
      std::vector<Keyed> all;
      for (const Keyed& k : kept_) {
        if (MaySetPhaseBoundary(k.marker)) all.push_back(k);
      }
      for (Keyed& k : aside_) all.push_back(std::move(k));
      std::sort(all.begin(), all.end(), Earlier);
      for (Keyed& k : all) for_phases->push_back(std::move(k.marker));
    }
    markers.clear();
    markers.reserve(kept_.size());
    for (Keyed& k : kept_) markers.push_back(std::move(k.marker));
    kept_.clear();
    aside_.clear();
    return aside;
  }

 private:
  struct Keyed {
    Marker marker;
    std::uint64_t met = 0;  // the order Add saw it in
  };
  // Report order: start, thread, outer region first, then the order met
  // (what a stable sort of every marker gives).
  static bool Earlier(const Keyed& a, const Keyed& b) {
    if (a.marker.start_ns != b.marker.start_ns) return a.marker.start_ns < b.marker.start_ns;
    if (a.marker.thread != b.marker.thread) return a.marker.thread < b.marker.thread;
    if (a.marker.depth != b.marker.depth) return a.marker.depth < b.marker.depth;
    return a.met < b.met;
  }

  std::vector<Keyed> kept_;
  std::vector<Keyed> aside_;
  std::uint64_t met_ = 0;
  std::uint64_t left_out_ = 0;
};

// What every thread's stream feeds besides its own ThreadStats.
struct Shared {
  std::uint64_t window_start = 0;
  std::uint64_t window_end = 0;
  GilSlots slots{};
  std::vector<GilStats>* gils = nullptr;
  SiteTable* site_table = nullptr;
  const std::vector<CodeSite>* sites = nullptr;
  const std::vector<std::string>* marker_names = nullptr;
  MarkerKeeper* markers = nullptr;
  // Acquisitions read but not yet replayed, earliest on top.
  std::priority_queue<Acquisition, std::vector<Acquisition>, LaterAcquisition> acquisitions;
  // In-window drop requests by GIL slot, read but not yet passed by the sweep.
  std::vector<std::multiset<std::uint64_t>> drops;
  // Null: no activity series.
  ActivitySeries* activity = nullptr;
  bool keep_timeline = true;
  std::uint64_t merge_below_ns = 0;  // 0: keep every interval
};

// The state machine of one thread's stream: reads its events through a
// cursor, a batch at a time, and hands out its waiting and holding intervals
// in time order. Writes the thread's figures into its ThreadStats as it goes
// and completes them when the stream ends.
class ThreadStream {
 public:
  ThreadStream(Shared& shared, const EventSource& source, std::size_t stream, ThreadStats& out)
      : shared_(shared),
        source_(source),
        stream_(stream),
        index_(static_cast<std::uint32_t>(stream)),
        pid_(source.meta().threads[stream].pid),
        out_(out) {
    state_start_ = shared.window_start;
  }

  // Makes the front of the queue an interval on a GIL of the run, reading
  // as needed (intervals on unknown GILs are passed over: they count in the
  // thread's own figures only). False once the stream is over.
  bool NextRelevant() {
    for (;;) {
      while (!pending_.empty()) {
        if (shared_.slots[pending_.front().gil] != kNoSlot) return true;
        pending_.pop_front();
      }
      if (finished_) return false;
      Fill();
    }
  }
  const StateInterval& front() const { return pending_.front(); }
  void PopFront() { pending_.pop_front(); }
  std::uint64_t unknown_gil() const { return unknown_gil_; }

 private:
  // Reads events until an interval is queued or the stream is over.
  void Fill() {
    while (pending_.empty() && !finished_) {
      if (pos_ == len_) {
        if (!stopped_) {
          if (!cursor_) {
            cursor_ = source_.Open(stream_);
            buffer_.resize(kReadBatch);
          }
          len_ = cursor_->Read(buffer_.data(), buffer_.size());
          pos_ = 0;
        }
        if (stopped_ || len_ == 0) {
          Finish();
          return;
        }
      }
      const Event e = buffer_[pos_++];
      const std::uint64_t seq = seq_++;
      if (e.kind == EventKind::kAcquired && (e.flags & recorder::kFlagRequestFolded) != 0) {
        // Stands for its kRequest and itself: the request first.
        replaying_request_ = true;
        Step(Event{e.ts - std::min<std::uint64_t>(e.aux, e.ts), EventKind::kRequest, e.gil, 0, 0}, seq);
        replaying_request_ = false;
      }
      if (!stopped_) Step(e, seq);
      if (stopped_) pos_ = len_;  // nothing after this event counts
    }
  }

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

  void Step(const Event& e, std::uint64_t seq) {
    const std::uint64_t window_start = shared_.window_start, window_end = shared_.window_end;
    if (e.kind == EventKind::kThreadState) {
      tstate_ = e.ts;
      return;
    }
    if (e.kind == EventKind::kFrame) {
      frame_site_ = shared_.site_table->Resolve(pid_, e.ts, e.aux);
      return;
    }
    if (IsMarker(e.kind)) {
      if (e.ts > window_end) {  // the same rule as for timed events
        stopped_ = true;
        return;
      }
      Mark(e, std::max(e.ts, cursor_ts_));
      return;
    }
    if (!IsTimed(e.kind)) return;  // a kind this build does not know
    const bool at_start = e.kind == EventKind::kAcquired && (e.flags & recorder::kFlagAtStart) != 0;
    // The synthetic acquisition stands for "held when the GIL's window
    // opened" (the run's, or later for a subinterpreter's or a forked
    // child's GIL), whatever its ts says.
    std::uint64_t raw = e.ts;
    if (at_start) {
      raw = window_start;
      if (shared_.slots[e.gil] != kNoSlot) raw = (*shared_.gils)[static_cast<std::size_t>(shared_.slots[e.gil])].start_ns;
    }
    if (raw > window_end) {
      stopped_ = true;
      return;
    }
    const bool inside = raw >= window_start;
    std::uint64_t t = std::max(raw, window_start);
    if (!started_) {
      started_ = true;
      out_.lifetime_start_ns = t;
      state_start_ = t;
      cursor_ts_ = t;
      StartActivity();
    }
    t = std::max(t, cursor_ts_);
    cursor_ts_ = t;

    int slot = kNoSlot;
    if (e.kind != EventKind::kThreadExit) {
      slot = shared_.slots[e.gil];
      if (slot == kNoSlot) ++unknown_gil_;
    }

    switch (e.kind) {
      case EventKind::kRequest:
        // A second request for the same GIL means the acquire/release in
        // between was dropped; keep the wait that is already running.
        if (state_ != GilState::kWaiting || gil_ != e.gil) {
          // The blocking call that followed a voluntary release is over.
          if (state_ == GilState::kReleased && stretch_voluntary_ && t > state_start_) {
            stretch_lengths_.Add(t - state_start_);
          }
          // A replayed request is a folded one: the GIL was free.
          io_wait_ = state_ == GilState::kReleased && stretch_voluntary_ && !replaying_request_;
          Enter(GilState::kWaiting, e.gil, t);
          wait_start_ = t;
        }
        break;
      case EventKind::kWaitTimeout:
        if (inside && (e.flags & recorder::kFlagDropRequest) != 0 && slot != kNoSlot) {
          ++(*shared_.gils)[static_cast<std::size_t>(slot)].drop_requests;
          shared_.drops[static_cast<std::size_t>(slot)].insert(t);
        }
        if (state_ != GilState::kWaiting) {  // its kRequest was dropped
          io_wait_ = false;
          Enter(GilState::kWaiting, e.gil, t);
          wait_start_ = t;
        }
        break;
      case EventKind::kAcquired:
        if (inside && !at_start) {
          ++out_.acquisitions;
          if (state_ == GilState::kWaiting && gil_ == e.gil) {
            latencies_.Add(t - wait_start_);
            if (io_wait_) io_latencies_.Add(t - wait_start_);
          }
          if (slot != kNoSlot) {
            shared_.acquisitions.push({t, raw, tstate_, index_, static_cast<std::uint32_t>(slot), seq, false});
          }
        }
        acquired_tstate_ = tstate_;
        io_wait_ = false;
        Enter(GilState::kHolding, e.gil, t);
        // A frame names the release right after it; one left over from a
        // release that was dropped must not name a later one.
        frame_site_ = kUnknownSite;
        break;
      case EventKind::kReleased: {
        const bool voluntary = (e.flags & recorder::kFlagForced) == 0;
        if (inside) ++(voluntary ? out_.voluntary_releases : out_.forced_releases);
        if (inside && slot != kNoSlot && tstate_ != acquired_tstate_) {
          shared_.acquisitions.push({t, raw, tstate_, index_, static_cast<std::uint32_t>(slot), seq, true});
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
        if (state_ == GilState::kHolding) closing_site_ = shared_.site_table->ThreadExitSite();
        Close(t);
        out_.lifetime_end_ns = t;
        exited_ = true;
        stopped_ = true;
        break;
      case EventKind::kThreadState:
      case EventKind::kFrame:
      case EventKind::kMark:
      case EventKind::kRegionBegin:
      case EventKind::kRegionEnd:
        break;  // handled above
    }
  }

  std::string MarkerName(std::uint32_t aux) const {
    const auto& names = *shared_.marker_names;
    return aux < names.size() ? names[aux] : "marker " + std::to_string(aux);
  }

  // A marker event at raw time t (already non-decreasing, maybe before the
  // window). Instants outside the window are dropped; regions are clipped.
  void Mark(const Event& e, std::uint64_t t) {
    const std::uint64_t window_start = shared_.window_start;
    switch (e.kind) {
      case EventKind::kMark:
        if (t >= window_start) {
          shared_.markers->Add({MarkerName(e.aux), index_, t, t, false, false,
                                static_cast<std::uint32_t>(regions_.size())});
        }
        break;
      case EventKind::kRegionBegin:
        regions_.push_back({MarkerName(e.aux), index_, std::max(t, window_start), 0, true, false,
                            static_cast<std::uint32_t>(regions_.size())});
        break;
      case EventKind::kRegionEnd:
        // An end with no begin (its begin was dropped) closes nothing.
        if (!regions_.empty()) {
          Marker m = std::move(regions_.back());
          regions_.pop_back();
          if (t >= window_start) {
            m.end_ns = std::max(t, m.start_ns);
            shared_.markers->Add(std::move(m));
          }
        }
        break;
      default:
        break;
    }
  }

  // The thread's activity vectors, from the bucket of its first event to
  // the window's last (cut to its lifetime in Finish).
  void StartActivity() {
    ActivitySeries* s = shared_.activity;
    if (s == nullptr) return;
    ActivitySeries::Thread& a = s->threads[index_];
    a.first_bucket = s->BucketOf(out_.lifetime_start_ns);
    const std::size_t n = s->buckets - std::min(a.first_bucket, s->buckets);
    a.held_ns.assign(n, 0);
    a.waiting_ns.assign(n, 0);
    a.waits.assign(n, 0);
    a.wait_ns.assign(n, 0);
  }

  // A closed waiting or holding interval: the queue, the timeline, the
  // activity series.
  void Emit(const StateInterval& iv) {
    pending_.push_back(iv);
    if (ActivitySeries* s = shared_.activity) {
      ActivitySeries::Thread& a = s->threads[index_];
      if (iv.state == GilState::kHolding) {
        s->Spread(a.held_ns, a.first_bucket, iv.start_ns, iv.end_ns);
        // A completed wait: the waiting interval right before, on the same
        // GIL, ending where this hold begins.
        if (has_last_ && last_.state == GilState::kWaiting && last_.gil == iv.gil && last_.end_ns == iv.start_ns) {
          const std::size_t b = s->BucketOf(last_.end_ns);
          if (b >= a.first_bucket && b - a.first_bucket < a.waits.size()) {
            ++a.waits[b - a.first_bucket];
            a.wait_ns[b - a.first_bucket] += last_.end_ns - last_.start_ns;
          }
        }
      } else {
        s->Spread(a.waiting_ns, a.first_bucket, iv.start_ns, iv.end_ns);
      }
    }
    has_last_ = true;
    last_ = iv;
    if (!shared_.keep_timeline) return;
    std::vector<StateInterval>& timeline = out_.intervals;
    const std::uint64_t width = shared_.merge_below_ns;
    const std::uint64_t length = iv.end_ns - iv.start_ns;
    if (width > 0 && !timeline.empty() && length < width && iv.start_ns - timeline.back().end_ns < width &&
        iv.end_ns - timeline.back().start_ns <= kMaxPieceWidths * width) {
      // Aggregated timeline: a short interval close after the last piece
      // joins it, up to kMaxPieceWidths widths; the piece shows the state it
      // spent most time in.
      StateInterval& piece = timeline.back();
      piece.end_ns = iv.end_ns;
      (iv.state == GilState::kHolding ? piece_held_ns_ : piece_waiting_ns_) += length;
      piece.state = piece_held_ns_ >= piece_waiting_ns_ ? GilState::kHolding : GilState::kWaiting;
      piece.forced_end = iv.forced_end;
      return;
    }
    timeline.push_back(iv);
    piece_held_ns_ = iv.state == GilState::kHolding ? length : 0;
    piece_waiting_ns_ = iv.state == GilState::kWaiting ? length : 0;
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
        out_.released_ns += d;
        if (stretch_voluntary_) released_by_site_.Add(stretch_site_, d);
        break;
      case GilState::kWaiting:
        out_.waiting_ns += d;
        Emit({state_start_, t, state_, gil_, false, kUnknownSite});
        break;
      case GilState::kHolding:
        out_.held_ns += d;
        held_by_gil_[gil_] += d;
        hold_lengths_.Add(d);
        held_by_site_.Add(site, d);
        if (d > out_.longest_hold.end_ns - out_.longest_hold.start_ns) {
          out_.longest_hold = HoldRecord{state_start_, t, /*blocked_ns=*/0, /*unheeded_ns=*/0, site};
        }
        Emit({state_start_, t, state_, gil_, forced, site});
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

  // The stream is over: close the last interval and complete the figures.
  void Finish() {
    finished_ = true;
    cursor_.reset();
    std::vector<Event>().swap(buffer_);
    const std::uint64_t window_start = shared_.window_start, window_end = shared_.window_end;
    if (!started_) {
      out_.lifetime_start_ns = window_start;
      out_.lifetime_end_ns = window_start;
    } else if (!exited_) {
      // A GIL's own window closes when its process exits (a forked child
      // calls _exit holding the GIL, with no kThreadExit) or its interpreter
      // is finalized. A thread whose last state was on such a GIL, with no
      // event after, ended there: running it on to the run's end made a
      // child's thread hold its GIL for longer than the GIL existed.
      std::uint64_t end = window_end;
      if (const int slot = shared_.slots[gil_]; slot != kNoSlot) {
        end = std::clamp((*shared_.gils)[static_cast<std::size_t>(slot)].end_ns, cursor_ts_, window_end);
      }
      if (state_ == GilState::kHolding && end < window_end) closing_site_ = shared_.site_table->ThreadExitSite();
      Close(end);
      out_.lifetime_end_ns = end;
    }
    out_.exited = exited_;
    out_.state_at_end = state_;
    // Regions still open end with the thread (or the window).
    while (!regions_.empty()) {
      Marker m = std::move(regions_.back());
      regions_.pop_back();
      m.end_ns = std::max(m.start_ns, out_.lifetime_end_ns);
      m.open = true;
      shared_.markers->Add(std::move(m));
    }
    out_.io_waits = io_latencies_.count();
    out_.io_wait_p50_ms = Ms(io_latencies_.Percentile(50));
    out_.voluntary_stretches = stretch_lengths_.count();
    out_.voluntary_released_p50_ms = Ms(stretch_lengths_.Percentile(50));
    out_.holds = hold_lengths_.count();
    out_.hold_p50_ms = Ms(hold_lengths_.Percentile(50));
    out_.waits = latencies_.count();
    out_.wait_p50_ms = Ms(latencies_.Percentile(50));
    out_.wait_p99_ms = Ms(latencies_.Percentile(99));
    out_.wait_max_ms = Ms(latencies_.max());
    out_.held_by_function = held_by_site_.Take(*shared_.sites);
    out_.released_at = released_by_site_.Take(*shared_.sites);
    out_.lifetime_ns = out_.lifetime_end_ns - out_.lifetime_start_ns;
    out_.lifetime_s = static_cast<double>(out_.lifetime_ns) / kNsPerSecond;
    out_.held_s = static_cast<double>(out_.held_ns) / kNsPerSecond;
    out_.waiting_s = static_cast<double>(out_.waiting_ns) / kNsPerSecond;
    out_.released_s = static_cast<double>(out_.released_ns) / kNsPerSecond;
    std::uint64_t best = 0;
    for (std::size_t g = 0; g < kGilValues; ++g) {
      if (held_by_gil_[g] > best) {
        best = held_by_gil_[g];
        out_.main_gil = static_cast<int>(g);
      }
    }
    if (ActivitySeries* s = shared_.activity) {
      ActivitySeries::Thread& a = s->threads[index_];
      std::size_t n = 0;
      if (s->buckets > 0 && out_.lifetime_end_ns > out_.lifetime_start_ns) {
        n = s->BucketOf(out_.lifetime_end_ns - 1) - a.first_bucket + 1;
      }
      a.held_ns.resize(n);
      a.waiting_ns.resize(n);
      a.waits.resize(n);
      a.wait_ns.resize(n);
      a.held_ns.shrink_to_fit();
      a.waiting_ns.shrink_to_fit();
      a.waits.shrink_to_fit();
      a.wait_ns.shrink_to_fit();
    }
    // The sketches are done with: free them (thousands of threads).
    latencies_ = QuantileSketch();
    io_latencies_ = QuantileSketch();
    stretch_lengths_ = QuantileSketch();
    hold_lengths_ = QuantileSketch();
    std::vector<Marker>().swap(regions_);
  }

  Shared& shared_;
  const EventSource& source_;
  const std::size_t stream_;
  const std::uint32_t index_;
  const std::uint32_t pid_;
  ThreadStats& out_;

  std::unique_ptr<StreamCursor> cursor_;
  std::vector<Event> buffer_;
  std::size_t pos_ = 0;
  std::size_t len_ = 0;
  std::uint64_t seq_ = 0;
  bool stopped_ = false;   // past the window's end, or exited: read no more
  bool finished_ = false;  // Finish() ran
  std::deque<StateInterval> pending_;  // closed, not yet passed by the sweep
  bool has_last_ = false;
  StateInterval last_;                 // the interval emitted last
  std::uint64_t piece_held_ns_ = 0;    // the last timeline piece's make-up
  std::uint64_t piece_waiting_ns_ = 0;

  QuantileSketch latencies_;
  QuantileSketch io_latencies_;
  QuantileSketch stretch_lengths_;
  QuantileSketch hold_lengths_;
  SiteTotals held_by_site_;
  SiteTotals released_by_site_;
  std::vector<Marker> regions_;  // open regions, innermost last

  std::uint64_t unknown_gil_ = 0;
  std::uint64_t tstate_ = 0;
  std::uint64_t acquired_tstate_ = 0;  // tstate of the thread's latest acquisition
  std::uint64_t wait_start_ = 0;
  // The running wait began on the way back from a blocking call and found
  // the GIL held (ThreadStats::io_waits).
  bool io_wait_ = false;
  bool replaying_request_ = false;
  std::uint64_t cursor_ts_ = 0;  // latest time seen: keeps time non-decreasing
  bool started_ = false;
  bool exited_ = false;
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
};

// A hold over, to be judged for ThreadStats::most_blocking_hold.
struct FinishedHold {
  std::uint32_t thread = 0;
  std::uint64_t start = 0;
  std::uint64_t end = 0;
  std::uint64_t blocked = 0;
  std::uint32_t site = kUnknownSite;
};

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
  // Holds over but not judged yet (FinishHold).
  std::vector<FinishedHold> deferred;
  // CPython's switch counter, replayed.
  std::uint64_t last_holder = 0;
  QuantileSketch hold_lengths;
};

void Advance(Sweep& sweep, GilStats& gil, ActivitySeries* activity, std::size_t g, std::uint64_t ts) {
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
    if (activity != nullptr) activity->Spread(activity->gils[g].busy_ns, 0, from, to);
    if (sweep.waiting > 0) {
      gil.contended_ns += d;
      sweep.hold_blocked += d;
      if (activity != nullptr) activity->Spread(activity->gils[g].contended_ns, 0, from, to);
    }
  } else if (sweep.waiting > 0) {
    gil.handoff_ns += d;
  }
}

// Judges a finished hold: it becomes its thread's most blocking hold when it
// kept the GIL longer after a drop request (ties: others waited longer under
// it, then the longer hold). `drops`: the GIL's drop requests not yet
// forgotten, which include every one before the hold's end.
void JudgeHold(const FinishedHold& h, const std::multiset<std::uint64_t>& drops, std::vector<ThreadStats>& threads) {
  std::uint64_t unheeded = 0;
  const auto first = drops.lower_bound(h.start);
  if (first != drops.end() && *first < h.end) unheeded = h.end - *first;
  HoldRecord& best = threads[h.thread].most_blocking_hold;
  const auto key = std::make_tuple(unheeded, h.blocked, h.end - h.start);
  if (key > std::make_tuple(best.unheeded_ns, best.blocked_ns, best.end_ns - best.start_ns)) {
    best = HoldRecord{h.start, h.end, h.blocked, unheeded, h.site};
  }
}

// Ends the sweep's open hold at sweep time `now` and judges it. A hold that
// ends after `now` (another thread's hold began inside it: only dropped
// events make two holders at once) waits until the sweep has passed its end,
// when every drop request inside it is known. Drop requests before every
// hold still to be judged are forgotten: holds open in the order they start.
void FinishHold(Sweep& sweep, std::multiset<std::uint64_t>& drops, std::vector<ThreadStats>& threads,
                std::uint64_t now) {
  for (std::size_t k = 0; k < sweep.deferred.size();) {
    if (sweep.deferred[k].end <= now) {
      JudgeHold(sweep.deferred[k], drops, threads);
      sweep.deferred.erase(sweep.deferred.begin() + static_cast<std::ptrdiff_t>(k));
    } else {
      ++k;
    }
  }
  if (!sweep.hold_open) return;
  sweep.hold_open = false;
  const FinishedHold h{sweep.hold_thread, sweep.hold_start, sweep.hold_end, sweep.hold_blocked, sweep.hold_site};
  if (h.end > now) {
    sweep.deferred.push_back(h);
  } else {
    JudgeHold(h, drops, threads);
  }
  std::uint64_t keep_from = h.start;
  for (const FinishedHold& d : sweep.deferred) keep_from = std::min(keep_from, d.start);
  drops.erase(drops.begin(), drops.lower_bound(keep_from));
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
// not threads that stopped waiting. With an aggregated timeline (width >
// 0), a change less than `width` after the last step replaces its count: the
// series then has at most one step per width.
void StepWaiting(std::vector<WaitingStep>& steps, std::uint64_t window_end, std::uint64_t width, std::uint64_t ts,
                 std::uint32_t waiting) {
  if (ts >= window_end) return;
  if (steps.back().ts_ns == ts || (width > 0 && steps.size() >= 2 && ts - steps.back().ts_ns < width)) {
    steps.back().waiting = waiting;
    if (steps.size() >= 2 && steps[steps.size() - 2].waiting == waiting) steps.pop_back();
  } else if (steps.back().waiting != waiting) {
    steps.push_back({ts, waiting});
  }
}

// Replays CPython's rule (take_gil: if tstate != last_holder,
// ++switch_number) for every acquisition read before `before` (all of them
// when `before` is UINT64_MAX), in time order.
void ReplayAcquisitions(Shared& shared, std::vector<Sweep>& sweeps, std::uint64_t before) {
  auto& heap = shared.acquisitions;
  while (!heap.empty() && (heap.top().t < before || before == UINT64_MAX)) {
    const Acquisition a = heap.top();
    heap.pop();
    GilStats& gil = (*shared.gils)[a.slot];
    // CPython's counter covers the GIL's own window only.
    if (a.ts < gil.start_ns || a.ts > gil.end_ns) continue;
    Sweep& sweep = sweeps[a.slot];
    if (a.fixup) {
      sweep.last_holder = a.tstate;
      continue;
    }
    ++gil.acquisitions;
    if (a.tstate != sweep.last_holder) {
      ++gil.switches;
      sweep.last_holder = a.tstate;
    }
  }
}

// Pulls every thread's intervals through one time-ordered merge: the GILs'
// busy/contended/hand-off time, holders and waiting series, switch counts,
// most blocking holds, and the ideal clock of the GIL tax. Drains every
// stream, so every ThreadStats is complete afterwards.
void SweepGils(Shared& shared, std::vector<ThreadStream>& streams, const std::vector<GilInfo>& infos,
               IdealClock& ideal, Analysis& analysis) {
  std::vector<Sweep> sweeps(analysis.gils.size());
  for (std::size_t g = 0; g < analysis.gils.size(); ++g) {
    sweeps[g].last_ts = analysis.start_ns;
    sweeps[g].last_holder = infos[g].holder_tstate_at_start;
    if (shared.keep_timeline) analysis.gils[g].waiting.push_back({analysis.start_ns, 0});
  }
  const std::uint64_t window_end = analysis.end_ns;
  const std::uint64_t width = shared.merge_below_ns;
  ActivitySeries* activity = shared.activity;

  std::vector<bool> at_end(streams.size(), false);
  // Threads forced off a GIL that have not asked again yet: still runnable
  // for the ideal clock (see GilTax).
  std::vector<bool> forced_off(streams.size(), false);
  auto boundary = [&](std::size_t thread) {
    const StateInterval& iv = streams[thread].front();
    return at_end[thread] ? iv.end_ns : iv.start_ns;
  };

  using Entry = std::pair<std::uint64_t, std::uint32_t>;  // (time, thread)
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  for (std::uint32_t t = 0; t < streams.size(); ++t) {
    if (streams[t].NextRelevant()) heap.push({boundary(t), t});
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
    ReplayAcquisitions(shared, sweeps, ts);
    const StateInterval iv = streams[thread].front();
    const auto g = static_cast<std::size_t>(shared.slots[iv.gil]);
    GilStats& gil = analysis.gils[g];
    Sweep& sweep = sweeps[g];
    Advance(sweep, gil, activity, g, ts);
    ideal.Advance(ts);
    const bool holding = iv.state == GilState::kHolding;
    if (!at_end[thread]) {
      if (forced_off[thread]) {
        forced_off[thread] = false;  // it was counted as runnable all along
      } else {
        ideal.Runnable(+1);
      }
      if (holding) {
        if (sweep.holding == 0) ideal.Busy(+1);
        ++sweep.holding;
        sweep.hold_lengths.Add(iv.end_ns - iv.start_ns);
        if (shared.keep_timeline) {
          std::vector<HolderInterval>& holders = gil.holders;
          if (width > 0 && !holders.empty() && iv.end_ns - iv.start_ns < width &&
              iv.start_ns >= holders.back().end_ns && iv.start_ns - holders.back().end_ns < width &&
              iv.end_ns - holders.back().start_ns <= kMaxPieceWidths * width) {
            holders.back().end_ns = std::max(holders.back().end_ns, iv.end_ns);
          } else {
            holders.push_back({iv.start_ns, iv.end_ns, thread});
          }
        }
        FinishHold(sweep, shared.drops[g], analysis.threads, ts);
        sweep.hold_open = true;
        sweep.hold_thread = thread;
        sweep.hold_start = iv.start_ns;
        sweep.hold_end = iv.end_ns;
        sweep.hold_site = iv.site;
        sweep.hold_blocked = 0;
      } else {
        ++sweep.waiting;
        if (shared.keep_timeline) StepWaiting(gil.waiting, window_end, width, ts, sweep.waiting);
      }
      at_end[thread] = true;
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
          FinishHold(sweep, shared.drops[g], analysis.threads, ts);
        }
      } else {
        --sweep.waiting;
        if (shared.keep_timeline) StepWaiting(gil.waiting, window_end, width, ts, sweep.waiting);
      }
      at_end[thread] = false;
      streams[thread].PopFront();
    }
    if (streams[thread].NextRelevant()) {
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
  ReplayAcquisitions(shared, sweeps, UINT64_MAX);
  for (std::size_t g = 0; g < sweeps.size(); ++g) {
    FinishHold(sweeps[g], shared.drops[g], analysis.threads, UINT64_MAX);
    analysis.gils[g].holds = sweeps[g].hold_lengths.count();
    analysis.gils[g].hold_p50_ms = Ms(sweeps[g].hold_lengths.Percentile(50));
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


struct WindowOptions {
  // When some markers were left out (Analysis::markers_left_out), every
  // marker FindPhases reads, kept or not, goes here (MarkerKeeper::Finish),
  // and phase_markers_set says so.
  std::vector<Marker>* phase_markers = nullptr;
  bool* phase_markers_set = nullptr;
  bool keep_timeline = true;
  std::size_t activity_buckets = 0;  // 0: no activity series
  std::uint64_t merge_below_ns = 0;
};

Analysis Run(const EventSource& source, std::uint64_t start_ns, std::uint64_t end_ns, const WindowOptions& options) {
  const RunTrace& trace = source.meta();
  Analysis analysis;
  analysis.start_ns = start_ns;
  analysis.end_ns = std::max(end_ns, start_ns);
  const std::uint64_t window = analysis.end_ns - analysis.start_ns;
  analysis.wall_s = static_cast<double>(window) / kNsPerSecond;
  analysis.timeline_merge_below_ns = options.keep_timeline ? options.merge_below_ns : 0;

  Shared shared;
  shared.window_start = analysis.start_ns;
  shared.window_end = analysis.end_ns;
  shared.slots = MakeGilSlots(trace.gils);
  shared.keep_timeline = options.keep_timeline;
  shared.merge_below_ns = analysis.timeline_merge_below_ns;
  analysis.gils.resize(trace.gils.size());
  for (std::size_t g = 0; g < trace.gils.size(); ++g) {
    const GilInfo& info = trace.gils[g];
    GilStats& gil = analysis.gils[g];
    gil.id = info.id;
    gil.interpreter = info.interpreter;
    gil.cpython_switches = info.cpython_switch_end >= info.cpython_switch_start
                               ? info.cpython_switch_end - info.cpython_switch_start
                               : 0;
    // A window that closed has an end time (files since version 2 say it);
    // an open one kept the end count it was given at the start.
    gil.cpython_switches_known = info.end_ns != 0 || info.cpython_switch_end != info.cpython_switch_start;
    gil.start_ns = std::clamp(info.start_ns != 0 ? info.start_ns : analysis.start_ns, analysis.start_ns,
                              analysis.end_ns);
    gil.end_ns = std::clamp(info.end_ns != 0 ? info.end_ns : analysis.end_ns, gil.start_ns, analysis.end_ns);
    gil.window_s = static_cast<double>(gil.end_ns - gil.start_ns) / kNsPerSecond;
  }
  shared.gils = &analysis.gils;
  shared.drops.resize(trace.gils.size());
  SiteTable site_table(trace.code, trace.processes, analysis.sites);
  shared.site_table = &site_table;
  shared.sites = &analysis.sites;
  shared.marker_names = &trace.marker_names;
  MarkerKeeper markers;
  shared.markers = &markers;
  if (options.activity_buckets > 0) {
    analysis.activity = ActivitySeries::Geometry(analysis.start_ns, analysis.end_ns, options.activity_buckets);
    analysis.activity.gils.resize(trace.gils.size());
    for (ActivitySeries::Gil& g : analysis.activity.gils) {
      g.busy_ns.assign(analysis.activity.buckets, 0);
      g.contended_ns.assign(analysis.activity.buckets, 0);
    }
    analysis.activity.threads.resize(trace.threads.size());
    shared.activity = &analysis.activity;
  }

  analysis.events_dropped = trace.dropped_no_slot;
  analysis.gils_lost = trace.gils_lost;
  analysis.threads.resize(trace.threads.size());
  std::vector<ThreadStream> streams;
  streams.reserve(trace.threads.size());
  for (std::size_t i = 0; i < trace.threads.size(); ++i) {
    const ThreadTrace& in = trace.threads[i];
    ThreadStats& out = analysis.threads[i];
    out.name = in.name;
    out.native_id = in.native_id;
    out.pid = in.pid;
    out.cpu_s = in.cpu_s;
    analysis.events_recorded += source.event_count(i);
    analysis.events_dropped += in.dropped;
    // A whole timeline has at most an interval per event: reserved once, it
    // never regrows (unused capacity costs address space, not memory).
    if (options.keep_timeline && shared.merge_below_ns == 0) ReserveHuge(out.intervals, source.event_count(i) + 1);
    streams.emplace_back(shared, source, i, out);
  }

  const int cores = CoresFor(trace.info);
  IdealClock ideal(analysis.start_ns, cores);
  SweepGils(shared, streams, trace.gils, ideal, analysis);
  ideal.Advance(analysis.end_ns);
  for (const ThreadStream& s : streams) analysis.events_unknown_gil += s.unknown_gil();
  for (GilStats& gil : analysis.gils) {
    const std::uint64_t own = gil.end_ns - gil.start_ns;
    gil.busy_fraction = Fraction(gil.busy_ns, own);
    gil.contended_fraction = Fraction(gil.contended_ns, own);
    gil.handoff_fraction = Fraction(gil.handoff_ns, own);
  }
  SetGilTax(analysis, cores, ideal.IdealNs(), analysis.gil_tax);

  analysis.markers_left_out = markers.left_out();
  const bool set = markers.Finish(analysis.markers, options.phase_markers);
  if (options.phase_markers_set != nullptr) *options.phase_markers_set = set;
  return analysis;
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

std::uint64_t TimelineMergeWidth(const EventSource& source) {
  const RunTrace& meta = source.meta();
  if (source.total_events() <= kExactTimelineEvents || meta.end_ns <= meta.start_ns) return 0;
  std::uint64_t lanes = 0;
  for (std::size_t i = 0; i < meta.threads.size(); ++i) lanes += source.event_count(i) > 0;
  lanes = std::max<std::uint64_t>({lanes, meta.gils.size(), 1});
  const std::uint64_t window = meta.end_ns - meta.start_ns;
  // Each lane stores at most about (2 + 1/kMaxPieceWidths) * window / width
  // pieces (a piece ends at an interval longer than the width, a gap longer
  // than it, or when it is kMaxPieceWidths widths long).
  const unsigned __int128 product = static_cast<unsigned __int128>(window) * lanes * 3;
  return static_cast<std::uint64_t>((product + kTimelinePieces - 1) / kTimelinePieces);
}

Analysis AnalyzeWindow(const EventSource& source, std::uint64_t start_ns, std::uint64_t end_ns) {
  return Run(source, start_ns, end_ns, WindowOptions{});
}

Analysis AnalyzeWindow(const RunTrace& trace, std::uint64_t start_ns, std::uint64_t end_ns) {
  return AnalyzeWindow(TraceSource(trace), start_ns, end_ns);
}

Analysis Analyze(const EventSource& source) {
  const RunTrace& meta = source.meta();
  WindowOptions whole;
  whole.activity_buckets = ActivitySeries::kDefaultBuckets;
  whole.merge_below_ns = TimelineMergeWidth(source);
  std::vector<Marker> phase_markers;
  bool phase_markers_set = false;
  whole.phase_markers = &phase_markers;
  whole.phase_markers_set = &phase_markers_set;
  Analysis analysis = Run(source, meta.start_ns, meta.end_ns, whole);
  const std::vector<PhaseSpan> spans =
      FindPhases(analysis.activity, phase_markers_set ? phase_markers : analysis.markers);
  if (spans.size() == 1) {
    analysis.phases = {WholeRunPhase(analysis, spans.front())};
    return analysis;
  }
  // One more pass per phase, each stopping at its phase's end, keeping no
  // timeline: the same figures as the whole run's, inside the phase.
  WindowOptions figures_only;
  figures_only.keep_timeline = false;
  analysis.phases.reserve(spans.size());
  for (const PhaseSpan& span : spans) {
    Analysis a = Run(source, span.start_ns, span.end_ns, figures_only);
    Phase& p = analysis.phases.emplace_back();
    p.start_ns = span.start_ns;
    p.end_ns = span.end_ns;
    p.source = span.source;
    p.gils = std::move(a.gils);
    p.threads = std::move(a.threads);
  }
  return analysis;
}

Analysis Analyze(const RunTrace& trace) { return Analyze(TraceSource(trace)); }

std::uint64_t TimelineEventCount(const Analysis& analysis) {
  std::uint64_t n = 0;
  for (const ThreadStats& t : analysis.threads) n += t.intervals.size();
  for (const GilStats& g : analysis.gils) n += g.holders.size() + g.waiting.size();
  return n;
}

}  // namespace gilscope::report
