// raw_source_scan FILE: reads every event of an events.raw through
// RawFileSource, one cursor per stream, 4096 events at a time, and prints
// how many there were, how long it took and the file's bytes per event. A
// measuring tool (RawFileSource's read rate and, under /usr/bin/time -v,
// its peak RSS), not a test: it checks nothing but that the file reads.

#include <chrono>
#include <cstdio>
#include <exception>
#include <vector>

#include "report/raw_file.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s FILE\n", argv[0]);
    return 2;
  }
  try {
    const auto start = std::chrono::steady_clock::now();
    gilscope::report::ReadOptions options;
    options.allow_unfinished = true;
    const auto source = gilscope::report::RawFileSource::Open(argv[1], options);
    const auto opened = std::chrono::steady_clock::now();
    std::vector<gilscope::recorder::Event> buffer(4096);
    std::uint64_t events = 0, checksum = 0;
    for (std::size_t s = 0; s < source->meta().threads.size(); ++s) {
      const auto cursor = source->Open(s);
      while (std::size_t n = cursor->Read(buffer.data(), buffer.size())) {
        events += n;
        checksum += buffer[n - 1].ts;  // so the reads cannot be optimised away
      }
    }
    const auto end = std::chrono::steady_clock::now();
    const double open_s = std::chrono::duration<double>(opened - start).count();
    const double total_s = std::chrono::duration<double>(end - start).count();
    const double bytes = static_cast<double>(source->whole_bytes() + source->torn_bytes());
    std::printf("events %llu, streams %zu, blocks %zu, %.3f bytes/event\n", static_cast<unsigned long long>(events),
                source->meta().threads.size(), source->block_count(), bytes / static_cast<double>(events));
    std::printf("open (index pass) %.3f s, total %.3f s, %.1f M events/s (checksum %llx)\n", open_s, total_s,
                static_cast<double>(events) / total_s / 1e6, static_cast<unsigned long long>(checksum));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "raw_source_scan: %s\n", e.what());
    return 1;
  }
}
