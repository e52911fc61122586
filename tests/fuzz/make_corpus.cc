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

std::uint32_t U32At(const std::string& bytes, std::size_t at) {
  std::uint32_t v;
  std::memcpy(&v, bytes.data() + at, 4);
  return v;
}
std::string U32Bytes(std::uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string Record(RawRecordType type, const std::string& payload) {
  return U32Bytes(static_cast<std::uint32_t>(type)) + U32Bytes(static_cast<std::uint32_t>(payload.size())) + payload;
}

struct RecordAt {
  std::size_t offset;
  std::uint32_t type;
  std::uint32_t length;
};

std::vector<RecordAt> Records(const std::string& bytes) {
  std::vector<RecordAt> records;
  for (std::size_t pos = kRawHeaderSize; pos + kRawRecordHeaderSize <= bytes.size();) {
    records.push_back({pos, U32At(bytes, pos), U32At(bytes, pos + 4)});
    pos += kRawRecordHeaderSize + records.back().length;
  }
  return records;
}

RecordAt First(const std::string& bytes, RawRecordType type) {
  for (const RecordAt& r : Records(bytes)) {
    if (r.type == static_cast<std::uint32_t>(type)) return r;
  }
  std::fprintf(stderr, "make_raw_corpus: no record of type %u\n", static_cast<unsigned>(type));
  std::exit(1);
}

// `trace` as a version 2 writer wrote it: the STREAM records, then one raw
// EVENTS block per thread, RUN, END. The JSON is the same in every version.
std::string Version2(const RunTrace& trace, const std::string& scratch) {
  WriteRawFile(scratch, trace);
  const std::string v3 = Slurp(scratch);
  std::string bytes = v3.substr(0, kRawHeaderSize);
  bytes[8] = 2;
  std::string run;
  for (const RecordAt& r : Records(v3)) {
    const std::string record = v3.substr(r.offset, kRawRecordHeaderSize + r.length);
    if (r.type == static_cast<std::uint32_t>(RawRecordType::kStream)) bytes += record;
    if (r.type == static_cast<std::uint32_t>(RawRecordType::kRun)) run = record;
  }
  for (std::size_t i = 0; i < trace.threads.size(); ++i) {
    const auto& events = trace.threads[i].events;
    bytes += Record(RawRecordType::kEvents,
                    U32Bytes(static_cast<std::uint32_t>(i)) + U32Bytes(static_cast<std::uint32_t>(events.size())) +
                        std::string(reinterpret_cast<const char*>(events.data()), events.size() * 16));
  }
  return bytes + run + Record(RawRecordType::kEnd, "");
}

// Recomputes the checksum of the PACKED record at `at` after an edit.
void FixChecksum(std::string& bytes, std::size_t at) {
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data() + at + 20);
  const std::uint32_t crc =
      raw::BlockCrcAdd(raw::BlockCrcStart(U32At(bytes, at + 8), U32At(bytes, at + 12)), data, U32At(bytes, at + 4) - 12);
  std::memcpy(bytes.data() + at + 16, &crc, 4);
}

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
  Spit(dir + "/v2_small.seed", Version2(SmallRun(), scratch));

  // Hex-encoded strings, two GILs, a code table, markers, frame and mark
  // events, edge values for the packing (a time going back, gil 255, every
  // flag, aux max).
  RunTrace rich = SmallRun();
  rich.threads[1].name = "worker\xe2\x28\xa1";
  rich.info.args = {"a\nb", "\xff"};
  rich.gils.push_back(Gil(1, 0, 2));
  rich.code = {{0x7f0012345678ull, "Worker.run", "w.py", 3}};
  rich.marker_names = {"phase"};
  rich.threads[1].events.push_back(Event{0x7f0012345678ull, EventKind::kFrame, 1, 0, 7});
  rich.threads[1].events.push_back(Event{At(90), EventKind::kMark, 1, 0, 0});
  rich.threads[1].events.push_back(Event{At(89), EventKind::kRegionBegin, 255, 0xFFFF, 0xFFFFFFFFu});
  rich.threads[1].events.push_back(Event{~0ull, EventKind::kAcquired, 1, gilscope::recorder::kFlagRequestFolded, 1234});
  rich.threads[0].cpu_s = 0.25;
  WriteRawFile(dir + "/rich.seed", rich);
  Spit(dir + "/v2_rich.seed", Version2(rich, scratch));

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
    std::string old = Version2(SmallRun(), scratch);
    old.resize(First(old, RawRecordType::kRun).offset);
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
