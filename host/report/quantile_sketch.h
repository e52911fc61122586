// Percentiles of a stream of durations in bounded memory.
//
// Analysis reads runs of hundreds of millions of events in one pass and may
// not keep a sample per wait. QuantileSketch keeps the first kExactSamples
// values as they are (so every run of ordinary size, and every test, gets
// exact nearest-rank percentiles, as before), and past that folds them into
// logarithmic buckets in the manner of DDSketch (Masson, Rim and Lee, VLDB
// 2019): bucket i holds the values in (gamma^(i-1), gamma^i], gamma =
// (1 + a) / (1 - a), and answers with 2 gamma^i / (gamma + 1), which is
// within a relative error `a` (kRelativeError, 1%) of every value in it. The
// answer is then clamped to the exact minimum and maximum seen.
//
// Memory: kExactSamples * 8 bytes, then one counter per bucket between the
// smallest and the largest value's (about 1,200 buckets from 1 ns to 10 min,
// 2,200 over the whole u64 range): at most ~18 KB, whatever the count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace gilscope::report {

class QuantileSketch {
 public:
  static constexpr std::size_t kExactSamples = 2048;
  static constexpr double kRelativeError = 0.01;

  void Add(std::uint64_t value);

  std::uint64_t count() const { return count_; }
  std::uint64_t max() const { return max_; }
  // True once the samples were folded into buckets: percentiles are then
  // within kRelativeError of the exact ones.
  bool approximate() const { return folded_; }

  // Nearest-rank percentile (p in whole percent, 1..100): the value at
  // 1-based rank ceil(p * n / 100), exact while !approximate(). 0 when empty.
  // Not const: the exact path partially sorts the samples.
  std::uint64_t Percentile(std::size_t p);

  // Forgets everything, keeping allocated memory.
  void Clear();

 private:
  void Fold();
  void AddToBucket(std::uint64_t value);
  static int IndexOf(std::uint64_t value);
  static double ValueOf(int index);

  std::vector<std::uint64_t> exact_;
  bool folded_ = false;
  std::uint64_t count_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t max_ = 0;
  std::uint64_t zeros_ = 0;           // folded values of 0
  int offset_ = 0;                    // bucket index of counts_[0]
  std::vector<std::uint64_t> counts_;  // folded values > 0, by bucket
};

// Nearest rank of percentile p among n samples: ceil(p * n / 100), at least 1.
std::size_t NearestRank(std::size_t p, std::size_t n);

}  // namespace gilscope::report
