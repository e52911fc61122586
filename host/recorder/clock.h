// The recorder's clock: monotonic nanoseconds, comparable across threads and
// across the processes of a run.
//
// Events written by different threads under the same GIL mutex must order the
// same way as the mutex did, so the clock must be system-wide monotonic, not
// a per-core counter that may differ between cores.
//
// Two sources, chosen once per run when its arena is created:
//   - the TSC, when the CPU says it is invariant (constant_tsc and nonstop_tsc
//     in /proc/cpuinfo): ticks since a base are scaled to nanoseconds with a
//     multiply and a shift calibrated against CLOCK_MONOTONIC
//     (TscCalibration). The calibration lives in the arena, so the
//     supervisor, forked and spawned children all convert with the same
//     numbers: one time axis for the whole run, equal to CLOCK_MONOTONIC at
//     the calibration and drifting from it only by the calibration's error
//     (a few ppm) and NTP's slewing of CLOCK_MONOTONIC.
//   - CLOCK_MONOTONIC otherwise, or when GILSCOPE_CLOCK=monotonic.
//
// Stamps and nanoseconds. The hot path writes *stamps*, not nanoseconds:
// with the TSC a stamp is the raw counter, and the Collector converts it
// (TscToNs) as it drains the rings, so the multiply stays off the threads
// being observed (about 3 ns an event here). Without the TSC a stamp already
// is CLOCK_MONOTONIC nanoseconds and the conversion is the identity.
//
// A stamp is `rdtsc` alone (about 11 ns here; `lfence; rdtsc`, 18 ns, would
// wait for every earlier instruction). It may be read a little early, never
// late: it retires before any later store becomes visible. So a release's
// stamp is never later than the unlock that follows it. An acquisition's
// could be read before its lock completed; the hooks order those through the
// GIL itself (gil_watch.cc: an acquisition is stamped no earlier than the
// release it follows, which the GIL's mutex hands over).
#pragma once

#include <x86intrin.h>

#include <cstdint>
#include <ctime>

namespace gilscope::recorder {

// ns = ns_base + ((tsc - tsc_base) * mult) >> kTscShift. enabled == 0: use
// CLOCK_MONOTONIC. Plain data: it is stored in the shared arena header.
struct TscCalibration {
  std::uint64_t tsc_base;
  std::uint64_t ns_base;
  std::uint64_t mult;      // nanoseconds per tick, 32.32 fixed point
  std::uint32_t enabled;
  std::uint32_t reserved;
};
inline constexpr unsigned kTscShift = 32;

inline std::uint64_t MonotonicNs() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

namespace internal {
// The calibration this process converts with (set by UseClock, before any
// thread records; read-only afterwards).
// hidden: addressed directly, not through the GOT of an executable that
// exports its symbols.
extern TscCalibration g_clock __attribute__((visibility("hidden")));
}  // namespace internal

inline std::uint64_t TscToNs(const TscCalibration& c, std::uint64_t tsc) noexcept {
  // A core whose TSC reads a little behind the base would wrap: clamp.
  const std::uint64_t ticks = tsc > c.tsc_base ? tsc - c.tsc_base : 0;
  return c.ns_base + static_cast<std::uint64_t>((static_cast<unsigned __int128>(ticks) * c.mult) >> kTscShift);
}

// A span of `ticks` ticks (a difference of two stamps) in nanoseconds.
inline std::uint64_t TscSpanToNs(const TscCalibration& c, std::uint64_t ticks) noexcept {
  return static_cast<std::uint64_t>((static_cast<unsigned __int128>(ticks) * c.mult) >> kTscShift);
}

// Now, as a stamp (see above): the hot path's clock read. `tsc`: whether
// this process's clock is the TSC (ClockIsTsc()), for callers that keep that
// bit beside their other hot state rather than load it from here.
inline std::uint64_t Stamp(bool tsc) noexcept {
  if (tsc) [[likely]] return __rdtsc();
  return MonotonicNs();
}
inline std::uint64_t Stamp() noexcept { return Stamp(internal::g_clock.enabled != 0); }

// Whether Stamp() reads the TSC in this process now (else CLOCK_MONOTONIC).
inline bool ClockIsTsc() noexcept { return internal::g_clock.enabled != 0; }

// Now, in nanoseconds (ordered): for everything off the hot path (windows,
// process records, the watchdog).
inline std::uint64_t NowNs() noexcept {
  const TscCalibration& c = internal::g_clock;
  if (c.enabled != 0) [[likely]] {
    _mm_lfence();
    return TscToNs(c, __rdtsc());
  }
  return MonotonicNs();
}

// The calibration for a new run: the process's current one if it already
// converts with one (so a process keeps a single time axis), else a fresh
// one measured now (takes about 10 ms), else disabled (no invariant TSC, or
// GILSCOPE_CLOCK=monotonic).
TscCalibration CalibrateClock() noexcept;
// Makes NowNs() convert with `c` in this process. Call before threads record.
void UseClock(const TscCalibration& c) noexcept;
// Which source NowNs() uses now: "tsc" or "monotonic".
const char* ClockSource() noexcept;

}  // namespace gilscope::recorder
