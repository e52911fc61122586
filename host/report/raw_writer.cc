// RawWriter: events.raw written while a run goes on (format in raw_file.h).
// Events are packed here, in the drain, as they arrive; STREAM and RUN
// records are JSON.

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <utility>

#include "report/raw_file.h"
#include "report/raw_format.h"
#include "report/text_util.h"

namespace gilscope::report {

// Raw EVENTS blocks were events' in-memory bytes, and the integers below are
// stored with memcpy: both are the format's little-endian layout only on a
// little-endian host.
static_assert(std::endian::native == std::endian::little, "events.raw is little-endian: add byte swapping");

namespace {

using nlohmann::ordered_json;
using raw::StoreU16;
using raw::StoreU32;

// A PACKED record's header: record type and length, stream, count, checksum.
constexpr std::size_t kPackedRecordHead = kRawRecordHeaderSize + raw::kPackedHeaderSize;
// The most packed event bytes a block may hold: header and events fill the
// buffer, so a block always fits in it whole.
constexpr std::size_t kMaxBlockPayload = RawWriter::kBufferSize - kPackedRecordHead;
// A stream's staging buffer starts at kStagingStart and doubles as needed;
// one above kStagingKeep may be given back after its block leaves.
constexpr std::size_t kStagingStart = std::size_t{4} << 10;
constexpr std::size_t kStagingKeep = std::size_t{64} << 10;

std::string ErrnoText(int error) { return std::strerror(error); }

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

// ---------------------------------------------------------------- JSON

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
  if (run.gils_lost != 0) doc["gils_lost"] = run.gils_lost;
  // Added after the first files were written: readers treat them as optional.
  doc["processes"] = std::move(processes);
  doc["deadlock"] = std::move(deadlock);
  if (!exceptions.empty()) doc["exceptions"] = std::move(exceptions);
  return Dump(doc);
}

}  // namespace

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
  staged_bytes_ = std::exchange(other.staged_bytes_, 0);
  staged_streams_ = std::exchange(other.staged_streams_, 0);
  staged_capacity_ = std::exchange(other.staged_capacity_, 0);
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
  unsigned char header[kRawHeaderSize];
  std::memcpy(header, raw::kMagic, sizeof raw::kMagic);
  StoreU16(header + 8, kRawFormatVersion);
  StoreU16(header + 10, static_cast<std::uint16_t>(raw::kEventSize));
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
  if (contents.version < kRawFormatVersion) {
    // What follows is PACKED, which the old version does not have; its
    // EVENTS blocks are as valid in version 3.
    unsigned char version[2];
    StoreU16(version, kRawFormatVersion);
    if (::pwrite(fd.get(), version, sizeof version, 8) != static_cast<ssize_t>(sizeof version)) {
      throw RawFileError(path + ": cannot raise the file's version to " + std::to_string(kRawFormatVersion) + ": " +
                         ErrnoText(errno));
    }
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
  // Each stream with staged events becomes one block.
  return flushed_ + buffer_.size() + staged_bytes_ + staged_streams_ * kPackedRecordHead;
}

void RawWriter::AppendEvents(std::uint32_t stream, const recorder::Event* events, std::size_t n) {
  CheckWritable();
  if (n == 0) return;
  // Before anything is packed: a bad event must leave the writer as it was.
  // raw::IsPackableKind by table lookup: this runs for every event drained.
  for (std::size_t i = 0; i < n; ++i) {
    const auto kind = static_cast<unsigned>(events[i].kind);
    if (kind >= 16 || raw::kKindClass.of[kind] == raw::kNoClass) {
      throw std::logic_error("RawWriter: event " + std::to_string(i) + " has kind " + std::to_string(kind) +
                             ", not a recorder::EventKind");
    }
  }
  auto [it, added] = index_.try_emplace(stream, staged_.size());
  if (added) {
    staged_.emplace_back();
    staged_.back().stream = stream;
  }
  Stage(staged_[it->second], events, n);
  if (staged_bytes_ >= kBufferSize) EmitStaged();
}

void RawWriter::Stage(Staged& staged, const recorder::Event* events, std::size_t n) {
  while (n > 0) {
    if (staged.used + raw::kMaxPackedEventBytes > kMaxBlockPayload) EmitBlock(staged);
    // As many as surely fit the block, however they pack.
    const std::size_t take = std::min(n, (kMaxBlockPayload - staged.used) / raw::kMaxPackedEventBytes);
    const std::size_t need = staged.used + take * raw::kMaxPackedEventBytes;
    if (staged.bytes.size() < need) {
      const std::size_t grown = std::min(kMaxBlockPayload, std::max({need, 2 * staged.bytes.size(), kStagingStart}));
      staged_capacity_ += grown - staged.bytes.size();
      staged.bytes.resize(grown);
    }
    if (staged.count == 0) ++staged_streams_;
    unsigned char* const start = staged.bytes.data() + staged.used;
    unsigned char* p = start;
    for (std::size_t i = 0; i < take; ++i) p = raw::PackEvent(staged.state, events[i], p);
    const auto packed = static_cast<std::size_t>(p - start);
    staged.used += packed;
    staged.count += static_cast<std::uint32_t>(take);  // <= kMaxBlockPayload events: each takes a byte
    staged_bytes_ += packed;
    events += take;
    n -= take;
  }
}

void RawWriter::EmitBlock(Staged& staged) {
  if (staged.count == 0) return;
  const std::size_t size = kPackedRecordHead + staged.used;
  if (buffer_.size() + size > kBufferSize) FlushBuffer();  // size <= kBufferSize: it fits now
  unsigned char head[kPackedRecordHead];
  StoreU32(head, static_cast<std::uint32_t>(RawRecordType::kPacked));
  StoreU32(head + 4, static_cast<std::uint32_t>(raw::kPackedHeaderSize + staged.used));
  StoreU32(head + 8, staged.stream);
  StoreU32(head + 12, staged.count);
  StoreU32(head + 16, raw::BlockCrcAdd(raw::BlockCrcStart(staged.stream, staged.count), staged.bytes.data(), staged.used));
  buffer_.insert(buffer_.end(), head, head + sizeof head);
  buffer_.insert(buffer_.end(), staged.bytes.data(), staged.bytes.data() + staged.used);
  staged_bytes_ -= staged.used;
  --staged_streams_;
  staged.used = 0;
  staged.count = 0;
  staged.state = raw::PackedState{};  // each block decodes on its own
  // A stream that was busy once must not pin a large buffer for the rest of
  // the run when there are many: keep the large ones only while they add
  // up to little (one busy stream keeps its buffer, and packs without
  // regrowing it).
  if (staged.bytes.size() > kStagingKeep && staged_capacity_ > 2 * kBufferSize) {
    staged_capacity_ -= staged.bytes.size();
    std::vector<unsigned char>().swap(staged.bytes);
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
    throw RawFileError(path_ + ": a " + raw::RecordName(static_cast<std::uint32_t>(type)) + " record of " +
                       std::to_string(payload.size()) + " bytes exceeds the format's 4 GiB limit");
  }
  unsigned char head[kRawRecordHeaderSize];
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
