// events.raw: a run's raw events, kept in the output folder so that
// `gilscope report DIR` can re-render every output later, and so that a
// supervisor can complete the file after a crashed runner.
//
// The drain appends events as it copies them out of the rings (RawWriter), so
// memory stays bounded however long the script runs; the facts that are known
// only at the end (GILs, code table, how the run ended) follow in one RUN
// record, and an END record marks a file that was finished cleanly.
// ReadRawFile() turns the file back into a RunTrace and trusts nothing in it.
//
// Format, version 2 (version 1 is the same without folded requests; both are read). All integers little-endian, no padding, no alignment.
//
//   File header, 16 bytes:
//     0   8  magic       89 47 49 4C 52 41 57 0A ("\x89GILRAW\n": the high
//                         first byte keeps text files out, the \n catches
//                         newline translation)
//     8   2  version     u16, 1
//    10   2  event size  u16, 16 (sizeof(recorder::Event))
//    12   4  flags       u32; versions 1 and 2 define none and a reader rejects any
//                         set bit (a later writer sets one only for a change
//                         that old readers must not silently misread)
//
//   Then records, back to back until the end of the file:
//     0   4  type        u32
//     4   4  length      u32, payload bytes that follow (header excluded)
//     8   n  payload
//   A type with bit 31 set is optional: readers that do not know it skip it.
//   Any other unknown type is an error.
//
//   type 1  EVENTS  u32 stream id, u32 count, then count events of 16 bytes:
//                   u64 ts, u8 kind, u8 gil, u16 flags, u32 aux (the fields
//                   of recorder::Event, in its order). length == 8 + 16*count.
//                   A stream's events are its EVENTS blocks concatenated in
//                   file order; blocks of different streams interleave freely.
//                   Every kind must be a known recorder::EventKind.
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
//                    "marker_names": [string], "dropped_no_slot": u64}
//                   Written once, at the end; if there are several the last
//                   one wins.
//   type 4  END     empty. The last record of a finished file: nothing may
//                   follow it, and a RUN must precede it.
//
//   JSON: UTF-8, at most 16 levels deep. Every field listed is required and
//   must have the type shown; unknown fields are ignored (a later writer may
//   add fields without a version bump). A string that is not valid UTF-8
//   (a thread name is whatever bytes the script set) is written as
//   {"hex": "<2 lowercase hex digits per byte>"} so it reads back byte for
//   byte. A null number is a non-finite value: cpu_s reads back as -1
//   (unknown), switch_interval_s as 0.
//
// Size: 16 bytes per event plus 16 per EVENTS block; the writer stages each
// stream's events and writes them as one block per flush.
//
// Streams become RunTrace::threads in ascending stream id. A finished file
// must have a STREAM record for every stream that has events. Event `aux`
// values (code ids, marker indexes) are not checked against the RUN tables: a
// crashed run may lack them, so consumers bounds-check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "recorder/event.h"
#include "report/run_trace.h"

namespace gilscope::report {

// Every failure to read or write events.raw. what() is one line that names
// the file and says what is wrong and where.
class RawFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Version 2 adds kAcquired events with kFlagRequestFolded (an uncontended
// take_gil's request folded into its acquisition). Version 1 files have none
// and read the same, so both are accepted; a version-1 reader refuses
// version 2 instead of silently losing those waits.
inline constexpr std::uint16_t kRawFormatVersion = 2;
inline constexpr std::uint16_t kOldestRawFormatVersion = 1;
inline constexpr std::size_t kRawHeaderSize = 16;
inline constexpr std::size_t kRawRecordHeaderSize = 8;

enum class RawRecordType : std::uint32_t {
  kEvents = 1,
  kStream = 2,
  kRun = 3,
  kEnd = 4,
};
inline constexpr std::uint32_t kRawOptionalRecordBit = 1u << 31;

struct ReadOptions {
  // Accept a file that has no END record (the runner crashed, or is still
  // running): return what is there with RawContents::finished false. A torn
  // last record is then taken for the crash it is and ignored, and STREAM and
  // RUN records may be missing. Everything else is still checked.
  bool allow_unfinished = false;
  // False: validate and count the events without keeping them (to check a
  // file, or to find where to resume it, in bounded memory).
  bool keep_events = true;
};

struct RawContents {
  // The run. Without a RUN record (unfinished files only) `trace.info` and the
  // tables keep their defaults; a stream without a STREAM record has only
  // its events.
  RunTrace trace;
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

// Reads and validates a file. `path` also names the file in error messages.
// Throws RawFileError; never trusts a length before checking it against the
// bytes that are left, so a hostile file costs at most memory proportional
// to its size.
RawContents ReadRawFile(const std::string& path, const ReadOptions& options = {});

// The same from bytes in memory (tests, the fuzzer); `name` stands for the
// file in error messages.
RawContents ReadRawBytes(const void* data, std::size_t size, const std::string& name,
                         const ReadOptions& options = {});

// Appends records to events.raw while a run goes on.
//
// Events are staged per stream and leave as one EVENTS block per stream on
// Flush(), when 1 MiB is staged, or when a stream fills a block (65535
// events), so a block's 16 header bytes are shared by everything a stream
// produced between two flushes. Records then go through a 1 MiB buffer and
// each write() carries whole records only, so a crash leaves at most one
// torn record, at the end, which ReadOptions::allow_unfinished ignores.
//
// When to Flush(): staged and buffered events die with the writer's
// process. If that process is the one that may crash (the drain runs inside
// the runner), flush after every drain pass and accept ~20-30 bytes per
// event when each pass finds only a few events per thread; if the writer
// lives in a supervisor that outlives the script, flush every 100-250 ms
// (what is still in the rings survives a runner crash there anyway) and the
// file stays at ~16 bytes per event.
//
// Memory: the 1 MiB buffer, at most 1 MiB of staged events, and one small
// entry per stream.
//
// Errors throw RawFileError naming the file and the OS error; after one the
// writer is failed and every later call throws again. Misuse (writing after
// Finish()) throws std::logic_error.
//
// Thread-compatible: one thread at a time. Movable, not copyable. The
// destructor flushes (never throws) but does not finish the file.
class RawWriter {
 public:
  static constexpr std::size_t kBufferSize = std::size_t{1} << 20;

  // Creates (truncates) path and writes the file header.
  static RawWriter Open(const std::string& path);
  // Reopens an unfinished file to complete it (the supervisor after a
  // crashed runner): validates it, cuts a torn last record, and appends
  // after the last whole one. `so_far` receives what the file held (events
  // counted, not kept). Throws if the file is finished or invalid.
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
  struct Staged {
    std::uint32_t stream = 0;
    std::vector<recorder::Event> events;
  };

  RawWriter(std::string path, int fd, std::uint64_t size);

  void MoveFrom(RawWriter& other) noexcept;
  void CheckWritable() const;
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
  std::vector<char> buffer_;    // whole records, at most kBufferSize bytes
  // One entry per stream ever appended to, in first-append order (the order
  // blocks are emitted in); index_ maps a stream id to its entry.
  std::vector<Staged> staged_;
  std::unordered_map<std::uint32_t, std::size_t> index_;
  std::size_t staged_events_ = 0;   // sum of staged_[i].events.size()
  std::size_t staged_streams_ = 0;  // entries with at least one staged event
  bool finished_ = false;
  std::string failure_;  // non-empty once a write failed
};

// Writes a whole RunTrace in one go (stream id = thread index), e.g. for tests
// or to convert a trace held in memory.
void WriteRawFile(const std::string& path, const RunTrace& trace);

}  // namespace gilscope::report
