// FindPhases(): where the GIL's behaviour changed during a run.
//
// The method, in four steps:
//
// 1. Regions. Top-level gilscope.region()s (depth 0, any thread) lasting at
//    least kMinPhaseNs set phase boundaries at their edges: the script's own
//    word for its phases. Longest regions first; an edge closer than
//    kMinPhaseNs to a boundary already set is skipped, so a region opened in
//    a hot loop cannot shred the run, and at most kMaxPhases - 1 edges come
//    from regions. The pieces between these boundaries are searched for
//    changes separately, and a region boundary is never merged away.
//
// 2. Signals. Per bucket, one value per "dimension" of the run:
//      - each GIL's contended share (held while another thread waited, as a
//        share of the bucket),
//      - each thread's waiting share (time it waited for a GIL, as a share
//        of the bucket),
//      - each thread's mean wait per acquisition, pooled over a stretch
//        (wait ns / waits), on the scale f(w) = ln(1 + w / kWaitScaleNs).
//    Only dimensions that ever move are kept (a GIL never contended, a thread
//    that never waited, a thread with too few waits for a mean). Busy time
//    and held time are deliberately not signals: a script going from I/O to
//    computing in one thread has no GIL story to tell, and a phase is only
//    worth showing when contention or waiting changed.
//    Two stretches differ "materially" (what a person would call a
//    different regime) when some dimension does: a share by a quarter of the
//    time and by a factor of 2.5 (kMaterialShare, kMaterialShareRatio), a
//    mean wait by a step of ln 10 on f (kMaterialWaitStep) while its thread
//    waits under a quarter of the time on both sides.
//
// 3. Change points: seeded binary segmentation (Kovacs, Buhlmann, Li,
//    Munk: "Seeded binary segmentation: a general methodology for fast and
//    optimal changepoint detection", Biometrika 110(1), 2023). Inside a stretch
//    [a, e) of buckets, the best single split k maximises the between-part
//    sum of squares  W_L W_R / (W_L + W_R) * sum_d (mu_L,d - mu_R,d)^2
//    (W: lengths in buckets; mu: values pooled over each part, shares in
//    units of kMaterialShare, mean waits of kMaterialWaitStep), the maximum
//    likelihood split for a shift in the mean. Plain binary segmentation
//    misses a short middle stretch (A B A': neither side of any single split
//    of the whole differs much), so the split is sought in a fixed set of
//    "seeded" sub-intervals too (lengths halving down to two minimum
//    phases, each overlapping the next by half), and the best-scoring one
//    whose two parts differ materially is taken. Stretches are split,
//    strongest change first, while a split is material and both parts last
//    at least the minimum phase length (kMinPhaseBuckets buckets and
//    kMinPhaseNs), up to kMaxPhases.
//
// 4. Merge. Neighbouring phases (inside one piece) whose pooled figures do
//    not differ materially are merged, the closest pair first: a split
//    found material inside a seeded interval may not be against its final
//    neighbours.
//
// What that guarantees: noise never makes a phase, because a phase needs a
// material difference in figures pooled over at least the minimum length,
// and a spike of height h (at most 1, a share) and length s moves such a
// pool by at most h * s / length: spikes shorter than a quarter of the
// minimum phase (kMaterialShare) never split. A boundary sits on a bucket
// edge (or exactly on a region edge).

#include "report/phases.h"

#include <algorithm>
#include <cmath>
#include <queue>
#include <utility>

#include "report/analysis.h"

namespace gilscope::report {
namespace {

// --- thresholds ---------------------------------------------------------------
// A phase lasts at least 1/32 of the run (16 of the default 512 buckets):
// anything shorter is a blip on the report's timeline rather than a stretch
// a person would reason about...
constexpr std::size_t kMinPhaseBuckets = 16;
// ...and at least 100 ms, twenty switch intervals at CPython's default: a
// convoy needs 20 round trips of one interval each to be reported at all,
// and figures pooled over fewer intervals than that are mostly noise.
constexpr std::uint64_t kMinPhaseNs = 100'000'000;
// Shares (contended, waiting) are different regimes when they differ by a
// quarter of the time...
constexpr double kMaterialShare = 0.25;
// ...and by a factor of 2.5, shares under 5% counting as about nothing
// (compared as ln(share + 0.05)). The factor keeps one regime whole when its
// intensity wanders: an echo server beside a CPU-bound thread on this
// machine, under load, saw its GIL contended 43% for a second, then 91% for
// 300 ms, then 58%: one convoy, not three. The quarter keeps a spike from
// making a phase: a short burst of contention in a quiet stretch multiplies
// a near-zero share, but moves it by less than a quarter over a minimum
// phase. Examples: 0 vs 30% and 30% vs 90% are material; 43% vs 91% and
// 20% vs 50% are not.
constexpr double kShareFloor = 0.05;
constexpr double kMaterialShareRatio = 0.91629073187415511;  // ln 2.5
// Mean waits are compared on f(w) = ln(1 + w / 0.25 ms): waits under a
// quarter millisecond are all "no wait" next to a 5 ms switch interval, and
// a step of ln 10 is material: from no wait to 2.25 ms (half a default
// switch interval) or more. Smaller steps are the mix of fast and slow
// waits changing. The mean wait is the signal for a thread that waits
// little (an I/O thread whose rare waits grew long); once a thread waits a
// quarter of its time or more on either side, its waiting share tells the
// story, and how that time splits into many short waits or a few long ones
// is the same regime: an echo server under a loaded machine moved between
// 0.07 and 3.2 ms mean waits, waiting 78% and 98%, inside one convoy.
constexpr double kWaitScaleNs = 250'000;
constexpr double kMaterialWaitStep = 2.3025850929940457;  // ln 10
// A mean over fewer waits than this is not compared (one slow wait is not
// a pattern); it is also the least a thread needs over the run for its
// mean wait to be a signal at all (twice: once per side).
constexpr double kMinWaitsForMean = 20;
// More phases than this stop being a summary.
constexpr std::size_t kMaxPhases = 16;

// One signal of the run: prefix sums over the buckets it is active in.
struct Dimension {
  bool mean_wait = false;          // false: a share of the bucket's length
  std::size_t first = 0;           // bucket of sum[0]
  std::vector<double> sum;         // sum[k]: total over buckets [first, first + k)
  std::vector<double> count;       // mean_wait: waits over the same buckets
  std::vector<double> waiting;     // mean_wait: the thread's waiting ns, likewise

  std::size_t last() const { return first + sum.size() - 1; }  // one past the active buckets
  static double Range(const std::vector<double>& prefix, std::size_t first, std::size_t a, std::size_t e) {
    const std::size_t last = first + prefix.size() - 1;
    const std::size_t lo = std::clamp(a, first, last), hi = std::clamp(e, first, last);
    return prefix[hi - first] - prefix[lo - first];
  }
};

template <class T>
Dimension MakeDimension(std::size_t first, const std::vector<T>& values) {
  Dimension d;
  d.first = first;
  d.sum.assign(values.size() + 1, 0.0);
  for (std::size_t k = 0; k < values.size(); ++k) d.sum[k + 1] = d.sum[k] + static_cast<double>(values[k]);
  return d;
}

class Search {
 public:
  Search(const ActivitySeries& s, std::size_t min_buckets) : s_(s), min_(min_buckets) {
    length_.assign(s.buckets + 1, 0.0);
    for (std::size_t b = 0; b < s.buckets; ++b) {
      length_[b + 1] = length_[b] + static_cast<double>(s.BucketStart(b + 1) - s.BucketStart(b));
    }
    for (const ActivitySeries::Gil& g : s.gils) {
      if (Total(g.contended_ns) > 0) dims_.push_back(MakeDimension(0, g.contended_ns));
    }
    for (const ActivitySeries::Thread& t : s.threads) {
      if (Total(t.waiting_ns) > 0) dims_.push_back(MakeDimension(t.first_bucket, t.waiting_ns));
      if (Total(t.waits) >= 2 * kMinWaitsForMean) {
        Dimension d = MakeDimension(t.first_bucket, t.wait_ns);
        d.mean_wait = true;
        d.count = MakeDimension(t.first_bucket, t.waits).sum;
        d.waiting = MakeDimension(t.first_bucket, t.waiting_ns).sum;
        dims_.push_back(std::move(d));
      }
    }
  }

  std::size_t min_buckets() const { return min_; }

  // The largest difference between [a, k) and [k, e) over all dimensions,
  // in units of materiality (>= 1: material), and the split's score: the
  // between-part sum of squares of the differences in units of
  // kMaterialShare (mean waits: of kMaterialWaitStep).
  struct Comparison {
    double largest = 0;
    double score = 0;
  };
  Comparison Compare(std::size_t a, std::size_t k, std::size_t e) const {
    Comparison c;
    const double left = length_[k] - length_[a], right = length_[e] - length_[k];
    if (left <= 0 || right <= 0) return c;
    double squares = 0;
    for (const Dimension& d : dims_) {
      if (d.first >= e || d.last() <= a) continue;  // not active here
      const Difference z = Differ(d, a, k, e, left, right);
      squares += z.score * z.score;
      c.largest = std::max(c.largest, z.material);
    }
    const double unit = static_cast<double>(s_.bucket_ns);
    c.score = (left / unit) * (right / unit) / ((left + right) / unit) * squares;
    return c;
  }

  // The best material split of [a, e) (both parts >= min_), or none.
  struct Split {
    bool found = false;
    std::size_t at = 0;
    double score = 0;
  };
  Split Best(std::size_t a, std::size_t e) const {
    Split best;
    if (e - a < 2 * min_) return best;
    // The seeded intervals inside [a, e): the whole, then lengths halving,
    // each level's intervals overlapping by half and the last flush with e.
    for (std::size_t len = e - a; len >= 2 * min_; len /= 2) {
      const std::size_t step = std::max<std::size_t>(1, len / 2);
      for (std::size_t s = a;; s += step) {
        const std::size_t start = std::min(s, e - len);
        BestIn(start, start + len, best);
        if (start + len >= e) break;
      }
    }
    return best;
  }

 private:
  template <class T>
  static double Total(const std::vector<T>& v) {
    double t = 0;
    for (const T& x : v) t += static_cast<double>(x);
    return t;
  }

  static double WaitScale(double wait_ns) { return std::log1p(wait_ns / kWaitScaleNs); }

  // How one dimension differs between [a, k) and [k, e): `score` for
  // placing a split, `material` for accepting it (>= 1: material).
  struct Difference {
    double score = 0;
    double material = 0;
  };
  Difference Differ(const Dimension& d, std::size_t a, std::size_t k, std::size_t e, double left,
                    double right) const {
    const double l = Dimension::Range(d.sum, d.first, a, k), r = Dimension::Range(d.sum, d.first, k, e);
    if (!d.mean_wait) {
      const double pl = l / left, pr = r / right;
      const double by_share = std::abs(pl - pr) / kMaterialShare;
      const double by_ratio = std::abs(std::log(pl + kShareFloor) - std::log(pr + kShareFloor)) / kMaterialShareRatio;
      return {by_share, std::min(by_share, by_ratio)};
    }
    const double nl = Dimension::Range(d.count, d.first, a, k), nr = Dimension::Range(d.count, d.first, k, e);
    if (nl < kMinWaitsForMean || nr < kMinWaitsForMean) return {};
    const double z = std::abs(WaitScale(l / nl) - WaitScale(r / nr)) / kMaterialWaitStep;
    const double waiting = std::max(Dimension::Range(d.waiting, d.first, a, k) / left,
                                    Dimension::Range(d.waiting, d.first, k, e) / right);
    return {z, waiting < kMaterialShare ? z : 0.0};
  }

  // Updates `best` with the best material split of [s, t), if it scores higher.
  void BestIn(std::size_t s, std::size_t t, Split& best) const {
    for (std::size_t k = s + min_; k + min_ <= t; ++k) {
      const Comparison c = Compare(s, k, t);
      if (c.largest >= 1 && (!best.found || c.score > best.score)) best = {true, k, c.score};
    }
  }

  const ActivitySeries& s_;
  const std::size_t min_;
  std::vector<double> length_;  // prefix sums of the buckets' lengths, ns
  std::vector<Dimension> dims_;
};

// Splits [a, e) at material changes (step 3), strongest first, into at most
// `room` + 1 parts; returns the split points in order.
std::vector<std::size_t> SplitPiece(const Search& search, std::size_t a, std::size_t e, std::size_t room) {
  struct Candidate {
    std::size_t a, e;
    Search::Split split;
    bool operator<(const Candidate& o) const { return split.score < o.split.score; }
  };
  std::priority_queue<Candidate> queue;
  auto consider = [&](std::size_t from, std::size_t to) {
    const Search::Split s = search.Best(from, to);
    if (s.found) queue.push({from, to, s});
  };
  consider(a, e);
  std::vector<std::size_t> cuts;
  while (!queue.empty() && cuts.size() < room) {
    const Candidate c = queue.top();
    queue.pop();
    cuts.push_back(c.split.at);
    consider(c.a, c.split.at);
    consider(c.split.at, c.e);
  }
  std::sort(cuts.begin(), cuts.end());
  // Step 4: merge neighbours that do not differ materially, closest first.
  for (;;) {
    std::size_t weakest = cuts.size();
    double smallest = 1;
    for (std::size_t i = 0; i < cuts.size(); ++i) {
      const std::size_t from = i == 0 ? a : cuts[i - 1], to = i + 1 < cuts.size() ? cuts[i + 1] : e;
      const double largest = search.Compare(from, cuts[i], to).largest;
      if (largest < smallest) {
        smallest = largest;
        weakest = i;
      }
    }
    if (weakest == cuts.size()) break;
    cuts.erase(cuts.begin() + static_cast<std::ptrdiff_t>(weakest));
  }
  return cuts;
}

struct Boundary {
  std::uint64_t ns = 0;
  std::string source;
};

// Step 1: the boundaries top-level regions set, in time order.
std::vector<Boundary> RegionBoundaries(const ActivitySeries& s, const std::vector<Marker>& markers,
                                       std::string& first_source) {
  std::vector<const Marker*> regions;
  for (const Marker& m : markers) {
    if (MaySetPhaseBoundary(m)) regions.push_back(&m);
  }
  std::stable_sort(regions.begin(), regions.end(), [](const Marker* x, const Marker* y) {
    return x->end_ns - x->start_ns > y->end_ns - y->start_ns;
  });
  std::vector<Boundary> out;
  auto far_enough = [&](std::uint64_t ns) {
    if (ns <= s.start_ns || ns >= s.end_ns) return false;
    if (ns - s.start_ns < kMinPhaseNs || s.end_ns - ns < kMinPhaseNs) return false;
    for (const Boundary& b : out) {
      if ((ns > b.ns ? ns - b.ns : b.ns - ns) < kMinPhaseNs) return false;
    }
    return true;
  };
  for (const Marker* m : regions) {
    if (m->start_ns <= s.start_ns && first_source == "start") first_source = "region " + m->name;
    for (const auto& [ns, source] : {std::pair{m->start_ns, "region " + m->name},
                                     std::pair{m->end_ns, "after region " + m->name}}) {
      if (out.size() + 1 < kMaxPhases && far_enough(ns)) out.push_back({ns, source});
    }
  }
  std::sort(out.begin(), out.end(), [](const Boundary& x, const Boundary& y) { return x.ns < y.ns; });
  return out;
}

}  // namespace

bool MaySetPhaseBoundary(const Marker& m) {
  return m.region && m.depth == 0 && m.end_ns > m.start_ns && m.end_ns - m.start_ns >= kMinPhaseNs;
}

ActivitySeries ActivitySeries::Geometry(std::uint64_t start_ns, std::uint64_t end_ns, std::size_t requested) {
  ActivitySeries s;
  s.start_ns = start_ns;
  s.end_ns = std::max(end_ns, start_ns);
  const std::uint64_t window = s.end_ns - s.start_ns;
  if (window == 0 || requested == 0) return s;
  s.bucket_ns = std::max<std::uint64_t>(1, (window + requested - 1) / requested);
  s.buckets = static_cast<std::size_t>((window + s.bucket_ns - 1) / s.bucket_ns);
  return s;
}

std::size_t ActivitySeries::BucketOf(std::uint64_t ns) const {
  if (buckets == 0 || ns <= start_ns) return 0;
  return static_cast<std::size_t>(std::min<std::uint64_t>((ns - start_ns) / bucket_ns, buckets - 1));
}

std::uint64_t ActivitySeries::BucketStart(std::size_t b) const {
  return b >= buckets ? end_ns : start_ns + static_cast<std::uint64_t>(b) * bucket_ns;
}

void ActivitySeries::Spread(std::vector<std::uint64_t>& per_bucket, std::size_t first, std::uint64_t from,
                            std::uint64_t to) const {
  from = std::max(from, start_ns);
  to = std::min(to, end_ns);
  for (std::size_t b = BucketOf(from); from < to; ++b) {
    const std::uint64_t edge = std::min(to, BucketStart(b + 1));
    if (b >= first && b - first < per_bucket.size()) per_bucket[b - first] += edge - from;
    from = edge;
  }
}

std::vector<PhaseSpan> FindPhases(const ActivitySeries& series, const std::vector<Marker>& markers) {
  const std::uint64_t end = std::max(series.end_ns, series.start_ns);
  std::string first_source = "start";
  std::vector<Boundary> boundaries = RegionBoundaries(series, markers, first_source);

  if (series.buckets > 0) {
    const auto min_buckets = std::max<std::size_t>(
        kMinPhaseBuckets, static_cast<std::size_t>((kMinPhaseNs + series.bucket_ns - 1) / series.bucket_ns));
    const Search search(series, min_buckets);
    // The pieces between region boundaries, in buckets: each boundary goes
    // to the nearest bucket edge for the search (it stays exact in the
    // result; change points keep a minimum phase away from it).
    auto nearest_edge = [&](std::uint64_t ns) {
      return std::min<std::size_t>(
          static_cast<std::size_t>((ns - series.start_ns + series.bucket_ns / 2) / series.bucket_ns), series.buckets);
    };
    std::vector<Boundary> changes;
    std::size_t piece_start = 0;
    for (std::size_t i = 0; i <= boundaries.size(); ++i) {
      const std::size_t piece_end = i < boundaries.size() ? nearest_edge(boundaries[i].ns) : series.buckets;
      const std::size_t room = kMaxPhases - 1 - boundaries.size() - changes.size();
      if (piece_end > piece_start && room > 0) {
        for (std::size_t cut : SplitPiece(search, piece_start, piece_end, room)) {
          changes.push_back({series.BucketStart(cut), "change"});
        }
      }
      piece_start = piece_end;
    }
    boundaries.insert(boundaries.end(), changes.begin(), changes.end());
    std::sort(boundaries.begin(), boundaries.end(), [](const Boundary& x, const Boundary& y) { return x.ns < y.ns; });
  }

  std::vector<PhaseSpan> phases;
  std::uint64_t from = series.start_ns;
  std::string source = first_source;
  for (Boundary& b : boundaries) {
    phases.push_back({from, b.ns, std::move(source)});
    from = b.ns;
    source = std::move(b.source);
  }
  phases.push_back({from, end, std::move(source)});
  return phases;
}

}  // namespace gilscope::report
