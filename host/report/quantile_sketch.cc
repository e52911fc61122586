#include "report/quantile_sketch.h"

#include <algorithm>
#include <cmath>

namespace gilscope::report {
namespace {

const double kGamma = (1 + QuantileSketch::kRelativeError) / (1 - QuantileSketch::kRelativeError);
const double kLogGamma = std::log(kGamma);

}  // namespace

std::size_t NearestRank(std::size_t p, std::size_t n) {
  return std::max<std::size_t>(1, (p * n + 99) / 100);
}

int QuantileSketch::IndexOf(std::uint64_t value) {
  // value >= 1: ceil(log_gamma(value)), >= 0.
  return static_cast<int>(std::ceil(std::log(static_cast<double>(value)) / kLogGamma - 1e-12));
}

double QuantileSketch::ValueOf(int index) { return 2 * std::pow(kGamma, index) / (kGamma + 1); }

void QuantileSketch::Add(std::uint64_t value) {
  ++count_;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  if (!folded_) {
    exact_.push_back(value);
    if (exact_.size() > kExactSamples) Fold();
    return;
  }
  AddToBucket(value);
}

void QuantileSketch::AddToBucket(std::uint64_t value) {
  if (value == 0) {
    ++zeros_;
    return;
  }
  const int i = IndexOf(value);
  if (counts_.empty()) {
    offset_ = i;
    counts_.assign(1, 0);
  } else if (i < offset_) {
    counts_.insert(counts_.begin(), static_cast<std::size_t>(offset_ - i), 0);
    offset_ = i;
  } else if (static_cast<std::size_t>(i - offset_) >= counts_.size()) {
    counts_.resize(static_cast<std::size_t>(i - offset_) + 1, 0);
  }
  ++counts_[static_cast<std::size_t>(i - offset_)];
}

void QuantileSketch::Fold() {
  folded_ = true;
  for (std::uint64_t v : exact_) AddToBucket(v);
  std::vector<std::uint64_t>().swap(exact_);
}

std::uint64_t QuantileSketch::Percentile(std::size_t p) {
  if (count_ == 0) return 0;
  const std::size_t rank = NearestRank(p, static_cast<std::size_t>(count_));
  if (!folded_) {
    const auto at = exact_.begin() + static_cast<std::ptrdiff_t>(rank - 1);
    std::nth_element(exact_.begin(), at, exact_.end());
    return *at;
  }
  std::uint64_t seen = zeros_;
  if (seen >= rank) return std::max<std::uint64_t>(min_, 0);
  for (std::size_t k = 0; k < counts_.size(); ++k) {
    seen += counts_[k];
    if (seen >= rank) {
      const double v = ValueOf(offset_ + static_cast<int>(k));
      const double clamped = std::clamp(v, static_cast<double>(min_), static_cast<double>(max_));
      if (clamped >= static_cast<double>(max_)) return max_;
      return static_cast<std::uint64_t>(clamped + 0.5);
    }
  }
  return max_;
}

void QuantileSketch::Clear() {
  exact_.clear();
  folded_ = false;
  count_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
  zeros_ = 0;
  offset_ = 0;
  counts_.clear();
}

}  // namespace gilscope::report
