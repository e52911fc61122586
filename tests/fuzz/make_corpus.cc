// Writes the fuzzer's seed files into a folder (tests/fuzz/corpus): a few
// small valid files covering every record type, a crashed run, and two
// damaged ones. Run after a format change:
//   build-fuzz/make_raw_corpus tests/fuzz/corpus
// The files end in .seed, not .raw: the repository ignores *.raw (run output).

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "report/raw_file.h"
#include "report_test_traces.h"

namespace {

using namespace gilscope::report;           // NOLINT: a tool, not a library
using namespace gilscope::report::testing;  // NOLINT

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void Spit(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];

  // Two threads on one GIL.
  WriteRawFile(dir + "/small.seed", SmallRun());

  // Hex-encoded strings, two GILs, a code table, markers, frame and mark events.
  RunTrace rich = SmallRun();
  rich.threads[1].name = "worker\xe2\x28\xa1";
  rich.info.args = {"a\nb", "\xff"};
  rich.gils.push_back(Gil(1, 0, 2));
  rich.code = {{0x7f0012345678ull, "Worker.run", "w.py", 3}};
  rich.marker_names = {"phase"};
  rich.threads[1].events.push_back(Event{0x7f0012345678ull, EventKind::kFrame, 1, 0, 7});
  rich.threads[1].events.push_back(Event{At(90), EventKind::kMark, 1, 0, 0});
  rich.threads[0].cpu_s = 0.25;
  WriteRawFile(dir + "/rich.seed", rich);

  // No threads at all.
  WriteRawFile(dir + "/empty_run.seed", EmptyRun(10));

  // A runner that crashed: events and one identity, no RUN or END, and the
  // record it was writing torn.
  {
    const RunTrace run = SmallRun();
    RawWriter writer = RawWriter::Open(dir + "/crashed.seed");
    writer.SetStream(run.threads[0], 3);
    writer.AppendEvents(3, run.threads[0].events.data(), run.threads[0].events.size());
    writer.AppendEvents(9, run.threads[1].events.data(), 2);
  }
  Spit(dir + "/torn.seed", Slurp(dir + "/crashed.seed") + std::string("\x01\x00\x00\x00\x28\x00\x00\x00\x09\x00", 10));

  // Damaged: a block whose count disagrees with its length, and a bad kind.
  std::string bytes = Slurp(dir + "/small.seed");
  std::string lying = bytes;
  // The first record is STREAM 0; the EVENTS block follows it.
  std::uint32_t stream_length;
  std::memcpy(&stream_length, bytes.data() + 16 + 4, 4);
  const std::size_t events_at = 16 + 8 + stream_length;
  lying[events_at + 12] = 9;  // 8 events -> claims 9
  Spit(dir + "/lying_count.seed", lying);
  std::string bad_kind = bytes;
  bad_kind[events_at + 16 + 8] = 77;
  Spit(dir + "/bad_kind.seed", bad_kind);
  return 0;
}
