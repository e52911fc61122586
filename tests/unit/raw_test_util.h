// Byte-level helpers for the events.raw tests and the fuzzer's corpus maker:
// records built or edited by hand (packed blocks with right checksums, raw
// blocks and headers of versions 1 and 2), and a file's records walked by
// their lengths. No gtest here: make_raw_corpus uses it too.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "recorder/event.h"
#include "report/raw_file.h"
#include "report/raw_format.h"

namespace gilscope::report::testing {

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void Spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

inline std::uint32_t U32At(const std::string& bytes, std::size_t offset) {
  std::uint32_t v;
  std::memcpy(&v, bytes.data() + offset, sizeof v);
  return v;
}
inline void PutU32(std::string& bytes, std::size_t offset, std::uint32_t v) {
  std::memcpy(bytes.data() + offset, &v, sizeof v);
}
inline std::string U32Bytes(std::uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), sizeof v); }
// The version in a file's header.
inline std::uint16_t VersionOf(const std::string& bytes) { return static_cast<std::uint16_t>(U32At(bytes, 8) & 0xFFFF); }

inline constexpr auto kPacked = static_cast<std::uint32_t>(RawRecordType::kPacked);
inline constexpr auto kEvents = static_cast<std::uint32_t>(RawRecordType::kEvents);

inline std::string Record(std::uint32_t type, const std::string& payload) {
  return U32Bytes(type) + U32Bytes(static_cast<std::uint32_t>(payload.size())) + payload;
}
inline std::string Record(RawRecordType type, const std::string& payload) {
  return Record(static_cast<std::uint32_t>(type), payload);
}

// A PACKED record with a right checksum around `events` (packed bytes,
// valid or not).
inline std::string PackedRecord(std::uint32_t stream, std::uint32_t count, const std::string& events) {
  const auto* data = reinterpret_cast<const unsigned char*>(events.data());
  const std::uint32_t crc = raw::BlockCrcAdd(raw::BlockCrcStart(stream, count), data, events.size());
  return Record(kPacked, U32Bytes(stream) + U32Bytes(count) + U32Bytes(crc) + events);
}

// Recomputes the checksum of the PACKED record at `offset` (after its
// stream, count or events were changed on purpose).
inline void FixChecksum(std::string& bytes, std::size_t offset) {
  const std::uint32_t length = U32At(bytes, offset + 4);
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data() + offset + 20);
  PutU32(bytes, offset + 16,
         raw::BlockCrcAdd(raw::BlockCrcStart(U32At(bytes, offset + 8), U32At(bytes, offset + 12)), data, length - 12));
}

// `events` packed as one block packs them.
inline std::string Pack(const std::vector<recorder::Event>& events) {
  raw::PackedState state;
  std::string out;
  unsigned char buffer[raw::kMaxPackedEventBytes];
  for (const recorder::Event& e : events) {
    const unsigned char* end = raw::PackEvent(state, e, buffer);
    out.append(reinterpret_cast<const char*>(buffer), static_cast<std::size_t>(end - buffer));
  }
  return out;
}

// A raw EVENTS record (what versions 1 and 2 wrote).
inline std::string EventsRecord(std::uint32_t stream, const std::vector<recorder::Event>& events) {
  return Record(kEvents, U32Bytes(stream) + U32Bytes(static_cast<std::uint32_t>(events.size())) +
                             std::string(reinterpret_cast<const char*>(events.data()), events.size() * 16));
}

// The file header of `version`.
inline std::string Header(std::uint16_t version) {
  std::string h(reinterpret_cast<const char*>(raw::kMagic), sizeof raw::kMagic);
  h.append(reinterpret_cast<const char*>(&version), 2);
  const std::uint16_t event_size = 16;
  h.append(reinterpret_cast<const char*>(&event_size), 2);
  return h + U32Bytes(0);
}

struct RecordAt {
  std::size_t offset = 0;
  std::uint32_t type = 0;
  std::uint32_t length = 0;
};

// The records of a well-formed file, by walking the length fields.
inline std::vector<RecordAt> Records(const std::string& bytes) {
  std::vector<RecordAt> records;
  for (std::size_t pos = kRawHeaderSize; pos + kRawRecordHeaderSize <= bytes.size();) {
    records.push_back({pos, U32At(bytes, pos), U32At(bytes, pos + 4)});
    pos += kRawRecordHeaderSize + records.back().length;
  }
  return records;
}

// The first record of `type`; offset 0 (the file header) when there is none.
inline RecordAt First(const std::string& bytes, RawRecordType type) {
  for (const RecordAt& r : Records(bytes)) {
    if (r.type == static_cast<std::uint32_t>(type)) return r;
  }
  return {};
}

// The payloads of a file's records of `type`, in order.
inline std::vector<std::string> Payloads(const std::string& bytes, RawRecordType type) {
  std::vector<std::string> payloads;
  for (const RecordAt& r : Records(bytes)) {
    if (r.type == static_cast<std::uint32_t>(type)) payloads.push_back(bytes.substr(r.offset + 8, r.length));
  }
  return payloads;
}

// `trace` as a version 1 or 2 writer wrote it: the STREAM records, one raw
// EVENTS block per thread (stream id = index), RUN, END. The JSON is
// today's writer's, which versions 1-3 share; `scratch` is a file it may
// overwrite.
inline std::string OldFile(const RunTrace& trace, std::uint16_t version, const std::string& scratch) {
  WriteRawFile(scratch, trace);
  const std::string v3 = Slurp(scratch);
  std::string bytes = Header(version);
  for (const std::string& stream : Payloads(v3, RawRecordType::kStream)) bytes += Record(RawRecordType::kStream, stream);
  for (std::size_t i = 0; i < trace.threads.size(); ++i) {
    bytes += EventsRecord(static_cast<std::uint32_t>(i), trace.threads[i].events);
  }
  for (const std::string& run : Payloads(v3, RawRecordType::kRun)) bytes += Record(RawRecordType::kRun, run);
  return bytes + Record(RawRecordType::kEnd, "");
}

}  // namespace gilscope::report::testing
