// Reading events.raw (format in raw_file.h). One reader serves both ways of
// reading a file: an index pass (Indexer) checks every record and notes
// where each stream's blocks are, then a BlockDecoder turns blocks into
// events through a fixed window. ReadRawFile() decodes every block in file
// order into memory; RawFileSource hands out cursors that decode one
// stream's blocks as they are read.

#include "report/raw_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>

#include "report/huge_pages.h"
#include "report/raw_format.h"
#include "report/text_util.h"

namespace gilscope::report {

// Raw EVENTS blocks are copied into recorder::Event as they are, which is
// the format's little-endian layout only on a little-endian host with this
// layout.
static_assert(std::endian::native == std::endian::little, "events.raw is little-endian: add byte swapping");
static_assert(sizeof(recorder::Event) == 16);
static_assert(offsetof(recorder::Event, ts) == 0 && offsetof(recorder::Event, kind) == 8 &&
              offsetof(recorder::Event, gil) == 9 && offsetof(recorder::Event, flags) == 10 &&
              offsetof(recorder::Event, aux) == 12);

namespace raw {

using nlohmann::json;

constexpr int kMaxJsonDepth = 16;
// The index pass reads the file front to back through this much.
constexpr std::size_t kScanBuffer = std::size_t{64} << 10;
// A decoder's window onto its block: 2,000+ raw events or ~10,000 packed
// ones per pread, small enough for a cursor per thread of a big run.
constexpr std::size_t kWindow = std::size_t{32} << 10;
// The smallest window: a multiple of 16 (raw events never straddle a
// refill) holding two of the longest packed events.
constexpr std::size_t kMinWindow = 64;
static_assert(kMinWindow % kEventSize == 0 && kMinWindow >= 2 * kMaxPackedEventBytes);
static_assert(kWindow % kEventSize == 0);
// ReadRawFile copies decoded events into a stream's array through this many
// at a time (64 KiB, stays in cache).
constexpr std::size_t kChunkEvents = 4096;

std::string ErrnoText(int error) { return std::strerror(error); }

std::string Hex32(std::uint32_t v) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", v);
  return text;
}

std::string HexByte(std::uint64_t v) {
  char text[8];
  std::snprintf(text, sizeof text, "0x%02x", static_cast<unsigned>(v & 0xFF));
  return text;
}

// ---------------------------------------------------------------- bytes

// The bytes of a file or of memory, read at any offset. The size is taken
// once, at the start: every length in the file is checked against it.
class Bytes {
 public:
  Bytes(std::string name, std::uint64_t size) : name_(std::move(name)), size_(size) {}
  virtual ~Bytes() = default;
  Bytes(const Bytes&) = delete;
  Bytes& operator=(const Bytes&) = delete;

  // Copies exactly n bytes at `offset`; the caller has checked that
  // offset + n <= size(). Throws RawFileError on an I/O error. Safe to call
  // from several threads at once.
  virtual void ReadAt(std::uint64_t offset, void* dst, std::size_t n) const = 0;

  const std::string& name() const { return name_; }
  std::uint64_t size() const { return size_; }

 private:
  const std::string name_;
  const std::uint64_t size_;
};

class MemoryBytes final : public Bytes {
 public:
  MemoryBytes(const void* data, std::size_t size, std::string name)
      : Bytes(std::move(name), size), data_(static_cast<const unsigned char*>(data)) {}
  void ReadAt(std::uint64_t offset, void* dst, std::size_t n) const override {
    if (n != 0) std::memcpy(dst, data_ + offset, n);
  }

 private:
  const unsigned char* data_;
};

// An open file, read with pread (never mapped: resident pages of a mapping
// would count in the reader's memory). Owns the descriptor.
class FileBytes final : public Bytes {
 public:
  // Opens `path` (also its name in messages): a regular file only.
  static std::unique_ptr<FileBytes> Open(const std::string& path) {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused
    // below as not a regular file.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) throw RawFileError(path + ": cannot open: " + ErrnoText(errno));
    struct stat st;
    std::string problem;
    if (::fstat(fd, &st) != 0) {
      problem = "cannot stat: " + ErrnoText(errno);
    } else if (S_ISDIR(st.st_mode)) {
      problem = "is a directory, not a gilscope raw events file";
    } else if (!S_ISREG(st.st_mode)) {
      problem = "not a regular file";
    }
    if (!problem.empty()) {
      ::close(fd);
      throw RawFileError(path + ": " + problem);
    }
    // The size now bounds every read: a file still growing is read as it was.
    return std::unique_ptr<FileBytes>(new FileBytes(fd, path, static_cast<std::uint64_t>(st.st_size)));
  }
  ~FileBytes() override { ::close(fd_); }

  void ReadAt(std::uint64_t offset, void* dst, std::size_t n) const override {
    auto* out = static_cast<unsigned char*>(dst);
    while (n > 0) {
      const ssize_t got = ::pread(fd_, out, n, static_cast<off_t>(offset));
      if (got > 0) {
        out += got;
        n -= static_cast<std::size_t>(got);
        offset += static_cast<std::uint64_t>(got);
      } else if (got == 0) {
        // Open() measured these bytes: end of file means it shrank.
        throw RawFileError(name() + ": the file shrank while being read: it ends at byte " + std::to_string(offset));
      } else if (errno != EINTR) {
        throw RawFileError(name() + ": read error at byte " + std::to_string(offset) + ": " + ErrnoText(errno));
      }
    }
  }

 private:
  FileBytes(int fd, std::string name, std::uint64_t size) : Bytes(std::move(name), size), fd_(fd) {}
  const int fd_;
};

// Front-to-back reads through a buffer, for the index pass: files of many
// small records would otherwise cost a system call per record header.
class Scanner {
 public:
  explicit Scanner(const Bytes& bytes)
      : bytes_(bytes), buffer_(static_cast<std::size_t>(std::min<std::uint64_t>(bytes.size(), kScanBuffer))) {}

  // Copies the next n bytes (the caller has checked they exist).
  void Read(void* dst, std::size_t n) {
    auto* out = static_cast<unsigned char*>(dst);
    while (n > 0) {
      if (begin_ == end_) {
        if (n >= buffer_.size()) {  // large reads go straight to their destination
          bytes_.ReadAt(next_, out, n);
          next_ += n;
          return;
        }
        Fill();
      }
      const std::size_t take = std::min(n, end_ - begin_);
      std::memcpy(out, buffer_.data() + begin_, take);
      begin_ += take;
      out += take;
      n -= take;
    }
  }

  void Skip(std::uint64_t n) {
    const std::uint64_t buffered = end_ - begin_;
    if (n <= buffered) {
      begin_ += static_cast<std::size_t>(n);
      return;
    }
    begin_ = end_ = 0;
    next_ += n - buffered;
  }

  // Feeds the next n bytes to a block checksum.
  std::uint32_t Crc(std::uint32_t crc, std::uint64_t n) {
    while (n > 0) {
      if (begin_ == end_) Fill();
      const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(n, end_ - begin_));
      crc = BlockCrcAdd(crc, buffer_.data() + begin_, take);
      begin_ += take;
      n -= take;
    }
    return crc;
  }

 private:
  void Fill() {
    const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(buffer_.size(), bytes_.size() - next_));
    bytes_.ReadAt(next_, buffer_.data(), take);
    next_ += take;
    begin_ = 0;
    end_ = take;
  }

  const Bytes& bytes_;
  std::vector<unsigned char> buffer_;
  std::size_t begin_ = 0, end_ = 0;  // unread bytes of buffer_
  std::uint64_t next_ = 0;           // offset of the byte after buffer_'s
};

// ---------------------------------------------------------------- index

// Where one EVENTS or PACKED block's events are.
struct BlockRef {
  std::uint64_t data = 0;    // offset of its first event byte
  std::uint32_t bytes = 0;   // event bytes
  std::uint32_t count = 0;   // events
  std::uint32_t stream = 0;  // index in RawIndex's streams (its id while indexing)
  bool packed = false;

  // The offset of the record it is in, for messages.
  std::uint64_t record() const {
    return data - kRawRecordHeaderSize - (packed ? kPackedHeaderSize : kBlockHeaderSize);
  }
};

// What the index pass learns: everything but the events themselves.
struct RawIndex {
  std::uint16_t version = 0;
  RunTrace meta;  // threads: one identity per stream, in stream-id order, no events
  std::vector<std::uint32_t> stream_ids;
  std::vector<std::uint32_t> streams_without_identity;
  std::vector<std::uint64_t> stream_events;                // per stream
  std::vector<std::vector<std::uint32_t>> stream_blocks;   // per stream: its blocks, in file order
  std::vector<BlockRef> blocks;                            // every block, in file order
  std::uint32_t largest_block = 0;                         // bytes
  bool finished = false;
  bool has_run = false;
  std::uint64_t events = 0;
  std::uint64_t whole_bytes = 0;
  std::uint64_t torn_bytes = 0;
};

struct StreamState {
  ThreadTrace identity;
  bool has_identity = false;
  bool has_events = false;
  std::uint64_t first_events_at = 0;  // offset of its first block's record
  std::uint64_t events = 0;
  std::vector<std::uint32_t> blocks;
};

// Reads records in order, checking each before believing it. JSON problems
// name the record (where_) and the field's dotted path ("info.args[2]").
// Events are not decoded here (BlockDecoder does that), but every PACKED
// block's checksum is checked, so that a corrupt block is found (and a
// corrupt last block of an unfinished file taken for the crash it is)
// before anything is read from it.
class Indexer {
 public:
  Indexer(const Bytes& bytes, const ReadOptions& options)
      : scan_(bytes), size_(bytes.size()), name_(bytes.name()), options_(options) {}

  RawIndex Run() {
    ReadHeader();
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
      scan_.Read(head, sizeof head);
      const std::uint32_t type = LoadU32(head);
      const std::uint32_t length = LoadU32(head + 4);
      const std::uint64_t payload_left = left - kRawRecordHeaderSize;
      if (length > payload_left) {
        if (Torn(pos, left)) break;
        Fail("truncated at byte " + std::to_string(pos) + ": " + RecordLabel(type) + " record claims " +
             std::to_string(length) + " bytes, " + std::to_string(payload_left) + " left");
      }
      bool torn = false;
      switch (static_cast<RawRecordType>(type)) {
        case RawRecordType::kEvents:
          ReadEvents(pos, length);
          break;
        case RawRecordType::kPacked:
          torn = !ReadPacked(pos, length);
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
          scan_.Skip(length);
          break;
      }
      if (torn) break;
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
      out_.meta.threads.push_back(std::move(stream.identity));
      out_.stream_events.push_back(stream.events);
      out_.stream_blocks.push_back(std::move(stream.blocks));
    }
    // Blocks named their stream by id until the streams were known.
    for (BlockRef& block : out_.blocks) {
      const auto at = std::lower_bound(out_.stream_ids.begin(), out_.stream_ids.end(), block.stream);
      block.stream = static_cast<std::uint32_t>(at - out_.stream_ids.begin());
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
    scan_.Read(header, have);
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
    out_.version = version;
  }

  void AddBlock(std::uint32_t id, std::uint64_t pos, const BlockRef& block) {
    StreamState& stream = streams_[id];
    if (!stream.has_events) {
      stream.has_events = true;
      stream.first_events_at = pos;
    }
    // A block takes 16+ bytes of file: 2^32 of them need a 64 GiB file.
    if (out_.blocks.size() >= std::numeric_limits<std::uint32_t>::max()) {
      Fail("more than 2^32 event blocks (at byte " + std::to_string(pos) + ")");
    }
    stream.blocks.push_back(static_cast<std::uint32_t>(out_.blocks.size()));
    stream.events += block.count;
    out_.events += block.count;
    out_.largest_block = std::max(out_.largest_block, block.bytes);
    out_.blocks.push_back(block);
  }

  // A raw block: its count must fill it exactly. Its events' kinds are
  // checked when they are decoded.
  void ReadEvents(std::uint64_t pos, std::uint32_t length) {
    if (length < kBlockHeaderSize) {
      Fail("EVENTS record at byte " + std::to_string(pos) + " is " + std::to_string(length) +
           " bytes, shorter than its 8-byte block header");
    }
    unsigned char block[kBlockHeaderSize];
    scan_.Read(block, sizeof block);
    const std::uint32_t id = LoadU32(block);
    const std::uint32_t count = LoadU32(block + 4);
    const std::uint64_t expected = kBlockHeaderSize + std::uint64_t{count} * kEventSize;
    if (expected != length) {
      Fail("EVENTS record at byte " + std::to_string(pos) + " claims " + std::to_string(count) + " events (" +
           std::to_string(expected) + " bytes) but is " + std::to_string(length) + " bytes");
    }
    const std::uint32_t bytes = length - static_cast<std::uint32_t>(kBlockHeaderSize);
    AddBlock(id, pos, BlockRef{pos + kRawRecordHeaderSize + kBlockHeaderSize, bytes, count, id, false});
    scan_.Skip(bytes);
  }

  // A packed block: its checksum must hold. False: it is the torn last
  // record of an unfinished file, ignored.
  bool ReadPacked(std::uint64_t pos, std::uint32_t length) {
    const std::string at = "PACKED record at byte " + std::to_string(pos);
    if (out_.version < 3) {
      Fail(at + " in a version " + std::to_string(out_.version) + " file (packed events came with version 3)");
    }
    if (length < kPackedHeaderSize) {
      Fail(at + " is " + std::to_string(length) + " bytes, shorter than its 12-byte block header");
    }
    unsigned char block[kPackedHeaderSize];
    scan_.Read(block, sizeof block);
    const std::uint32_t id = LoadU32(block);
    const std::uint32_t count = LoadU32(block + 4);
    const std::uint32_t stored = LoadU32(block + 8);
    const std::uint32_t bytes = length - static_cast<std::uint32_t>(kPackedHeaderSize);
    const std::uint32_t computed = scan_.Crc(BlockCrcStart(id, count), bytes);
    if (computed != stored) {
      // Written last and cut or garbled by the crash that left the file
      // unfinished: the same as a torn record.
      if (pos + kRawRecordHeaderSize + length == size_ && Torn(pos, size_ - pos)) return false;
      Fail(at + ": checksum mismatch (stored " + Hex32(stored) + ", computed " + Hex32(computed) +
           "): the block is corrupt");
    }
    if (count > bytes) {
      Fail(at + " claims " + std::to_string(count) + " events in " + std::to_string(bytes) +
           " bytes; a packed event takes at least 1");
    }
    AddBlock(id, pos, BlockRef{pos + kRawRecordHeaderSize + kPackedHeaderSize, bytes, count, id, true});
    return true;
  }

  // ------------------------------------------------------------ JSON

  json ReadJson(std::uint64_t pos, std::uint32_t type, std::uint32_t length) {
    std::string text(length, '\0');
    scan_.Read(text.data(), length);
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
    StreamState& stream = streams_[id];
    stream.identity = std::move(identity);
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
    if (doc.contains("gils_lost")) run.gils_lost = U64(doc["gils_lost"], "gils_lost");
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
    out_.meta = std::move(run);
    out_.has_run = true;
  }

  Scanner scan_;
  const std::uint64_t size_;
  const std::string& name_;
  const ReadOptions options_;
  RawIndex out_;
  std::map<std::uint32_t, StreamState> streams_;  // ordered: threads come out by id
  std::string where_;                             // the JSON record being read
};

// ---------------------------------------------------------------- decoding

// Turns blocks into events through a fixed window onto the block (never the
// whole block at once): raw events are copied and their kinds checked;
// packed ones are unpacked, and must come out at exactly the block's count
// and length.
class BlockDecoder {
 public:
  // `window`: bytes of the block held at a time (kMinWindow..kWindow, a
  // multiple of 16).
  BlockDecoder(const Bytes& bytes, std::size_t window)
      : bytes_(bytes), capacity_(window), window_(new unsigned char[window]) {}

  // Goes to the start of `block` of stream `stream_id` (for messages).
  void Start(const BlockRef& block, std::uint32_t stream_id) {
    block_ = block;
    stream_id_ = stream_id;
    left_ = block.count;
    state_ = PackedState{};
    window_at_ = block.data;
    begin_ = end_ = 0;
    next_ = block.data;
    stop_ = block.data + block.bytes;
    if (left_ == 0) CheckEnd();
  }

  // Every event of the current block was read (and the block checked).
  bool done() const { return left_ == 0; }

  // Decodes up to `max` next events of the block into `out`; returns how
  // many (0 only when done()).
  std::size_t Read(recorder::Event* out, std::size_t max) {
    const std::size_t n = block_.packed ? ReadPacked(out, max) : ReadRaw(out, max);
    if (n != 0 && left_ == 0) CheckEnd();
    return n;
  }

 private:
  std::size_t ReadRaw(recorder::Event* out, std::size_t max) {
    std::size_t n = 0;
    while (n < max && left_ > 0) {
      if (begin_ == end_) Refill();  // raw blocks and the window are multiples of 16
      const std::size_t take = std::min({max - n, std::size_t{left_}, (end_ - begin_) / kEventSize});
      std::memcpy(out + n, window_.get() + begin_, take * kEventSize);
      for (std::size_t i = 0; i < take; ++i) {
        if (!IsKnownKind(out[n + i].kind)) {
          Fail("unknown event kind " + std::to_string(static_cast<unsigned>(out[n + i].kind)), begin_ + i * kEventSize);
        }
      }
      begin_ += take * kEventSize;
      n += take;
      left_ -= static_cast<std::uint32_t>(take);
    }
    return n;
  }

  std::size_t ReadPacked(recorder::Event* out, std::size_t max) {
    std::size_t n = 0;
    while (n < max && left_ > 0) {
      // Afterwards, unless the window holds the rest of the block, a whole
      // event (at most kMaxPackedEventBytes) lies at begin_.
      if (end_ - begin_ < kMaxPackedEventBytes && next_ < stop_) Refill();
      const unsigned char* const base = window_.get();
      const unsigned char* p = base + begin_;
      const unsigned char* const end = base + end_;
      const std::size_t want = std::min(max - n, std::size_t{left_});
      std::size_t k = 0;
      UnpackFailure failure;
      // Unchecked while a whole event surely lies ahead in the window...
      if (end_ >= kMaxPackedEventBytes) {
        const unsigned char* const last_sure = end - kMaxPackedEventBytes;
        while (k < want && p <= last_sure) {
          const unsigned char* const next = UnpackEvent<false>(state_, p, end, out[n + k], failure);
          if (next == nullptr) Unpackable(failure, static_cast<std::size_t>(p - base), block_.count - left_ + k);
          p = next;
          ++k;
        }
      }
      // ...checked byte by byte at the very end of the block.
      if (next_ == stop_) {
        while (k < want) {
          const unsigned char* const next = UnpackEvent<true>(state_, p, end, out[n + k], failure);
          if (next == nullptr) Unpackable(failure, static_cast<std::size_t>(p - base), block_.count - left_ + k);
          p = next;
          ++k;
        }
      }
      begin_ = static_cast<std::size_t>(p - base);
      n += k;
      left_ -= static_cast<std::uint32_t>(k);
    }
    return n;
  }

  // Keeps the unread bytes and appends as many of the block's next ones as
  // fit.
  void Refill() {
    if (begin_ != 0) {
      std::memmove(window_.get(), window_.get() + begin_, end_ - begin_);
      window_at_ += begin_;
      end_ -= begin_;
      begin_ = 0;
    }
    const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(capacity_ - end_, stop_ - next_));
    bytes_.ReadAt(next_, window_.get() + end_, take);
    next_ += take;
    end_ += take;
  }

  void CheckEnd() const {
    const std::uint64_t extra = (end_ - begin_) + (stop_ - next_);
    if (extra != 0) {
      Fail(std::string(block_.packed ? "PACKED" : "EVENTS") + " record at byte " + std::to_string(block_.record()) +
           " (stream " + std::to_string(stream_id_) + ") has " + std::to_string(extra) + " bytes after its " +
           std::to_string(block_.count) + " events");
    }
  }

  [[noreturn]] void Unpackable(const UnpackFailure& failure, std::size_t at, std::uint64_t index) const {
    switch (failure.error) {
      case UnpackError::kTruncated:
        Fail("PACKED record at byte " + std::to_string(block_.record()) + " (stream " + std::to_string(stream_id_) +
             ") ends inside its event " + std::to_string(index + 1) + " of " + std::to_string(block_.count) +
             ", which starts at byte " + std::to_string(window_at_ + at));
      case UnpackError::kUnknownKind:
        Fail("unknown event kind " + std::to_string(failure.value), at);
      case UnpackError::kBadTime:
        Fail("packed event tag " + HexByte(failure.value) + " has time mode 3", at);
      case UnpackError::kTimeTooLong:
        Fail("a packed time step longer than 64 bits", at);
      case UnpackError::kFlagsTooLong:
        Fail("packed flags longer than 3 bytes", at);
      case UnpackError::kAuxTooLong:
        Fail("a packed aux longer than 5 bytes", at);
      case UnpackError::kFlagsTooBig:
        Fail("packed flags " + std::to_string(failure.value) + " exceed 16 bits", at);
      case UnpackError::kAuxTooBig:
        Fail("packed aux " + std::to_string(failure.value) + " exceeds 32 bits", at);
      case UnpackError::kNone:
        break;
    }
    Fail("undecodable packed event", at);
  }

  // "<file>: <what> in stream S at byte B", B the event's first byte.
  [[noreturn]] void Fail(const std::string& what, std::size_t at) const {
    Fail(what + " in stream " + std::to_string(stream_id_) + " at byte " + std::to_string(window_at_ + at));
  }
  [[noreturn]] void Fail(const std::string& what) const { throw RawFileError(bytes_.name() + ": " + what); }

  const Bytes& bytes_;
  const std::size_t capacity_;
  const std::unique_ptr<unsigned char[]> window_;
  std::size_t begin_ = 0, end_ = 0;  // unread bytes of window_
  std::uint64_t window_at_ = 0;      // file offset of window_[0]
  std::uint64_t next_ = 0, stop_ = 0;  // the block's bytes not yet in window_
  BlockRef block_;
  std::uint32_t stream_id_ = 0;
  std::uint32_t left_ = 0;  // events of the block not yet read
  PackedState state_;
};

// The window for a file's blocks: kWindow, or less when no block needs it.
std::size_t WindowFor(const RawIndex& index) {
  const std::size_t block = (std::size_t{index.largest_block} + kEventSize - 1) / kEventSize * kEventSize;
  return std::clamp(block, kMinWindow, kWindow);
}

RawContents Decode(const Bytes& bytes, const ReadOptions& options) {
  RawIndex index = Indexer(bytes, options).Run();
  RawContents out;
  out.trace = std::move(index.meta);
  out.version = index.version;
  out.finished = index.finished;
  out.has_run = index.has_run;
  out.streams_without_identity = std::move(index.streams_without_identity);
  out.stream_ids = std::move(index.stream_ids);
  out.events = index.events;
  out.whole_bytes = index.whole_bytes;
  out.torn_bytes = index.torn_bytes;
  if (options.keep_events) {
    // Each array allocated once at its final size (the blocks' counts, which
    // the index pass bounded by the bytes they take), so never regrown.
    for (std::size_t i = 0; i < out.trace.threads.size(); ++i) {
      ReserveHuge(out.trace.threads[i].events, index.stream_events[i]);
    }
  }
  // In file order: one front-to-back read. Through a small chunk that stays
  // in cache: the stream's array is written exactly once (never zero-filled
  // first) and never grows past what it holds.
  BlockDecoder decoder(bytes, WindowFor(index));
  std::vector<recorder::Event> chunk(std::min<std::size_t>(kChunkEvents, index.largest_block));
  for (const BlockRef& block : index.blocks) {
    decoder.Start(block, out.stream_ids[block.stream]);
    std::vector<recorder::Event>& events = out.trace.threads[block.stream].events;
    while (!decoder.done()) {
      const std::size_t n = decoder.Read(chunk.data(), chunk.size());
      if (options.keep_events) events.insert(events.end(), chunk.data(), chunk.data() + n);
    }
  }
  return out;
}

}  // namespace raw

// ---------------------------------------------------------------- entry points

RawContents ReadRawBytes(const void* data, std::size_t size, const std::string& name, const ReadOptions& options) {
  return raw::Decode(raw::MemoryBytes(data, size, name), options);
}

RawContents ReadRawFile(const std::string& path, const ReadOptions& options) {
  return raw::Decode(*raw::FileBytes::Open(path), options);
}

struct RawFileSource::Shared {
  std::unique_ptr<raw::Bytes> bytes;
  raw::RawIndex index;
  std::size_t window = raw::kMinWindow;
};

namespace {

class FileCursor final : public StreamCursor {
 public:
  FileCursor(std::shared_ptr<const RawFileSource::Shared> shared, std::size_t stream)
      : shared_(std::move(shared)),
        blocks_(shared_->index.stream_blocks[stream]),
        stream_id_(shared_->index.stream_ids[stream]),
        decoder_(*shared_->bytes, shared_->window) {}

  std::size_t Read(recorder::Event* out, std::size_t max) override {
    std::size_t n = 0;
    while (n < max) {
      if (decoder_.done()) {
        if (next_ == blocks_.size()) break;
        decoder_.Start(shared_->index.blocks[blocks_[next_++]], stream_id_);
        continue;
      }
      n += decoder_.Read(out + n, max - n);
    }
    return n;
  }

 private:
  const std::shared_ptr<const RawFileSource::Shared> shared_;
  const std::vector<std::uint32_t>& blocks_;  // in shared_
  const std::uint32_t stream_id_;
  std::size_t next_ = 0;  // the next of blocks_ to start
  raw::BlockDecoder decoder_;
};

std::unique_ptr<RawFileSource::Shared> Index(std::unique_ptr<raw::Bytes> bytes, const ReadOptions& options) {
  auto shared = std::make_unique<RawFileSource::Shared>();
  shared->index = raw::Indexer(*bytes, options).Run();
  shared->window = raw::WindowFor(shared->index);
  shared->bytes = std::move(bytes);
  return shared;
}

}  // namespace

RawFileSource::RawFileSource(std::shared_ptr<const Shared> shared) : shared_(std::move(shared)) {}
RawFileSource::~RawFileSource() = default;

std::unique_ptr<RawFileSource> RawFileSource::Open(const std::string& path, const ReadOptions& options) {
  return std::unique_ptr<RawFileSource>(new RawFileSource(Index(raw::FileBytes::Open(path), options)));
}

std::unique_ptr<RawFileSource> RawFileSource::FromBytes(const void* data, std::size_t size, const std::string& name,
                                                        const ReadOptions& options) {
  return std::unique_ptr<RawFileSource>(
      new RawFileSource(Index(std::make_unique<raw::MemoryBytes>(data, size, name), options)));
}

const RunTrace& RawFileSource::meta() const { return shared_->index.meta; }

std::uint64_t RawFileSource::event_count(std::size_t stream) const {
  return shared_->index.stream_events.at(stream);
}

std::unique_ptr<StreamCursor> RawFileSource::Open(std::size_t stream) const {
  if (stream >= shared_->index.stream_ids.size()) {
    throw std::out_of_range("RawFileSource::Open: no stream " + std::to_string(stream) + " in " +
                            shared_->bytes->name());
  }
  return std::make_unique<FileCursor>(shared_, stream);
}

std::uint16_t RawFileSource::version() const { return shared_->index.version; }
bool RawFileSource::finished() const { return shared_->index.finished; }
bool RawFileSource::has_run() const { return shared_->index.has_run; }
const std::vector<std::uint32_t>& RawFileSource::streams_without_identity() const {
  return shared_->index.streams_without_identity;
}
const std::vector<std::uint32_t>& RawFileSource::stream_ids() const { return shared_->index.stream_ids; }
std::uint64_t RawFileSource::whole_bytes() const { return shared_->index.whole_bytes; }
std::uint64_t RawFileSource::torn_bytes() const { return shared_->index.torn_bytes; }
std::size_t RawFileSource::block_count() const { return shared_->index.blocks.size(); }

}  // namespace gilscope::report
