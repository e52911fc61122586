// events.raw: what RawWriter writes, ReadRawFile reads back exactly; every
// kind of damage gives its own one-line message with the byte offset; a file
// cut short by a crash reads with allow_unfinished and can be resumed.
// Version 3 packs events (PACKED blocks); files of versions 1 and 2 (raw
// EVENTS blocks, built here byte by byte) still read.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "report/analysis.h"
#include "report/json_writer.h"
#include "report/raw_file.h"
#include "report/raw_format.h"
#include "report/text_writer.h"
#include "raw_test_util.h"
#include "report_test_traces.h"
#include "temp_dir_test.h"

namespace gilscope::report {
namespace {

using namespace gilscope::report::testing;  // NOLINT: test vocabulary
using ::testing::AllOf;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class RawFileTest : public TempDirTest {};

// The message ReadRawBytes throws for `bytes`, or "" when it reads fine.
std::string ErrorFor(const std::string& bytes, ReadOptions options = {}) {
  try {
    ReadRawBytes(bytes.data(), bytes.size(), "events.raw", options);
  } catch (const RawFileError& e) {
    return e.what();
  }
  return "";
}

// A run with everything the format carries, including strings JSON cannot
// hold as they are.
RunTrace RichRun() {
  RunTrace run = SmallRun();
  run.info.script = "dir with \"quotes\"/bad\xff\xfe.py";
  run.info.args = {"line1\nline2", "\xc3(", "tab\there", ""};
  run.info.status = "crashed";
  run.info.exit_code = -11;
  run.info.mode = "subinterpreters";
  run.info.instances = 4;
  run.info.switch_interval_s = 0.001;
  run.gils.push_back(Gil(1, 0xFFFF'FFFF'FFFF'FFF0ull, 7));
  run.gils[1].interpreter = -3;
  run.code = {{0x7f00'1234'5678ull, "Worker.run", "/tmp/w.py", 12},
              {std::numeric_limits<std::uint64_t>::max(), "<module>", "caf\xc3\xa9\x80.py", -1}};
  run.marker_names = {"phase \"one\"", "\x01\x02", "\xed\xa0\x80"};  // the last: a UTF-8 surrogate
  run.dropped_no_slot = 5;
  run.threads[0].name = "Main\"Thread\"\n";
  run.threads[0].cpu_s = 0.123456789012345;
  run.threads[0].dropped = 9;
  run.threads[1].name = "worker\xe2\x28\xa1";
  run.threads[1].pid = 0xFFFFFFFFu;
  run.threads[1].native_id = std::numeric_limits<std::uint64_t>::max();
  ThreadTrace frames = Thread("frames", 1003, {});
  for (std::uint32_t i = 0; i < 50; ++i) {
    frames.events.push_back(Event{At(i), EventKind::kFrame, 1, 0, i * 7});
    frames.events.push_back(Event{At(i) + 1, EventKind::kMark, 1, 0xFFFF, 2});
  }
  run.threads.push_back(frames);
  run.threads.push_back(Thread("no events", 1004, {}));
  return run;
}

void ExpectEventsEqual(const std::vector<Event>& a, const std::vector<Event>& b) {
  ASSERT_EQ(a.size(), b.size());
  if (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(Event)) == 0) return;
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(0, std::memcmp(&a[i], &b[i], sizeof(Event))) << "event " << i;
  }
}

void ExpectThreadEqual(const ThreadTrace& a, const ThreadTrace& b) {
  EXPECT_EQ(a.native_id, b.native_id);
  EXPECT_EQ(a.pid, b.pid);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.dropped, b.dropped);
  EXPECT_EQ(a.cpu_s, b.cpu_s);  // exact: JSON numbers round-trip doubles
  ExpectEventsEqual(a.events, b.events);
}

void ExpectRunEqual(const RunTrace& a, const RunTrace& b) {
  EXPECT_EQ(a.info.gilscope_version, b.info.gilscope_version);
  EXPECT_EQ(a.info.python_version, b.info.python_version);
  EXPECT_EQ(a.info.script, b.info.script);
  EXPECT_EQ(a.info.args, b.info.args);
  EXPECT_EQ(a.info.mode, b.info.mode);
  EXPECT_EQ(a.info.instances, b.info.instances);
  EXPECT_EQ(a.info.status, b.info.status);
  EXPECT_EQ(a.info.exit_code, b.info.exit_code);
  EXPECT_EQ(a.info.switch_interval_s, b.info.switch_interval_s);
  EXPECT_EQ(a.start_ns, b.start_ns);
  EXPECT_EQ(a.end_ns, b.end_ns);
  ASSERT_EQ(a.gils.size(), b.gils.size());
  for (std::size_t i = 0; i < a.gils.size(); ++i) {
    EXPECT_EQ(a.gils[i].id, b.gils[i].id);
    EXPECT_EQ(a.gils[i].interpreter, b.gils[i].interpreter);
    EXPECT_EQ(a.gils[i].cpython_switch_start, b.gils[i].cpython_switch_start);
    EXPECT_EQ(a.gils[i].cpython_switch_end, b.gils[i].cpython_switch_end);
    EXPECT_EQ(a.gils[i].holder_tstate_at_start, b.gils[i].holder_tstate_at_start);
  }
  ASSERT_EQ(a.code.size(), b.code.size());
  for (std::size_t i = 0; i < a.code.size(); ++i) {
    EXPECT_EQ(a.code[i].id, b.code[i].id);
    EXPECT_EQ(a.code[i].function, b.code[i].function);
    EXPECT_EQ(a.code[i].file, b.code[i].file);
    EXPECT_EQ(a.code[i].first_line, b.code[i].first_line);
  }
  EXPECT_EQ(a.marker_names, b.marker_names);
  EXPECT_EQ(a.dropped_no_slot, b.dropped_no_slot);
  ASSERT_EQ(a.threads.size(), b.threads.size());
  for (std::size_t i = 0; i < a.threads.size(); ++i) {
    SCOPED_TRACE("thread " + std::to_string(i));
    ExpectThreadEqual(a.threads[i], b.threads[i]);
  }
}

// ------------------------------------------------------------ round trips

TEST_F(RawFileTest, RoundTripsEveryFieldWithInterleavedBlocksAndHostileStrings) {
  const RunTrace run = RichRun();
  // Stream ids out of order and sparse; identities before, after and between
  // the events; blocks of the streams interleaved as a drain would write them.
  const std::vector<std::uint32_t> ids = {40, 7, 1'000'000, 3'000'000'000u};
  RawWriter writer = RawWriter::Open(Path("events.raw"));
  writer.SetStream(run.threads[1], ids[1]);
  for (std::size_t from = 0; from < 100; from += 3) {
    for (std::size_t t = 0; t < run.threads.size(); ++t) {
      const auto& events = run.threads[t].events;
      if (from < events.size()) writer.AppendEvents(ids[t], events.data() + from, std::min<std::size_t>(3, events.size() - from));
    }
    if (from == 30) writer.Flush();
  }
  ThreadTrace stale = run.threads[0];
  stale.name = "overridden later";
  writer.SetStream(stale, ids[0]);
  writer.SetStream(run.threads[0], ids[0]);
  writer.SetStream(run.threads[2], ids[2]);
  writer.SetStream(run.threads[3], ids[3]);
  writer.Finish(run);
  EXPECT_EQ(writer.bytes_written(), std::filesystem::file_size(Path("events.raw")));

  const RawContents back = ReadRawFile(Path("events.raw"));
  EXPECT_TRUE(back.finished);
  EXPECT_TRUE(back.has_run);
  EXPECT_EQ(back.stream_ids, (std::vector<std::uint32_t>{7, 40, 1'000'000, 3'000'000'000u}));
  EXPECT_TRUE(back.streams_without_identity.empty());
  EXPECT_EQ(back.events, 8u + 7u + 100u);
  EXPECT_EQ(back.whole_bytes, std::filesystem::file_size(Path("events.raw")));
  // Threads come back in stream-id order.
  RunTrace expected = run;
  std::swap(expected.threads[0], expected.threads[1]);
  ExpectRunEqual(expected, back.trace);
}

TEST_F(RawFileTest, ReRendersTheSameReportsAsTheTraceItWasWrittenFrom) {
  const RunTrace run = RichRun();
  WriteRawFile(Path("events.raw"), run);
  const RunTrace back = ReadRawFile(Path("events.raw")).trace;
  const auto render = [](const RunTrace& r) {
    std::ostringstream out;
    const Analysis analysis = Analyze(r);
    JsonWriter(out).Write(r, analysis);
    TextWriter(out).Write(r, analysis);
    return out.str();
  };
  EXPECT_EQ(render(run), render(back));
}

TEST_F(RawFileTest, NonFiniteNumbersReadBackAsUnknown) {
  RunTrace run = SmallRun();
  run.threads[0].cpu_s = std::nan("");
  run.threads[1].cpu_s = std::numeric_limits<double>::infinity();
  run.info.switch_interval_s = std::nan("");
  WriteRawFile(Path("events.raw"), run);
  const RunTrace back = ReadRawFile(Path("events.raw")).trace;
  EXPECT_EQ(back.threads[0].cpu_s, -1);
  EXPECT_EQ(back.threads[1].cpu_s, -1);
  EXPECT_EQ(back.info.switch_interval_s, 0);
}

// The PACKED blocks of a file, as (stream, count).
std::vector<std::pair<std::uint32_t, std::uint32_t>> Blocks(const std::string& bytes) {
  std::vector<std::pair<std::uint32_t, std::uint32_t>> blocks;
  for (const RecordAt& r : Records(bytes)) {
    if (r.type == kPacked) {
      blocks.emplace_back(U32At(bytes, r.offset + 8), U32At(bytes, r.offset + 12));
    }
  }
  return blocks;
}

TEST_F(RawFileTest, WritesOneBlockPerStreamAndFlushHoweverAppendsInterleave) {
  const std::vector<Event> events(10, Request(1));
  RawWriter writer = RawWriter::Open(Path("events.raw"));
  const std::uint64_t start = writer.bytes_written();
  for (int i = 0; i < 10; ++i) {
    writer.AppendEvents(5, &events[i], 1);
    writer.AppendEvents(6, &events[i], 1);
  }
  writer.AppendEvents(7, events.data(), 0);  // nothing: no block
  // Two blocks of ten: 20 header bytes each; the first event a tag and its
  // time (At(1) = 1,000,001,000,000 ns: a 6-byte varint), the nine same
  // ones a tag each.
  constexpr std::uint64_t kBlock = 20 + (1 + 6) + 9;
  EXPECT_EQ(writer.bytes_written() - start, 2 * kBlock);
  EXPECT_EQ(std::filesystem::file_size(Path("events.raw")), start) << "staged, not written yet";
  writer.Flush();
  EXPECT_EQ(std::filesystem::file_size(Path("events.raw")), start + 2 * kBlock);
  writer.AppendEvents(5, events.data(), 3);  // after a flush: a new block, packed afresh
  EXPECT_EQ(writer.bytes_written() - start, 2 * kBlock + 20 + 7 + 2);
  writer.SetStream(Thread("a", 1, {}), 5);
  writer.SetStream(Thread("b", 2, {}), 6);
  writer.Finish(SmallRun());
  EXPECT_EQ(writer.bytes_written(), std::filesystem::file_size(Path("events.raw")));
  const std::vector<std::pair<std::uint32_t, std::uint32_t>> expected = {{5, 10}, {6, 10}, {5, 3}};
  EXPECT_EQ(Blocks(Slurp(Path("events.raw"))), expected);
}

TEST_F(RawFileTest, SplitsAnAppendLargerThanTheBufferIntoWholeBlocks) {
  // 3 bytes an event (a tag and a 2-byte time step): 3 MB, 3 blocks and a bit.
  std::vector<Event> events;
  for (std::uint64_t i = 0; i < 1'000'000; ++i) events.push_back(Event{1000 * i, EventKind::kAcquired, 0, 0, 0});
  RunTrace run = SmallRun();
  run.threads.resize(1);
  RawWriter writer = RawWriter::Open(Path("events.raw"));
  writer.SetStream(run.threads[0], 0);
  writer.AppendEvents(0, events.data(), events.size());
  writer.Finish(run);
  const std::string bytes = Slurp(Path("events.raw"));
  std::vector<std::uint32_t> lengths;
  for (const RecordAt& r : Records(bytes)) {
    EXPECT_LE(r.length + kRawRecordHeaderSize, RawWriter::kBufferSize);
    if (r.type == kPacked) lengths.push_back(r.length);
  }
  ASSERT_EQ(lengths.size(), 3u);
  // A block leaves once the longest event (20 bytes) might not fit.
  for (std::size_t i = 0; i + 1 < lengths.size(); ++i) {
    EXPECT_GT(lengths[i] + 8 + 20, RawWriter::kBufferSize - 20) << "block " << i << " left before it was full";
  }
  std::uint64_t total = 0;
  for (const auto& [stream, count] : Blocks(bytes)) total += count;
  EXPECT_EQ(total, events.size());
  ExpectEventsEqual(ReadRawFile(Path("events.raw")).trace.threads[0].events, events);
}

TEST_F(RawFileTest, AMillionEventsOfEightInterleavedStreamsTakeThreeBytesEach) {
  // Eight threads' events appended one at a time in turns, the worst case
  // for block headers, flushed as a supervisor would (every 100 ms; here
  // every 64k events). Each stream steps 8000 ns an event: a tag and a
  // 2-byte varint.
  constexpr std::size_t kEvents = 1'000'000, kStreams = 8, kFlushEvery = 1 << 16;
  RunTrace run = SmallRun();
  RawWriter writer = RawWriter::Open(Path("events.raw"));
  for (std::size_t i = 0; i < kEvents; ++i) {
    const Event e{i * 1000, EventKind::kReleased, 0, 4, 0};
    writer.AppendEvents(static_cast<std::uint32_t>(i % kStreams), &e, 1);
    if (i % kFlushEvery == kFlushEvery - 1) writer.Flush();
  }
  for (std::uint32_t s = 0; s < kStreams; ++s) writer.SetStream(run.threads[0], s);
  writer.Finish(run);
  const std::uint64_t size = std::filesystem::file_size(Path("events.raw"));
  // 3 bytes an event; each of the 8 x 16 blocks adds 20 header bytes and
  // at most 7 for its first event's absolute time and flags.
  EXPECT_GE(size, 3 * kEvents);
  EXPECT_LE(size, 3 * kEvents + 8 * 16 * (20 + 7) + 2000);
  RecordProperty("bytes_per_event", std::to_string(static_cast<double>(size) / kEvents));
  const RawContents back = ReadRawFile(Path("events.raw"));
  EXPECT_EQ(back.events, kEvents);
  ASSERT_EQ(back.trace.threads.size(), kStreams);
  for (std::size_t s = 0; s < kStreams; ++s) {
    const std::vector<Event>& events = back.trace.threads[s].events;
    ASSERT_EQ(events.size(), kEvents / kStreams);
    EXPECT_EQ(events[1].ts - events[0].ts, kStreams * 1000) << "each stream keeps its own order";
  }
}

// Three streams' blocks interleaved, an odd-length optional record before
// each block (so no event lies 8-byte aligned in the file) and more than the
// reader's 64 KiB buffer of events: each stream reads back whole, in order,
// held in an array allocated once at its final size (a first pass counts
// the blocks' events), from a file and from memory alike. A torn last block
// is neither read nor counted.
TEST_F(RawFileTest, ReadsInterleavedMisalignedBlocksIntoArraysSizedOnce) {
  const std::vector<std::uint32_t> ids = {9, 2, 70000};
  std::vector<std::vector<Event>> events(ids.size());
  RawWriter writer = RawWriter::Open(Path("clean.raw"));
  std::uint64_t ts = 1;
  for (int round = 0; round < 40; ++round) {
    for (std::size_t s = 0; s < ids.size(); ++s) {
      // Stream 9 gets 700 events a round, stream 2 one, stream 70000 every
      // other round 95.
      const std::size_t n = s == 0 ? 700 : s == 1 ? 1 : (round % 2 == 0 ? 95 : 0);
      for (std::size_t k = 0; k < n; ++k) {
        events[s].push_back(Event{ts++, EventKind::kReleased, static_cast<std::uint8_t>(s), 4, static_cast<std::uint32_t>(k)});
      }
      writer.AppendEvents(ids[s], events[s].data() + events[s].size() - n, n);
    }
    writer.Flush();
  }
  for (std::size_t s = 0; s < ids.size(); ++s) writer.SetStream(Thread("t" + std::to_string(s), 10 + s, {}), ids[s]);
  writer.Finish(SmallRun());
  const std::string clean = Slurp(Path("clean.raw"));

  std::string bytes = clean.substr(0, kRawHeaderSize);
  for (const RecordAt& r : Records(clean)) {
    if (r.type == kPacked) bytes += Record(kRawOptionalRecordBit | 5, "odd");
    bytes += clean.substr(r.offset, kRawRecordHeaderSize + r.length);
  }
  std::ofstream(Path("events.raw"), std::ios::binary) << bytes;

  const RawContents from_file = ReadRawFile(Path("events.raw"));
  const RawContents from_memory = ReadRawBytes(bytes.data(), bytes.size(), "events.raw");
  for (const RawContents* back : {&from_file, &from_memory}) {
    EXPECT_EQ(back->stream_ids, (std::vector<std::uint32_t>{2, 9, 70000}));
    ASSERT_EQ(back->trace.threads.size(), 3u);
    const std::vector<std::size_t> order = {1, 0, 2};  // by stream id
    for (std::size_t i = 0; i < order.size(); ++i) {
      SCOPED_TRACE("stream " + std::to_string(ids[order[i]]));
      const std::vector<Event>& got = back->trace.threads[i].events;
      ExpectEventsEqual(got, events[order[i]]);
      EXPECT_EQ(got.capacity(), got.size()) << "allocated once, at the size the blocks add up to";
    }
  }

  // Cut inside stream 9's last block: its earlier blocks stay, and its
  // array is sized for them only.
  std::size_t last_block = 0;
  for (const RecordAt& r : Records(bytes)) {
    if (r.type == kPacked && U32At(bytes, r.offset + 8) == 9) last_block = r.offset;
  }
  ASSERT_GT(last_block, 0u);
  const std::string cut = bytes.substr(0, last_block + 8 + 12 + 3 * 3 + 1);
  ReadOptions lenient;
  lenient.allow_unfinished = true;
  const RawContents torn = ReadRawBytes(cut.data(), cut.size(), "events.raw", lenient);
  EXPECT_FALSE(torn.finished);
  ASSERT_EQ(torn.stream_ids, (std::vector<std::uint32_t>{2, 9, 70000}));
  const std::vector<Event>& nine = torn.trace.threads[1].events;
  EXPECT_EQ(nine.size(), 39u * 700u);
  EXPECT_EQ(nine.capacity(), nine.size());
  ExpectEventsEqual(nine, std::vector<Event>(events[0].begin(), events[0].begin() + 39 * 700));
}

TEST_F(RawFileTest, CountsEventsWithoutKeepingThem) {
  WriteRawFile(Path("events.raw"), SmallRun());
  ReadOptions options;
  options.keep_events = false;
  const RawContents back = ReadRawFile(Path("events.raw"), options);
  EXPECT_EQ(back.events, 15u);
  ASSERT_EQ(back.trace.threads.size(), 2u);
  EXPECT_TRUE(back.trace.threads[0].events.empty());
  EXPECT_EQ(back.trace.threads[1].name, "worker-1");
}

TEST_F(RawFileTest, SkipsOptionalRecordsItDoesNotKnow) {
  WriteRawFile(Path("events.raw"), SmallRun());
  std::string bytes = Slurp(Path("events.raw"));
  const std::string extra = Record(kRawOptionalRecordBit | 77, "future stuff");
  bytes.insert(kRawHeaderSize, extra);
  EXPECT_EQ(ErrorFor(bytes), "");
  const RawContents back = ReadRawBytes(bytes.data(), bytes.size(), "events.raw");
  EXPECT_EQ(back.events, 15u);
}

// ------------------------------------------------------------ damage

// SmallRun as a file: header, STREAM 0, STREAM 1, PACKED 0, PACKED 1, RUN, END.
std::string SmallFile(const std::string& path) {
  WriteRawFile(path, SmallRun());
  return Slurp(path);
}

// SmallRun as a version 2 writer wrote it: STREAM 0, EVENTS 0, STREAM 1,
// EVENTS 1, RUN, END.
std::string SmallV2File(const std::string& scratch) { return OldFile(SmallRun(), 2, scratch); }

TEST_F(RawFileTest, RejectsAnEmptyFile) {
  EXPECT_EQ(ErrorFor(""), "events.raw: empty file (0 bytes): not a gilscope raw events file");
}

TEST_F(RawFileTest, RejectsBadMagic) {
  std::string bytes = SmallFile(Path("a"));
  bytes[1] = 'X';
  EXPECT_EQ(ErrorFor(bytes), "events.raw: not a gilscope raw events file (bad magic)");
  EXPECT_EQ(ErrorFor("{\"json\": true}\n"), "events.raw: not a gilscope raw events file (bad magic)");
  EXPECT_EQ(ErrorFor("\x89X"), "events.raw: not a gilscope raw events file (bad magic)")
      << "a short file that is not a prefix of the magic";
}

TEST_F(RawFileTest, RejectsATruncatedHeader) {
  const std::string bytes = SmallFile(Path("a")).substr(0, 11);
  EXPECT_EQ(ErrorFor(bytes), "events.raw: truncated at byte 0: the file header needs 16 bytes, 11 left");
  ReadOptions lenient;
  lenient.allow_unfinished = true;
  EXPECT_EQ(ErrorFor(bytes, lenient), ErrorFor(bytes)) << "a crash cannot tear the header: it is written first";
}

TEST_F(RawFileTest, RejectsOtherVersionsEventSizesAndFlags) {
  const std::string good = SmallFile(Path("a"));
  std::string bytes = good;
  bytes[8] = 4;
  EXPECT_EQ(ErrorFor(bytes), "events.raw: unsupported format version 4 (this gilscope reads versions 1 to 3)");
  bytes[8] = 0;
  EXPECT_EQ(ErrorFor(bytes), "events.raw: unsupported format version 0 (this gilscope reads versions 1 to 3)");
  // Packed blocks came with version 3: an older file cannot have them.
  const std::size_t packed_at = First(good, RawRecordType::kPacked).offset;
  for (char old_version : {1, 2}) {
    bytes[8] = old_version;
    EXPECT_EQ(ErrorFor(bytes), "events.raw: PACKED record at byte " + std::to_string(packed_at) + " in a version " +
                                   std::to_string(old_version) + " file (packed events came with version 3)");
  }
  bytes = good;
  bytes[10] = 24;
  EXPECT_EQ(ErrorFor(bytes), "events.raw: the header says events are 24 bytes; version 3 events are 16");
  bytes = good;
  bytes[13] = 1;
  EXPECT_EQ(ErrorFor(bytes), "events.raw: unknown header flags 0x100 (written by a newer gilscope?)");
}

TEST_F(RawFileTest, RejectsATruncatedRecordAndReadsItAsACrashWhenAllowed) {
  const std::string good = SmallFile(Path("a"));
  const RecordAt events = Records(good)[3];  // worker-1's events
  ASSERT_EQ(events.type, kPacked);
  const std::string cut = good.substr(0, events.offset + 8 + 14);
  EXPECT_EQ(ErrorFor(cut), "events.raw: truncated at byte " + std::to_string(events.offset) +
                               ": PACKED record claims " + std::to_string(events.length) + " bytes, 14 left");

  ReadOptions lenient;
  lenient.allow_unfinished = true;
  const RawContents back = ReadRawBytes(cut.data(), cut.size(), "events.raw", lenient);
  EXPECT_FALSE(back.finished);
  EXPECT_FALSE(back.has_run);
  EXPECT_EQ(back.whole_bytes, events.offset);
  EXPECT_EQ(back.torn_bytes, 22u);
  ASSERT_EQ(back.trace.threads.size(), 2u);
  EXPECT_EQ(back.trace.threads[0].events.size(), 8u);
  EXPECT_EQ(back.trace.threads[1].name, "worker-1");
  EXPECT_TRUE(back.trace.threads[1].events.empty());
}

TEST_F(RawFileTest, RejectsATruncatedRecordHeader) {
  const std::string good = SmallFile(Path("a"));
  const RecordAt run = First(good, RawRecordType::kRun);
  EXPECT_EQ(ErrorFor(good.substr(0, run.offset + 3)),
            "events.raw: truncated at byte " + std::to_string(run.offset) + ": record header needs 8 bytes, 3 left");
}

TEST_F(RawFileTest, RejectsLyingLengths) {
  for (const std::string& good : {SmallFile(Path("a")), SmallV2File(Path("b"))}) {
    const bool packed = (U32At(good, 8) & 0xFFFF) == 3;
    const RecordAt events = First(good, packed ? RawRecordType::kPacked : RawRecordType::kEvents);
    const std::string name = packed ? "PACKED" : "EVENTS";
    std::string bytes = good;
    PutU32(bytes, events.offset + 4, 0xFFFF'FFF0u);  // far past the end: nothing is allocated for it
    const std::size_t left = good.size() - events.offset - 8;
    EXPECT_EQ(ErrorFor(bytes), "events.raw: truncated at byte " + std::to_string(events.offset) + ": " + name +
                                   " record claims 4294967280 bytes, " + std::to_string(left) + " left");
    bytes = good;
    PutU32(bytes, events.offset + 4, 4);
    EXPECT_EQ(ErrorFor(bytes), "events.raw: " + name + " record at byte " + std::to_string(events.offset) +
                                   " is 4 bytes, shorter than its " + (name == "PACKED" ? "12" : "8") +
                                   "-byte block header");
  }
}

TEST_F(RawFileTest, RejectsLyingCountsOfRawBlocks) {
  const std::string good = SmallV2File(Path("a"));
  const RecordAt events = First(good, RawRecordType::kEvents);  // 8 events, 136 bytes
  std::string bytes = good;
  PutU32(bytes, events.offset + 12, 9);
  EXPECT_EQ(ErrorFor(bytes), "events.raw: EVENTS record at byte " + std::to_string(events.offset) +
                                 " claims 9 events (152 bytes) but is 136 bytes");
  PutU32(bytes, events.offset + 12, 0x1000'0000u);  // count * 16 overflows 32 bits
  EXPECT_EQ(ErrorFor(bytes), "events.raw: EVENTS record at byte " + std::to_string(events.offset) +
                                 " claims 268435456 events (4294967304 bytes) but is 136 bytes");
}

// A packed block's count is covered by its checksum; one that is wrong
// with a right checksum (a writer's bug, or a hostile file) is found when
// the block is decoded: it must come out at exactly its count and length.
TEST_F(RawFileTest, RejectsLyingCountsOfPackedBlocks) {
  const std::string good = SmallFile(Path("a"));
  const RecordAt events = First(good, RawRecordType::kPacked);  // stream 0, 8 events
  const std::string at = std::to_string(events.offset);
  std::string bytes = good;
  PutU32(bytes, events.offset + 12, 9);
  EXPECT_THAT(ErrorFor(bytes), StartsWith("events.raw: PACKED record at byte " + at + ": checksum mismatch (stored 0x"))
      << "the count is checksummed";
  FixChecksum(bytes, events.offset);
  const std::size_t end = events.offset + 8 + events.length;
  EXPECT_EQ(ErrorFor(bytes), "events.raw: PACKED record at byte " + at + " (stream 0) ends inside its event 9 of 9, "
                             "which starts at byte " + std::to_string(end));
  PutU32(bytes, events.offset + 12, 7);
  FixChecksum(bytes, events.offset);
  EXPECT_THAT(ErrorFor(bytes), AllOf(StartsWith("events.raw: PACKED record at byte " + at + " (stream 0) has "),
                                     EndsWith(" bytes after its 7 events")));
  PutU32(bytes, events.offset + 12, events.length);  // more events than bytes
  FixChecksum(bytes, events.offset);
  EXPECT_EQ(ErrorFor(bytes), "events.raw: PACKED record at byte " + at + " claims " + std::to_string(events.length) +
                                 " events in " + std::to_string(events.length - 12) +
                                 " bytes; a packed event takes at least 1");
}

TEST_F(RawFileTest, RejectsUnknownEventKindsAndRecordTypes) {
  const std::string good = SmallV2File(Path("a"));
  const RecordAt events = Records(good)[3];
  std::string bytes = good;
  const std::size_t third_event = events.offset + 16 + 2 * 16;
  bytes[third_event + 8] = 42;
  EXPECT_EQ(ErrorFor(bytes), "events.raw: unknown event kind 42 in stream 1 at byte " + std::to_string(third_event));
  bytes[third_event + 8] = 0;
  EXPECT_EQ(ErrorFor(bytes), "events.raw: unknown event kind 0 in stream 1 at byte " + std::to_string(third_event));
  ReadOptions counting;
  counting.keep_events = false;
  EXPECT_EQ(ErrorFor(bytes, counting), ErrorFor(bytes)) << "checked even when not kept";

  bytes = good;
  PutU32(bytes, events.offset, 9);
  EXPECT_EQ(ErrorFor(bytes), "events.raw: unknown record type 9 at byte " + std::to_string(events.offset));
}

// Packed events that do not decode, each in a block with a right checksum
// (so only decoding can find them): the message names the stream and the
// event's first byte, whether events are kept or only counted.
TEST_F(RawFileTest, RejectsPackedEventsThatDoNotDecode) {
  const std::string good = SmallFile(Path("a"));
  const std::size_t at = First(good, RawRecordType::kRun).offset;  // the hostile block goes before RUN
  const std::size_t first_event = at + 20;
  const auto error_for = [&](std::uint32_t count, const std::string& events) {
    std::string bytes = good;
    bytes.insert(at, PackedRecord(1, count, events));
    ReadOptions counting;
    counting.keep_events = false;
    EXPECT_EQ(ErrorFor(bytes, counting), ErrorFor(bytes)) << "checked even when not kept";
    return ErrorFor(bytes);
  };
  const std::string in = " in stream 1 at byte ";
  // One good event (a kRequest at ts 5: tag 0x41, varint 5), then the bad one.
  const std::string ok("\x41\x05", 2);
  const std::string second = std::to_string(first_event + 2);
  EXPECT_EQ(error_for(2, ok + std::string("\x00", 1)), "events.raw: unknown event kind 0" + in + second);
  EXPECT_EQ(error_for(2, ok + "\x0b"), "events.raw: unknown event kind 11" + in + second);
  EXPECT_EQ(error_for(2, ok + "\xc1\x01"), "events.raw: packed event tag 0xc1 has time mode 3" + in + second);
  EXPECT_EQ(error_for(2, ok + "\x41" + std::string(10, '\xff') + "\x01"),
            "events.raw: a packed time step longer than 64 bits" + in + second);
  EXPECT_EQ(error_for(2, ok + "\x41\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02"),
            "events.raw: a packed time step longer than 64 bits" + in + second)
      << "the tenth byte may only hold bit 63";
  EXPECT_EQ(error_for(2, ok + std::string("\x11\x00\x80\x80\x04", 5)),
            "events.raw: packed flags 65536 exceed 16 bits" + in + second);
  EXPECT_EQ(error_for(2, ok + std::string("\x11\x00\x81\x80\x80\x00", 6)),
            "events.raw: packed flags longer than 3 bytes" + in + second)
      << "1 in 4 bytes: still too long";
  EXPECT_EQ(error_for(2, ok + "\x21\x80\x80\x80\x80\x10"), "events.raw: packed aux 4294967296 exceeds 32 bits" + in + second);
  EXPECT_EQ(error_for(2, ok + std::string("\x21\x80\x80\x80\x80\x80\x00", 7)),
            "events.raw: a packed aux longer than 5 bytes" + in + second);
  // A long bad event right before the block's end, and one with 20+ bytes
  // after it: both decoders, checked and unchecked, see the same.
  EXPECT_EQ(error_for(3, ok + std::string("\x11\x00\x81\x80\x80\x00", 6) + std::string(30, '\x01')),
            "events.raw: packed flags longer than 3 bytes" + in + second);
  EXPECT_EQ(error_for(2, ok + "\x41\x80"),
            "events.raw: PACKED record at byte " + std::to_string(at) +
                " (stream 1) ends inside its event 2 of 2, which starts at byte " + second);
  EXPECT_EQ(error_for(1, ok + "\x41"), "events.raw: PACKED record at byte " + std::to_string(at) +
                                           " (stream 1) has 1 bytes after its 1 events");
  EXPECT_EQ(error_for(0, ""), "") << "an empty block is valid";
  EXPECT_EQ(error_for(2, ok + std::string("\x41\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11)), "")
      << "2^64 - 1 in ten bytes is valid";
}

// ------------------------------------------------------------ version 3

// Every kind and the edge values of every field: ts 0, u64 max, backwards,
// wrapping; gil 255; every flag bit; aux max. Written through RawWriter in
// blocks of every size from 1 event up, so each value is also the first of
// a block somewhere; read back by ReadRawFile and RawFileSource.
TEST_F(RawFileTest, PackedEventsRoundTripEveryKindAndEdgeValue) {
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  const std::vector<std::uint64_t> stamps = {0, 1, kMax, kMax - 1, 0, 1ull << 63, (1ull << 63) - 1, (1ull << 63) + 1,
                                             At(5), At(4), At(4), At(6), 127, 128, 16383, 16384, kMax, 0};
  const std::vector<std::uint16_t> flags = {0, 1, 2, 4, 8, 0x10, 0x8000, 0xFFFF, recorder::kFlagForced};
  const std::vector<std::uint32_t> auxes = {0, 1, 127, 128, 0xFFFF'FFFFu, 0x8000'0000u, 43};
  std::vector<Event> events;
  std::size_t i = 0;
  for (unsigned kind = 1; kind <= 10; ++kind) {
    for (std::uint64_t ts : stamps) {
      const auto gil = static_cast<std::uint8_t>(i % 3 == 0 ? 255 : i % 3 == 1 ? 0 : 7);
      events.push_back(Event{ts, static_cast<EventKind>(kind), gil, flags[i % flags.size()], auxes[i % auxes.size()]});
      ++i;
    }
  }
  // Interleave kinds, as streams do: each ts class keeps its own reference.
  std::vector<Event> mixed;
  for (std::size_t k = 0; k < stamps.size(); ++k) {
    for (unsigned kind = 0; kind < 10; ++kind) mixed.push_back(events[kind * stamps.size() + k]);
  }
  RunTrace run = SmallRun();
  run.threads.resize(2);
  run.threads[0].events = events;
  run.threads[1].events = mixed;
  RawWriter writer = RawWriter::Open(Path("events.raw"));
  for (std::uint32_t s = 0; s < 2; ++s) {
    const std::vector<Event>& e = run.threads[s].events;
    for (std::size_t from = 0, size = 1; from < e.size(); from += size, ++size) {
      writer.AppendEvents(s, e.data() + from, std::min(size, e.size() - from));
      writer.Flush();  // one block per append
    }
    writer.SetStream(run.threads[s], s);
  }
  writer.Finish(run);
  const std::string bytes = Slurp(Path("events.raw"));
  EXPECT_GT(Blocks(bytes).size(), 30u);
  const RawContents back = ReadRawFile(Path("events.raw"));
  ExpectRunEqual(run, back.trace);
  const auto source = RawFileSource::Open(Path("events.raw"));
  for (std::size_t s = 0; s < 2; ++s) {
    std::vector<Event> read(run.threads[s].events.size() + 1);
    const auto cursor = source->Open(s);
    std::size_t n = 0;
    while (std::size_t got = cursor->Read(read.data() + n, std::min<std::size_t>(3, read.size() - n))) n += got;
    read.resize(n);
    ExpectEventsEqual(read, run.threads[s].events);
  }
}

// The packing pinned byte by byte, so that a change to it cannot pass
// unnoticed: the format comment in raw_file.h works these out.
TEST_F(RawFileTest, PacksEventsAsTheFormatSays) {
  RunTrace run = EmptyRun(1);
  run.threads.push_back(Thread("t", 1, {
      Event{1000, EventKind::kAcquired, 0, recorder::kFlagRequestFolded, 30},  // 73 | E8 07 | 00 08 | 1E
      Event{0x7f00, EventKind::kFrame, 0, 0, 43},                              // 67 | 80 FE 01 | 2B
      Event{1281, EventKind::kReleased, 0, 0, 0},                              // 44 | 99 02
      Event{2593, EventKind::kAcquired, 0, recorder::kFlagRequestFolded, 30},  // 43 | A0 0A
      Event{0x7f00, EventKind::kFrame, 0, 0, 43},                              // 07
      Event{2874, EventKind::kReleased, 0, 0, 0},                              // 44 | 99 02
      Event{2000, EventKind::kRequest, 0, 0, 0},                               // 81 | EA 06 (874 back)
      Event{0x5555, EventKind::kThreadState, 0, 0, 0},                         // 45 | D5 AA 01
  }));
  WriteRawFile(Path("events.raw"), run);
  const std::string bytes = Slurp(Path("events.raw"));
  ASSERT_EQ(Payloads(bytes, RawRecordType::kPacked).size(), 1u);
  EXPECT_EQ(Pack(run.threads[0].events).size(), 28u);
  const std::string expected_events(
      "\x73\xE8\x07\x00\x08\x1E"
      "\x67\x80\xFE\x01\x2B"
      "\x44\x99\x02"
      "\x43\xA0\x0A"
      "\x07"
      "\x44\x99\x02"
      "\x81\xEA\x06"
      "\x45\xD5\xAA\x01",
      28);
  // stream 0, 8 events, zlib.crc32(b"\0\0\0\0\x08\0\0\0" + events) = 0x1da31a07
  EXPECT_EQ(Pack(run.threads[0].events), expected_events);
  EXPECT_EQ(Payloads(bytes, RawRecordType::kPacked)[0], U32Bytes(0) + U32Bytes(8) + U32Bytes(0x1da31a07) + expected_events);
  EXPECT_EQ(U32At(bytes, 8) & 0xFFFF, 3u) << "version 3";
  ExpectRunEqual(run, ReadRawFile(Path("events.raw")).trace);
}

// What a release-heavy run records per read (os.read on one thread): the
// frame that released (one code, one line), the release ~250-350 ns later,
// and the acquisition with its request folded in ~1.2-1.5 us after that,
// which waited 10-90 ns. Drained 2 ms at a time as the supervisor does.
// Each read packs to 8 bytes: frame 1 (a tag), release 3 (tag, 2-byte
// step), acquisition 4 (tag, 2-byte step, 1-byte wait).
TEST_F(RawFileTest, AReleaseHeavyRunTakesUnderThreeBytesAnEvent) {
  constexpr std::size_t kReads = 300'000;
  std::vector<Event> events;
  std::uint64_t t = 1'646'165'323'136, seed = 42;
  const auto next = [&seed](std::uint64_t from, std::uint64_t span) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return from + (seed >> 33) % span;
  };
  for (std::size_t i = 0; i < kReads; ++i) {
    events.push_back(Event{0x7f7b'0c3d'51b0ull, EventKind::kFrame, 0, 0, 43});
    t += next(250, 100);
    events.push_back(Event{t, EventKind::kReleased, 0, 0, 0});
    t += next(1200, 300);
    // The wait never repeats the previous one, the worst case for aux.
    const auto wait = static_cast<std::uint32_t>(10 + 10 * (i % 8));
    events.push_back(Event{t, EventKind::kAcquired, 0, recorder::kFlagRequestFolded, wait});
  }
  RunTrace run = SmallRun();
  run.threads.resize(1);
  RawWriter writer = RawWriter::Open(Path("events.raw"));
  constexpr std::size_t kDrain = 1200;  // 400 reads: 2 ms at 5 us a read
  for (std::size_t from = 0; from < events.size(); from += kDrain) {
    writer.AppendEvents(0, events.data() + from, std::min(kDrain, events.size() - from));
  }
  writer.SetStream(run.threads[0], 0);
  writer.Finish(run);
  const std::string bytes = Slurp(Path("events.raw"));
  std::uint64_t event_bytes = 0;
  for (const std::string& payload : Payloads(bytes, RawRecordType::kPacked)) event_bytes += payload.size() - 12;
  // 8 bytes a read, but for each block's first read (absolute time, flags).
  const std::size_t blocks = Blocks(bytes).size();
  EXPECT_EQ(blocks, 3u);
  EXPECT_GE(event_bytes, 8 * kReads);
  EXPECT_LE(event_bytes, 8 * kReads + blocks * 16);
  const double per_event = static_cast<double>(bytes.size()) / static_cast<double>(events.size());
  RecordProperty("bytes_per_event", std::to_string(per_event));
  EXPECT_LE(per_event, 6.0) << "issue 13's goal";
  EXPECT_LE(per_event, 2.68);
  ExpectEventsEqual(ReadRawFile(Path("events.raw")).trace.threads[0].events, events);
}

// A file cut anywhere inside its last block (the writer died while writing
// it) reads up to the block before, strictly refused; so does one whose
// last block is whole but garbled (the checksum fails), and RawFileSource
// says the same as ReadRawBytes.
TEST_F(RawFileTest, ACutOrGarbledLastBlockReadsUpToTheTear) {
  const RunTrace run = SmallRun();
  {
    RawWriter writer = RawWriter::Open(Path("events.raw"));
    writer.SetStream(run.threads[0], 0);
    writer.SetStream(run.threads[1], 1);
    writer.AppendEvents(0, run.threads[0].events.data(), 5);
    writer.AppendEvents(1, run.threads[1].events.data(), 7);
    writer.Flush();
    writer.AppendEvents(0, run.threads[0].events.data() + 5, 3);
  }  // unfinished: the last record is stream 0's second block
  const std::string whole = Slurp(Path("events.raw"));
  const RecordAt last = Records(whole).back();
  ASSERT_EQ(last.type, kPacked);
  ASSERT_EQ(last.offset + 8 + last.length, whole.size());
  ReadOptions lenient;
  lenient.allow_unfinished = true;
  const auto check_torn = [&](const std::string& bytes, const std::string& what) {
    SCOPED_TRACE(what);
    const RawContents back = ReadRawBytes(bytes.data(), bytes.size(), "events.raw", lenient);
    EXPECT_EQ(back.whole_bytes, last.offset);
    EXPECT_EQ(back.torn_bytes, bytes.size() - last.offset);
    EXPECT_EQ(back.events, 12u);
    ASSERT_EQ(back.trace.threads.size(), 2u);
    ExpectEventsEqual(back.trace.threads[0].events, {run.threads[0].events.begin(), run.threads[0].events.begin() + 5});
    ExpectEventsEqual(back.trace.threads[1].events, run.threads[1].events);
    const auto source = RawFileSource::FromBytes(bytes.data(), bytes.size(), "events.raw", lenient);
    EXPECT_EQ(source->whole_bytes(), back.whole_bytes);
    EXPECT_EQ(source->torn_bytes(), back.torn_bytes);
    EXPECT_EQ(source->total_events(), 12u);
    EXPECT_NE(ErrorFor(bytes), "") << "refused when a finished file is expected";
  };
  for (std::size_t cut = last.offset; cut < whole.size(); ++cut) check_torn(whole.substr(0, cut), "cut at " + std::to_string(cut));
  for (std::size_t byte = last.offset + 8; byte < whole.size(); ++byte) {
    std::string garbled = whole;
    garbled[byte] = static_cast<char>(garbled[byte] ^ 0x20);
    check_torn(garbled, "byte " + std::to_string(byte) + " flipped");
  }
  // Whole, it reads whole.
  EXPECT_EQ(ReadRawBytes(whole.data(), whole.size(), "events.raw", lenient).events, 15u);
}

// A garbled block that is not the last record is damage, not a crash: an
// error naming the block, however lenient the read, from RawFileSource's
// Open as from ReadRawBytes.
TEST_F(RawFileTest, AFlippedByteInAMiddleBlockIsAnErrorWithItsOffset) {
  const RunTrace run = SmallRun();
  RawWriter writer = RawWriter::Open(Path("events.raw"));
  for (int round = 0; round < 3; ++round) {
    writer.AppendEvents(0, run.threads[0].events.data(), run.threads[0].events.size());
    writer.Flush();
  }
  writer.SetStream(run.threads[0], 0);
  writer.Finish(run);
  const std::string good = Slurp(Path("events.raw"));
  std::vector<RecordAt> blocks;
  for (const RecordAt& r : Records(good)) {
    if (r.type == kPacked) blocks.push_back(r);
  }
  ASSERT_EQ(blocks.size(), 3u);
  const RecordAt middle = blocks[1];
  const std::string prefix = "events.raw: PACKED record at byte " + std::to_string(middle.offset) + ": checksum mismatch";
  ReadOptions lenient;
  lenient.allow_unfinished = true;
  // Every byte of its payload: stream, count, checksum, events.
  for (std::size_t byte = middle.offset + 8; byte < middle.offset + 8 + middle.length; ++byte) {
    SCOPED_TRACE("byte " + std::to_string(byte));
    std::string bytes = good;
    bytes[byte] = static_cast<char>(bytes[byte] ^ 0x01);
    EXPECT_THAT(ErrorFor(bytes), StartsWith(prefix));
    const std::string unfinished = bytes.substr(0, blocks[2].offset + 8 + blocks[2].length);
    EXPECT_THAT(ErrorFor(unfinished, lenient), StartsWith(prefix)) << "not the last record: not a crash";
    try {
      RawFileSource::FromBytes(bytes.data(), bytes.size(), "events.raw");
      ADD_FAILURE() << "RawFileSource opened a corrupt file";
    } catch (const RawFileError& e) {
      EXPECT_THAT(e.what(), StartsWith(prefix));
    }
  }
}

// Files written by versions 1 and 2 (raw EVENTS blocks) read as they did,
// through ReadRawFile and RawFileSource alike.
TEST_F(RawFileTest, ReadsVersionOneAndTwoFiles) {
  RunTrace run = RichRun();
  run.threads[0].events.push_back(Event{At(60), EventKind::kAcquired, 0, recorder::kFlagRequestFolded, 1234});
  for (std::uint16_t version : {1, 2}) {
    SCOPED_TRACE("version " + std::to_string(version));
    const std::string bytes = OldFile(run, version, Path("v3"));
    EXPECT_EQ(U32At(bytes, 8) & 0xFFFF, version);
    EXPECT_EQ(Blocks(bytes).size(), 0u) << "no PACKED blocks";
    const RawContents back = ReadRawBytes(bytes.data(), bytes.size(), "events.raw");
    EXPECT_EQ(back.version, version);
    ExpectRunEqual(run, back.trace);
    const auto source = RawFileSource::FromBytes(bytes.data(), bytes.size(), "events.raw");
    EXPECT_EQ(source->version(), version);
    for (std::size_t s = 0; s < run.threads.size(); ++s) {
      std::vector<Event> read(source->event_count(s) + 1);
      read.resize(source->Open(s)->Read(read.data(), read.size()));
      ExpectEventsEqual(read, run.threads[s].events);
    }
  }
}

// `good` with the first record of `type` given a new payload.
std::string WithPayload(const std::string& good, RawRecordType type, const std::string& payload) {
  const RecordAt r = First(good, type);
  return good.substr(0, r.offset) + Record(r.type, payload) + good.substr(r.offset + 8 + r.length);
}

TEST_F(RawFileTest, RejectsBadJsonNamingRecordAndPlace) {
  const std::string good = SmallFile(Path("a"));
  const std::string at = std::to_string(First(good, RawRecordType::kStream).offset);
  EXPECT_EQ(ErrorFor(WithPayload(good, RawRecordType::kStream, "{\"id\": 0,")),
            "events.raw: STREAM record at byte " + at +
                ": invalid JSON: parse error at line 1, column 10: syntax error while parsing object key - "
                "unexpected end of input; expected string literal");
  EXPECT_EQ(ErrorFor(WithPayload(good, RawRecordType::kStream, "[1, 2]")),
            "events.raw: STREAM record at byte " + at + ": expected a JSON object, got array");
  EXPECT_EQ(ErrorFor(WithPayload(good, RawRecordType::kStream, std::string(20, '[') + std::string(20, ']'))),
            "events.raw: STREAM record at byte " + at + ": JSON nested deeper than 16 levels");
  const std::string error = ErrorFor(WithPayload(good, RawRecordType::kStream, "{\"id\": \"\xff\n\"}"));
  EXPECT_EQ(error.find('\n'), std::string::npos) << "one line: " << error;
  EXPECT_EQ(error.find('\xff'), std::string::npos) << error;
  EXPECT_NE(error.find("invalid JSON"), std::string::npos) << error;
}

TEST_F(RawFileTest, RejectsMissingFieldsAndWrongTypes) {
  const std::string good = SmallFile(Path("a"));
  const std::string stream_at = std::to_string(First(good, RawRecordType::kStream).offset);
  const std::string run_at = std::to_string(First(good, RawRecordType::kRun).offset);
  const std::string stream_ok = R"({"id":0,"native_id":1,"pid":2,"name":"x","dropped":0,"cpu_s":null})";
  EXPECT_EQ(ErrorFor(WithPayload(good, RawRecordType::kStream, stream_ok)), "");

  const auto stream_error = [&](const std::string& from, const std::string& to) {
    std::string payload = stream_ok;
    payload.replace(payload.find(from), from.size(), to);
    return ErrorFor(WithPayload(good, RawRecordType::kStream, payload));
  };
  const std::string prefix = "events.raw: STREAM record at byte " + stream_at + ": ";
  EXPECT_EQ(stream_error("\"pid\":2", "\"pid\":\"2\""),
            prefix + "field \"pid\" must be an unsigned 32-bit integer, got string");
  EXPECT_EQ(stream_error("\"pid\":2", "\"pid\":4294967296"),
            prefix + "field \"pid\" must be an unsigned 32-bit integer, got an integer out of range");
  EXPECT_EQ(stream_error("\"native_id\":1", "\"native_id\":-1"),
            prefix + "field \"native_id\" must be an unsigned 64-bit integer, got a negative integer");
  EXPECT_EQ(stream_error("\"dropped\":0", "\"dropped\":0.5"),
            prefix + "field \"dropped\" must be an unsigned 64-bit integer, got a fraction");
  EXPECT_EQ(stream_error("\"cpu_s\":null", "\"cpu_s\":true"), prefix + "field \"cpu_s\" must be a number or null, got boolean");
  EXPECT_EQ(stream_error("\"name\":\"x\"", "\"name\":{\"hex\":\"4\"}"), prefix + "field \"name\" has an odd number of hex digits");
  EXPECT_EQ(stream_error("\"name\":\"x\"", "\"name\":{\"hex\":\"zz\"}"),
            prefix + "field \"name\" has a non-hex character in its \"hex\" string");
  EXPECT_EQ(stream_error("\"name\":\"x\",", ""), prefix + "missing field \"name\"");

  RunTrace run = SmallRun();
  run.code = {{1, "f", "f.py", 3}};
  WriteRawFile(Path("b"), run);
  const std::string with_code = Slurp(Path("b"));
  const RecordAt r = First(with_code, RawRecordType::kRun);
  const std::string run_json = with_code.substr(r.offset + 8, r.length);
  const auto run_error = [&](const std::string& from, const std::string& to) {
    std::string payload = run_json;
    const std::size_t at = payload.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    payload.replace(at, from.size(), to);
    return ErrorFor(WithPayload(with_code, RawRecordType::kRun, payload));
  };
  const std::string run_prefix = "events.raw: RUN record at byte " + std::to_string(r.offset) + ": ";
  EXPECT_EQ(run_error("\"args\":[\"--n\",\"3\"]", "\"args\":[\"--n\",3]"),
            run_prefix + "field \"info.args[1]\" must be a string or {\"hex\": ...}, got number");
  EXPECT_EQ(run_error("\"exit_code\":0", "\"exit_code\":2147483648"),
            run_prefix + "field \"info.exit_code\" must be a 32-bit integer, got an integer out of range");
  EXPECT_EQ(run_error("\"first_line\":3", "\"first_line\":\"3\""),
            run_prefix + "field \"code[0].first_line\" must be a 32-bit integer, got string");
  EXPECT_EQ(run_error("\"interpreter\":0,", ""), run_prefix + "missing field \"gils[0].interpreter\"");
  EXPECT_EQ(run_error("\"gils\":[", "\"gils\":[7,"), run_prefix + "field \"gils[0]\" must be an object, got number");
  EXPECT_EQ(run_error("\"end_ns\"", "\"end\""), run_prefix + "missing field \"end_ns\"");
}

TEST_F(RawFileTest, RejectsAFileThatDidNotFinishUnlessAllowed) {
  const std::string good = SmallFile(Path("a"));
  const RecordAt run = First(good, RawRecordType::kRun);
  const std::string unfinished = good.substr(0, run.offset);  // crashed before Finish()
  EXPECT_EQ(ErrorFor(unfinished), "events.raw: the run did not finish: no END record (the recording stopped at byte " +
                                      std::to_string(run.offset) + ", e.g. the runner crashed or is still running)");
  ReadOptions lenient;
  lenient.allow_unfinished = true;
  const RawContents back = ReadRawBytes(unfinished.data(), unfinished.size(), "events.raw", lenient);
  EXPECT_FALSE(back.finished);
  EXPECT_FALSE(back.has_run);
  EXPECT_EQ(back.torn_bytes, 0u);
  EXPECT_EQ(back.events, 15u);
  EXPECT_EQ(back.trace.info.script, "");

  // RUN but no END: the run's facts are there, the flag still says unfinished.
  const std::string no_end = good.substr(0, good.size() - 8);
  EXPECT_NE(ErrorFor(no_end).find("the run did not finish"), std::string::npos);
  const RawContents with_run = ReadRawBytes(no_end.data(), no_end.size(), "events.raw", lenient);
  EXPECT_FALSE(with_run.finished);
  EXPECT_TRUE(with_run.has_run);
  EXPECT_EQ(with_run.trace.info.script, "demo.py");
}

TEST_F(RawFileTest, RejectsBrokenEndRecords) {
  const std::string good = SmallFile(Path("a"));
  const std::size_t end_at = good.size() - 8;
  EXPECT_EQ(ErrorFor(good + "junk"), "events.raw: 4 bytes after the END record at byte " + std::to_string(end_at));
  EXPECT_EQ(ErrorFor(good + Record(4, "")), "events.raw: 8 bytes after the END record at byte " + std::to_string(end_at));
  EXPECT_EQ(ErrorFor(WithPayload(good, RawRecordType::kEnd, "x")),
            "events.raw: END record at byte " + std::to_string(end_at) + " has 1 payload bytes; it must be empty");
  const RecordAt run = First(good, RawRecordType::kRun);
  const std::string no_run = good.substr(0, run.offset) + Record(4, "");
  EXPECT_EQ(ErrorFor(no_run), "events.raw: END record at byte " + std::to_string(run.offset) +
                                  " but no RUN record before it");
}

TEST_F(RawFileTest, RejectsAFinishedFileWithEventsOfAnUnnamedStream) {
  const std::string good = SmallFile(Path("a"));
  const RecordAt events = First(good, RawRecordType::kPacked);
  std::string bytes = good;
  PutU32(bytes, events.offset + 8, 99);
  FixChecksum(bytes, events.offset);
  EXPECT_EQ(ErrorFor(bytes), "events.raw: stream 99 has events (first at byte " + std::to_string(events.offset) +
                                 ") but no STREAM record");
  ReadOptions lenient;
  lenient.allow_unfinished = true;
  const std::string unfinished = bytes.substr(0, First(bytes, RawRecordType::kRun).offset);
  const RawContents back = ReadRawBytes(unfinished.data(), unfinished.size(), "events.raw", lenient);
  EXPECT_EQ(back.streams_without_identity, std::vector<std::uint32_t>{99});
  EXPECT_EQ(back.stream_ids, (std::vector<std::uint32_t>{0, 1, 99}));
}

TEST_F(RawFileTest, RefusesDirectoriesMissingFilesAndFifosWithoutHanging) {
  const auto error = [](const std::string& path) {
    try {
      ReadRawFile(path);
    } catch (const RawFileError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error(dir_), dir_ + ": is a directory, not a gilscope raw events file");
  EXPECT_EQ(error(Path("missing.raw")), Path("missing.raw") + ": cannot open: No such file or directory");
  ASSERT_EQ(mkfifo(Path("fifo").c_str(), 0600), 0);
  EXPECT_EQ(error(Path("fifo")), Path("fifo") + ": not a regular file");
}

// ------------------------------------------------------------ writer

TEST_F(RawFileTest, OpenNamesTheFileAndTheOsError) {
  try {
    RawWriter::Open(Path("no/such/dir/events.raw"));
    FAIL() << "opened a file in a missing directory";
  } catch (const RawFileError& e) {
    EXPECT_EQ(std::string(e.what()), Path("no/such/dir/events.raw") + ": cannot create: No such file or directory");
  }
  // /dev/full accepts the open and fails the first write with ENOSPC.
  if (access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no /dev/full";
  try {
    RawWriter::Open("/dev/full");
    FAIL() << "wrote to /dev/full";
  } catch (const RawFileError& e) {
    EXPECT_EQ(std::string(e.what()), "/dev/full: cannot write: No space left on device");
  }
}

TEST_F(RawFileTest, AFileLeftByACrashCanBeResumedAndFinished) {
  const RunTrace run = SmallRun();
  {
    RawWriter writer = RawWriter::Open(Path("events.raw"));
    writer.SetStream(run.threads[0], 0);
    writer.AppendEvents(0, run.threads[0].events.data(), 5);
    writer.AppendEvents(1, run.threads[1].events.data(), 3);
  }  // destroyed unfinished: what a runner leaves when it dies after a flush
  {
    // ...and the record it was writing when it died, torn.
    std::ofstream(Path("events.raw"), std::ios::binary | std::ios::app) << Record(1, std::string(40, 'x')).substr(0, 30);
  }
  RawContents so_far;
  RawWriter writer = RawWriter::Resume(Path("events.raw"), &so_far);
  EXPECT_EQ(so_far.events, 8u);
  EXPECT_EQ(so_far.torn_bytes, 30u);
  EXPECT_EQ(so_far.streams_without_identity, std::vector<std::uint32_t>{1});
  EXPECT_EQ(writer.bytes_written(), so_far.whole_bytes);
  // The supervisor drains what the rings still hold, names the streams and finishes.
  writer.AppendEvents(0, run.threads[0].events.data() + 5, run.threads[0].events.size() - 5);
  writer.AppendEvents(1, run.threads[1].events.data() + 3, run.threads[1].events.size() - 3);
  writer.SetStream(run.threads[1], 1);
  writer.Finish(run);

  ExpectRunEqual(run, ReadRawFile(Path("events.raw")).trace);
  try {
    RawWriter::Resume(Path("events.raw"));
    FAIL() << "resumed a finished file";
  } catch (const RawFileError& e) {
    EXPECT_EQ(std::string(e.what()), Path("events.raw") + ": already finished (it has an END record); nothing to resume");
  }
}

// A supervisor resuming a file whose last block the crash garbled (its
// checksum fails): the block is cut like a torn record.
TEST_F(RawFileTest, ResumeCutsAGarbledLastBlock) {
  const RunTrace run = SmallRun();
  {
    RawWriter writer = RawWriter::Open(Path("events.raw"));
    writer.AppendEvents(0, run.threads[0].events.data(), 5);
    writer.Flush();
    writer.AppendEvents(0, run.threads[0].events.data() + 5, 3);
  }
  std::string bytes = Slurp(Path("events.raw"));
  const RecordAt last = Records(bytes).back();
  bytes[bytes.size() - 1] = static_cast<char>(bytes.back() ^ 0x40);
  std::ofstream(Path("events.raw"), std::ios::binary | std::ios::trunc) << bytes;
  RawContents so_far;
  RawWriter writer = RawWriter::Resume(Path("events.raw"), &so_far);
  EXPECT_EQ(so_far.events, 5u);
  EXPECT_EQ(so_far.whole_bytes, last.offset);
  EXPECT_EQ(so_far.torn_bytes, 8 + last.length);
  writer.AppendEvents(0, run.threads[0].events.data() + 5, 3);
  writer.AppendEvents(1, run.threads[1].events.data(), run.threads[1].events.size());
  writer.SetStream(run.threads[0], 0);
  writer.SetStream(run.threads[1], 1);
  writer.Finish(run);
  ExpectRunEqual(run, ReadRawFile(Path("events.raw")).trace);
}

// An unfinished version 2 file (a crash under an older gilscope) resumes:
// its header becomes version 3, its EVENTS blocks stay, and PACKED ones
// follow them.
TEST_F(RawFileTest, ResumeRaisesAnOldFileToVersionThree) {
  const RunTrace run = SmallRun();
  std::string bytes = OldFile(run, 2, Path("scratch"));
  bytes.resize(First(bytes, RawRecordType::kRun).offset);  // crashed before RUN
  std::ofstream(Path("events.raw"), std::ios::binary) << bytes;
  RawContents so_far;
  RawWriter writer = RawWriter::Resume(Path("events.raw"), &so_far);
  EXPECT_EQ(so_far.version, 2u);
  EXPECT_EQ(so_far.events, 15u);
  std::vector<Event> more = {Released(90, false), Acquired(91)};
  writer.AppendEvents(1, more.data(), more.size());
  writer.Finish(run);
  const std::string after = Slurp(Path("events.raw"));
  EXPECT_EQ(U32At(after, 8) & 0xFFFF, 3u);
  EXPECT_EQ(Blocks(after).size(), 1u);
  const RawContents back = ReadRawFile(Path("events.raw"));
  EXPECT_EQ(back.version, 3u);
  RunTrace expected = run;
  expected.threads[1].events.insert(expected.threads[1].events.end(), more.begin(), more.end());
  ExpectRunEqual(expected, back.trace);
}

TEST_F(RawFileTest, AWriterRefusesEventsOfUnknownKindsAndStaysUsable) {
  RawWriter writer = RawWriter::Open(Path("events.raw"));
  std::vector<Event> events = {Request(1), Request(2)};
  events[1].kind = static_cast<EventKind>(11);
  try {
    writer.AppendEvents(0, events.data(), events.size());
    ADD_FAILURE() << "packed an unknown kind";
  } catch (const std::logic_error& e) {
    EXPECT_EQ(std::string(e.what()), "RawWriter: event 1 has kind 11, not a recorder::EventKind");
  }
  writer.AppendEvents(0, events.data(), 1);
  writer.SetStream(Thread("t", 1, {}), 0);
  writer.Finish(SmallRun());
  const RawContents back = ReadRawFile(Path("events.raw"));
  EXPECT_EQ(back.events, 1u) << "nothing of the refused append was kept";
}

TEST_F(RawFileTest, AWriterIsUnusableAfterFinish) {
  RawWriter writer = RawWriter::Open(Path("events.raw"));
  writer.Finish(SmallRun());
  EXPECT_TRUE(writer.finished());
  const Event e = Request(1);
  EXPECT_THROW(writer.AppendEvents(0, &e, 1), std::logic_error);
  EXPECT_THROW(writer.Finish(SmallRun()), std::logic_error);
  EXPECT_EQ(ErrorFor(Slurp(Path("events.raw"))), "") << "an empty run is a valid file";
}

}  // namespace
}  // namespace gilscope::report
