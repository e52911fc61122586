// The one record the GIL hooks write: a fixed-size, trivially copyable event.
//
// Events are produced on the hot path (inside pthread calls made by CPython's
// take_gil/drop_gil), so the type is a 16-byte POD: a timestamp and a tagged
// kind. Each thread writes its own ring, so the thread is implicit in where an
// event is stored, not in the event itself.
//
// This header knows nothing of CPython.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace gilscope::recorder {

enum class EventKind : std::uint8_t {
  // take_gil began: the thread asks for the GIL (it locked the GIL's mutex).
  kRequest = 1,
  // A timed wait for the GIL elapsed while another thread still held it.
  // With kFlagDropRequest it was the timeout that set the drop request
  // (no switch happened during the wait), as CPython's take_gil does.
  kWaitTimeout = 2,
  // The thread now holds the GIL (take_gil signalled switch_cond).
  // With kFlagAtStart: synthetic, the thread already held it when recording began.
  // With kFlagRequestFolded: take_gil found the GIL free (it never waited on
  // the GIL's cond), and its kRequest is folded into this event instead of
  // being written: it was made `aux` nanoseconds before `ts`.
  kAcquired = 3,
  // The thread released the GIL (drop_gil signalled the GIL's cond).
  // With kFlagForced: a drop request was pending, so the release was forced
  // (FORCE_SWITCHING); without it the release was voluntary (a blocking call).
  // With kFlagSameFrame (in a ring only): released at the frame of the
  // thread's last kFrame, which the Collector writes again before it.
  kReleased = 4,
  // The PyThreadState used by this thread's following acquisitions changed.
  // `ts` carries the PyThreadState address instead of a time: CPython counts a
  // switch whenever the acquiring thread state differs from the last holder.
  kThreadState = 5,
  // The thread is exiting (its recorder slot's destructor ran).
  kThreadExit = 6,
  // The Python frame executing when the thread released the GIL; written
  // just before that kReleased. `ts` carries an opaque code id (resolved
  // through RunTrace::code), `aux` the line number (0: unknown).
  kFrame = 7,
  // Markers from Python (gilscope.mark / gilscope.region): `aux` indexes
  // RunTrace::marker_names.
  kMark = 8,
  kRegionBegin = 9,
  kRegionEnd = 10,
};

inline constexpr std::uint16_t kFlagDropRequest = 1u << 0;
inline constexpr std::uint16_t kFlagAtStart = 1u << 1;
inline constexpr std::uint16_t kFlagForced = 1u << 2;
inline constexpr std::uint16_t kFlagRequestFolded = 1u << 3;
// Ring-only: a release at the same frame as the thread's last kFrame writes
// no kFrame of its own (one event fewer per release on the observed thread).
// The Collector, which remembers each ring's last kFrame, writes that kFrame
// back before the release and clears the flag: nothing after the Collector
// (events.raw, the analysis) ever sees it.
inline constexpr std::uint16_t kFlagSameFrame = 1u << 4;

struct Event {
  // Monotonic nanoseconds (kThreadState: the address; kFrame: a code id). In
  // a ring, a timed kind's ts (and a folded request's aux) is a stamp of the
  // run's clock (clock.h); the Collector hands out nanoseconds.
  std::uint64_t ts;
  EventKind kind;
  std::uint8_t gil;   // index of the GIL in the run's GIL table
  std::uint16_t flags;
  std::uint32_t aux;  // kind-specific (kFrame: line; kAcquired folded: wait ns; markers: name id)
};

static_assert(sizeof(Event) == 16, "Event is 16 bytes: it is written on the hot path and streamed raw");
// Record() writes kind, gil, flags and aux as one 8-byte word after ts.
static_assert(offsetof(Event, kind) == 8 && offsetof(Event, gil) == 9 && offsetof(Event, flags) == 10 &&
              offsetof(Event, aux) == 12);
static_assert(std::is_trivially_copyable_v<Event>);
static_assert(std::is_standard_layout_v<Event>);

const char* KindName(EventKind kind);

// Whether an event of this kind carries a time in `ts` (all but kThreadState
// and kFrame, whose ts is an address or a code id).
constexpr bool HasTime(EventKind kind) {
  return kind != EventKind::kThreadState && kind != EventKind::kFrame;
}

}  // namespace gilscope::recorder
