// libFuzzer target: ReadRawBytes and RawFileSource on arbitrary bytes, in
// every mode.
//
// A RawFileError is the expected answer to garbage; anything else (a crash,
// a sanitizer report, another exception, a hang, unbounded memory) is a bug.
// Beyond not crashing, each input checks what the reader promises:
//   - an error is one line that names the file;
//   - what was read is consistent (byte counts, stream ids, event counts);
//   - RawFileSource over the same bytes agrees with ReadRawBytes: it fails
//     (at Open or in a cursor) exactly when ReadRawBytes does, and otherwise
//     says the same and yields the same events, read in odd-sized batches
//     through cursors open at once;
//   - a file read strictly, written back with RawWriter, reads back the same.

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "report/raw_file.h"

namespace {

using gilscope::recorder::Event;
using gilscope::report::RawContents;
using gilscope::report::RawFileError;
using gilscope::report::RawFileSource;
using gilscope::report::ReadOptions;
using gilscope::report::RunTrace;
using gilscope::report::StreamCursor;

constexpr char kName[] = "fuzz.raw";

[[noreturn]] void Broken(const char* what) {
  std::fprintf(stderr, "invariant broken: %s\n", what);
  std::abort();
}

void Check(bool ok, const char* what) {
  if (!ok) Broken(what);
}

void CheckError(const RawFileError& e) {
  const std::string message = e.what();
  Check(message.rfind(std::string(kName) + ": ", 0) == 0, "an error names the file");
  Check(message.find('\n') == std::string::npos, "an error is one line");
  Check(message.size() < 1024, "an error is short");
}

void CheckConsistent(const RawContents& c, std::size_t size, const ReadOptions& options) {
  Check(c.whole_bytes >= gilscope::report::kRawHeaderSize, "whole_bytes covers the header");
  Check(c.whole_bytes + c.torn_bytes == size, "whole + torn bytes == size");
  Check(options.allow_unfinished || (c.finished && c.torn_bytes == 0), "strict reads are finished and whole");
  Check(!c.finished || c.has_run, "a finished file has a RUN");
  Check(c.stream_ids.size() == c.trace.threads.size(), "one stream id per thread");
  std::uint64_t events = 0;
  for (std::size_t i = 0; i < c.stream_ids.size(); ++i) {
    Check(i == 0 || c.stream_ids[i - 1] < c.stream_ids[i], "stream ids ascend");
    events += c.trace.threads[i].events.size();
  }
  Check(!options.keep_events || events == c.events, "kept events == counted events");
  Check(options.keep_events || events == 0, "no events kept when asked not to");
  Check(events <= size, "events fit in the input (a packed event takes a byte)");
  Check(c.finished || c.streams_without_identity.size() <= c.stream_ids.size(), "unnamed streams are streams");
}

bool SameThreads(const RunTrace& a, const RunTrace& b) {
  if (a.threads.size() != b.threads.size()) return false;
  for (std::size_t i = 0; i < a.threads.size(); ++i) {
    const auto& x = a.threads[i];
    const auto& y = b.threads[i];
    if (x.native_id != y.native_id || x.pid != y.pid || x.name != y.name || x.dropped != y.dropped ||
        x.cpu_s != y.cpu_s || x.events.size() != y.events.size()) {
      return false;
    }
    if (!x.events.empty() &&
        std::memcmp(x.events.data(), y.events.data(), x.events.size() * sizeof(x.events[0])) != 0) {
      return false;
    }
  }
  return true;
}

bool SameRun(const RunTrace& a, const RunTrace& b) {
  const auto& i = a.info;
  const auto& j = b.info;
  if (i.gilscope_version != j.gilscope_version || i.python_version != j.python_version || i.script != j.script ||
      i.args != j.args || i.mode != j.mode || i.instances != j.instances || i.status != j.status ||
      i.exit_code != j.exit_code || i.switch_interval_s != j.switch_interval_s) {
    return false;
  }
  if (a.start_ns != b.start_ns || a.end_ns != b.end_ns || a.marker_names != b.marker_names ||
      a.dropped_no_slot != b.dropped_no_slot || a.gils.size() != b.gils.size() || a.code.size() != b.code.size()) {
    return false;
  }
  for (std::size_t k = 0; k < a.gils.size(); ++k) {
    const auto& g = a.gils[k];
    const auto& h = b.gils[k];
    if (g.id != h.id || g.interpreter != h.interpreter || g.cpython_switch_start != h.cpython_switch_start ||
        g.cpython_switch_end != h.cpython_switch_end || g.holder_tstate_at_start != h.holder_tstate_at_start) {
      return false;
    }
  }
  for (std::size_t k = 0; k < a.code.size(); ++k) {
    const auto& c = a.code[k];
    const auto& d = b.code[k];
    if (c.id != d.id || c.function != d.function || c.file != d.file || c.first_line != d.first_line) return false;
  }
  return SameThreads(a, b);
}

// RawFileSource over the bytes that ReadRawBytes read as `c` (or refused,
// when `c` is null): the same answer. Every stream's cursor is open at once
// and read in turns, batches of 1, 2, 3, ...
void CheckSource(const std::uint8_t* data, std::size_t size, const ReadOptions& options, const RawContents* c) {
  std::vector<std::vector<Event>> read;
  try {
    const auto source = RawFileSource::FromBytes(data, size, kName, options);
    std::vector<std::unique_ptr<StreamCursor>> cursors;
    for (std::size_t s = 0; s < source->meta().threads.size(); ++s) cursors.push_back(source->Open(s));
    read.resize(cursors.size());
    std::vector<Event> buffer(64);
    for (std::size_t open = cursors.size(), batch = 1; open > 0; batch = batch % 64 + 1) {
      for (std::size_t s = 0; s < cursors.size(); ++s) {
        if (!cursors[s]) continue;
        const std::size_t n = cursors[s]->Read(buffer.data(), batch);
        Check(n <= batch, "a cursor reads at most what was asked");
        if (n == 0) {
          cursors[s].reset();
          --open;
        }
        read[s].insert(read[s].end(), buffer.begin(), buffer.begin() + n);
      }
    }
    Check(c != nullptr, "RawFileSource reads what ReadRawBytes refuses");
    Check(source->finished() == c->finished && source->has_run() == c->has_run && source->version() == c->version,
          "the source's flags are the reader's");
    Check(source->stream_ids() == c->stream_ids && source->streams_without_identity() == c->streams_without_identity,
          "the source's streams are the reader's");
    Check(source->whole_bytes() == c->whole_bytes && source->torn_bytes() == c->torn_bytes,
          "the source's byte counts are the reader's");
    Check(source->total_events() == c->events, "the source counts the reader's events");
    for (std::size_t s = 0; s < read.size(); ++s) {
      const std::vector<Event>& want = c->trace.threads[s].events;
      Check(source->event_count(s) == read[s].size(), "a cursor yields its stream's count");
      Check(read[s].size() == want.size() &&
                (want.empty() || std::memcmp(read[s].data(), want.data(), want.size() * sizeof(Event)) == 0),
            "a cursor yields the reader's events");
      Check(source->meta().threads[s].name == c->trace.threads[s].name, "the source names streams as the reader");
    }
  } catch (const RawFileError& e) {
    CheckError(e);
    Check(c == nullptr, "RawFileSource refuses what ReadRawBytes reads");
  }
}

// Writes `trace` with RawWriter into an in-memory file and reads it back.
void CheckRoundTrip(const RunTrace& trace) {
  static const int fd = memfd_create("gilscope_fuzz_raw", MFD_CLOEXEC);
  Check(fd >= 0, "memfd_create");
  Check(ftruncate(fd, 0) == 0, "ftruncate");
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  gilscope::report::WriteRawFile(path, trace);
  const RawContents back = gilscope::report::ReadRawFile(path);
  Check(SameRun(trace, back.trace), "a strictly read file round-trips through RawWriter");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  for (int mode = 0; mode < 4; ++mode) {
    ReadOptions options;
    options.allow_unfinished = (mode & 1) != 0;
    options.keep_events = (mode & 2) == 0;
    try {
      const RawContents c = gilscope::report::ReadRawBytes(data, size, kName, options);
      CheckConsistent(c, size, options);
      if (options.keep_events) CheckSource(data, size, options, &c);
      if (mode == 0) CheckRoundTrip(c.trace);
    } catch (const RawFileError& e) {
      CheckError(e);
      if (options.keep_events) CheckSource(data, size, options, nullptr);
    }
  }
  return 0;
}
