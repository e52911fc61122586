// Phases: the stretches of a run inside which the GIL behaved one way.
//
// Real programs have phases (start-up, warm-up, load, shutdown), and a
// problem that lives in one of them drowns in whole-run figures: an echo
// server's 100,000 fast acquisitions while it is alone hide the few hundred
// 5 ms waits it suffers once a CPU-bound thread starts. So analysis records
// the run's activity in fixed time buckets (ActivitySeries, filled during its
// pass over the events), FindPhases() cuts the run where that activity
// changes (or where the script's top-level gilscope.region()s say), and every
// figure and finding is then also evaluated inside each phase
// (Analysis::phases).
//
// FindPhases() is a pure function of its input, so tests hand it synthetic
// series with known change points. phase_reference.h builds the series from
// a finished Analysis's timeline: the definition below, written out as code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace gilscope::report {

struct Marker;  // analysis.h

// The run's activity in equal time buckets over [start_ns, end_ns).
//
// Geometry: for a window of W = end_ns - start_ns > 0 ns and a request for
// B buckets, bucket_ns = max(1, ceil(W / B)) and buckets = ceil(W /
// bucket_ns) (at most B; fewer only when W < B). Bucket b covers
// [start_ns + b * bucket_ns, start_ns + (b + 1) * bucket_ns), the last one
// clipped to end_ns. An empty window has no buckets. BucketOf() maps a time.
//
// Every duration is split between the buckets it overlaps, to the
// nanosecond, so a bucket's figures sum to the whole run's. A completed wait
// counts once, in the bucket of the instant it ended (the acquisition).
struct ActivitySeries {
  // Buckets analysis makes for a run: fine enough to place a phase boundary
  // within 0.2% of the run, coarse enough for thousands of threads.
  static constexpr std::size_t kDefaultBuckets = 512;

  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  std::uint64_t bucket_ns = 1;  // >= 1
  std::size_t buckets = 0;

  // Parallel to Analysis::gils; each vector has `buckets` entries. Like
  // GilStats, they count only time inside the GIL's own window.
  struct Gil {
    // Some thread held it (GilStats::busy_ns, per bucket).
    std::vector<std::uint64_t> busy_ns;
    // Held while >= 1 other thread waited for it (GilStats::contended_ns).
    std::vector<std::uint64_t> contended_ns;
  };
  // Parallel to Analysis::threads. A thread's vectors cover only its
  // lifetime [lifetime_start_ns, lifetime_end_ns): entry k is bucket
  // first_bucket + k, from BucketOf(lifetime_start_ns) to the bucket of its
  // last nanosecond. A thread with an empty lifetime has empty vectors.
  struct Thread {
    std::size_t first_bucket = 0;
    std::vector<std::uint64_t> held_ns;     // ThreadStats::held_ns, per bucket
    std::vector<std::uint64_t> waiting_ns;  // ThreadStats::waiting_ns, per bucket
    // Completed waits: a waiting interval that ends where a hold of the same
    // thread on the same GIL begins (the wait's acquisition), counted in
    // the bucket of that instant; wait_ns sums their lengths. A wait of
    // zero length, or one whose hold is empty (an acquisition at end_ns),
    // leaves no interval and is not counted.
    std::vector<std::uint32_t> waits;
    std::vector<std::uint64_t> wait_ns;
  };
  std::vector<Gil> gils;
  std::vector<Thread> threads;

  // Sets start_ns, end_ns, bucket_ns and buckets as defined above (no
  // per-GIL or per-thread vectors).
  static ActivitySeries Geometry(std::uint64_t start_ns, std::uint64_t end_ns, std::size_t requested);
  // The bucket holding `ns` (clamped into [0, buckets - 1]); 0 when there
  // are no buckets.
  std::size_t BucketOf(std::uint64_t ns) const;
  // Start of bucket b (b <= buckets; b == buckets gives end_ns).
  std::uint64_t BucketStart(std::size_t b) const;
  // Adds [from, to), clipped to the window, to `per_bucket`, whose entry k
  // is bucket `first` + k: each bucket gets the nanoseconds inside it
  // (buckets outside the vector get nothing).
  void Spread(std::vector<std::uint64_t>& per_bucket, std::size_t first, std::uint64_t from,
              std::uint64_t to) const;
};

// One phase: [start_ns, end_ns). Phases returned by FindPhases() are in time
// order and tile the series' window exactly, back to back.
struct PhaseSpan {
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  // Why it begins where it does: "start" (the run's start), "change" (the
  // activity changed there), "region <name>" (a top-level region began) or
  // "after region <name>" (one ended).
  std::string source;
};

// Whether FindPhases may read `m` at all: an outermost region at least as
// long as a phase (100 ms). Markers for which this is false never move a
// boundary, so an analysis that keeps only some markers keeps these too.
bool MaySetPhaseBoundary(const Marker& m);

// Cuts the series' window into phases. Never returns an empty list: a run in
// which nothing changes is one phase, the whole window. `markers`: the run's
// markers (Analysis::markers), whose outermost regions may set boundaries.
// The method and its thresholds are described in phases.cc.
std::vector<PhaseSpan> FindPhases(const ActivitySeries& series, const std::vector<Marker>& markers);

}  // namespace gilscope::report
