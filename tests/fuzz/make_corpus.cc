// Writes the fuzzer's seed files into a folder (tests/fuzz/corpus): small
// valid files covering every record type of version 3 and of version 2
// (raw EVENTS blocks, built here byte by byte as that writer wrote them), a
// crashed run, a torn and a garbled last block, a resumed file mixing both
// kinds of block, and damaged ones. Run after a format change:
//   build-fuzz/make_raw_corpus tests/fuzz/corpus
// The files end in .seed, not .raw: the repository ignores *.raw (run output).
// The corpus's v1_*.seed files are not made here: an older writer wrote
// them (version 1, RUN records without processes or deadlock), and they are
// kept as it left them.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "report/raw_file.h"
#include "report/raw_format.h"
#include "raw_test_util.h"
#include "report_test_traces.h"

namespace {

using namespace gilscope::report;           // NOLINT: a tool, not a library
using namespace gilscope::report::testing;  // NOLINT

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const std::string scratch = dir + "/scratch.tmp";

  // Two threads on one GIL.
  WriteRawFile(dir + "/small.seed", SmallRun());
  Spit(dir + "/v2_small.seed", OldFile(SmallRun(), 2, scratch));

  // Hex-encoded strings, two GILs, a code table, markers, frame and mark
  // events. (tests/figures reads small, rich, empty_run, crashed and torn
  // as runs whose figures must make sense: edge values go elsewhere.)
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
  Spit(dir + "/v2_rich.seed", OldFile(rich, 2, scratch));

  // Edge values for the packing: a time going back, then to 2^64 - 1;
  // gil 255, every flag, aux max.
  RunTrace edges = SmallRun();
  edges.threads[1].events.push_back(Event{At(89), EventKind::kRegionBegin, 255, 0xFFFF, 0xFFFFFFFFu});
  edges.threads[1].events.push_back(
      Event{~0ull, EventKind::kAcquired, 1, gilscope::recorder::kFlagRequestFolded, 1234});
  WriteRawFile(dir + "/edges.seed", edges);

  // No threads at all.
  WriteRawFile(dir + "/empty_run.seed", EmptyRun(10));

  // A runner that crashed: events and one identity, no RUN or END, and the
  // record it was writing torn.
  {
    const RunTrace run = SmallRun();
    RawWriter writer = RawWriter::Open(dir + "/crashed.seed");
    writer.SetStream(run.threads[0], 3);
    writer.AppendEvents(3, run.threads[0].events.data(), run.threads[0].events.size());
    writer.Flush();
    writer.AppendEvents(9, run.threads[1].events.data(), 2);
  }
  const std::string crashed = Slurp(dir + "/crashed.seed");
  Spit(dir + "/torn.seed", crashed + std::string("\x05\x00\x00\x00\x28\x00\x00\x00\x09\x00", 10));
  // Its last block garbled (the checksum fails): also a crash.
  std::string garbled = crashed;
  garbled.back() = static_cast<char>(garbled.back() ^ 0x10);
  Spit(dir + "/garbled_last.seed", garbled);

  // A version 2 file a crash cut short, resumed: EVENTS then PACKED blocks.
  {
    std::string old = OldFile(SmallRun(), 2, scratch);
    old.resize(First(old, RawRecordType::kRun).offset);  // crashed before RUN
    Spit(dir + "/resumed.seed", old);
    RawWriter writer = RawWriter::Resume(dir + "/resumed.seed");
    const std::vector<Event> more = {Released(90, false), Acquired(91)};
    writer.AppendEvents(1, more.data(), more.size());
    writer.Finish(SmallRun());
  }

  // Damaged: a raw block whose count disagrees with its length, a raw and a
  // packed event of an unknown kind (the packed one with a right checksum),
  // a packed block whose count is one too many (with a right checksum), and
  // a flipped byte in a block that is not the last.
  const std::string v2 = Slurp(dir + "/v2_small.seed");
  const std::size_t events_at = First(v2, RawRecordType::kEvents).offset;
  std::string lying = v2;
  lying[events_at + 12] = 9;  // 8 events -> claims 9
  Spit(dir + "/v2_lying_count.seed", lying);
  std::string bad_kind = v2;
  bad_kind[events_at + 16 + 8] = 77;
  Spit(dir + "/v2_bad_kind.seed", bad_kind);

  const std::string v3 = Slurp(dir + "/small.seed");
  const std::size_t packed_at = First(v3, RawRecordType::kPacked).offset;
  std::string packed_kind = v3;
  packed_kind[packed_at + 20] = static_cast<char>((packed_kind[packed_at + 20] & 0xF0) | 12);
  FixChecksum(packed_kind, packed_at);
  Spit(dir + "/bad_kind.seed", packed_kind);
  std::string packed_count = v3;
  packed_count[packed_at + 12] = static_cast<char>(packed_count[packed_at + 12] + 1);
  FixChecksum(packed_count, packed_at);
  Spit(dir + "/lying_count.seed", packed_count);
  std::string flipped = v3;
  flipped[packed_at + 22] = static_cast<char>(flipped[packed_at + 22] ^ 1);
  Spit(dir + "/flipped.seed", flipped);

  std::remove(scratch.c_str());
  return 0;
}
