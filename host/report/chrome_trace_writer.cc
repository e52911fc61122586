// The trace is streamed by hand rather than built as one nlohmann::json tree:
// millions of slices as a DOM would cost gigabytes. nlohmann::json is still
// used to escape every user string, with invalid UTF-8 replaced.
//
// Every lane is produced by one generator that is run both when counting
// (PlanChromeTrace, to pick the merge width) and when writing. Writing
// merges pieces with Merger; counting replays Merger's decisions with
// MergeCounter, which keeps no names and so runs several times faster (the
// plan counts a 10M-event run some eight times). The two must agree: the
// unit tests compare the plan with the events written over many widths.

#include "report/chrome_trace_writer.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "report/text_util.h"

namespace gilscope::report {
namespace {

// Flush the line buffer to the stream past this size.
constexpr std::size_t kFlushBytes = 1 << 16;

std::string Quote(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

void AppendUint(std::string& out, std::uint64_t n) {
  char buffer[24];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, n);
  out.append(buffer, result.ptr);
}

// ns -> microseconds with exactly three decimals, without floating point.
void AppendMicros(std::string& out, std::uint64_t ns) {
  AppendUint(out, ns / 1000);
  const auto frac = static_cast<unsigned>(ns % 1000);
  out.push_back('.');
  out.push_back(static_cast<char>('0' + frac / 100));
  out.push_back(static_cast<char>('0' + frac / 10 % 10));
  out.push_back(static_cast<char>('0' + frac % 10));
}

std::string ThreadLabel(const ThreadStats& t) {
  return (t.name.empty() ? std::string("thread") : t.name) + " (" + std::to_string(t.native_id) + ")";
}

// One slice of a lane before writing. Thread lanes: key is the GilState;
// GIL lanes: key is the holding thread's index.
struct Piece {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
  std::uint32_t key = 0;
  std::uint32_t site = kUnknownSite;  // hold: function; voluntary release: call site
  std::uint8_t gil = 0;
  std::uint32_t merged = 1;           // > 1: an aggregate of this many slices
};

// Merges pieces shorter than `width` (0: none) into one piece per stretch of
// at least `width`, named after the key that covered most of it.
template <class Emit>
class Merger {
 public:
  Merger(std::uint64_t width, Emit& emit) : width_(width), emit_(emit) {}
  ~Merger() { Flush(); }

  void Add(const Piece& p) {
    if (width_ == 0 || p.end - p.start >= width_) {
      Flush();
      emit_(p);
      return;
    }
    // An idle gap as long as a stretch (GIL lanes) ends the stretch.
    if (count_ > 0 && p.start >= pending_.end + width_) Flush();
    if (count_ == 0) {
      pending_ = p;
      share_.clear();
    }
    pending_.end = p.end;
    ++count_;
    bool found = false;
    for (auto& [key, ns] : share_) {
      if (key == p.key) {
        ns += p.end - p.start;
        found = true;
        break;
      }
    }
    if (!found) share_.push_back({p.key, p.end - p.start});
    if (pending_.end - pending_.start >= width_) Flush();
  }

  void Flush() {
    if (count_ == 0) return;
    if (count_ > 1) {
      const auto top = std::max_element(share_.begin(), share_.end(),
                                        [](const auto& a, const auto& b) { return a.second < b.second; });
      pending_.key = top->first;
      pending_.site = kUnknownSite;
      pending_.merged = count_;
    }
    emit_(pending_);
    count_ = 0;
  }

 private:
  std::uint64_t width_;
  Emit& emit_;
  Piece pending_;
  std::uint32_t count_ = 0;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> share_;
};

// A thread's lifetime as back-to-back pieces: released gaps and its intervals.
template <class Fn>
void ThreadPieces(const ThreadStats& t, Fn&& fn) {
  std::uint64_t cursor = t.lifetime_start_ns;
  std::uint32_t release_site = kUnknownSite;
  std::uint8_t gil = 0;
  for (const StateInterval& iv : t.intervals) {
    if (iv.start_ns > cursor) {
      fn(Piece{cursor, iv.start_ns, static_cast<std::uint32_t>(GilState::kReleased), release_site, gil, 1});
    }
    fn(Piece{iv.start_ns, iv.end_ns, static_cast<std::uint32_t>(iv.state), iv.site, iv.gil, 1});
    cursor = iv.end_ns;
    gil = iv.gil;
    // A voluntary release's stretch is spent in the call that released.
    release_site = iv.state == GilState::kHolding && !iv.forced_end ? iv.site : kUnknownSite;
  }
  if (t.lifetime_end_ns > cursor) {
    fn(Piece{cursor, t.lifetime_end_ns, static_cast<std::uint32_t>(GilState::kReleased), release_site, gil, 1});
  }
}

// Counter samples of one GIL: every step, or with `width` > 0, per stretch of
// `width` its maximum (at its first step) and its last value when different.
// Stretch b is [origin + b * width, origin + (b + 1) * width); times before
// the origin fall in stretch 0. Steps are sorted by time, so a stretch ends
// at the first step at or past its limit.
template <class Fn>
void CounterSamples(const GilStats& g, std::uint64_t origin, std::uint64_t width, Fn&& fn) {
  if (width == 0) {
    for (const WaitingStep& s : g.waiting) fn(s.ts_ns, s.waiting);
    return;
  }
  const std::size_t n = g.waiting.size();
  std::size_t k = 0;
  while (k < n) {
    // The stretch's limit, origin + (b + 1) * width; past the largest time
    // (every later step is in it) when that does not fit in 64 bits.
    const std::uint64_t from_origin = g.waiting[k].ts_ns - std::min(origin, g.waiting[k].ts_ns);
    const std::uint64_t stretch_start = from_origin - from_origin % width;  // b * width
    const std::uint64_t room = std::numeric_limits<std::uint64_t>::max() - origin;
    const bool bounded = stretch_start <= room && width <= room - stretch_start;
    const std::uint64_t limit = bounded ? origin + stretch_start + width : 0;
    std::size_t j = k;
    std::uint32_t max = 0;
    while (j < n && (!bounded || g.waiting[j].ts_ns < limit)) {
      max = std::max(max, g.waiting[j].waiting);
      ++j;
    }
    fn(g.waiting[k].ts_ns, max);
    if (j - 1 > k && g.waiting[j - 1].waiting != max) fn(g.waiting[j - 1].ts_ns, g.waiting[j - 1].waiting);
    k = j;
  }
}

// Hand-offs of one GIL: consecutive holds by different threads, not overlapping.
template <class Fn>
void Handoffs(const GilStats& g, Fn&& fn) {
  for (std::size_t k = 1; k < g.holders.size(); ++k) {
    const HolderInterval& from = g.holders[k - 1];
    const HolderInterval& to = g.holders[k];
    if (from.thread != to.thread && to.start_ns >= from.end_ns) fn(from, to);
  }
}

// How many pieces a Merger of `width` > 0 emits: the same decisions as
// Merger::Add and Flush, without building the merged pieces (planning needs
// only their number, for several widths).
class MergeCounter {
 public:
  explicit MergeCounter(std::uint64_t width) : width_(width) {}

  void Add(std::uint64_t start, std::uint64_t end) {
    if (end - start >= width_) {
      n_ += pending_ ? 2 : 1;
      pending_ = false;
      return;
    }
    if (pending_ && start >= pending_end_ + width_) {
      ++n_;
      pending_ = false;
    }
    if (!pending_) {
      pending_ = true;
      pending_start_ = start;
    }
    pending_end_ = end;
    if (pending_end_ - pending_start_ >= width_) {
      ++n_;
      pending_ = false;
    }
  }
  // Pieces emitted, the pending stretch included; then starts a new lane.
  std::uint64_t Finish() {
    const std::uint64_t n = n_ + (pending_ ? 1 : 0);
    n_ = 0;
    pending_ = false;
    return n;
  }

 private:
  std::uint64_t width_;
  std::uint64_t n_ = 0;
  bool pending_ = false;
  std::uint64_t pending_start_ = 0;
  std::uint64_t pending_end_ = 0;
};

// Timeline events of the trace at merge width 0: every piece as recorded.
std::uint64_t CountEventsUnmerged(const Analysis& a, bool flows) {
  std::uint64_t n = 0;
  for (const ThreadStats& t : a.threads) {
    // ThreadPieces: each interval, and each released gap before one or
    // after the last.
    std::uint64_t cursor = t.lifetime_start_ns;
    n += t.intervals.size();
    for (const StateInterval& iv : t.intervals) {
      n += iv.start_ns > cursor ? 1 : 0;
      cursor = iv.end_ns;
    }
    n += t.lifetime_end_ns > cursor ? 1 : 0;
  }
  for (const GilStats& g : a.gils) {
    n += g.holders.size() + g.waiting.size();
    if (flows) Handoffs(g, [&n](const HolderInterval&, const HolderInterval&) { n += 2; });
  }
  n += std::min<std::uint64_t>(a.markers.size(), ChromeTraceWriter::kMaxMarkers);
  n += a.phases.size();  // the phase lane: never merged
  return n;
}

// Timeline events of the trace without flows at merge width `width` > 0.
std::uint64_t CountEventsMerged(const Analysis& a, std::uint64_t width) {
  std::uint64_t n = 0;
  MergeCounter merged(width);
  for (const ThreadStats& t : a.threads) {
    ThreadPieces(t, [&](const Piece& p) { merged.Add(p.start, p.end); });
    n += merged.Finish();
  }
  for (const GilStats& g : a.gils) {
    for (const HolderInterval& h : g.holders) merged.Add(h.start_ns, h.end_ns);
    n += merged.Finish();
    CounterSamples(g, a.start_ns, width, [&n](std::uint64_t, std::uint32_t) { ++n; });
  }
  n += std::min<std::uint64_t>(a.markers.size(), ChromeTraceWriter::kMaxMarkers);
  n += a.phases.size();
  return n;
}

std::string MicrosText(std::uint64_t ns) {
  return ns >= 1'000'000 ? Format("%.3f ms", static_cast<double>(ns) / 1e6)
                         : Format("%.3f us", static_cast<double>(ns) / 1e3);
}

// Writes the traceEvents array one event per line.
class EventSink {
 public:
  explicit EventSink(std::ostream& out) : out_(out) { buffer_.reserve(kFlushBytes + 512); }
  ~EventSink() { Flush(); }

  // Starts a new event object: {"name":<name>,"ph":"<ph>","pid":P,"tid":T
  void Begin(const std::string& quoted_name, char ph, std::uint64_t pid, std::uint64_t tid) {
    buffer_ += first_ ? "\n{\"name\":" : ",\n{\"name\":";
    first_ = false;
    buffer_ += quoted_name;
    buffer_ += ",\"ph\":\"";
    buffer_.push_back(ph);
    buffer_ += "\",\"pid\":";
    AppendUint(buffer_, pid);
    buffer_ += ",\"tid\":";
    AppendUint(buffer_, tid);
  }
  // Closes the object opened by Begin.
  void End() {
    buffer_ += '}';
    if (buffer_.size() >= kFlushBytes) Flush();
  }
  std::string& raw() { return buffer_; }

  void Metadata(const char* kind, std::uint64_t pid, std::uint64_t tid, const char* key,
                const std::string& json_value) {
    Begin(std::string("\"") + kind + "\"", 'M', pid, tid);
    buffer_ += ",\"args\":{\"";
    buffer_ += key;
    buffer_ += "\":";
    buffer_ += json_value;
    buffer_ += '}';
    End();
  }

  void Flush() {
    out_.write(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
    buffer_.clear();
  }

 private:
  std::ostream& out_;
  std::string buffer_;
  bool first_ = true;
};

// Slice names by GilState (quoted JSON), as recorded and merged.
const std::array<std::string, 3> kStateNames = {"\"released GIL\"", "\"waiting for GIL\"", "\"holding GIL\""};
const std::array<std::string, 3> kStateAggregated = {
    "\"released GIL (aggregated)\"", "\"waiting for GIL (aggregated)\"", "\"holding GIL (aggregated)\""};
// Reserved colour names of the trace viewer: light grey, red, green.
constexpr std::array<const char*, 3> kStateColours = {"thread_state_sleeping", "terrible", "thread_state_running"};

}  // namespace

TracePlan PlanChromeTrace(const Analysis& analysis, std::uint64_t max_events) {
  TracePlan plan;
  plan.max_events = max_events;
  plan.markers_omitted =
      (analysis.markers.size() > ChromeTraceWriter::kMaxMarkers ? analysis.markers.size() - ChromeTraceWriter::kMaxMarkers
                                                                 : 0) +
      analysis.markers_left_out;
  plan.full_events = CountEventsUnmerged(analysis, true);
  plan.events = plan.full_events;
  if (plan.events <= max_events && analysis.timeline_merge_below_ns == 0) return plan;
  if (plan.events <= max_events) {
    // Analysis aggregated the timeline of a long run already (analysis.h):
    // no hand-off arrows can be drawn between merged pieces.
    plan.flows = false;
    plan.events = CountEventsUnmerged(analysis, false);
    plan.merge_below_ns = analysis.timeline_merge_below_ns;
    plan.reason = "the run is too long to draw every interval: analysis merged those shorter than " +
                  MicrosText(analysis.timeline_merge_below_ns) + ", and hand-off arrows are left out";
    return plan;
  }
  plan.flows = false;
  plan.events = CountEventsUnmerged(analysis, false);
  if (plan.events > max_events) {
    // Start where an even spread would fit (lanes x stretches), then double.
    const std::uint64_t window = std::max<std::uint64_t>(analysis.end_ns - analysis.start_ns, 1);
    const std::uint64_t lanes = 2 * (analysis.threads.size() + analysis.gils.size()) + 1;
    std::uint64_t width = std::max<std::uint64_t>(1, window * lanes / std::max<std::uint64_t>(max_events, 1));
    for (;;) {
      plan.events = CountEventsMerged(analysis, width);
      // A merged trace cannot go below one piece per lane; stop at the window.
      if (plan.events <= max_events || width >= window) break;
      width *= 2;
    }
    // Doubling may overshoot by up to 2x: narrow the width back towards the
    // limit (a few passes), keeping as much detail as fits.
    std::uint64_t fits = width;
    std::uint64_t too_small = width / 2;
    for (int pass = 0; pass < 6 && fits - too_small > 1 && plan.events <= max_events; ++pass) {
      const std::uint64_t mid = too_small + (fits - too_small) / 2;
      const std::uint64_t events = CountEventsMerged(analysis, mid);
      if (events <= max_events) {
        fits = mid;
        plan.events = events;
      } else {
        too_small = mid;
      }
    }
    plan.merge_below_ns = fits;
  }
  plan.reason = "the complete trace would hold " + std::to_string(plan.full_events) + " events (limit " +
                std::to_string(max_events) + "): hand-off arrows left out";
  if (plan.merge_below_ns > 0) {
    plan.reason += ", slices shorter than " + MicrosText(plan.merge_below_ns) + " merged";
  }
  if (analysis.timeline_merge_below_ns > 0) {
    plan.reason += " (analysis had merged intervals shorter than " + MicrosText(analysis.timeline_merge_below_ns) +
                   " already: the run is too long to keep them all)";
    plan.merge_below_ns = std::max(plan.merge_below_ns, analysis.timeline_merge_below_ns);
  }
  return plan;
}

void ChromeTraceWriter::Write(const RunTrace& trace, const Analysis& analysis) {
  Write(trace, analysis, PlanChromeTrace(analysis, max_events_));
}

void ChromeTraceWriter::Write(const RunTrace& trace, const Analysis& analysis, const TracePlan& plan) {
  plan_ = plan;
  const std::uint64_t width = plan_.merge_below_ns;
  const std::uint64_t origin = analysis.start_ns;
  auto rel = [origin](std::uint64_t ns) { return ns > origin ? ns - origin : 0; };

  // The runner's pid is the main one (else the first thread's; 1 when none
  // is known, as the format needs one).
  std::uint64_t main_pid = 0;
  for (const ProcessInfo& p : trace.processes) {
    if (p.role == "runner" || p.role == "host") {
      main_pid = p.pid;
      break;
    }
  }
  for (const ThreadStats& t : analysis.threads) {
    if (main_pid == 0 && t.pid != 0) main_pid = t.pid;
  }
  if (main_pid == 0) main_pid = 1;
  auto pid_of = [&](std::uint32_t pid) -> std::uint64_t { return pid != 0 ? pid : main_pid; };
  std::vector<std::uint64_t> gil_pid(analysis.gils.size(), main_pid);
  for (std::size_t g = 0; g < analysis.gils.size() && g < trace.gils.size(); ++g) {
    gil_pid[g] = pid_of(trace.gils[g].pid);
  }

  out_ << "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[";
  EventSink sink(out_);

  // Processes: the runner first, then in the order the run met them.
  std::vector<std::uint64_t> pids = {main_pid};
  auto add_pid = [&pids](std::uint64_t pid) {
    if (std::find(pids.begin(), pids.end(), pid) == pids.end()) pids.push_back(pid);
  };
  for (const ProcessInfo& p : trace.processes) add_pid(pid_of(p.pid));
  for (std::uint64_t pid : gil_pid) add_pid(pid);
  for (const ThreadStats& t : analysis.threads) add_pid(pid_of(t.pid));
  std::map<std::uint64_t, std::string> roles;
  for (const ProcessInfo& p : trace.processes) roles[pid_of(p.pid)] = p.role;
  for (std::size_t k = 0; k < pids.size(); ++k) {
    const std::string& role = roles[pids[k]];
    std::string name = "gilscope: " + trace.info.script;
    if (k > 0 || (!role.empty() && role != "runner")) name += " (" + (role.empty() ? "process" : role) + ")";
    sink.Metadata("process_name", pids[k], 0, "name", Quote(name));
    sink.Metadata("process_sort_index", pids[k], 0, "sort_index", std::to_string(k));
  }
  // The phase lane first, above the GIL lanes of the main process.
  sink.Metadata("thread_name", main_pid, kPhaseTid, "name", Quote("phases"));
  sink.Metadata("thread_sort_index", main_pid, kPhaseTid, "sort_index", "-1");
  for (std::size_t g = 0; g < analysis.gils.size(); ++g) {
    const std::uint64_t tid = kGilTidBase + analysis.gils[g].id;
    sink.Metadata("thread_name", gil_pid[g], tid, "name",
                  Quote("GIL " + std::to_string(analysis.gils[g].id) + " holder (interpreter " +
                        std::to_string(analysis.gils[g].interpreter) + ")"));
    sink.Metadata("thread_sort_index", gil_pid[g], tid, "sort_index", std::to_string(g));
  }
  std::vector<bool> has_markers(analysis.threads.size(), false);
  for (const Marker& m : analysis.markers) {
    if (m.thread < has_markers.size()) has_markers[m.thread] = true;
  }
  std::vector<std::string> labels;  // quoted, reused by every GIL slice
  labels.reserve(analysis.threads.size());
  const std::uint64_t first_thread_sort = analysis.gils.size();
  for (std::size_t i = 0; i < analysis.threads.size(); ++i) {
    const ThreadStats& t = analysis.threads[i];
    labels.push_back(Quote(ThreadLabel(t)));
    sink.Metadata("thread_name", pid_of(t.pid), i + 1, "name", labels.back());
    // After every GIL lane, in recording order, each followed by its markers.
    sink.Metadata("thread_sort_index", pid_of(t.pid), i + 1, "sort_index",
                  std::to_string(first_thread_sort + 2 * i));
    if (has_markers[i]) {
      sink.Metadata("thread_name", pid_of(t.pid), kMarkerTidBase + i, "name",
                    Quote(ThreadLabel(t) + " markers"));
      sink.Metadata("thread_sort_index", pid_of(t.pid), kMarkerTidBase + i, "sort_index",
                    std::to_string(first_thread_sort + 2 * i + 1));
    }
  }

  std::vector<std::string> site_text(analysis.sites.size());  // quoted, built on first use
  auto site_json = [&](std::uint32_t site) -> const std::string& {
    std::string& text = site_text[site];
    if (text.empty()) {
      const CodeSite& s = analysis.sites[site];
      text = Quote(s.file.empty() ? s.function : s.function + " (" + s.file + ":" + std::to_string(s.line) + ")");
    }
    return text;
  };
  auto slice_times = [&](std::string& b, std::uint64_t start, std::uint64_t end) {
    b += ",\"ts\":";
    AppendMicros(b, rel(start));
    b += ",\"dur\":";
    AppendMicros(b, end > start ? end - start : 0);
  };

  // Thread lanes.
  for (std::size_t i = 0; i < analysis.threads.size(); ++i) {
    const ThreadStats& t = analysis.threads[i];
    auto emit = [&](const Piece& p) {
      std::string& b = sink.raw();
      const std::size_t state = std::min<std::size_t>(p.key, 2);
      sink.Begin(p.merged > 1 ? kStateAggregated[state] : kStateNames[state], 'X', pid_of(t.pid), i + 1);
      b += ",\"cat\":\"gil\"";
      slice_times(b, p.start, p.end);
      b += ",\"cname\":\"";
      b += kStateColours[state];
      b += "\",\"args\":{\"gil\":";
      AppendUint(b, p.gil);
      if (p.merged > 1) {
        b += ",\"slices\":";
        AppendUint(b, p.merged);
      } else if (p.site != kUnknownSite && p.site < analysis.sites.size()) {
        b += state == static_cast<std::size_t>(GilState::kHolding) ? ",\"function\":" : ",\"call_site\":";
        b += site_json(p.site);
      }
      b += '}';
      sink.End();
    };
    Merger<decltype(emit)> merger(width, emit);
    ThreadPieces(t, [&](const Piece& p) { merger.Add(p); });
  }

  // GIL lanes: holders and the waiting counter.
  for (std::size_t g = 0; g < analysis.gils.size(); ++g) {
    const GilStats& gil = analysis.gils[g];
    const std::uint64_t tid = kGilTidBase + gil.id;
    {
      auto emit = [&](const Piece& p) {
        std::string& b = sink.raw();
        const std::string& label = p.key < labels.size() ? labels[p.key] : labels.front();
        if (p.merged > 1) {
          sink.Begin(label.substr(0, label.size() - 1) + " (aggregated)\"", 'X', gil_pid[g], tid);
        } else {
          sink.Begin(label, 'X', gil_pid[g], tid);
        }
        b += ",\"cat\":\"gil\"";
        slice_times(b, p.start, p.end);
        b += ",\"args\":{\"thread_index\":";
        AppendUint(b, p.key);
        if (p.merged > 1) {
          b += ",\"holds\":";
          AppendUint(b, p.merged);
        }
        b += '}';
        sink.End();
      };
      Merger<decltype(emit)> merger(width, emit);
      for (const HolderInterval& h : gil.holders) merger.Add(Piece{h.start_ns, h.end_ns, h.thread, 0, 0, 1});
    }
    const std::string counter = Quote("waiting threads (GIL " + std::to_string(gil.id) + ")");
    CounterSamples(gil, origin, width, [&](std::uint64_t ts, std::uint32_t waiting) {
      std::string& b = sink.raw();
      sink.Begin(counter, 'C', gil_pid[g], tid);
      b += ",\"cat\":\"gil\",\"ts\":";
      AppendMicros(b, rel(ts));
      b += ",\"args\":{\"waiting\":";
      AppendUint(b, waiting);
      b += "}";
      sink.End();
    });
  }

  // Hand-off arrows: "s" one ns before the releasing hold ends, "f" one ns
  // after the next hold starts, so each falls strictly inside its slice
  // (holds are hundreds of ns at least) and not on the waiting slice that
  // ends where the hold begins.
  if (plan_.flows) {
    std::uint64_t id = 0;
    const std::string name = Quote("hand-off");
    for (const GilStats& gil : analysis.gils) {
      Handoffs(gil, [&](const HolderInterval& from, const HolderInterval& to) {
        ++id;
        const ThreadStats& a = analysis.threads[from.thread];
        const ThreadStats& b2 = analysis.threads[to.thread];
        std::string& b = sink.raw();
        sink.Begin(name, 's', pid_of(a.pid), from.thread + 1);
        b += ",\"cat\":\"handoff\",\"id\":";
        AppendUint(b, id);
        b += ",\"ts\":";
        AppendMicros(b, rel(from.end_ns - (from.end_ns - from.start_ns >= 2 ? 1 : 0)));
        sink.End();
        sink.Begin(name, 'f', pid_of(b2.pid), to.thread + 1);
        b += ",\"cat\":\"handoff\",\"id\":";
        AppendUint(b, id);
        b += ",\"bp\":\"e\",\"ts\":";
        AppendMicros(b, rel(to.start_ns + (to.end_ns - to.start_ns >= 2 ? 1 : 0)));
        b += ",\"args\":{\"gap_ns\":";
        AppendUint(b, to.start_ns - from.end_ns);
        b += '}';
        sink.End();
      });
    }
  }

  // Phases: one slice each, named by number and why it begins there, with
  // each live GIL's busy and contended shares inside it.
  for (std::size_t p = 0; p < analysis.phases.size(); ++p) {
    const Phase& phase = analysis.phases[p];
    std::string& b = sink.raw();
    sink.Begin(Quote("phase " + std::to_string(p + 1) + " (" + phase.source + ")"), 'X', main_pid, kPhaseTid);
    b += ",\"cat\":\"phase\"";
    slice_times(b, phase.start_ns, phase.end_ns);
    b += ",\"args\":{\"source\":";
    b += Quote(phase.source);
    for (const GilStats& g : phase.gils) {
      if (g.end_ns <= g.start_ns) continue;  // the GIL did not live in this phase
      const std::string gil = std::to_string(g.id);
      b += ",\"GIL " + gil + " busy %\":" + Format("%.1f", 100 * g.busy_fraction);
      b += ",\"GIL " + gil + " contended %\":" + Format("%.1f", 100 * g.contended_fraction);
    }
    b += '}';
    sink.End();
  }

  // Markers, on each thread's markers lane.
  const std::size_t markers = std::min<std::size_t>(analysis.markers.size(), kMaxMarkers);
  for (std::size_t k = 0; k < markers; ++k) {
    const Marker& m = analysis.markers[k];
    if (m.thread >= analysis.threads.size()) continue;
    std::string& b = sink.raw();
    const std::uint64_t pid = pid_of(analysis.threads[m.thread].pid);
    if (m.region) {
      sink.Begin(Quote(m.name), 'X', pid, kMarkerTidBase + m.thread);
      b += ",\"cat\":\"marker\"";
      slice_times(b, m.start_ns, m.end_ns);
      b += m.open ? ",\"args\":{\"open\":true}" : "";
    } else {
      sink.Begin(Quote(m.name), 'i', pid, kMarkerTidBase + m.thread);
      b += ",\"cat\":\"marker\",\"s\":\"t\",\"ts\":";
      AppendMicros(b, rel(m.start_ns));
    }
    sink.End();
  }
  sink.Flush();

  out_ << "\n],\"otherData\":{\"gilscope_version\":" << Quote(trace.info.gilscope_version)
       << ",\"script\":" << Quote(trace.info.script) << ",\"events\":" << plan_.events
       << ",\"aggregated\":" << (plan_.aggregated() ? "true" : "false") << ",\"reason\":" << Quote(plan_.reason)
       << ",\"merge_below_ns\":" << plan_.merge_below_ns << ",\"flows\":" << (plan_.flows ? "true" : "false")
       << "}}\n";
}

}  // namespace gilscope::report
