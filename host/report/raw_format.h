// The byte-level pieces of events.raw that its reader and its writer share:
// the magic, little-endian loads and stores, which event kinds exist, the
// version 3 event packing (PackEvent / UnpackEvent) and the block checksum.
//
// Internal to gilscope::report (raw_file.cc, raw_writer.cc and their tests);
// the format itself is described in raw_file.h. Everything here is pure
// computation on bytes in memory: no I/O, no allocation, no state beyond
// the PackedState the caller owns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "recorder/event.h"

namespace gilscope::report::raw {

inline constexpr unsigned char kMagic[8] = {0x89, 'G', 'I', 'L', 'R', 'A', 'W', '\n'};
inline constexpr std::size_t kEventSize = sizeof(recorder::Event);
// EVENTS (versions 1-3): u32 stream, u32 count, then raw events.
inline constexpr std::size_t kBlockHeaderSize = 8;
// PACKED (version 3): u32 stream, u32 count, u32 checksum, then packed events.
inline constexpr std::size_t kPackedHeaderSize = 12;
// The longest packed event: tag, a 10-byte ts, gil, 3-byte flags, 5-byte aux.
inline constexpr std::size_t kMaxPackedEventBytes = 1 + 10 + 1 + 3 + 5;

inline std::uint32_t LoadU32(const unsigned char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline std::uint16_t LoadU16(const unsigned char* p) {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void StoreU32(unsigned char* p, std::uint32_t v) { std::memcpy(p, &v, sizeof v); }
inline void StoreU16(unsigned char* p, std::uint16_t v) { std::memcpy(p, &v, sizeof v); }

// A switch without default: adding an EventKind makes -Wswitch point here,
// and the packing below must then still fit it in a tag's 4 kind bits.
constexpr bool IsKnownKind(recorder::EventKind kind) {
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
// Whether a kind value can be packed: known, and within a tag's 4 bits.
constexpr bool IsPackableKind(unsigned kind) {
  return kind < 16 && IsKnownKind(static_cast<recorder::EventKind>(kind));
}
static_assert(IsPackableKind(static_cast<unsigned>(recorder::EventKind::kRegionEnd)),
              "every event kind must fit a packed tag's 4 kind bits");

// ------------------------------------------------------------ packing
//
// A packed event is a tag byte and then only what differs from what came
// before it in its block (see raw_file.h for the layout). PackedState is what
// came before: both sides start each block from PackedState{}, so every
// block decodes on its own.

inline constexpr unsigned kTagKindMask = 0x0F;
inline constexpr unsigned kTagGilFlags = 1u << 4;  // gil (u8) and flags (varint) follow
inline constexpr unsigned kTagAux = 1u << 5;       // aux (varint) follows
inline constexpr unsigned kTagTimeShift = 6;       // 2 bits: how ts follows from its reference
inline constexpr unsigned kTimeSame = 0, kTimeAdd = 1, kTimeSubtract = 2;  // 3 is invalid

struct PackedState {
  // A ts is coded against the previous ts of its class: timed kinds share
  // one reference (the stream's clock), kFrame has its own (code ids repeat),
  // kThreadState its own (an address).
  std::uint64_t time = 0;
  std::uint64_t code = 0;
  std::uint64_t tstate = 0;
  // The previous gil/flags/aux of each kind, indexed by kind value.
  struct Last {
    std::uint8_t gil = 0;
    std::uint16_t flags = 0;
    std::uint32_t aux = 0;
  };
  Last last[16];

  std::uint64_t& Reference(recorder::EventKind kind) {
    if (kind == recorder::EventKind::kFrame) return code;
    if (kind == recorder::EventKind::kThreadState) return tstate;
    return time;
  }
};

inline unsigned char* PutVarint(unsigned char* p, std::uint64_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<unsigned char>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<unsigned char>(v);
  return p;
}

// Writes `e` (its kind packable) at `out`, at most kMaxPackedEventBytes;
// returns the end of what it wrote.
inline unsigned char* PackEvent(PackedState& s, const recorder::Event& e, unsigned char* out) {
  const unsigned kind = static_cast<unsigned>(e.kind);
  unsigned tag = kind;
  unsigned char* p = out + 1;
  std::uint64_t& reference = s.Reference(e.kind);
  // Any u64 is reachable from any other: the shorter way round, mod 2^64.
  const std::uint64_t up = e.ts - reference;
  if (up != 0) {
    if (up < (std::uint64_t{1} << 63)) {
      tag |= kTimeAdd << kTagTimeShift;
      p = PutVarint(p, up);
    } else {
      tag |= kTimeSubtract << kTagTimeShift;
      p = PutVarint(p, reference - e.ts);
    }
    reference = e.ts;
  }
  PackedState::Last& last = s.last[kind];
  if (e.gil != last.gil || e.flags != last.flags) {
    tag |= kTagGilFlags;
    *p++ = e.gil;
    p = PutVarint(p, e.flags);
    last.gil = e.gil;
    last.flags = e.flags;
  }
  if (e.aux != last.aux) {
    tag |= kTagAux;
    p = PutVarint(p, e.aux);
    last.aux = e.aux;
  }
  out[0] = static_cast<unsigned char>(tag);
  return p;
}

enum class UnpackError : std::uint8_t {
  kNone,
  kTruncated,     // the bytes end inside the event
  kUnknownKind,   // value: the kind
  kBadTime,       // value: the tag
  kTooLong,       // a varint runs past 64 bits
  kFlagsTooBig,   // value: the flags
  kAuxTooBig,     // value: the aux
};

struct UnpackFailure {
  UnpackError error = UnpackError::kNone;
  std::uint64_t value = 0;
};

inline const unsigned char* GetVarint(const unsigned char* p, const unsigned char* end, std::uint64_t& v,
                                      UnpackFailure& failure) {
  std::uint64_t r = 0;
  for (unsigned shift = 0;; shift += 7) {
    if (p == end) {
      failure.error = UnpackError::kTruncated;
      return nullptr;
    }
    const unsigned b = *p++;
    // The tenth byte holds bit 63 only: more is a number past 64 bits.
    if (shift == 63 && b > 1) {
      failure.error = UnpackError::kTooLong;
      return nullptr;
    }
    r |= std::uint64_t{b & 0x7Fu} << shift;
    if (b < 0x80) {
      v = r;
      return p;
    }
  }
}

// Reads one event from [p, end) into `e`; returns the byte after it, or
// nullptr with `failure` saying why. Never reads at or past `end`.
inline const unsigned char* UnpackEvent(PackedState& s, const unsigned char* p, const unsigned char* end,
                                        recorder::Event& e, UnpackFailure& failure) {
  if (p == end) {
    failure.error = UnpackError::kTruncated;
    return nullptr;
  }
  const unsigned tag = *p++;
  const unsigned kind = tag & kTagKindMask;
  if (!IsPackableKind(kind)) {
    failure = {UnpackError::kUnknownKind, kind};
    return nullptr;
  }
  e.kind = static_cast<recorder::EventKind>(kind);
  std::uint64_t& reference = s.Reference(e.kind);
  const unsigned time = tag >> kTagTimeShift;
  if (time != kTimeSame) {
    if (time != kTimeAdd && time != kTimeSubtract) {
      failure = {UnpackError::kBadTime, tag};
      return nullptr;
    }
    std::uint64_t v;
    if ((p = GetVarint(p, end, v, failure)) == nullptr) return nullptr;
    reference = time == kTimeAdd ? reference + v : reference - v;
  }
  e.ts = reference;
  PackedState::Last& last = s.last[kind];
  if ((tag & kTagGilFlags) != 0) {
    if (p == end) {
      failure.error = UnpackError::kTruncated;
      return nullptr;
    }
    last.gil = *p++;
    std::uint64_t flags;
    if ((p = GetVarint(p, end, flags, failure)) == nullptr) return nullptr;
    if (flags > 0xFFFF) {
      failure = {UnpackError::kFlagsTooBig, flags};
      return nullptr;
    }
    last.flags = static_cast<std::uint16_t>(flags);
  }
  if ((tag & kTagAux) != 0) {
    std::uint64_t aux;
    if ((p = GetVarint(p, end, aux, failure)) == nullptr) return nullptr;
    if (aux > 0xFFFF'FFFFu) {
      failure = {UnpackError::kAuxTooBig, aux};
      return nullptr;
    }
    last.aux = static_cast<std::uint32_t>(aux);
  }
  e.gil = last.gil;
  e.flags = last.flags;
  e.aux = last.aux;
  return p;
}

// ------------------------------------------------------------ checksum

// A PACKED block's checksum: CRC-32 (zlib's, ISO-HDLC polynomial) of its
// stream id and count (8 little-endian bytes) followed by its packed events.
// Incremental: BlockCrcStart, then BlockCrcAdd over the events in pieces.
std::uint32_t BlockCrcStart(std::uint32_t stream, std::uint32_t count);
std::uint32_t BlockCrcAdd(std::uint32_t crc, const unsigned char* data, std::size_t n);

}  // namespace gilscope::report::raw
