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
// series with known change points.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace gilscope::report {

struct Marker;  // analysis.h

// The run's activity in `buckets` equal slices of [start_ns, end_ns).
// Bucket b covers [start_ns + b * bucket_ns, start_ns + (b + 1) * bucket_ns),
// the last one clipped to end_ns. Every time and count is attributed to the
// bucket it falls in (an interval spanning buckets is split between them; a
// wait counts in the bucket where it ended).
struct ActivitySeries {
  // Buckets analysis makes for a run: fine enough to place a phase boundary
  // within 0.2% of the run, coarse enough for thousands of threads.
  static constexpr std::size_t kDefaultBuckets = 512;

  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  std::uint64_t bucket_ns = 1;  // >= 1
  std::size_t buckets = 0;

  // Parallel to Analysis::gils; each vector has `buckets` entries.
  struct Gil {
    std::vector<std::uint64_t> busy_ns;       // some thread held it
    std::vector<std::uint64_t> contended_ns;  // held while >= 1 other waited
    std::vector<std::uint32_t> acquisitions;  // kAcquired events
  };
  // Parallel to Analysis::threads. A thread's vectors cover only its
  // lifetime: entry k is bucket first_bucket + k.
  struct Thread {
    std::size_t first_bucket = 0;
    std::vector<std::uint64_t> held_ns;
    std::vector<std::uint64_t> waiting_ns;
    std::vector<std::uint32_t> waits;            // completed waits (request -> acquired)
    std::vector<std::uint64_t> wait_ns;          // their summed latency
    std::vector<std::uint32_t> voluntary_releases;
  };
  std::vector<Gil> gils;
  std::vector<Thread> threads;
};

// One phase: [start_ns, end_ns). Phases returned by FindPhases() are in time
// order and tile the series' window exactly, back to back.
struct PhaseSpan {
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  // Why it begins where it does: "start" (the run's start), "change" (the
  // activity changed there), or "region <name>" (a top-level region began).
  std::string source;
};

// Cuts the series' window into phases. Never returns an empty list: a run in
// which nothing changes is one phase, the whole window. `markers`: the run's
// markers (Analysis::markers), whose outermost regions may set boundaries.
std::vector<PhaseSpan> FindPhases(const ActivitySeries& series, const std::vector<Marker>& markers);

}  // namespace gilscope::report
