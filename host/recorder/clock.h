// The recorder's clock: monotonic nanoseconds, comparable across threads.
//
// Every event is stamped with NowNs(). Events written by different threads
// under the same GIL mutex must order the same way as the mutex did, so the
// clock must be system-wide monotonic (CLOCK_MONOTONIC through the vDSO,
// about 20 ns here), not a per-core counter.
#pragma once

#include <cstdint>
#include <ctime>

namespace gilscope::recorder {

inline std::uint64_t NowNs() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace gilscope::recorder
