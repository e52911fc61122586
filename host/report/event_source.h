// Where analysis reads a run's events from, one stream per thread, without
// needing them all in memory at once.
//
// A run of ten minutes at a million GIL events per second is 600 M events:
// 9.6 GB as recorder::Event, far more than a report may hold. So analysis
// does not take a RunTrace full of events; it takes an EventSource, which
// hands out the run's facts (a RunTrace whose threads carry identity but no
// events) and opens a cursor per stream that yields that stream's events in
// the order the thread wrote them, a batch at a time.
//
//   TraceSource      a RunTrace already in memory (tests, small runs)
//   RawFileSource    events.raw, read in bounded memory (raw_file.h)
//
// Contract for every source:
//   - meta().threads[i] describes stream i; its `events` is empty for file
//     sources (a TraceSource may leave them in place: nothing reads them
//     through meta()).
//   - Open(i) may be called any number of times, also while other cursors
//     are open (analysis keeps one cursor per stream open during a pass, and
//     may make a second pass).
//   - A cursor's memory is bounded by a constant (a read buffer), never by
//     the stream's length.
//   - Cursors and the source are used from one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "recorder/event.h"
#include "report/run_trace.h"

namespace gilscope::report {

// Reads one stream front to back.
class StreamCursor {
 public:
  virtual ~StreamCursor() = default;
  // Copies up to `max` (> 0) next events of the stream into `out` and
  // returns how many; 0 only at the end of the stream.
  virtual std::size_t Read(recorder::Event* out, std::size_t max) = 0;
};

class EventSource {
 public:
  virtual ~EventSource() = default;
  // The run's facts; threads[i] names stream i (see the contract above).
  virtual const RunTrace& meta() const = 0;
  // Events in stream i: exactly what its cursors will yield.
  virtual std::uint64_t event_count(std::size_t stream) const = 0;
  // A new cursor at the start of stream i (i < meta().threads.size()).
  virtual std::unique_ptr<StreamCursor> Open(std::size_t stream) const = 0;

  // Sum of event_count over every stream.
  std::uint64_t total_events() const;
};

// A RunTrace in memory. Does not own it: `trace` must outlive the source and
// its cursors.
class TraceSource final : public EventSource {
 public:
  explicit TraceSource(const RunTrace& trace) : trace_(trace) {}
  const RunTrace& meta() const override { return trace_; }
  std::uint64_t event_count(std::size_t stream) const override;
  std::unique_ptr<StreamCursor> Open(std::size_t stream) const override;

 private:
  const RunTrace& trace_;
};

}  // namespace gilscope::report
