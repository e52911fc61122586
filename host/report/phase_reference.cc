// The reference implementations of phase_reference.h. Written for
// obviousness, not speed: each figure is read off the timeline the way
// phases.h defines it, with nothing inferred.

#include "report/phase_reference.h"

#include <algorithm>
#include <utility>

namespace gilscope::report {
namespace {

// A half-open interval [start, end) of time.
struct Span {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
};

// Adds [from, to) (clipped to the window) to `per_bucket`, whose entry k is
// bucket `first` + k, each bucket getting the nanoseconds inside it.
void Spread(const ActivitySeries& s, std::vector<std::uint64_t>& per_bucket, std::size_t first, std::uint64_t from,
            std::uint64_t to) {
  from = std::max(from, s.start_ns);
  to = std::min(to, s.end_ns);
  for (std::size_t b = s.BucketOf(from); from < to; ++b) {
    const std::uint64_t edge = std::min(to, s.BucketStart(b + 1));
    per_bucket[b - first] += edge - from;
    from = edge;
  }
}

// The union of a GIL's holder slices (they overlap only after dropped
// events) inside its own window, in time order: when the GIL was busy.
std::vector<Span> BusySpans(const GilStats& gil) {
  std::vector<Span> out;
  for (const HolderInterval& h : gil.holders) {  // sorted by start
    const std::uint64_t from = std::max(h.start_ns, gil.start_ns), to = std::min(h.end_ns, gil.end_ns);
    if (to <= from) continue;
    if (!out.empty() && from <= out.back().end) {
      out.back().end = std::max(out.back().end, to);
    } else {
      out.push_back({from, to});
    }
  }
  return out;
}

// When at least one thread waited for the GIL: the steps with a non-zero
// count, each lasting to the next step (the last to `end`).
std::vector<Span> WaitedSpans(const GilStats& gil, std::uint64_t end) {
  std::vector<Span> out;
  for (std::size_t i = 0; i < gil.waiting.size(); ++i) {
    const std::uint64_t to = i + 1 < gil.waiting.size() ? gil.waiting[i + 1].ts_ns : end;
    if (gil.waiting[i].waiting > 0 && to > gil.waiting[i].ts_ns) out.push_back({gil.waiting[i].ts_ns, to});
  }
  return out;
}

// The intersection of two sorted lists of disjoint spans.
std::vector<Span> Intersect(const std::vector<Span>& a, const std::vector<Span>& b) {
  std::vector<Span> out;
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const std::uint64_t from = std::max(a[i].start, b[j].start);
    const std::uint64_t to = std::min(a[i].end, b[j].end);
    if (to > from) out.push_back({from, to});
    (a[i].end < b[j].end) ? ++i : ++j;
  }
  return out;
}

}  // namespace

ActivitySeries ActivityFromTimeline(const Analysis& analysis, std::size_t buckets) {
  ActivitySeries s = ActivitySeries::Geometry(analysis.start_ns, analysis.end_ns, buckets);

  s.gils.resize(analysis.gils.size());
  for (std::size_t g = 0; g < analysis.gils.size(); ++g) {
    ActivitySeries::Gil& out = s.gils[g];
    out.busy_ns.assign(s.buckets, 0);
    out.contended_ns.assign(s.buckets, 0);
    const std::vector<Span> busy = BusySpans(analysis.gils[g]);
    for (const Span& b : busy) Spread(s, out.busy_ns, 0, b.start, b.end);
    for (const Span& c : Intersect(busy, WaitedSpans(analysis.gils[g], s.end_ns))) {
      Spread(s, out.contended_ns, 0, c.start, c.end);
    }
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
        Spread(s, out.held_ns, out.first_bucket, iv.start_ns, iv.end_ns);
        continue;
      }
      Spread(s, out.waiting_ns, out.first_bucket, iv.start_ns, iv.end_ns);
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
  // One copy of every event, re-windowed for each phase (Analyze takes the
  // window from the trace).
  RunTrace clipped = trace;
  for (const PhaseSpan& span : spans) {
    clipped.start_ns = span.start_ns;
    clipped.end_ns = span.end_ns;
    Analysis a = AnalyzeWithoutPhases(clipped);
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
