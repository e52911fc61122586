// The reference implementations of phase_reference.h. Written for
// obviousness, not speed: each figure is read off the timeline the way
// phases.h defines it, with nothing inferred.

#include "report/phase_reference.h"

#include <algorithm>
#include <utility>

namespace gilscope::report {
namespace {

// Calls fn(from, to) for each stretch in which the GIL was busy: the union
// of its holder slices (they overlap only after dropped events) inside its
// own window, in time order.
template <class Fn>
void ForEachBusySpan(const GilStats& gil, Fn&& fn) {
  bool open = false;
  std::uint64_t start = 0, end = 0;
  for (const HolderInterval& h : gil.holders) {  // sorted by start
    const std::uint64_t from = std::max(h.start_ns, gil.start_ns), to = std::min(h.end_ns, gil.end_ns);
    if (to <= from) continue;
    if (open && from <= end) {
      end = std::max(end, to);
      continue;
    }
    if (open) fn(start, end);
    open = true;
    start = from;
    end = to;
  }
  if (open) fn(start, end);
}

// Walks a GIL's waiting steps forward, for busy stretches given in time
// order: calls fn(from, to) for each part of [a, b) in which at least one
// thread waited (a step's count lasts to the next step; the last one to
// `end`).
class WaitedParts {
 public:
  WaitedParts(const std::vector<WaitingStep>& steps, std::uint64_t end) : steps_(steps), end_(end) {}

  template <class Fn>
  void Within(std::uint64_t a, std::uint64_t b, Fn&& fn) {
    // The step in force at a: the last one at or before it.
    while (next_ + 1 < steps_.size() && steps_[next_ + 1].ts_ns <= a) ++next_;
    for (std::size_t i = next_; i < steps_.size() && steps_[i].ts_ns < b; ++i) {
      const std::uint64_t step_end = i + 1 < steps_.size() ? steps_[i + 1].ts_ns : end_;
      const std::uint64_t from = std::max(a, steps_[i].ts_ns), to = std::min(b, step_end);
      if (steps_[i].waiting > 0 && to > from) fn(from, to);
    }
  }

 private:
  const std::vector<WaitingStep>& steps_;
  std::uint64_t end_;
  std::size_t next_ = 0;
};

}  // namespace

ActivitySeries ActivityFromTimeline(const Analysis& analysis, std::size_t buckets) {
  ActivitySeries s = ActivitySeries::Geometry(analysis.start_ns, analysis.end_ns, buckets);

  s.gils.resize(analysis.gils.size());
  for (std::size_t g = 0; g < analysis.gils.size(); ++g) {
    ActivitySeries::Gil& out = s.gils[g];
    out.busy_ns.assign(s.buckets, 0);
    out.contended_ns.assign(s.buckets, 0);
    // Contended: busy while someone waited. Both lists are in time order,
    // so one forward walk over the steps serves every busy stretch.
    WaitedParts waited(analysis.gils[g].waiting, s.end_ns);
    ForEachBusySpan(analysis.gils[g], [&](std::uint64_t a, std::uint64_t b) {
      s.Spread(out.busy_ns, 0, a, b);
      waited.Within(a, b, [&](std::uint64_t from, std::uint64_t to) { s.Spread(out.contended_ns, 0, from, to); });
    });
  }

  s.threads.resize(analysis.threads.size());
  for (std::size_t i = 0; i < analysis.threads.size(); ++i) {
    const ThreadStats& t = analysis.threads[i];
    ActivitySeries::Thread& out = s.threads[i];
    out.first_bucket = s.BucketOf(t.lifetime_start_ns);
    if (s.buckets == 0 || t.lifetime_end_ns <= t.lifetime_start_ns) continue;
    const std::size_t n = s.BucketOf(t.lifetime_end_ns - 1) - out.first_bucket + 1;
    out.held_ns.assign(n, 0);
    out.waiting_ns.assign(n, 0);
    out.waits.assign(n, 0);
    out.wait_ns.assign(n, 0);
    const std::vector<StateInterval>& ivs = t.intervals;
    for (std::size_t k = 0; k < ivs.size(); ++k) {
      const StateInterval& iv = ivs[k];
      if (iv.state == GilState::kHolding) {
        s.Spread(out.held_ns, out.first_bucket, iv.start_ns, iv.end_ns);
        continue;
      }
      s.Spread(out.waiting_ns, out.first_bucket, iv.start_ns, iv.end_ns);
      const bool completed = k + 1 < ivs.size() && ivs[k + 1].state == GilState::kHolding &&
                             ivs[k + 1].gil == iv.gil && ivs[k + 1].start_ns == iv.end_ns;
      if (completed) {
        const std::size_t b = s.BucketOf(iv.end_ns) - out.first_bucket;
        ++out.waits[b];
        out.wait_ns[b] += iv.end_ns - iv.start_ns;
      }
    }
  }
  return s;
}

std::vector<Phase> PhaseFiguresByClipping(const RunTrace& trace, const std::vector<PhaseSpan>& spans) {
  std::vector<Phase> phases;
  phases.reserve(spans.size());
  for (const PhaseSpan& span : spans) {
    Analysis a = AnalyzeWindow(trace, span.start_ns, span.end_ns);
    Phase& p = phases.emplace_back();
    p.start_ns = span.start_ns;
    p.end_ns = span.end_ns;
    p.source = span.source;
    for (GilStats& g : a.gils) {
      std::vector<HolderInterval>().swap(g.holders);
      std::vector<WaitingStep>().swap(g.waiting);
    }
    for (ThreadStats& t : a.threads) std::vector<StateInterval>().swap(t.intervals);
    p.gils = std::move(a.gils);
    p.threads = std::move(a.threads);
  }
  return phases;
}

Phase WholeRunPhase(Analysis& analysis, const PhaseSpan& span) {
  Phase p;
  p.start_ns = span.start_ns;
  p.end_ns = span.end_ns;
  p.source = span.source;
  p.gils.reserve(analysis.gils.size());
  for (GilStats& g : analysis.gils) {
    std::vector<HolderInterval> holders = std::move(g.holders);
    std::vector<WaitingStep> waiting = std::move(g.waiting);
    g.holders.clear();
    g.waiting.clear();
    p.gils.push_back(g);
    g.holders = std::move(holders);
    g.waiting = std::move(waiting);
  }
  p.threads.reserve(analysis.threads.size());
  for (ThreadStats& t : analysis.threads) {
    std::vector<StateInterval> intervals = std::move(t.intervals);
    t.intervals.clear();
    p.threads.push_back(t);
    t.intervals = std::move(intervals);
  }
  return p;
}

}  // namespace gilscope::report
