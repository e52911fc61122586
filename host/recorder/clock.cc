#include "recorder/clock.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace gilscope::recorder {
namespace internal {
TscCalibration g_clock{};
}  // namespace internal

namespace {

// Whether the TSC ticks at a constant rate, also in deep idle states, and
// the kernel says so: then it is a clock, not just a cycle counter.
bool InvariantTsc() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    line += ' ';
    return line.find(" constant_tsc ") != std::string::npos && line.find(" nonstop_tsc ") != std::string::npos;
  }
  return false;
}

struct Pair {
  std::uint64_t tsc;
  std::uint64_t ns;
};

// A TSC reading and a CLOCK_MONOTONIC reading taken at the same moment: of
// several tries, the one whose two TSC reads bracket the clock most tightly,
// with the TSC taken at the middle of the bracket.
Pair ReadPair() {
  Pair best{0, 0};
  std::uint64_t best_width = ~std::uint64_t{0};
  for (int i = 0; i < 16; ++i) {
    _mm_lfence();
    const std::uint64_t t0 = __rdtsc();
    const std::uint64_t ns = MonotonicNs();
    _mm_lfence();
    const std::uint64_t t1 = __rdtsc();
    if (t1 > t0 && t1 - t0 < best_width) {
      best_width = t1 - t0;
      best = {t0 + (t1 - t0) / 2, ns};
    }
  }
  return best;
}

}  // namespace

TscCalibration CalibrateClock() noexcept {
  if (internal::g_clock.enabled != 0) return internal::g_clock;
  TscCalibration c{};
  if (const char* env = std::getenv("GILSCOPE_CLOCK"); env != nullptr && std::strcmp(env, "monotonic") == 0) {
    return c;
  }
  try {
    if (!InvariantTsc()) return c;
  } catch (...) {
    return c;
  }
  // 10 ms between two pairs: an error of some 50 ns at each end makes the
  // rate wrong by about 10 ppm at most (10 µs over a 1 s run).
  constexpr std::uint64_t kSpanNs = 10'000'000;
  const Pair p0 = ReadPair();
  timespec pause{0, static_cast<long>(kSpanNs)};
  while (nanosleep(&pause, &pause) != 0) {
  }
  const Pair p1 = ReadPair();
  if (p0.tsc == 0 || p1.tsc <= p0.tsc || p1.ns <= p0.ns) return c;
  const std::uint64_t dns = p1.ns - p0.ns;
  const std::uint64_t dtsc = p1.tsc - p0.tsc;
  // dns < 2^32 here (the pause is far shorter than 4 s), so the shift fits.
  if (dns >= (std::uint64_t{1} << 31)) return c;
  c.mult = (dns << kTscShift) / dtsc;
  if (c.mult == 0) return c;
  c.tsc_base = p1.tsc;
  c.ns_base = p1.ns;
  c.enabled = 1;
  return c;
}

void UseClock(const TscCalibration& c) noexcept { internal::g_clock = c; }

const char* ClockSource() noexcept { return internal::g_clock.enabled != 0 ? "tsc" : "monotonic"; }

}  // namespace gilscope::recorder
