// The trace is streamed by hand rather than built as one nlohmann::json tree:
// millions of slices as a DOM would cost gigabytes. nlohmann::json is still
// used to escape every user string, with invalid UTF-8 replaced.

#include "report/chrome_trace_writer.h"

#include <charconv>
#include <functional>
#include <nlohmann/json.hpp>
#include <queue>
#include <set>
#include <string>
#include <utility>
#include <vector>

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

// The timeline events of one track, exposed in time order.
struct Source {
  enum class Kind : std::uint8_t { kThread, kHolders, kWaiting };
  Kind kind;
  std::uint32_t index;  // thread index or GIL index
  std::size_t pos = 0;
};

}  // namespace

void ChromeTraceWriter::Write(const RunTrace& trace, const Analysis& analysis) {
  written_ = 0;
  omitted_ = 0;
  const std::uint64_t origin = analysis.start_ns;
  auto rel = [origin](std::uint64_t ns) { return ns > origin ? ns - origin : 0; };

  // Threads keep their own pid; pseudo-threads and process-wide events go to
  // the first known pid (1 when none is known, as the format needs one).
  std::uint64_t main_pid = 1;
  for (const ThreadStats& t : analysis.threads) {
    if (t.pid != 0) {
      main_pid = t.pid;
      break;
    }
  }
  auto pid_of = [&](const ThreadStats& t) -> std::uint64_t { return t.pid != 0 ? t.pid : main_pid; };

  out_ << "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[";
  EventSink sink(out_);

  // Metadata: names and order of the process and its tracks.
  std::set<std::uint64_t> pids = {main_pid};
  for (const ThreadStats& t : analysis.threads) pids.insert(pid_of(t));
  const std::string process_name = Quote("gilscope: " + trace.info.script);
  for (std::uint64_t pid : pids) sink.Metadata("process_name", pid, 0, "name", process_name);
  for (std::size_t g = 0; g < analysis.gils.size(); ++g) {
    const std::uint64_t tid = kGilTidBase + analysis.gils[g].id;
    sink.Metadata("thread_name", main_pid, tid, "name",
                  Quote("GIL " + std::to_string(analysis.gils[g].id) + " holder"));
    sink.Metadata("thread_sort_index", main_pid, tid, "sort_index", std::to_string(g));
  }
  std::vector<std::string> labels;  // quoted, reused by every GIL slice
  labels.reserve(analysis.threads.size());
  for (std::size_t i = 0; i < analysis.threads.size(); ++i) {
    const ThreadStats& t = analysis.threads[i];
    labels.push_back(Quote(ThreadLabel(t)));
    sink.Metadata("thread_name", pid_of(t), i + 1, "name", labels.back());
    // After every GIL track, in recording order.
    sink.Metadata("thread_sort_index", pid_of(t), i + 1, "sort_index",
                  std::to_string(analysis.gils.size() + i));
  }

  // Timeline events from every track, merged in time order (ties: track order).
  std::vector<Source> sources;
  for (std::uint32_t i = 0; i < analysis.threads.size(); ++i) sources.push_back({Source::Kind::kThread, i});
  for (std::uint32_t g = 0; g < analysis.gils.size(); ++g) {
    sources.push_back({Source::Kind::kHolders, g});
    sources.push_back({Source::Kind::kWaiting, g});
  }
  // Positions the source on its next event; false when it has none left.
  auto settle = [&](Source& s) {
    switch (s.kind) {
      case Source::Kind::kThread: {
        const auto& ivs = analysis.threads[s.index].intervals;
        while (s.pos < ivs.size() && ivs[s.pos].state == GilState::kReleased) ++s.pos;
        return s.pos < ivs.size();
      }
      case Source::Kind::kHolders:
        return s.pos < analysis.gils[s.index].holders.size();
      case Source::Kind::kWaiting:
        return s.pos < analysis.gils[s.index].waiting.size();
    }
    return false;
  };
  auto time_of = [&](const Source& s) -> std::uint64_t {
    switch (s.kind) {
      case Source::Kind::kThread:
        return analysis.threads[s.index].intervals[s.pos].start_ns;
      case Source::Kind::kHolders:
        return analysis.gils[s.index].holders[s.pos].start_ns;
      case Source::Kind::kWaiting:
        return analysis.gils[s.index].waiting[s.pos].ts_ns;
    }
    return 0;
  };
  // Counts what a source still has, for the omitted total.
  auto remaining = [&](const Source& s) -> std::uint64_t {
    switch (s.kind) {
      case Source::Kind::kThread: {
        const auto& ivs = analysis.threads[s.index].intervals;
        std::uint64_t n = 0;
        for (std::size_t k = s.pos; k < ivs.size(); ++k) n += ivs[k].state != GilState::kReleased;
        return n;
      }
      case Source::Kind::kHolders:
        return analysis.gils[s.index].holders.size() - s.pos;
      case Source::Kind::kWaiting:
        return analysis.gils[s.index].waiting.size() - s.pos;
    }
    return 0;
  };

  std::vector<std::string> counter_names;
  for (const GilStats& g : analysis.gils) {
    counter_names.push_back(Quote("waiting threads (GIL " + std::to_string(g.id) + ")"));
  }
  const std::string holding_name = Quote("holding GIL");
  const std::string waiting_name = Quote("waiting for GIL");

  auto emit = [&](Source& s) {
    std::string& b = sink.raw();
    switch (s.kind) {
      case Source::Kind::kThread: {
        const ThreadStats& t = analysis.threads[s.index];
        const StateInterval& iv = t.intervals[s.pos];
        sink.Begin(iv.state == GilState::kHolding ? holding_name : waiting_name, 'X', pid_of(t), s.index + 1);
        b += ",\"cat\":\"gil\",\"ts\":";
        AppendMicros(b, rel(iv.start_ns));
        b += ",\"dur\":";
        AppendMicros(b, iv.end_ns - iv.start_ns);
        b += ",\"args\":{\"gil\":";
        AppendUint(b, iv.gil);
        b += '}';
        break;
      }
      case Source::Kind::kHolders: {
        const GilStats& g = analysis.gils[s.index];
        const HolderInterval& h = g.holders[s.pos];
        sink.Begin(labels[h.thread], 'X', main_pid, kGilTidBase + g.id);
        b += ",\"cat\":\"gil\",\"ts\":";
        AppendMicros(b, rel(h.start_ns));
        b += ",\"dur\":";
        AppendMicros(b, h.end_ns > h.start_ns ? h.end_ns - h.start_ns : 0);
        break;
      }
      case Source::Kind::kWaiting: {
        const GilStats& g = analysis.gils[s.index];
        const WaitingStep& step = g.waiting[s.pos];
        sink.Begin(counter_names[s.index], 'C', main_pid, kGilTidBase + g.id);
        b += ",\"cat\":\"gil\",\"ts\":";
        AppendMicros(b, rel(step.ts_ns));
        b += ",\"args\":{\"waiting\":";
        AppendUint(b, step.waiting);
        b += '}';
        break;
      }
    }
    sink.End();
    ++s.pos;
  };

  using Entry = std::pair<std::uint64_t, std::size_t>;  // (time, source)
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  for (std::size_t k = 0; k < sources.size(); ++k) {
    if (settle(sources[k])) heap.push({time_of(sources[k]), k});
  }
  while (!heap.empty() && written_ < max_slices_) {
    const std::size_t k = heap.top().second;
    heap.pop();
    emit(sources[k]);
    ++written_;
    if (settle(sources[k])) heap.push({time_of(sources[k]), k});
  }

  if (!heap.empty()) {
    const std::uint64_t cutoff = heap.top().first;
    for (const Source& s : sources) omitted_ += remaining(s);
    std::string& b = sink.raw();
    sink.Begin(Quote("gilscope: trace truncated, " + std::to_string(omitted_) + " slices omitted (limit " +
                     std::to_string(max_slices_) + ")"),
               'i', main_pid, 0);
    b += ",\"cat\":\"gilscope\",\"s\":\"g\",\"ts\":";
    AppendMicros(b, rel(cutoff));
    b += ",\"args\":{\"omitted_slices\":";
    AppendUint(b, omitted_);
    b += '}';
    sink.End();
  }
  sink.Flush();

  out_ << "\n],\"otherData\":{\"gilscope_version\":" << Quote(trace.info.gilscope_version)
       << ",\"script\":" << Quote(trace.info.script) << ",\"slices_written\":" << written_
       << ",\"slices_omitted\":" << omitted_ << "}}\n";
}

}  // namespace gilscope::report
