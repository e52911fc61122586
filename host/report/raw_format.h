// The byte-level pieces of events.raw that its reader and its writer share:
// the magic, little-endian loads and stores, which event kinds exist, the
// version 3 event packing (PackEvent / UnpackEvent) and the block checksum.
//
// Internal to gilscope::report (raw_file.cc, raw_writer.cc and their tests);
// the format itself is described in raw_file.h. Everything here is pure
// computation on bytes in memory: no I/O, no allocation, no state beyond
// the PackedState the caller owns.
#pragma once

#include <bit>
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

// "EVENTS", "STREAM", "RUN", "END", "PACKED", or "unknown".
const char* RecordName(std::uint32_t type);

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

// Which ts reference a kind's ts is coded against: timed kinds share one
// (the stream's clock), kFrame has its own (code ids repeat), kThreadState
// its own (an address). kNoClass: not a packable kind.
inline constexpr unsigned kClockClass = 0, kCodeClass = 1, kTstateClass = 2, kNoClass = 3;
struct KindClasses {
  std::uint8_t of[16];
};
inline constexpr KindClasses kKindClass = [] {
  KindClasses c{};
  for (unsigned kind = 0; kind < 16; ++kind) {
    c.of[kind] = static_cast<std::uint8_t>(
        !IsPackableKind(kind)                                              ? kNoClass
        : kind == static_cast<unsigned>(recorder::EventKind::kFrame)       ? kCodeClass
        : kind == static_cast<unsigned>(recorder::EventKind::kThreadState) ? kTstateClass
                                                                           : kClockClass);
  }
  return c;
}();

static_assert(std::endian::native == std::endian::little, "events.raw is little-endian: add byte swapping");

// An event's bytes 8-15 (kind, gil, flags, aux) as one little-endian u64,
// which is how PackedState keeps the previous ones: a decoded event is then
// two 8-byte stores.
static_assert(offsetof(recorder::Event, kind) == 8 && offsetof(recorder::Event, gil) == 9 &&
              offsetof(recorder::Event, flags) == 10 && offsetof(recorder::Event, aux) == 12);
inline constexpr std::uint64_t kTailGilFlags = 0xFFFF'FF00ull;  // gil and flags in a tail
inline constexpr std::uint64_t kTailAux = 0xFFFF'FFFF'0000'0000ull;

struct PackedState {
  std::uint64_t reference[3] = {};  // by kind class
  // The previous tail of each kind, indexed by kind value: gil, flags and
  // aux 0 before the first.
  std::uint64_t tail[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
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
  std::uint64_t& reference = s.reference[kKindClass.of[kind]];
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
  std::uint64_t tail;
  std::memcpy(&tail, reinterpret_cast<const unsigned char*>(&e) + 8, sizeof tail);
  const std::uint64_t changed = tail ^ s.tail[kind];
  if ((changed & kTailGilFlags) != 0) {
    tag |= kTagGilFlags;
    *p++ = e.gil;
    p = PutVarint(p, e.flags);
  }
  if ((changed & kTailAux) != 0) {
    tag |= kTagAux;
    p = PutVarint(p, e.aux);
  }
  s.tail[kind] = tail;
  out[0] = static_cast<unsigned char>(tag);
  return p;
}

enum class UnpackError : std::uint8_t {
  kNone,
  kTruncated,     // the bytes end inside the event
  kUnknownKind,   // value: the kind
  kBadTime,       // value: the tag
  kTimeTooLong,   // v runs past 10 bytes or 64 bits
  kFlagsTooLong,  // flags run past 3 bytes
  kFlagsTooBig,   // value: the flags
  kAuxTooLong,    // aux runs past 5 bytes
  kAuxTooBig,     // value: the aux
};

struct UnpackFailure {
  UnpackError error = UnpackError::kNone;
  std::uint64_t value = 0;
};

// The longest varint of each field: what PutVarint writes for the largest
// value. A longer one (even with high zero groups) is an error, so an event
// never takes more than kMaxPackedEventBytes.
inline constexpr unsigned kMaxTimeBytes = 10, kMaxFlagsBytes = 3, kMaxAuxBytes = 5;
static_assert(1 + kMaxTimeBytes + 1 + kMaxFlagsBytes + kMaxAuxBytes == kMaxPackedEventBytes);

// Reads a varint of at most kMaxBytes bytes at p. kChecked: p may be near
// `end` (each byte is checked); otherwise kMaxBytes bytes surely follow p.
template <bool kChecked, unsigned kMaxBytes>
inline const unsigned char* GetVarint(const unsigned char* p, const unsigned char* end, std::uint64_t& v,
                                      UnpackFailure& failure, UnpackError too_long) {
  if (kChecked && p == end) {
    failure.error = UnpackError::kTruncated;
    return nullptr;
  }
  unsigned b = *p++;
  if (b < 0x80) {  // most numbers here (lines, waits) are one byte...
    v = b;
    return p;
  }
  std::uint64_t r = b & 0x7Fu;
  if (!kChecked || p != end) {  // ...or two (time steps of 0.1-16 us)
    const unsigned b2 = *p;
    if (b2 < 0x80) {
      v = r | std::uint64_t{b2} << 7;
      return p + 1;
    }
  }
  for (unsigned i = 1; i < kMaxBytes; ++i) {
    if (kChecked && p == end) {
      failure.error = UnpackError::kTruncated;
      return nullptr;
    }
    b = *p++;
    // A tenth byte holds bit 63 only: more is a number past 64 bits.
    if (i == 9 && b > 1) break;
    r |= std::uint64_t{b & 0x7Fu} << (7 * i);
    if (b < 0x80) {
      v = r;
      return p;
    }
  }
  failure.error = too_long;
  return nullptr;
}

// Reads one event at p into `e`; returns the byte after it, or nullptr with
// `failure` saying why. kChecked: never reads at or past `end`; otherwise
// kMaxPackedEventBytes bytes surely follow p (and `end` is not looked at).
template <bool kChecked>
inline const unsigned char* UnpackEvent(PackedState& s, const unsigned char* p, const unsigned char* end,
                                        recorder::Event& e, UnpackFailure& failure) {
  if (kChecked && p == end) {
    failure.error = UnpackError::kTruncated;
    return nullptr;
  }
  const unsigned tag = *p++;
  const unsigned kind = tag & kTagKindMask;
  const unsigned kind_class = kKindClass.of[kind];
  if (kind_class == kNoClass) {
    failure = {UnpackError::kUnknownKind, kind};
    return nullptr;
  }
  std::uint64_t& reference = s.reference[kind_class];
  const unsigned time = tag >> kTagTimeShift;
  if (time != kTimeSame) {
    if (time == 3) {
      failure = {UnpackError::kBadTime, tag};
      return nullptr;
    }
    std::uint64_t v;
    p = GetVarint<kChecked, kMaxTimeBytes>(p, end, v, failure, UnpackError::kTimeTooLong);
    if (p == nullptr) return nullptr;
    reference = time == kTimeAdd ? reference + v : reference - v;
  }
  std::uint64_t& tail = s.tail[kind];
  if ((tag & kTagGilFlags) != 0) {
    if (kChecked && p == end) {
      failure.error = UnpackError::kTruncated;
      return nullptr;
    }
    const std::uint64_t gil = *p++;
    std::uint64_t flags;
    p = GetVarint<kChecked, kMaxFlagsBytes>(p, end, flags, failure, UnpackError::kFlagsTooLong);
    if (p == nullptr) return nullptr;
    if (flags > 0xFFFF) {
      failure = {UnpackError::kFlagsTooBig, flags};
      return nullptr;
    }
    tail = (tail & ~kTailGilFlags) | gil << 8 | flags << 16;
  }
  if ((tag & kTagAux) != 0) {
    std::uint64_t aux;
    p = GetVarint<kChecked, kMaxAuxBytes>(p, end, aux, failure, UnpackError::kAuxTooLong);
    if (p == nullptr) return nullptr;
    if (aux > 0xFFFF'FFFFu) {
      failure = {UnpackError::kAuxTooBig, aux};
      return nullptr;
    }
    tail = (tail & ~kTailAux) | aux << 32;
  }
  auto* const out = reinterpret_cast<unsigned char*>(&e);
  std::memcpy(out, &reference, 8);
  std::memcpy(out + 8, &tail, 8);
  return p;
}

// ------------------------------------------------------------ checksum

// A PACKED block's checksum: CRC-32 (zlib's, ISO-HDLC polynomial) of its
// stream id and count (8 little-endian bytes) followed by its packed events.
// Incremental: BlockCrcStart, then BlockCrcAdd over the events in pieces.
std::uint32_t BlockCrcStart(std::uint32_t stream, std::uint32_t count);
std::uint32_t BlockCrcAdd(std::uint32_t crc, const unsigned char* data, std::size_t n);

}  // namespace gilscope::report::raw
