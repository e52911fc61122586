// RawFileSource: events.raw read a batch at a time. Each stream's cursor
// yields exactly what ReadRawFile holds for it, with many cursors open at
// once and read over again; the source says what RawContents says; damage is
// found at Open (framing, checksums, JSON) or by the cursor that reaches it
// (events that do not decode); and memory stays a small constant plus the
// block index, whatever the number of events.
//
// A test binary of its own: it replaces the global operator new to count
// the bytes the source allocates.

#include <gtest/gtest.h>
#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "report/raw_file.h"
#include "report/raw_format.h"
#include "raw_test_util.h"
#include "report_test_traces.h"
#include "temp_dir_test.h"

// ------------------------------------------------------------ allocation counting

namespace {

// Bytes allocated through operator new and not yet freed, and the most
// since the last ResetPeak(), counted only while `g_counting` is set. By
// malloc_usable_size, so a delete without a size subtracts what its new
// added.
std::atomic<bool> g_counting{false};
std::atomic<std::int64_t> g_live{0};
std::atomic<std::int64_t> g_peak{0};

void* CountedNew(std::size_t size) {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  // relaxed: the counters are read by the same thread after the work (the
  // tests are single-threaded); they order nothing else.
  if (g_counting.load(std::memory_order_relaxed)) {
    const std::int64_t live =
        g_live.fetch_add(static_cast<std::int64_t>(malloc_usable_size(p)), std::memory_order_relaxed) +
        static_cast<std::int64_t>(malloc_usable_size(p));
    std::int64_t peak = g_peak.load(std::memory_order_relaxed);
    while (live > peak && !g_peak.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
    }
  }
  return p;
}

void CountedDelete(void* p) {
  if (p == nullptr) return;
  if (g_counting.load(std::memory_order_relaxed)) {
    g_live.fetch_sub(static_cast<std::int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
  }
  std::free(p);
}

// Counts allocations while it lives; peak() is the most live at once,
// relative to when it started (frees of older blocks can make it negative
// in between, never above what was really allocated).
class AllocationCounter {
 public:
  AllocationCounter() {
    g_live.store(0, std::memory_order_relaxed);
    g_peak.store(0, std::memory_order_relaxed);
    g_counting.store(true, std::memory_order_relaxed);
  }
  ~AllocationCounter() { g_counting.store(false, std::memory_order_relaxed); }
  std::int64_t live() const { return g_live.load(std::memory_order_relaxed); }
  std::int64_t peak() const { return g_peak.load(std::memory_order_relaxed); }
};

}  // namespace

void* operator new(std::size_t size) { return CountedNew(size); }
void* operator new[](std::size_t size) { return CountedNew(size); }
void operator delete(void* p) noexcept { CountedDelete(p); }
void operator delete[](void* p) noexcept { CountedDelete(p); }
void operator delete(void* p, std::size_t) noexcept { CountedDelete(p); }
void operator delete[](void* p, std::size_t) noexcept { CountedDelete(p); }

namespace gilscope::report {
namespace {

using namespace gilscope::report::testing;  // NOLINT: test vocabulary

class RawFileSourceTest : public TempDirTest {};

bool SameEvents(const std::vector<Event>& a, const std::vector<Event>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(Event)) == 0);
}

// Everything a cursor yields, `batch` at a time.
std::vector<Event> ReadAll(StreamCursor& cursor, std::size_t batch) {
  std::vector<Event> all, buffer(batch);
  while (std::size_t n = cursor.Read(buffer.data(), batch)) all.insert(all.end(), buffer.begin(), buffer.begin() + n);
  return all;
}

// What the source says about the file, against what ReadRawFile says.
void ExpectSameAsContents(const RawFileSource& source, const RawContents& contents) {
  EXPECT_EQ(source.version(), contents.version);
  EXPECT_EQ(source.finished(), contents.finished);
  EXPECT_EQ(source.has_run(), contents.has_run);
  EXPECT_EQ(source.streams_without_identity(), contents.streams_without_identity);
  EXPECT_EQ(source.stream_ids(), contents.stream_ids);
  EXPECT_EQ(source.whole_bytes(), contents.whole_bytes);
  EXPECT_EQ(source.torn_bytes(), contents.torn_bytes);
  EXPECT_EQ(source.total_events(), contents.events);
  EXPECT_EQ(source.meta().info.script, contents.trace.info.script);
  EXPECT_EQ(source.meta().code.size(), contents.trace.code.size());
  EXPECT_EQ(source.meta().gils.size(), contents.trace.gils.size());
  ASSERT_EQ(source.meta().threads.size(), contents.trace.threads.size());
  for (std::size_t i = 0; i < contents.trace.threads.size(); ++i) {
    const ThreadTrace& a = source.meta().threads[i];
    const ThreadTrace& b = contents.trace.threads[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.native_id, b.native_id);
    EXPECT_EQ(a.pid, b.pid);
    EXPECT_EQ(a.dropped, b.dropped);
    EXPECT_TRUE(a.events.empty()) << "the source holds no events";
    EXPECT_EQ(source.event_count(i), b.events.size());
  }
}

// Twelve streams of different shapes (sparse ids, one with no events, one
// busy, one that gets a single event a round), appended in turns in batches
// of varying size and flushed irregularly, as a drain would: 150+ blocks.
struct ManyStreams {
  std::vector<std::uint32_t> ids;
  std::vector<std::vector<Event>> events;
};

ManyStreams WriteManyStreams(const std::string& path, bool finish) {
  ManyStreams m;
  for (std::uint32_t s = 0; s < 12; ++s) m.ids.push_back(s * s * 1000 + 3);
  m.events.resize(m.ids.size());
  RawWriter writer = RawWriter::Open(path);
  std::uint64_t t = At(0), seed = 7;
  const auto random = [&seed](std::uint64_t span) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return (seed >> 33) % span;
  };
  for (int round = 0; round < 60; ++round) {
    for (std::size_t s = 0; s < m.ids.size(); ++s) {
      if (s == 5) continue;  // no events at all
      const std::size_t n = s == 0 ? 2000 + random(3000) : s == 1 ? 1 : random(200);
      const std::size_t from = m.events[s].size();
      for (std::size_t k = 0; k < n; ++k) {
        t += random(5000);
        const auto kind = static_cast<EventKind>(1 + random(10));
        const std::uint64_t ts = kind == EventKind::kFrame ? 0x7f00'0000ull + 64 * random(4)
                                 : kind == EventKind::kThreadState ? 0x5500'0000ull + 4096 * random(3)
                                                                   : t;
        m.events[s].push_back(Event{ts, kind, static_cast<std::uint8_t>(random(3)),
                                    static_cast<std::uint16_t>(random(2) == 0 ? 0 : 1u << random(16)),
                                    static_cast<std::uint32_t>(random(4) == 0 ? random(100'000) : 0)});
      }
      writer.AppendEvents(m.ids[s], m.events[s].data() + from, n);
    }
    if (random(3) == 0) writer.Flush();
  }
  for (std::size_t s = 0; s < m.ids.size(); ++s) {
    writer.SetStream(Thread("t" + std::to_string(s), 100 + s, {}), m.ids[s]);
  }
  if (finish) writer.Finish(SmallRun());
  return m;
}

TEST_F(RawFileSourceTest, ManyInterleavedStreamsReadBackIdenticallyThroughCursorsOpenAtOnceTwice) {
  const ManyStreams m = WriteManyStreams(Path("events.raw"), true);
  const RawContents contents = ReadRawFile(Path("events.raw"));
  const auto source = RawFileSource::Open(Path("events.raw"));
  ExpectSameAsContents(*source, contents);
  EXPECT_GT(source->block_count(), 150u);
  ASSERT_EQ(source->meta().threads.size(), m.ids.size());
  // Stream ids ascend: 3, 1003, 4003, ... so index i is m.ids[i].
  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE("pass " + std::to_string(pass));
    std::vector<std::unique_ptr<StreamCursor>> cursors;
    for (std::size_t s = 0; s < m.ids.size(); ++s) cursors.push_back(source->Open(s));
    // Read them all a bit at a time, in turns, batches of 1 to 4096.
    std::vector<std::vector<Event>> read(m.ids.size());
    const std::vector<std::size_t> batches = {1, 7, 300, 4096, 2};
    std::vector<bool> done(m.ids.size(), false);
    for (std::size_t turn = 0; std::count(done.begin(), done.end(), false) > 0; ++turn) {
      for (std::size_t s = 0; s < m.ids.size(); ++s) {
        if (done[s]) continue;
        const std::size_t batch = batches[(turn + s) % batches.size()];
        std::vector<Event> buffer(batch);
        const std::size_t n = cursors[s]->Read(buffer.data(), batch);
        if (n == 0) done[s] = true;
        read[s].insert(read[s].end(), buffer.begin(), buffer.begin() + n);
      }
    }
    for (std::size_t s = 0; s < m.ids.size(); ++s) {
      EXPECT_TRUE(SameEvents(read[s], m.events[s])) << "stream " << m.ids[s];
      EXPECT_TRUE(SameEvents(read[s], contents.trace.threads[s].events)) << "stream " << m.ids[s];
      EXPECT_EQ(cursors[s]->Read(read[s].data(), 1), 0u) << "stays at the end";
    }
  }
}

TEST_F(RawFileSourceTest, AnUnfinishedTornFileSaysWhatReadRawFileSays) {
  const ManyStreams m = WriteManyStreams(Path("clean.raw"), false);  // flushed by the destructor, no RUN
  std::string bytes = Slurp(Path("clean.raw"));
  bytes.resize(bytes.size() - 3);  // the last block torn
  std::ofstream(Path("events.raw"), std::ios::binary) << bytes;
  ReadOptions lenient;
  lenient.allow_unfinished = true;
  const RawContents contents = ReadRawFile(Path("events.raw"), lenient);
  EXPECT_GT(contents.torn_bytes, 3u);
  const auto source = RawFileSource::Open(Path("events.raw"), lenient);
  ExpectSameAsContents(*source, contents);
  for (std::size_t s = 0; s < contents.trace.threads.size(); ++s) {
    EXPECT_TRUE(SameEvents(ReadAll(*source->Open(s), 1000), contents.trace.threads[s].events)) << s;
  }
  std::string strict_error;
  try {
    ReadRawFile(Path("events.raw"));
  } catch (const RawFileError& e) {
    strict_error = e.what();
  }
  EXPECT_EQ(strict_error.rfind(Path("events.raw") + ": truncated at byte ", 0), 0u) << strict_error;
  try {
    RawFileSource::Open(Path("events.raw"));
    ADD_FAILURE() << "opened an unfinished file strictly";
  } catch (const RawFileError& e) {
    EXPECT_EQ(std::string(e.what()), strict_error);
  }
}

TEST_F(RawFileSourceTest, ACursorMayOutliveItsSource) {
  WriteRawFile(Path("events.raw"), SmallRun());
  std::unique_ptr<StreamCursor> cursor;
  {
    const auto source = RawFileSource::Open(Path("events.raw"));
    cursor = source->Open(1);
  }
  std::filesystem::remove(Path("events.raw"));  // the source's descriptor keeps it readable
  EXPECT_TRUE(SameEvents(ReadAll(*cursor, 2), SmallRun().threads[1].events));
}

// Open checks what it reads (framing, checksums, JSON); events are decoded
// by the cursor, which throws when it reaches one that is bad, naming the
// file and the byte, while other streams read on.
TEST_F(RawFileSourceTest, ADamagedEventIsFoundByTheCursorThatReachesIt) {
  RunTrace run = SmallRun();
  WriteRawFile(Path("good.raw"), run);
  std::string bytes = Slurp(Path("good.raw"));
  // Stream 1's block: make its third event's kind 12, with a right checksum.
  std::size_t block = 0;
  for (std::size_t pos = kRawHeaderSize, seen = 0; pos < bytes.size();) {
    std::uint32_t type, length;
    std::memcpy(&type, bytes.data() + pos, 4);
    std::memcpy(&length, bytes.data() + pos + 4, 4);
    if (type == static_cast<std::uint32_t>(RawRecordType::kPacked) && seen++ == 1) block = pos;
    pos += 8 + length;
  }
  ASSERT_GT(block, 0u);
  // Its events: find the third tag by unpacking.
  raw::PackedState state;
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data() + block + 20);
  const unsigned char* p = data;
  raw::UnpackFailure failure;
  Event e;
  for (int i = 0; i < 2; ++i) p = raw::UnpackEvent<true>(state, p, p + 64, e, failure);
  const std::size_t third = block + 20 + static_cast<std::size_t>(p - data);
  bytes[third] = static_cast<char>((bytes[third] & 0xF0) | 12);
  std::uint32_t length, count, stream;
  std::memcpy(&length, bytes.data() + block + 4, 4);
  std::memcpy(&stream, bytes.data() + block + 8, 4);
  std::memcpy(&count, bytes.data() + block + 12, 4);
  const std::uint32_t crc = raw::BlockCrcAdd(raw::BlockCrcStart(stream, count), data, length - 12);
  std::memcpy(bytes.data() + block + 16, &crc, 4);

  const auto source = RawFileSource::FromBytes(bytes.data(), bytes.size(), "events.raw");
  EXPECT_TRUE(SameEvents(ReadAll(*source->Open(0), 3), run.threads[0].events)) << "stream 0 is intact";
  const auto cursor = source->Open(1);
  std::vector<Event> buffer(10);
  EXPECT_EQ(cursor->Read(buffer.data(), 2), 2u) << "the events before it read";
  try {
    cursor->Read(buffer.data(), 10);
    ADD_FAILURE() << "read an event of kind 12";
  } catch (const RawFileError& e) {
    EXPECT_EQ(std::string(e.what()), "events.raw: unknown event kind 12 in stream 1 at byte " + std::to_string(third));
  }
  try {
    ReadRawBytes(bytes.data(), bytes.size(), "events.raw");
    ADD_FAILURE() << "ReadRawBytes read an event of kind 12";
  } catch (const RawFileError& e) {
    EXPECT_EQ(std::string(e.what()), "events.raw: unknown event kind 12 in stream 1 at byte " + std::to_string(third))
        << "one decoder, one message";
  }
  // Bad JSON is Open's to find.
  std::string bad_json = Slurp(Path("good.raw"));
  const std::size_t quote = bad_json.find("\"native_id\"");
  ASSERT_NE(quote, std::string::npos);
  bad_json[quote] = '{';
  EXPECT_THROW(RawFileSource::FromBytes(bad_json.data(), bad_json.size(), "events.raw"), RawFileError);
  EXPECT_THROW(source->Open(2), std::out_of_range);
}

TEST_F(RawFileSourceTest, RefusesWhatReadRawFileRefuses) {
  const auto error = [](const std::string& path) {
    try {
      RawFileSource::Open(path);
    } catch (const RawFileError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error(dir_), dir_ + ": is a directory, not a gilscope raw events file");
  EXPECT_EQ(error(Path("missing.raw")), Path("missing.raw") + ": cannot open: No such file or directory");
  std::ofstream(Path("text.raw")) << "not a raw file";
  EXPECT_EQ(error(Path("text.raw")), Path("text.raw") + ": not a gilscope raw events file (bad magic)");
}

// A million events, eight streams, blocks as a supervisor writes them:
// opening the source and reading every stream through a cursor allocates
// well under 1 MiB beyond the block index, while ReadRawFile of the same
// file holds 16 MB of events (which shows the counting works).
TEST_F(RawFileSourceTest, AMillionEventsReadInBoundedMemory) {
  constexpr std::size_t kEvents = 1'000'000, kStreams = 8;
  {
    RawWriter writer = RawWriter::Open(Path("events.raw"));
    std::vector<Event> batch;
    for (std::size_t i = 0; i < kEvents; i += batch.size()) {
      batch.clear();
      for (std::size_t k = 0; k < 500; ++k) {
        const std::uint64_t t = At(0) + 1000 * (i + k);
        batch.push_back(k % 3 == 0 ? Event{0x7f00'1234ull, EventKind::kFrame, 0, 0, 43}
                                   : Event{t, k % 3 == 1 ? EventKind::kReleased : EventKind::kAcquired, 0, 0,
                                           static_cast<std::uint32_t>(k)});
      }
      writer.AppendEvents(static_cast<std::uint32_t>((i / 500) % kStreams), batch.data(), batch.size());
    }
    for (std::uint32_t s = 0; s < kStreams; ++s) writer.SetStream(Thread("t", s, {}), s);
    writer.Finish(SmallRun());
  }
  std::size_t blocks = 0;
  std::uint64_t total = 0;
  std::int64_t source_peak = 0;
  {
    std::vector<Event> buffer(1024);  // the caller's, outside the count
    AllocationCounter counter;
    {
      const auto source = RawFileSource::Open(Path("events.raw"));
      blocks = source->block_count();
      for (std::size_t s = 0; s < source->meta().threads.size(); ++s) {
        const auto cursor = source->Open(s);
        while (std::size_t n = cursor->Read(buffer.data(), buffer.size())) total += n;
      }
    }
    source_peak = counter.peak();
    EXPECT_LE(counter.live(), 0) << "everything freed";
  }
  EXPECT_EQ(total, kEvents);
  const std::int64_t index = static_cast<std::int64_t>(blocks) * 32;
  RecordProperty("source_peak_bytes", std::to_string(source_peak));
  RecordProperty("blocks", std::to_string(blocks));
  EXPECT_LT(source_peak, (std::int64_t{1} << 20) + index);
  EXPECT_LT(source_peak, 200'000) << "in fact: a 64 KiB scan buffer, a 32 KiB window, the run's facts";

  AllocationCounter counter;
  const RawContents all = ReadRawFile(Path("events.raw"));
  EXPECT_GE(counter.peak(), static_cast<std::int64_t>(kEvents * sizeof(Event)));
}

}  // namespace
}  // namespace gilscope::report
