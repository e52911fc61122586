// libFuzzer target: ReadRawBytes on arbitrary bytes, in every mode.
//
// A RawFileError is the expected answer to garbage; anything else (a crash,
// a sanitizer report, another exception, a hang, unbounded memory) is a bug.
// Beyond not crashing, each input checks what the reader promises:
//   - an error is one line that names the file;
//   - what was read is consistent (byte counts, stream ids, event counts);
//   - a file read strictly, written back with RawWriter, reads back the same.

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "report/raw_file.h"

namespace {

using gilscope::report::RawContents;
using gilscope::report::RawFileError;
using gilscope::report::ReadOptions;
using gilscope::report::RunTrace;

constexpr char kName[] = "fuzz.raw";

[[noreturn]] void Broken(const char* what) {
  std::fprintf(stderr, "invariant broken: %s\n", what);
  std::abort();
}

void Check(bool ok, const char* what) {
  if (!ok) Broken(what);
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
  Check(events * sizeof(gilscope::recorder::Event) <= size, "events fit in the input");
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
      if (mode == 0) CheckRoundTrip(c.trace);
    } catch (const RawFileError& e) {
      const std::string message = e.what();
      Check(message.rfind(std::string(kName) + ": ", 0) == 0, "an error names the file");
      Check(message.find('\n') == std::string::npos, "an error is one line");
      Check(message.size() < 1024, "an error is short");
    }
  }
  return 0;
}
