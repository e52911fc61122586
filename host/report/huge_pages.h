// Large arrays of a report (a 10M-event run holds 160 MB of events, as much
// again of intervals) are written once, front to back, right after they are
// allocated. With 4 KiB pages that is one page fault per 4 KiB, and on a
// virtual machine a fault costs microseconds: a quarter of `gilscope report`
// went there. Transparent huge pages cut the faults 512-fold, but on most
// systems (THP "madvise" mode) only for memory that asks for them.
//
// ReserveHuge() reserves a vector's capacity and asks for huge pages for it
// before anything is written there. A hint only: without THP support, or
// for arrays below a few MiB, it is a plain reserve(). Resident memory may
// grow by up to one 2 MiB page per array (the last, partly used page).
#pragma once

#include <cstddef>
#include <vector>

namespace gilscope::report {

// Smaller arrays are left alone: they cannot cover an aligned huge page
// without most of it being padding.
inline constexpr std::size_t kHugePageHintMinBytes = std::size_t{8} << 20;

// Asks the kernel to back the whole 2 MiB pages inside [data, data + bytes)
// with huge pages; best effort, never fails. Only useful before the range is
// first written.
void AdviseHugePages(const void* data, std::size_t bytes);

// reserve(n) on an empty vector (a non-empty one is only reserved: its pages
// are already in use), then the hint for its new capacity.
template <class T>
void ReserveHuge(std::vector<T>& v, std::size_t n) {
  const bool fresh = v.empty() && v.capacity() < n;
  v.reserve(n);
  if (fresh) AdviseHugePages(v.data(), v.capacity() * sizeof(T));
}

}  // namespace gilscope::report
