#include "report/raw_file.h"
#include "report/huge_pages.h"
#include "report/text_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>

namespace gilscope::report {

// Events go to disk as their in-memory bytes, which is the little-endian
// layout the format defines only on a little-endian host with this layout.
static_assert(std::endian::native == std::endian::little, "events.raw is little-endian: add byte swapping");
static_assert(sizeof(recorder::Event) == 16);
static_assert(offsetof(recorder::Event, ts) == 0 && offsetof(recorder::Event, kind) == 8 &&
              offsetof(recorder::Event, gil) == 9 && offsetof(recorder::Event, flags) == 10 &&
              offsetof(recorder::Event, aux) == 12);

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

constexpr unsigned char kMagic[8] = {0x89, 'G', 'I', 'L', 'R', 'A', 'W', '\n'};
constexpr std::size_t kEventSize = sizeof(recorder::Event);
constexpr std::size_t kBlockHeaderSize = 8;  // u32 stream, u32 count
constexpr int kMaxJsonDepth = 16;
// The largest block the writer builds: header and events fill its buffer.
constexpr std::size_t kMaxBlockEvents =
    (RawWriter::kBufferSize - kRawRecordHeaderSize - kBlockHeaderSize) / kEventSize;

std::uint32_t LoadU32(const unsigned char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
std::uint16_t LoadU16(const unsigned char* p) {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
void StoreU32(char* p, std::uint32_t v) { std::memcpy(p, &v, sizeof v); }
void StoreU16(char* p, std::uint16_t v) { std::memcpy(p, &v, sizeof v); }

std::string ErrnoText(int error) { return std::strerror(error); }

// A switch without default: adding an EventKind makes -Wswitch point here.
bool IsKnownKind(recorder::EventKind kind) {
  switch (kind) {
    case recorder::EventKind::kRequest:
    case recorder::EventKind::kWaitTimeout:
    case recorder::EventKind::kAcquired:
    case recorder::EventKind::kReleased:
    case recorder::EventKind::kThreadState:
    case recorder::EventKind::kThreadExit:
    case recorder::EventKind::kFrame:
    case recorder::EventKind::kMark:
    case recorder::EventKind::kRegionBegin:
    case recorder::EventKind::kRegionEnd:
      return true;
  }
  return false;
}

const char* RecordName(std::uint32_t type) {
  switch (static_cast<RawRecordType>(type)) {
    case RawRecordType::kEvents: return "EVENTS";
    case RawRecordType::kStream: return "STREAM";
    case RawRecordType::kRun: return "RUN";
    case RawRecordType::kEnd: return "END";
  }
  return "unknown";
}

// ---------------------------------------------------------------- writing

ordered_json EncodeString(const std::string& s) {
  if (IsValidUtf8(s)) return s;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * s.size());
  for (char c : s) {
    const auto b = static_cast<unsigned char>(c);
    hex.push_back(kHex[b >> 4]);
    hex.push_back(kHex[b & 0xF]);
  }
  return ordered_json{{"hex", std::move(hex)}};
}

ordered_json EncodeStrings(const std::vector<std::string>& strings) {
  ordered_json array = ordered_json::array();
  for (const std::string& s : strings) array.push_back(EncodeString(s));
  return array;
}

ordered_json EncodeDouble(double v) { return std::isfinite(v) ? ordered_json(v) : ordered_json(nullptr); }

std::string Dump(const ordered_json& doc) {
  // Strict: every string was checked (or hex-encoded) above, so a failure
  // here is a bug, not data to paper over.
  return doc.dump(-1, ' ', /*ensure_ascii=*/false, ordered_json::error_handler_t::strict);
}

std::string StreamJson(const ThreadTrace& t, std::uint32_t stream) {
  ordered_json doc;
  doc["id"] = stream;
  doc["native_id"] = t.native_id;
  doc["pid"] = t.pid;
  doc["name"] = EncodeString(t.name);
  doc["dropped"] = t.dropped;
  doc["cpu_s"] = EncodeDouble(t.cpu_s);
  return Dump(doc);
}

std::string RunJson(const RunTrace& run) {
  const RunInfo& i = run.info;
  ordered_json info;
  info["gilscope_version"] = EncodeString(i.gilscope_version);
  info["python_version"] = EncodeString(i.python_version);
  info["script"] = EncodeString(i.script);
  info["args"] = EncodeStrings(i.args);
  info["mode"] = EncodeString(i.mode);
  info["instances"] = i.instances;
  info["status"] = EncodeString(i.status);
  info["exit_code"] = i.exit_code;
  info["switch_interval_s"] = EncodeDouble(i.switch_interval_s);
  info["signal"] = i.signal;
  info["cpu_count"] = i.cpu_count;

  ordered_json gils = ordered_json::array();
  for (const GilInfo& g : run.gils) {
    gils.push_back({{"id", g.id},
                    {"interpreter", g.interpreter},
                    {"cpython_switch_start", g.cpython_switch_start},
                    {"cpython_switch_end", g.cpython_switch_end},
                    {"holder_tstate_at_start", g.holder_tstate_at_start},
                    {"pid", g.pid},
                    {"instance", g.instance},
                    {"start_ns", g.start_ns},
                    {"end_ns", g.end_ns}});
  }
  ordered_json processes = ordered_json::array();
  for (const ProcessInfo& p : run.processes) {
    processes.push_back({{"pid", p.pid},
                         {"parent_pid", p.parent_pid},
                         {"role", EncodeString(p.role)},
                         {"status", EncodeString(p.status)},
                         {"exit_status", p.exit_status},
                         {"instance", p.instance}});
  }
  ordered_json deadlock;
  deadlock["summary"] = EncodeString(run.deadlock.summary);
  deadlock["threads"] = ordered_json::array();
  for (const BlockedThread& b : run.deadlock.threads) {
    deadlock["threads"].push_back({{"name", EncodeString(b.name)},
                                   {"waiting_for", EncodeString(b.waiting_for)},
                                   {"held_by", EncodeString(b.held_by)},
                                   {"holds", EncodeStrings(b.holds)},
                                   {"stack", EncodeString(b.stack)}});
  }
  ordered_json exceptions = ordered_json::array();
  for (const ScriptException& e : run.exceptions) {
    exceptions.push_back({{"pid", e.pid},
                          {"native_id", e.native_id},
                          {"thread", EncodeString(e.thread)},
                          {"type", EncodeString(e.type)},
                          {"message", EncodeString(e.message)},
                          {"traceback", EncodeString(e.traceback)},
                          {"main", e.main},
                          {"time_ns", e.time_ns}});
  }
  ordered_json code = ordered_json::array();
  for (const CodeInfo& c : run.code) {
    code.push_back({{"id", c.id},
                    {"pid", c.pid},
                    {"function", EncodeString(c.function)},
                    {"file", EncodeString(c.file)},
                    {"first_line", c.first_line}});
  }

  ordered_json doc;
  doc["info"] = std::move(info);
  doc["start_ns"] = run.start_ns;
  doc["end_ns"] = run.end_ns;
  doc["gils"] = std::move(gils);
  doc["code"] = std::move(code);
  doc["marker_names"] = EncodeStrings(run.marker_names);
  doc["dropped_no_slot"] = run.dropped_no_slot;
  // Added after the first files were written: readers treat them as optional.
  doc["processes"] = std::move(processes);
  doc["deadlock"] = std::move(deadlock);
  if (!exceptions.empty()) doc["exceptions"] = std::move(exceptions);
  return Dump(doc);
}

// ---------------------------------------------------------------- reading

// Sequential bytes with a known total size, from memory or from a file.
class Source {
 public:
  virtual ~Source() = default;
  // Copies exactly n bytes from the current position; the caller has checked
  // that n bytes are left. Throws RawFileError on an I/O error.
  virtual void Read(void* dst, std::size_t n) = 0;
  virtual void Skip(std::uint64_t n) = 0;
  // Goes back to byte `pos` (<= the bytes read or skipped so far).
  virtual void Rewind(std::uint64_t pos) = 0;
};

class MemorySource final : public Source {
 public:
  explicit MemorySource(const void* data) : data_(static_cast<const unsigned char*>(data)) {}
  void Read(void* dst, std::size_t n) override {
    if (n != 0) std::memcpy(dst, data_ + pos_, n);
    pos_ += n;
  }
  void Skip(std::uint64_t n) override { pos_ += n; }
  void Rewind(std::uint64_t pos) override { pos_ = static_cast<std::size_t>(pos); }

 private:
  const unsigned char* data_;
  std::size_t pos_ = 0;
};

// Reads through a 64 KiB buffer: files of many small records would otherwise
// cost a system call per record header.
class FileSource final : public Source {
 public:
  FileSource(int fd, std::string name) : fd_(fd), name_(std::move(name)), buffer_(64 * 1024) {}
  void Read(void* dst, std::size_t n) override {
    auto* out = static_cast<unsigned char*>(dst);
    while (n > 0) {
      if (begin_ == end_) {
        if (n >= buffer_.size()) {  // large reads go straight to their destination
          const std::size_t got = ReadSome(out, n);
          out += got;
          n -= got;
          continue;
        }
        begin_ = 0;
        end_ = ReadSome(buffer_.data(), buffer_.size());
      }
      const std::size_t take = std::min(n, end_ - begin_);
      std::memcpy(out, buffer_.data() + begin_, take);
      begin_ += take;
      out += take;
      n -= take;
    }
  }
  void Skip(std::uint64_t n) override {
    const std::uint64_t buffered = end_ - begin_;
    if (n <= buffered) {
      begin_ += static_cast<std::size_t>(n);
      return;
    }
    n -= buffered;
    begin_ = end_ = 0;
    SeekTo(offset_ + n);
  }
  void Rewind(std::uint64_t pos) override {
    begin_ = end_ = 0;
    SeekTo(pos);
  }

 private:
  void SeekTo(std::uint64_t offset) {
    offset_ = offset;
    if (lseek(fd_, static_cast<off_t>(offset_), SEEK_SET) < 0) {
      throw RawFileError(name_ + ": cannot seek to byte " + std::to_string(offset_) + ": " + ErrnoText(errno));
    }
  }

  // Returns 1..n bytes read at offset_, or throws: the caller knows from the
  // size taken at open that they exist, so end of file means it shrank.
  std::size_t ReadSome(unsigned char* dst, std::size_t n) {
    for (;;) {
      const ssize_t got = ::read(fd_, dst, n);
      if (got > 0) {
        offset_ += static_cast<std::uint64_t>(got);
        return static_cast<std::size_t>(got);
      }
      if (got == 0) {
        throw RawFileError(name_ + ": the file shrank while being read: it ends at byte " +
                           std::to_string(offset_));
      }
      if (errno != EINTR) {
        throw RawFileError(name_ + ": read error at byte " + std::to_string(offset_) + ": " + ErrnoText(errno));
      }
    }
  }

  int fd_;
  std::string name_;
  std::vector<unsigned char> buffer_;
  std::size_t begin_ = 0, end_ = 0;  // unread bytes of buffer_
  std::uint64_t offset_ = 0;         // file offset of the next read()
};

struct StreamState {
  ThreadTrace thread;
  bool has_identity = false;
  bool has_events = false;
  std::uint64_t first_events_at = 0;  // byte offset of its first EVENTS record
};

// Reads records in order, checking each before believing it. JSON problems
// name the record (where_) and the field's dotted path ("info.args[2]").
class Parser {
 public:
  Parser(Source& source, std::uint64_t size, std::string name, const ReadOptions& options)
      : source_(source), size_(size), name_(std::move(name)), options_(options) {}

  RawContents Run() {
    ReadHeader();
    if (options_.keep_events) {
      CountStreamEvents();
      source_.Rewind(kRawHeaderSize);
    }
    std::uint64_t pos = kRawHeaderSize;
    bool end_seen = false;
    std::uint64_t end_at = 0;
    while (pos < size_) {
      if (end_seen) {
        Fail(std::to_string(size_ - pos) + " bytes after the END record at byte " + std::to_string(end_at));
      }
      const std::uint64_t left = size_ - pos;
      if (left < kRawRecordHeaderSize) {
        if (Torn(pos, left)) break;
        Fail("truncated at byte " + std::to_string(pos) + ": record header needs 8 bytes, " + std::to_string(left) +
             " left");
      }
      unsigned char head[kRawRecordHeaderSize];
      source_.Read(head, sizeof head);
      const std::uint32_t type = LoadU32(head);
      const std::uint32_t length = LoadU32(head + 4);
      const std::uint64_t payload_left = left - kRawRecordHeaderSize;
      if (length > payload_left) {
        if (Torn(pos, left)) break;
        Fail("truncated at byte " + std::to_string(pos) + ": " + RecordLabel(type) + " record claims " +
             std::to_string(length) + " bytes, " + std::to_string(payload_left) + " left");
      }
      switch (static_cast<RawRecordType>(type)) {
        case RawRecordType::kEvents:
          ReadEvents(pos, length);
          break;
        case RawRecordType::kStream:
          ReadStream(ReadJson(pos, type, length));
          break;
        case RawRecordType::kRun:
          ReadRun(ReadJson(pos, type, length));
          break;
        case RawRecordType::kEnd:
          if (length != 0) {
            Fail("END record at byte " + std::to_string(pos) + " has " + std::to_string(length) +
                 " payload bytes; it must be empty");
          }
          if (!out_.has_run) Fail("END record at byte " + std::to_string(pos) + " but no RUN record before it");
          end_seen = true;
          end_at = pos;
          break;
        default:
          if ((type & kRawOptionalRecordBit) == 0) {
            Fail("unknown record type " + std::to_string(type) + " at byte " + std::to_string(pos));
          }
          source_.Skip(length);
          break;
      }
      pos += kRawRecordHeaderSize + length;
      out_.whole_bytes = pos;
    }
    if (pos == kRawHeaderSize) out_.whole_bytes = pos;
    out_.finished = end_seen;
    if (!end_seen && !options_.allow_unfinished) {
      Fail("the run did not finish: no END record (the recording stopped at byte " + std::to_string(out_.whole_bytes) +
           ", e.g. the runner crashed or is still running)");
    }
    for (auto& [id, stream] : streams_) {
      if (stream.has_events && !stream.has_identity) {
        if (end_seen) {
          Fail("stream " + std::to_string(id) + " has events (first at byte " + std::to_string(stream.first_events_at) +
               ") but no STREAM record");
        }
        out_.streams_without_identity.push_back(id);
      }
      out_.stream_ids.push_back(id);
      out_.trace.threads.push_back(std::move(stream.thread));
    }
    return std::move(out_);
  }

 private:
  [[noreturn]] void Fail(const std::string& what) const { throw RawFileError(name_ + ": " + what); }

  // A record running past the end of an unfinished file is where the writer
  // died: keep what came before it.
  bool Torn(std::uint64_t pos, std::uint64_t left) {
    if (!options_.allow_unfinished) return false;
    out_.whole_bytes = pos;
    out_.torn_bytes = left;
    return true;
  }

  static std::string RecordLabel(std::uint32_t type) {
    const std::string name = RecordName(type);
    return name == "unknown" ? "type " + std::to_string(type) : name;
  }

  void ReadHeader() {
    if (size_ == 0) Fail("empty file (0 bytes): not a gilscope raw events file");
    unsigned char header[kRawHeaderSize] = {};
    const std::size_t have = static_cast<std::size_t>(std::min<std::uint64_t>(size_, kRawHeaderSize));
    source_.Read(header, have);
    if (std::memcmp(header, kMagic, std::min(have, sizeof kMagic)) != 0) {
      Fail("not a gilscope raw events file (bad magic)");
    }
    if (have < kRawHeaderSize) {
      Fail("truncated at byte 0: the file header needs 16 bytes, " + std::to_string(have) + " left");
    }
    const std::uint16_t version = LoadU16(header + 8);
    const std::uint16_t event_size = LoadU16(header + 10);
    const std::uint32_t flags = LoadU32(header + 12);
    if (version < kOldestRawFormatVersion || version > kRawFormatVersion) {
      Fail("unsupported format version " + std::to_string(version) + " (this gilscope reads versions " +
           std::to_string(kOldestRawFormatVersion) + " to " + std::to_string(kRawFormatVersion) + ")");
    }
    if (event_size != kEventSize) {
      Fail("the header says events are " + std::to_string(event_size) + " bytes; version " + std::to_string(version) +
           " events are 16");
    }
    if (flags != 0) {
      char hex[16];
      std::snprintf(hex, sizeof hex, "0x%x", flags);
      Fail(std::string("unknown header flags ") + hex + " (written by a newer gilscope?)");
    }
  }

  StreamState& Stream(std::uint32_t id) { return streams_[id]; }

  // A first pass over the record headers only: how many events each stream's
  // EVENTS blocks hold, so that ReadEvents allocates each stream's array
  // once, at its final size, instead of regrowing (and copying) it. It
  // believes a count only when its block fits in the file, so the sum stays
  // below size_ / 16; it stops quietly at anything wrong, which the real pass
  // then reports where it is.
  void CountStreamEvents() {
    std::uint64_t pos = kRawHeaderSize;
    while (size_ - pos >= kRawRecordHeaderSize) {
      unsigned char head[kRawRecordHeaderSize];
      source_.Read(head, sizeof head);
      const std::uint32_t type = LoadU32(head);
      const std::uint32_t length = LoadU32(head + 4);
      if (length > size_ - pos - kRawRecordHeaderSize) return;
      std::uint64_t payload = length;
      if (type == static_cast<std::uint32_t>(RawRecordType::kEvents) && length >= kBlockHeaderSize) {
        unsigned char block[kBlockHeaderSize];
        source_.Read(block, sizeof block);
        payload -= kBlockHeaderSize;
        const std::uint32_t count = LoadU32(block + 4);
        if (std::uint64_t{count} * kEventSize == payload) expected_events_[LoadU32(block)] += count;
      } else if (type == static_cast<std::uint32_t>(RawRecordType::kEnd)) {
        return;
      }
      source_.Skip(payload);
      pos += kRawRecordHeaderSize + length;
    }
  }

  void ReadEvents(std::uint64_t pos, std::uint32_t length) {
    if (length < kBlockHeaderSize) {
      Fail("EVENTS record at byte " + std::to_string(pos) + " is " + std::to_string(length) +
           " bytes, shorter than its 8-byte block header");
    }
    unsigned char block[kBlockHeaderSize];
    source_.Read(block, sizeof block);
    const std::uint32_t id = LoadU32(block);
    const std::uint32_t count = LoadU32(block + 4);
    const std::uint64_t expected = kBlockHeaderSize + std::uint64_t{count} * kEventSize;
    if (expected != length) {
      Fail("EVENTS record at byte " + std::to_string(pos) + " claims " + std::to_string(count) + " events (" +
           std::to_string(expected) + " bytes) but is " + std::to_string(length) + " bytes");
    }
    StreamState& stream = Stream(id);
    if (!stream.has_events) {
      stream.has_events = true;
      stream.first_events_at = pos;
    }
    const std::uint64_t first_event_at = pos + kRawRecordHeaderSize + kBlockHeaderSize;
    out_.events += count;
    std::vector<recorder::Event>* events = nullptr;
    if (options_.keep_events) {
      events = &stream.thread.events;
      // Bounded: the first pass believed only blocks that fit in the file.
      if (events->empty()) {
        const auto expected = expected_events_.find(id);
        if (expected != expected_events_.end()) ReserveHuge(*events, expected->second);
      }
    }
    // Through a small buffer that stays in cache: the events are checked
    // there and then appended, so the stream's array is written exactly
    // once (never zero-filled first) and never grows past what it holds.
    // Grown to at most 64 KiB as blocks need it: tiny files stay tiny.
    const std::size_t want = std::min<std::size_t>(count, kChunkEvents);
    if (chunk_.size() < want) chunk_.resize(want);
    for (std::uint32_t done = 0; done < count;) {
      const std::uint32_t n = std::min<std::uint32_t>(count - done, static_cast<std::uint32_t>(chunk_.size()));
      source_.Read(chunk_.data(), std::size_t{n} * kEventSize);
      CheckKinds(id, chunk_.data(), n, first_event_at + std::uint64_t{done} * kEventSize);
      if (events != nullptr) events->insert(events->end(), chunk_.data(), chunk_.data() + n);
      done += n;
    }
  }

  void CheckKinds(std::uint32_t stream, const recorder::Event* events, std::size_t n, std::uint64_t first_at) const {
    for (std::size_t i = 0; i < n; ++i) {
      if (!IsKnownKind(events[i].kind)) {
        Fail("unknown event kind " + std::to_string(static_cast<unsigned>(events[i].kind)) + " in stream " +
             std::to_string(stream) + " at byte " + std::to_string(first_at + i * kEventSize));
      }
    }
  }

  // ------------------------------------------------------------ JSON

  json ReadJson(std::uint64_t pos, std::uint32_t type, std::uint32_t length) {
    std::string text(length, '\0');
    source_.Read(text.data(), length);
    where_ = std::string(RecordName(type)) + " record at byte " + std::to_string(pos);
    struct TooDeep {};
    const json::parser_callback_t depth_limit = [](int depth, json::parse_event_t, json&) {
      if (depth > kMaxJsonDepth) throw TooDeep{};
      return true;
    };
    json doc;
    try {
      doc = json::parse(text, depth_limit);
    } catch (const TooDeep&) {
      Fail(where_ + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    } catch (const json::exception& e) {
      Fail(where_ + ": invalid JSON: " + CleanJsonMessage(e.what()));
    }
    if (!doc.is_object()) Fail(where_ + ": expected a JSON object, got " + std::string(doc.type_name()));
    return doc;
  }

  // nlohmann's message without its "[json.exception...] " tag, printable
  // ASCII only (it quotes the bytes it choked on).
  static std::string CleanJsonMessage(std::string_view message) {
    if (!message.empty() && message.front() == '[') {
      const std::size_t close = message.find("] ");
      if (close != std::string_view::npos) message.remove_prefix(close + 2);
    }
    std::string clean;
    for (char c : message.substr(0, 200)) {
      const auto b = static_cast<unsigned char>(c);
      clean.push_back(b >= 0x20 && b < 0x7F ? c : '?');
    }
    return clean;
  }

  [[noreturn]] void FieldFail(const std::string& path, const std::string& what) const {
    Fail(where_ + ": field \"" + path + "\" " + what);
  }

  const json& Field(const json& object, const char* key, const std::string& path) const {
    const auto it = object.find(key);
    if (it == object.end()) Fail(where_ + ": missing field \"" + path + "\"");
    return *it;
  }

  static std::string Join(const std::string& prefix, const char* key) {
    return prefix.empty() ? std::string(key) : prefix + "." + key;
  }

  std::uint64_t U64(const json& v, const std::string& path) const {
    if (!v.is_number_unsigned()) {
      // nlohmann parses non-negative integers as unsigned; anything else is
      // a negative number, a fraction or another type.
      FieldFail(path, "must be an unsigned 64-bit integer, got " + DescribeNumber(v, false));
    }
    return v.get<std::uint64_t>();
  }
  std::uint32_t U32(const json& v, const std::string& path) const {
    if (!v.is_number_unsigned() || v.get<std::uint64_t>() > std::numeric_limits<std::uint32_t>::max()) {
      FieldFail(path, "must be an unsigned 32-bit integer, got " + DescribeNumber(v, false));
    }
    return static_cast<std::uint32_t>(v.get<std::uint64_t>());
  }
  std::int64_t I64(const json& v, const std::string& path) const {
    if (v.is_number_unsigned() && v.get<std::uint64_t>() <= std::uint64_t{std::numeric_limits<std::int64_t>::max()}) {
      return static_cast<std::int64_t>(v.get<std::uint64_t>());
    }
    if (v.is_number_integer() && !v.is_number_unsigned()) return v.get<std::int64_t>();
    FieldFail(path, "must be a signed 64-bit integer, got " + DescribeNumber(v, true));
  }
  int Int(const json& v, const std::string& path) const {
    bool fits = false;
    if (v.is_number_unsigned()) {
      fits = v.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<int>::max());
    } else if (v.is_number_integer()) {
      fits = v.get<std::int64_t>() >= std::numeric_limits<int>::min();
    }
    if (!fits) FieldFail(path, "must be a 32-bit integer, got " + DescribeNumber(v, true));
    return static_cast<int>(v.get<std::int64_t>());
  }
  // A number, or null for a non-finite value (read as `if_null`).
  double Double(const json& v, const std::string& path, double if_null) const {
    if (v.is_null()) return if_null;
    if (!v.is_number()) FieldFail(path, "must be a number or null, got " + Describe(v));
    return v.get<double>();
  }
  std::string String(const json& v, const std::string& path) const {
    if (v.is_string()) return v.get<std::string>();
    if (!v.is_object()) FieldFail(path, "must be a string or {\"hex\": ...}, got " + Describe(v));
    const auto it = v.find("hex");
    if (it == v.end() || !it->is_string() || v.size() != 1) {
      FieldFail(path, "must be a string or {\"hex\": ...}, got an object without a lone \"hex\" string");
    }
    const std::string& hex = it->get_ref<const std::string&>();
    if (hex.size() % 2 != 0) FieldFail(path, "has an odd number of hex digits");
    const auto digit = [&](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      FieldFail(path, "has a non-hex character in its \"hex\" string");
    };
    std::string bytes;
    bytes.reserve(hex.size() / 2);
    for (std::size_t i = 0; i < hex.size(); i += 2) {
      bytes.push_back(static_cast<char>(digit(hex[i]) * 16 + digit(hex[i + 1])));
    }
    return bytes;
  }
  const json& Array(const json& v, const std::string& path) const {
    if (!v.is_array()) FieldFail(path, "must be an array, got " + Describe(v));
    return v;
  }
  const json& Object(const json& v, const std::string& path) const {
    if (!v.is_object()) FieldFail(path, "must be an object, got " + Describe(v));
    return v;
  }
  // Calls fn(item, "path[i]") for each element of the array `v`, each
  // checked to be an object.
  template <class Fn>
  void EachObject(const json& v, const std::string& path, Fn&& fn) const {
    std::size_t i = 0;
    for (const json& item : Array(v, path)) {
      const std::string p = path + "[" + std::to_string(i++) + "]";
      fn(Object(item, p), p);
    }
  }
  std::vector<std::string> Strings(const json& v, const std::string& path) const {
    std::vector<std::string> out;
    std::size_t i = 0;
    for (const json& item : Array(v, path)) {
      out.push_back(String(item, path + "[" + std::to_string(i++) + "]"));
    }
    return out;
  }

  // What a value that failed a type check is: "string", "number", ...
  static std::string Describe(const json& v) { return v.type_name(); }
  // What a value that failed a numeric check is.
  static std::string DescribeNumber(const json& v, bool signed_target) {
    if (v.is_number_float()) return "a fraction";
    if (!v.is_number()) return v.type_name();
    if (!signed_target && !v.is_number_unsigned()) return "a negative integer";
    return "an integer out of range";
  }

  void ReadStream(const json& doc) {
    const std::uint32_t id = U32(Field(doc, "id", "id"), "id");
    ThreadTrace identity;
    identity.native_id = U64(Field(doc, "native_id", "native_id"), "native_id");
    identity.pid = U32(Field(doc, "pid", "pid"), "pid");
    identity.name = String(Field(doc, "name", "name"), "name");
    identity.dropped = U64(Field(doc, "dropped", "dropped"), "dropped");
    identity.cpu_s = Double(Field(doc, "cpu_s", "cpu_s"), "cpu_s", -1);
    StreamState& stream = Stream(id);
    identity.events = std::move(stream.thread.events);
    stream.thread = std::move(identity);
    stream.has_identity = true;
  }

  void ReadRun(const json& doc) {
    RunTrace run;
    const auto get = [&](const json& object, const std::string& prefix, const char* key) -> const json& {
      return Field(object, key, Join(prefix, key));
    };
    const json& info = Object(get(doc, "", "info"), "info");
    RunInfo& i = run.info;
    i.gilscope_version = String(get(info, "info", "gilscope_version"), "info.gilscope_version");
    i.python_version = String(get(info, "info", "python_version"), "info.python_version");
    i.script = String(get(info, "info", "script"), "info.script");
    i.args = Strings(get(info, "info", "args"), "info.args");
    i.mode = String(get(info, "info", "mode"), "info.mode");
    i.instances = Int(get(info, "info", "instances"), "info.instances");
    i.status = String(get(info, "info", "status"), "info.status");
    i.exit_code = Int(get(info, "info", "exit_code"), "info.exit_code");
    i.switch_interval_s = Double(get(info, "info", "switch_interval_s"), "info.switch_interval_s", 0);
    if (info.contains("signal")) i.signal = Int(info["signal"], "info.signal");
    if (info.contains("cpu_count")) i.cpu_count = Int(info["cpu_count"], "info.cpu_count");

    run.start_ns = U64(get(doc, "", "start_ns"), "start_ns");
    run.end_ns = U64(get(doc, "", "end_ns"), "end_ns");
    EachObject(get(doc, "", "gils"), "gils", [&](const json& g, const std::string& p) {
      GilInfo gil;
      gil.id = U32(get(g, p, "id"), p + ".id");
      gil.interpreter = I64(get(g, p, "interpreter"), p + ".interpreter");
      gil.cpython_switch_start = U64(get(g, p, "cpython_switch_start"), p + ".cpython_switch_start");
      gil.cpython_switch_end = U64(get(g, p, "cpython_switch_end"), p + ".cpython_switch_end");
      gil.holder_tstate_at_start = U64(get(g, p, "holder_tstate_at_start"), p + ".holder_tstate_at_start");
      if (g.contains("pid")) gil.pid = U32(g["pid"], p + ".pid");
      if (g.contains("instance")) gil.instance = Int(g["instance"], p + ".instance");
      if (g.contains("start_ns")) gil.start_ns = U64(g["start_ns"], p + ".start_ns");
      if (g.contains("end_ns")) gil.end_ns = U64(g["end_ns"], p + ".end_ns");
      run.gils.push_back(gil);
    });
    EachObject(get(doc, "", "code"), "code", [&](const json& c, const std::string& p) {
      CodeInfo code;
      code.id = U64(get(c, p, "id"), p + ".id");
      if (c.contains("pid")) code.pid = U32(c["pid"], p + ".pid");
      code.function = String(get(c, p, "function"), p + ".function");
      code.file = String(get(c, p, "file"), p + ".file");
      code.first_line = Int(get(c, p, "first_line"), p + ".first_line");
      run.code.push_back(std::move(code));
    });
    run.marker_names = Strings(get(doc, "", "marker_names"), "marker_names");
    run.dropped_no_slot = U64(get(doc, "", "dropped_no_slot"), "dropped_no_slot");
    if (doc.contains("processes")) {
      EachObject(doc["processes"], "processes", [&](const json& pj, const std::string& p) {
        ProcessInfo proc;
        proc.pid = U32(get(pj, p, "pid"), p + ".pid");
        proc.parent_pid = U32(get(pj, p, "parent_pid"), p + ".parent_pid");
        proc.role = String(get(pj, p, "role"), p + ".role");
        proc.status = String(get(pj, p, "status"), p + ".status");
        proc.exit_status = Int(get(pj, p, "exit_status"), p + ".exit_status");
        proc.instance = Int(get(pj, p, "instance"), p + ".instance");
        run.processes.push_back(std::move(proc));
      });
    }
    if (doc.contains("deadlock")) {
      const json& d = Object(doc["deadlock"], "deadlock");
      run.deadlock.summary = String(get(d, "deadlock", "summary"), "deadlock.summary");
      EachObject(get(d, "deadlock", "threads"), "deadlock.threads", [&](const json& tj, const std::string& p) {
        BlockedThread b;
        b.name = String(get(tj, p, "name"), p + ".name");
        b.waiting_for = String(get(tj, p, "waiting_for"), p + ".waiting_for");
        b.held_by = String(get(tj, p, "held_by"), p + ".held_by");
        b.holds = Strings(get(tj, p, "holds"), p + ".holds");
        b.stack = String(get(tj, p, "stack"), p + ".stack");
        run.deadlock.threads.push_back(std::move(b));
      });
    }

    if (doc.contains("exceptions")) {
      EachObject(doc["exceptions"], "exceptions", [&](const json& ej, const std::string& p) {
        ScriptException e;
        e.pid = U32(get(ej, p, "pid"), p + ".pid");
        e.native_id = U64(get(ej, p, "native_id"), p + ".native_id");
        e.thread = String(get(ej, p, "thread"), p + ".thread");
        e.type = String(get(ej, p, "type"), p + ".type");
        e.message = String(get(ej, p, "message"), p + ".message");
        e.traceback = String(get(ej, p, "traceback"), p + ".traceback");
        const json& main = get(ej, p, "main");
        if (!main.is_boolean()) FieldFail(p + ".main", "expected true or false, found " + Describe(main));
        e.main = main.get<bool>();
        e.time_ns = U64(get(ej, p, "time_ns"), p + ".time_ns");
        run.exceptions.push_back(std::move(e));
      });
    }

    // Threads are built from the streams at the end.
    out_.trace = std::move(run);
    out_.has_run = true;
  }

  Source& source_;
  const std::uint64_t size_;
  const std::string name_;
  const ReadOptions options_;
  RawContents out_;
  std::map<std::uint32_t, StreamState> streams_;  // ordered: threads come out by id
  // Events per stream id by the first pass (keep_events only).
  std::unordered_map<std::uint32_t, std::uint64_t> expected_events_;
  // 64 KiB: FileSource reads that much straight from the kernel into it.
  static constexpr std::size_t kChunkEvents = 4096;
  std::vector<recorder::Event> chunk_;
  std::string where_;                             // the JSON record being read
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

}  // namespace

RawContents ReadRawBytes(const void* data, std::size_t size, const std::string& name, const ReadOptions& options) {
  MemorySource source(data);
  return Parser(source, size, name, options).Run();
}

RawContents ReadRawFile(const std::string& path, const ReadOptions& options) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused
  // below as not a regular file.
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) throw RawFileError(path + ": cannot open: " + ErrnoText(errno));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw RawFileError(path + ": cannot stat: " + ErrnoText(errno));
  if (S_ISDIR(st.st_mode)) throw RawFileError(path + ": is a directory, not a gilscope raw events file");
  if (!S_ISREG(st.st_mode)) throw RawFileError(path + ": not a regular file");
  // The size now bounds every read: a file still growing is read as it was.
  FileSource source(fd.get(), path);
  return Parser(source, static_cast<std::uint64_t>(st.st_size), path, options).Run();
}

// ---------------------------------------------------------------- RawWriter

RawWriter::RawWriter(std::string path, int fd, std::uint64_t size)
    : path_(std::move(path)), fd_(fd), flushed_(size) {
  buffer_.reserve(kBufferSize);
}

RawWriter::RawWriter(RawWriter&& other) noexcept { MoveFrom(other); }

RawWriter& RawWriter::operator=(RawWriter&& other) noexcept {
  if (this != &other) {
    Close();
    MoveFrom(other);
  }
  return *this;
}

void RawWriter::MoveFrom(RawWriter& other) noexcept {
  path_ = std::move(other.path_);
  fd_ = std::exchange(other.fd_, -1);
  flushed_ = other.flushed_;
  buffer_ = std::move(other.buffer_);
  staged_ = std::move(other.staged_);
  index_ = std::move(other.index_);
  staged_events_ = std::exchange(other.staged_events_, 0);
  staged_streams_ = std::exchange(other.staged_streams_, 0);
  finished_ = other.finished_;
  failure_ = std::move(other.failure_);
}

RawWriter::~RawWriter() { Close(); }

void RawWriter::Close() noexcept {
  if (fd_ < 0) return;
  if (!finished_ && failure_.empty()) {
    try {
      Flush();
    } catch (...) {  // NOLINT: a destructor reports nothing; the file reads as unfinished
    }
  }
  ::close(fd_);
  fd_ = -1;
}

RawWriter RawWriter::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw RawFileError(path + ": cannot create: " + ErrnoText(errno));
  RawWriter writer(path, fd, 0);
  char header[kRawHeaderSize];
  std::memcpy(header, kMagic, sizeof kMagic);
  StoreU16(header + 8, kRawFormatVersion);
  StoreU16(header + 10, static_cast<std::uint16_t>(kEventSize));
  StoreU32(header + 12, 0);
  writer.buffer_.insert(writer.buffer_.end(), header, header + sizeof header);
  // On disk at once: a runner that dies before its first drain still leaves
  // a file that reads as an unfinished run rather than as garbage.
  writer.FlushBuffer();
  return writer;
}

RawWriter RawWriter::Resume(const std::string& path, RawContents* so_far) {
  ReadOptions options;
  options.allow_unfinished = true;
  options.keep_events = false;
  RawContents contents = ReadRawFile(path, options);
  if (contents.finished) throw RawFileError(path + ": already finished (it has an END record); nothing to resume");
  Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (fd.get() < 0) throw RawFileError(path + ": cannot open for writing: " + ErrnoText(errno));
  if (::ftruncate(fd.get(), static_cast<off_t>(contents.whole_bytes)) != 0 ||
      ::lseek(fd.get(), static_cast<off_t>(contents.whole_bytes), SEEK_SET) < 0) {
    throw RawFileError(path + ": cannot cut the torn last record at byte " + std::to_string(contents.whole_bytes) +
                       ": " + ErrnoText(errno));
  }
  RawWriter writer(path, fd.release(), contents.whole_bytes);
  if (so_far != nullptr) *so_far = std::move(contents);
  return writer;
}

void RawWriter::CheckWritable() const {
  if (!failure_.empty()) throw RawFileError(failure_);
  if (fd_ < 0) throw std::logic_error("RawWriter used after being moved from or finished");
}

std::uint64_t RawWriter::bytes_written() const {
  // Each stream with staged events becomes one block (a stream never stages
  // more than one block's worth: a full block leaves at once).
  return flushed_ + buffer_.size() + staged_events_ * kEventSize +
         staged_streams_ * (kRawRecordHeaderSize + kBlockHeaderSize);
}

void RawWriter::AppendEvents(std::uint32_t stream, const recorder::Event* events, std::size_t n) {
  CheckWritable();
  if (n == 0) return;
  auto [it, added] = index_.try_emplace(stream, staged_.size());
  if (added) staged_.push_back({stream, {}});
  Staged& staged = staged_[it->second];
  while (n > 0) {
    if (staged.events.empty()) ++staged_streams_;
    const std::size_t take = std::min(n, kMaxBlockEvents - staged.events.size());
    staged.events.insert(staged.events.end(), events, events + take);
    staged_events_ += take;
    events += take;
    n -= take;
    if (staged.events.size() == kMaxBlockEvents) EmitBlock(staged);
  }
  if (staged_events_ * kEventSize >= kBufferSize) EmitStaged();
}

void RawWriter::EmitBlock(Staged& staged) {
  const std::size_t count = staged.events.size();
  if (count == 0) return;
  const std::size_t size = kRawRecordHeaderSize + kBlockHeaderSize + count * kEventSize;
  if (buffer_.size() + size > kBufferSize) FlushBuffer();  // size <= kBufferSize: it fits now
  char head[kRawRecordHeaderSize + kBlockHeaderSize];
  StoreU32(head, static_cast<std::uint32_t>(RawRecordType::kEvents));
  StoreU32(head + 4, static_cast<std::uint32_t>(kBlockHeaderSize + count * kEventSize));
  StoreU32(head + 8, staged.stream);
  StoreU32(head + 12, static_cast<std::uint32_t>(count));
  buffer_.insert(buffer_.end(), head, head + sizeof head);
  const auto* bytes = reinterpret_cast<const char*>(staged.events.data());
  buffer_.insert(buffer_.end(), bytes, bytes + count * kEventSize);
  staged_events_ -= count;
  --staged_streams_;
  // A stream that was busy once must not pin a large array for the rest
  // of the run: with a thousand streams that would add up.
  if (staged.events.capacity() > 4096) {
    std::vector<recorder::Event>().swap(staged.events);
  } else {
    staged.events.clear();
  }
}

void RawWriter::EmitStaged() {
  for (Staged& staged : staged_) EmitBlock(staged);
}

void RawWriter::SetStream(const ThreadTrace& identity, std::uint32_t stream) {
  CheckWritable();
  AppendRecord(RawRecordType::kStream, StreamJson(identity, stream));
}

void RawWriter::Finish(const RunTrace& meta) {
  CheckWritable();
  EmitStaged();
  AppendRecord(RawRecordType::kRun, RunJson(meta));
  AppendRecord(RawRecordType::kEnd, "");
  FlushBuffer();
  finished_ = true;
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) Fail("cannot close", errno);
}

void RawWriter::AppendRecord(RawRecordType type, const std::string& payload) {
  if (payload.size() > std::numeric_limits<std::uint32_t>::max()) {
    throw RawFileError(path_ + ": a " + RecordName(static_cast<std::uint32_t>(type)) + " record of " +
                       std::to_string(payload.size()) + " bytes exceeds the format's 4 GiB limit");
  }
  char head[kRawRecordHeaderSize];
  StoreU32(head, static_cast<std::uint32_t>(type));
  StoreU32(head + 4, static_cast<std::uint32_t>(payload.size()));
  const std::size_t size = sizeof head + payload.size();
  if (buffer_.size() + size > kBufferSize) FlushBuffer();
  if (size > kBufferSize) {  // too big to buffer: one write of its own
    WriteOut(head, sizeof head, payload.data(), payload.size());
    flushed_ += size;
    return;
  }
  buffer_.insert(buffer_.end(), head, head + sizeof head);
  buffer_.insert(buffer_.end(), payload.begin(), payload.end());
}

void RawWriter::Flush() {
  if (!failure_.empty()) throw RawFileError(failure_);
  if (fd_ < 0) return;  // finished (everything is out) or moved from
  EmitStaged();
  FlushBuffer();
}

void RawWriter::FlushBuffer() {
  if (!failure_.empty()) throw RawFileError(failure_);
  if (buffer_.empty()) return;
  WriteOut(buffer_.data(), buffer_.size(), nullptr, 0);
  flushed_ += buffer_.size();
  buffer_.clear();
}

void RawWriter::WriteOut(const void* head, std::size_t head_size, const void* body, std::size_t body_size) {
  iovec parts[2] = {{const_cast<void*>(head), head_size}, {const_cast<void*>(body), body_size}};
  int first = 0;
  const int count = body_size == 0 ? 1 : 2;
  while (first < count) {
    const ssize_t wrote = ::writev(fd_, parts + first, count - first);
    if (wrote < 0) {
      if (errno == EINTR) continue;
      Fail("cannot write", errno);
    }
    // A short write (disk nearly full, a signal): go on after what landed.
    auto left = static_cast<std::size_t>(wrote);
    while (first < count && left >= parts[first].iov_len) {
      left -= parts[first].iov_len;
      ++first;
    }
    if (first < count) {
      parts[first].iov_base = static_cast<char*>(parts[first].iov_base) + left;
      parts[first].iov_len -= left;
    }
  }
}

void RawWriter::Fail(const std::string& what, int error) {
  failure_ = path_ + ": " + what + ": " + ErrnoText(error);
  throw RawFileError(failure_);
}

void WriteRawFile(const std::string& path, const RunTrace& trace) {
  RawWriter writer = RawWriter::Open(path);
  for (std::size_t i = 0; i < trace.threads.size(); ++i) {
    const ThreadTrace& t = trace.threads[i];
    writer.SetStream(t, static_cast<std::uint32_t>(i));
    writer.AppendEvents(static_cast<std::uint32_t>(i), t.events.data(), t.events.size());
  }
  writer.Finish(trace);
}

}  // namespace gilscope::report
