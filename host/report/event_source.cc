#include "report/event_source.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace gilscope::report {
namespace {

// A window onto a vector that lives in the caller's RunTrace.
class SpanCursor final : public StreamCursor {
 public:
  explicit SpanCursor(const std::vector<recorder::Event>& events) : events_(events) {}

  std::size_t Read(recorder::Event* out, std::size_t max) override {
    const std::size_t n = std::min(max, events_.size() - next_);
    std::copy_n(events_.data() + next_, n, out);
    next_ += n;
    return n;
  }

 private:
  const std::vector<recorder::Event>& events_;
  std::size_t next_ = 0;
};

}  // namespace

std::uint64_t EventSource::total_events() const {
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < meta().threads.size(); ++i) n += event_count(i);
  return n;
}

std::uint64_t TraceSource::event_count(std::size_t stream) const {
  return trace_.threads.at(stream).events.size();
}

std::unique_ptr<StreamCursor> TraceSource::Open(std::size_t stream) const {
  if (stream >= trace_.threads.size()) {
    throw std::out_of_range("TraceSource::Open: no stream " + std::to_string(stream));
  }
  return std::make_unique<SpanCursor>(trace_.threads[stream].events);
}

}  // namespace gilscope::report
