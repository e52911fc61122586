// events.raw: a run's raw events, kept in the output folder so that
// `gilscope report DIR` can re-render every output later, and so that a
// supervisor can complete the file after a crashed runner.
//
// The drain appends events as it copies them out of the rings (RawWriter), so
// memory stays bounded however long the script runs; the facts that are known
// only at the end (GILs, code table, how the run ended) follow in one RUN
// record, and an END record marks a file that was finished cleanly.
// ReadRawFile() turns the file back into a RunTrace and trusts nothing in it;
// RawFileSource reads it a batch at a time in bounded memory (analysis of
// runs too long to hold in memory) and trusts nothing in it either.
//
// Format, version 3 (versions 1 and 2 are read too; what changed is listed
// at the end). All integers little-endian, no padding, no alignment.
//
//   File header, 16 bytes:
//     0   8  magic       89 47 49 4C 52 41 57 0A ("\x89GILRAW\n": the high
//                         first byte keeps text files out, the \n catches
//                         newline translation)
//     8   2  version     u16, 3
//    10   2  event size  u16, 16 (sizeof(recorder::Event), what events
//                         decode to)
//    12   4  flags       u32; none is defined and a reader rejects any set
//                         bit (a later writer sets one only for a change
//                         that old readers must not silently misread)
//
//   Then records, back to back until the end of the file:
//     0   4  type        u32
//     4   4  length      u32, payload bytes that follow (header excluded)
//     8   n  payload
//   A type with bit 31 set is optional: readers that do not know it skip it.
//   Any other unknown type is an error.
//
//   type 5  PACKED  A block of one stream's events, packed (what RawWriter
//                   writes):
//                     0  4  stream id  u32
//                     4  4  count      u32, events in the block
//                     8  4  checksum   u32, CRC-32 (zlib's crc32: the
//                                      ISO-HDLC/IEEE polynomial) of bytes
//                                      0-7 then of the packed events
//                    12  .  packed events, length - 12 bytes, exactly count
//                                      of them
//                   Each packed event is a tag byte and then only what
//                   differs from what came before it in the same block:
//                     tag bits 0-3  kind (1-10, recorder::EventKind)
//                         bit 4     G: gil (u8) then flags (varint,
//                                   <= 0xFFFF) follow; 0: the same gil and
//                                   flags as the previous event of this kind
//                         bit 5     A: aux (varint, <= 0xFFFFFFFF) follows;
//                                   0: the same aux as the previous event of
//                                   this kind
//                         bits 6-7  T: ts from its reference r: 0 ts == r,
//                                   1 ts = r + v, 2 ts = r - v (v a varint,
//                                   mod 2^64), 3 invalid
//                   then v (T = 1 or 2), then gil and flags (G), then aux
//                   (A). A varint is unsigned LEB128: 7 bits a byte, low
//                   first, the high bit set on every byte but the last; v
//                   takes at most 10 bytes (and 64 bits), flags 3, aux 5,
//                   so an event at most 20. The reference r is the previous ts of the
//                   same class in the block: kFrame's (a code id), or
//                   kThreadState's (an address), or for every other kind the
//                   previous timed event's (nanoseconds). At the start of a
//                   block every reference, gil, flags and aux is 0, so each
//                   block decodes on its own. Any u64 ts, any gil, flags and
//                   aux round-trip; writers take the shorter way round for
//                   ts (T = 1 when (ts - r) mod 2^64 < 2^63, else T = 2).
//                   A kFrame that repeats the last code and line is 1 byte; a
//                   release or acquisition a few microseconds after the
//                   previous event is 3-5 bytes.
//                   A stream's events are its EVENTS and PACKED blocks
//                   concatenated in file order; blocks of different streams
//                   interleave freely.
//   type 1  EVENTS  A block of raw events (versions 1 and 2 wrote these; a
//                   version 3 file may hold them too, e.g. one that was
//                   resumed): u32 stream id, u32 count, then count events of
//                   16 bytes: u64 ts, u8 kind, u8 gil, u16 flags, u32 aux (the
//                   fields of recorder::Event, in its order). length == 8 +
//                   16*count. No checksum.
//   type 2  STREAM  a JSON object naming one stream:
//                   {"id": u32, "native_id": u64, "pid": u32, "name": string,
//                    "dropped": u64, "cpu_s": number | null (unknown)}
//                   It may come before or after the stream's events, and
//                   again: the last one for an id wins.
//   type 3  RUN     a JSON object, the non-event parts of RunTrace:
//                   {"info": {"gilscope_version", "python_version", "script":
//                     string, "args": [string], "mode": string, "instances":
//                     int, "status": string, "exit_code": int,
//                     "switch_interval_s": number | null},
//                    "start_ns": u64, "end_ns": u64,
//                    "gils": [{"id": u32, "interpreter": i64,
//                      "cpython_switch_start": u64, "cpython_switch_end": u64,
//                      "holder_tstate_at_start": u64}],
//                    "code": [{"id": u64, "function": string, "file": string,
//                      "first_line": int}],
//                    "marker_names": [string], "dropped_no_slot": u64,
//                    "gils_lost": u64 (optional, only when not 0)}
//                   Written once, at the end; if there are several the last
//                   one wins.
//   type 4  END     empty. The last record of a finished file: nothing may
//                   follow it, and a RUN must precede it.
//
//   Every event kind must be a known recorder::EventKind.
//
//   JSON: UTF-8, at most 16 levels deep. Every field listed is required and
//   must have the type shown; unknown fields are ignored (a later writer may
//   add fields without a version bump). A string that is not valid UTF-8
//   (a thread name is whatever bytes the script set) is written as
//   {"hex": "<2 lowercase hex digits per byte>"} so it reads back byte for
//   byte. A null number is a non-finite value: cpu_s reads back as -1
//   (unknown), switch_interval_s as 0.
//
//   Damage: a record that runs past the end of an unfinished file, or a
//   PACKED block whose checksum fails and that is the file's last record,
//   is where the writer died: ReadOptions::allow_unfinished ignores it
//   (torn_bytes). A checksum that fails anywhere else is an error naming the
//   record's offset.
//
// Size: a PACKED block costs 20 header bytes; the writer stages each
// stream's packed events and writes them as one block per flush, at most
// 1 MiB each. A release-heavy run (per read a kFrame, a kReleased and a
// folded kAcquired: 1 + 3 + 4 bytes) took 2.5 bytes per event (version 2:
// 16.0); small runs more, their STREAM and RUN records being a larger part.
//
// Versions: 1 wrote raw EVENTS blocks of events without folded requests;
// 2 added kAcquired with kFlagRequestFolded (a version-1 reader refuses
// version 2 rather than lose those waits); 3 added PACKED blocks (a
// version-2 reader refuses version 3: PACKED would be an unknown record).
// A PACKED record in a version 1 or 2 file is an error.
//
// Streams become RunTrace::threads in ascending stream id. A finished file
// must have a STREAM record for every stream that has events. Event `aux`
// values (code ids, marker indexes) are not checked against the RUN tables: a
// crashed run may lack them, so consumers bounds-check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "recorder/event.h"
#include "report/event_source.h"
#include "report/raw_format.h"
#include "report/run_trace.h"

namespace gilscope::report {

// Every failure to read or write events.raw. what() is one line that names
// the file and says what is wrong and where.
class RawFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Version 3 packs events (PACKED blocks, about 3 bytes an event instead of
// 16); version 2 added folded requests; see the format's "Versions".
inline constexpr std::uint16_t kRawFormatVersion = 3;
inline constexpr std::uint16_t kOldestRawFormatVersion = 1;
inline constexpr std::size_t kRawHeaderSize = 16;
inline constexpr std::size_t kRawRecordHeaderSize = 8;

enum class RawRecordType : std::uint32_t {
  kEvents = 1,
  kStream = 2,
  kRun = 3,
  kEnd = 4,
  kPacked = 5,
};
inline constexpr std::uint32_t kRawOptionalRecordBit = 1u << 31;

struct ReadOptions {
  // Accept a file that has no END record (the runner crashed, or is still
  // running): return what is there with RawContents::finished false. A torn
  // last record (or a last PACKED block whose checksum fails) is then taken
  // for the crash it is and ignored, and STREAM and RUN records may be
  // missing. Everything else is still checked.
  bool allow_unfinished = false;
  // False: validate and count the events without keeping them (to check a
  // file, or to find where to resume it, in bounded memory). RawFileSource
  // never keeps events and ignores this.
  bool keep_events = true;
};

struct RawContents {
  // The run. Without a RUN record (unfinished files only) `trace.info` and the
  // tables keep their defaults; a stream without a STREAM record has only
  // its events.
  RunTrace trace;
  std::uint16_t version = 0;  // the file's format version
  bool finished = false;      // an END record closed the file
  bool has_run = false;       // a RUN record was read
  // Streams that had events but no STREAM record (unfinished files only).
  std::vector<std::uint32_t> streams_without_identity;
  // Stream ids, parallel to trace.threads.
  std::vector<std::uint32_t> stream_ids;
  std::uint64_t events = 0;   // events read (kept or not)
  // Bytes up to the end of the last whole record, and bytes of a torn last
  // record ignored after them (allow_unfinished only).
  std::uint64_t whole_bytes = 0;
  std::uint64_t torn_bytes = 0;
};

// Reads, validates and decodes a whole file. `path` also names the file in
// error messages. Throws RawFileError; never trusts a length or a count
// before checking it against the bytes that are left, so a hostile file
// costs at most memory proportional to its size (16 bytes of events per
// byte of file at worst: a packed event takes at least one).
RawContents ReadRawFile(const std::string& path, const ReadOptions& options = {});

// The same from bytes in memory (tests, the fuzzer); `name` stands for the
// file in error messages.
RawContents ReadRawBytes(const void* data, std::size_t size, const std::string& name,
                         const ReadOptions& options = {});

// events.raw as an EventSource: the run's facts in memory, its events read
// from the file a batch at a time.
//
// Open() makes one pass over the file: it checks the header, every record's
// framing, every PACKED block's checksum and the STREAM and RUN records
// (everything ReadRawFile checks except the events themselves), and keeps
// an index of where each stream's blocks are (24 bytes per block plus 4 per
// block in its stream's list). Cursors then pread their stream's blocks and
// decode them through a fixed 32 KiB buffer, so memory is the index, the
// run's facts, and 32 KiB per open cursor, whatever the number of events.
// The file is never mapped.
//
// A damaged event found while reading (an unknown kind, a block that does
// not decode to its count) throws RawFileError from StreamCursor::Read,
// naming the file and the byte. The file's size is taken at Open(): a file
// still being written is read as it was then.
//
// The source and its cursors share the open file and the index: a cursor
// may outlive its source. Each cursor is for one thread at a time; several
// cursors may be used from different threads at once.
class RawFileSource final : public EventSource {
 public:
  // Opens and indexes `path` (also its name in error messages). Throws
  // RawFileError.
  static std::unique_ptr<RawFileSource> Open(const std::string& path, const ReadOptions& options = {});
  // The same over bytes in memory (tests, the fuzzer), which must outlive
  // the source and its cursors; `name` stands for the file in messages.
  static std::unique_ptr<RawFileSource> FromBytes(const void* data, std::size_t size, const std::string& name,
                                                  const ReadOptions& options = {});
  ~RawFileSource() override;

  const RunTrace& meta() const override;
  std::uint64_t event_count(std::size_t stream) const override;
  std::unique_ptr<StreamCursor> Open(std::size_t stream) const override;

  // As in RawContents.
  std::uint16_t version() const;
  bool finished() const;
  bool has_run() const;
  const std::vector<std::uint32_t>& streams_without_identity() const;
  const std::vector<std::uint32_t>& stream_ids() const;  // parallel to meta().threads
  std::uint64_t whole_bytes() const;
  std::uint64_t torn_bytes() const;
  // EVENTS and PACKED blocks in the index.
  std::size_t block_count() const;

  struct Shared;

 private:
  explicit RawFileSource(std::shared_ptr<const Shared> shared);
  std::shared_ptr<const Shared> shared_;
};

// Appends records to events.raw while a run goes on.
//
// Events are packed as they arrive (PACKED, see the format above) into a
// per-stream staging buffer, and leave as one block per stream on Flush(),
// when 1 MiB is staged in all, or when a stream's block reaches 1 MiB, so a
// block's 20 header bytes are shared by everything a stream produced between
// two flushes. Records then go through a 1 MiB buffer and each write()
// carries whole records only, so a crash leaves at most one torn record, at
// the end, which ReadOptions::allow_unfinished ignores.
//
// When to Flush(): staged and buffered events die with the writer's
// process. If that process is the one that may crash (the drain runs inside
// the runner), flush after every drain pass and accept a block header (20
// bytes) per stream and pass; if the writer lives in a supervisor that
// outlives the script, flush every 100-250 ms or not at all (what is still in
// the rings survives a runner crash there anyway).
//
// Packing costs the calling thread a few nanoseconds per event: call it from
// the drain, never from a recorded thread.
//
// Memory: the 1 MiB buffer; the staged packed events, 1 MiB in all, in
// per-stream buffers that each keep up to 64 KiB once their block has left
// (larger ones only while all of them add up to at most 2 MiB); and a
// ~200-byte entry per stream.
//
// Errors throw RawFileError naming the file and the OS error; after one the
// writer is failed and every later call throws again. Misuse (writing after
// Finish(), an event of an unknown kind) throws std::logic_error.
//
// Thread-compatible: one thread at a time. Movable, not copyable. The
// destructor flushes (never throws) but does not finish the file.
class RawWriter {
 public:
  // Also the largest record it writes (but for a huge RUN record).
  static constexpr std::size_t kBufferSize = std::size_t{1} << 20;

  // Creates (truncates) path and writes the file header.
  static RawWriter Open(const std::string& path);
  // Reopens an unfinished file to complete it (the supervisor after a
  // crashed runner): validates it, cuts a torn last record, and appends
  // after the last whole one. A version 1 or 2 file has its header's version
  // raised to 3 first (its EVENTS blocks stay valid there). `so_far`
  // receives what the file held (events counted, not kept). Throws if the
  // file is finished or invalid.
  static RawWriter Resume(const std::string& path, RawContents* so_far = nullptr);

  RawWriter(RawWriter&& other) noexcept;
  RawWriter& operator=(RawWriter&& other) noexcept;
  RawWriter(const RawWriter&) = delete;
  RawWriter& operator=(const RawWriter&) = delete;
  ~RawWriter();

  // Appends events to stream `stream` (any u32 the caller chooses; unique per
  // thread in the run), after the ones appended to it before. n == 0 writes
  // nothing.
  void AppendEvents(std::uint32_t stream, const recorder::Event* events, std::size_t n);
  // Names stream `stream`: identity's events are ignored. May be called
  // before or after its events, and again (the last call wins).
  void SetStream(const ThreadTrace& identity, std::uint32_t stream);
  // Writes the staged events, RUN (meta's threads, with their events, are
  // ignored) and END, and flushes. Nothing may be written after it.
  void Finish(const RunTrace& meta);
  // Writes the staged events and hands every buffered record to the kernel
  // (no fsync).
  void Flush();

  // Size the file has once everything appended so far is flushed.
  std::uint64_t bytes_written() const;
  bool finished() const { return finished_; }
  const std::string& path() const { return path_; }

 private:
  // One stream's packed events not yet in a block. `bytes` is grown (and
  // zero-filled) only when `used` needs more, never per event.
  struct Staged {
    std::uint32_t stream = 0;
    std::uint32_t count = 0;
    std::size_t used = 0;
    raw::PackedState state;
    std::vector<unsigned char> bytes;
  };

  RawWriter(std::string path, int fd, std::uint64_t size);

  void MoveFrom(RawWriter& other) noexcept;
  void CheckWritable() const;
  void Stage(Staged& staged, const recorder::Event* events, std::size_t n);
  void EmitBlock(Staged& staged);
  void EmitStaged();
  void FlushBuffer();
  void AppendRecord(RawRecordType type, const std::string& payload);
  void WriteOut(const void* head, std::size_t head_size, const void* body, std::size_t body_size);
  [[noreturn]] void Fail(const std::string& what, int error);
  void Close() noexcept;

  std::string path_;
  int fd_ = -1;
  std::uint64_t flushed_ = 0;   // bytes already handed to the kernel
  std::vector<unsigned char> buffer_;  // whole records, at most kBufferSize bytes
  // One entry per stream ever appended to, in first-append order (the order
  // blocks are emitted in); index_ maps a stream id to its entry.
  std::vector<Staged> staged_;
  std::unordered_map<std::uint32_t, std::size_t> index_;
  std::size_t staged_bytes_ = 0;     // sum of staged_[i].used
  std::size_t staged_streams_ = 0;   // entries with at least one staged event
  std::size_t staged_capacity_ = 0;  // sum of staged_[i].bytes.size()
  bool finished_ = false;
  std::string failure_;  // non-empty once a write failed
};

// Writes a whole RunTrace in one go (stream id = thread index), e.g. for tests
// or to convert a trace held in memory.
void WriteRawFile(const std::string& path, const RunTrace& trace);

}  // namespace gilscope::report
