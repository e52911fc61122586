// The event arena: per-thread single-producer rings in one shared mapping.
//
// Layout (one mmap, MAP_SHARED over a memfd or a file):
//   ArenaHeader | SlotHeader[slot_count] | Event[slot_count][ring_capacity]
// A thread that records its first event claims a slot with one atomic
// fetch_add (the lock-free registry); slots are never freed while the arena
// lives, so a slot pointer stays valid for every reader. When all slots are
// taken, further threads' events are counted in ArenaHeader::dropped_no_slot.
//
// Because everything lives in a shared mapping, a forked child writes into the
// same rings its parent reads, and a supervisor holding the mapping (or the
// file behind it) keeps every event a crashed runner had written.
//
// Besides the rings, the arena keeps two small registries that every process
// of a run shares: GILs (so each GIL in every process gets a run-wide index,
// the `gil` field of its events) and processes (pid, parent, role, status).
//
// Threads: any thread may Claim(); a slot's dropped is written only by its
// owning thread, tail and last_frame only by the one consumer (the Collector).
//
// A ring hands events over cell by cell, with no shared index: a cell whose
// second word (kind, gil, flags, aux; see CellWords) is 0 is free. The
// producer writes a free cell's ts, then release-stores its second word,
// which is never 0 (every EventKind is at least 1): the cell is published.
// The consumer acquire-loads the second word at its tail, copies the event
// if it is not 0, then release-stores 0: the cell is free again. So the
// producer touches nothing but the cell it writes (one page of its ring, not
// the slot header as well: hooks/hot_state.h says why pages matter), and a
// crashed producer leaves at most one cell with ts written but unpublished.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "recorder/clock.h"
#include "recorder/event.h"

namespace gilscope::recorder {

inline constexpr std::uint64_t kArenaMagic = 0x31415347494c4753ull;  // "SGLIGS41"
inline constexpr std::size_t kThreadNameSize = 64;

struct ArenaConfig {
  std::uint32_t slot_count = 1024;
  std::uint32_t ring_capacity = 1u << 17;  // events per thread; a power of two
};

inline constexpr std::uint32_t kMaxGils = 255;       // Event::gil is a byte
inline constexpr std::uint32_t kMaxProcesses = 1024;
inline constexpr std::size_t kRoleSize = 16;

// One GIL of one interpreter of one process. Written by the process that
// owns the GIL; `state` is release-stored after the fields it publishes.
struct GilRecord {
  enum State : std::uint32_t { kUnused = 0, kOpen = 1, kClosed = 2 };
  std::atomic<std::uint32_t> state;
  std::uint32_t pid;
  std::int64_t interpreter;       // CPython interpreter id
  std::int32_t instance;          // the run's instance it belongs to; -1 none
  std::uint32_t reserved;
  std::uint64_t start_ns, end_ns; // its recording window
  std::uint64_t switch_start, switch_end;  // CPython's gil->switch_number then
  std::uint64_t holder_tstate_at_start;
};

// One process of the run. Written by that process (start) and by whoever
// sees it end (the process itself at exit, or its parent on wait).
struct ProcessRecord {
  enum State : std::uint32_t { kUnused = 0, kRunning = 1, kExited = 2 };
  std::atomic<std::uint32_t> state;
  std::uint32_t pid;
  std::uint32_t parent_pid;
  std::int32_t exit_status;       // valid when kExited
  std::int32_t instance;          // -1 none
  std::uint32_t reserved;
  std::uint64_t start_ns, end_ns;
  char role[kRoleSize];           // "host", "instance", "fork", "spawn"
};

// What the runner tells the supervisor about the run besides events.
struct RunRecord {
  enum Outcome : std::uint32_t { kNone = 0, kDeadlock = 1 };
  double switch_interval_s;
  std::atomic<std::uint32_t> outcome;  // set by the runner's watchdog
  std::uint32_t reserved;
};

struct alignas(64) ArenaHeader {
  std::uint64_t magic;
  std::uint32_t slot_count;
  std::uint32_t ring_capacity;
  // Next slot to hand out; may run past slot_count (then the claim failed).
  std::atomic<std::uint32_t> next_slot;
  std::atomic<std::uint64_t> dropped_no_slot;
  // Next GIL / process index; may run past the array (then it failed).
  std::atomic<std::uint32_t> next_gil;
  std::atomic<std::uint32_t> next_process;
  std::atomic<std::uint64_t> gils_lost;       // GILs not registered: table full
  std::atomic<std::uint32_t> next_marker;     // run-wide marker name ids
  // How every process of the run turns the TSC into nanoseconds (clock.h):
  // written by Create before the magic, adopted by Install.
  TscCalibration clock;
  RunRecord run;
  GilRecord gils[kMaxGils];
  ProcessRecord processes[kMaxProcesses];
};

enum class SlotState : std::uint32_t { kFree = 0, kClaiming = 1, kActive = 2, kExited = 3 };

struct alignas(64) SlotHeader {
  // kFree -> kClaiming (claimer fills the identity) -> kActive (release:
  // identity visible) -> kExited (thread ended; ring may still hold events).
  std::atomic<SlotState> state;
  std::uint32_t pid;
  std::uint64_t native_id;
  // Written by the owning thread (under the GIL, from Python), read after the
  // run or racily for display; always NUL-terminated within the array.
  char name[kThreadNameSize];
  // Producer side (the owning thread writes; others read for display).
  alignas(64) std::atomic<std::uint64_t> dropped;  // events that found the ring full
  // The thread's CPU time when it ended (or its process did); valid when
  // cpu_known is 1 (release-stored after cpu_ns).
  std::uint64_t cpu_ns;
  std::atomic<std::uint32_t> cpu_known;
  // Lock waits with no timeout (sem_wait) begun plus ended by the thread: odd
  // while it waits, and a new value for every new wait, so a watchdog that
  // sees the same odd value twice knows the thread never stopped waiting in
  // between (no clock read on the thread's side). Written by the owning
  // thread only, read by the watchdog.
  std::atomic<std::uint64_t> lock_wait_seq;
  // Consumer side. tail counts events consumed (the next cell to read is
  // tail modulo the capacity); kept here so a later Collector of the same
  // arena continues where the last one stopped.
  alignas(64) std::atomic<std::uint64_t> tail;
  // The last kFrame the consumer copied out of this ring (kind 0: none yet),
  // written back before each kReleased flagged kFlagSameFrame. Only the
  // consumer touches it; it lives here, not in the Collector, so a later
  // Collector of the same arena continues where the last one stopped.
  Event last_frame;
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "rings are shared across processes: atomics must be lock-free");

// A ring cell as the producer and the consumer hand it over: two 8-byte
// words, ts and the rest of the event (kind, gil, flags, aux, as Event lays
// them out: event.h pins the offsets), accessed with GCC's atomic builtins.
// may_alias: the words overlay an Event's fields.
using CellWord = std::uint64_t __attribute__((may_alias));
inline CellWord* CellWords(Event* cell) noexcept { return reinterpret_cast<CellWord*>(cell); }

class Arena {
 public:
  // Maps a fresh arena. With an empty path the mapping is an anonymous memfd;
  // otherwise the file is created (truncated) at path. Throws std::runtime_error.
  static std::unique_ptr<Arena> Create(const ArenaConfig& config, const std::string& path = "");
  // Maps an arena another process created (a spawned child joining the run).
  // Throws std::runtime_error when the file is missing or not an arena.
  static std::unique_ptr<Arena> Attach(const std::string& path);

  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Claims a slot for the calling thread. Lock-free, never allocates; returns
  // nullptr (and counts nothing: the caller counts its drops) when all are taken.
  SlotHeader* Claim(std::uint64_t native_id, std::uint32_t pid) noexcept;

  // Reserves a run-wide GIL index (its record left kUnused for the caller to
  // fill and publish). -1 when all kMaxGils are taken (counted in gils_lost).
  int ReserveGil() noexcept;
  GilRecord& gil(std::uint32_t i) noexcept { return header_->gils[i]; }
  std::uint32_t gil_count() const noexcept;
  // Registers the calling process; nullptr when the table is full.
  ProcessRecord* AddProcess(std::uint32_t pid, std::uint32_t parent_pid, const char* role,
                            std::int32_t instance, std::uint64_t start_ns) noexcept;
  ProcessRecord* FindProcess(std::uint32_t pid) noexcept;
  std::uint32_t process_count() const noexcept;
  ProcessRecord& process(std::uint32_t i) noexcept { return header_->processes[i]; }
  const std::string& path() const noexcept { return path_; }

  ArenaHeader& header() noexcept { return *header_; }
  std::uint32_t slot_count() const noexcept { return header_->slot_count; }
  std::uint32_t ring_capacity() const noexcept { return header_->ring_capacity; }
  // Slots handed out so far (each may still be kClaiming for a moment).
  std::uint32_t claimed() const noexcept;
  SlotHeader& slot(std::uint32_t i) noexcept { return slots_[i]; }
  Event* ring(std::uint32_t i) noexcept { return rings_ + std::size_t{i} * header_->ring_capacity; }
  std::uint32_t index_of(const SlotHeader* slot) const noexcept {
    return static_cast<std::uint32_t>(slot - slots_);
  }
  std::size_t mapped_bytes() const noexcept { return bytes_; }

 private:
  Arena() = default;

  static std::unique_ptr<Arena> Map(int fd, std::size_t total, std::string path);
  void Layout(std::uint32_t slot_count, std::uint32_t ring_capacity);

  std::string path_;
  void* base_ = nullptr;
  std::size_t bytes_ = 0;
  int fd_ = -1;
  ArenaHeader* header_ = nullptr;
  SlotHeader* slots_ = nullptr;
  Event* rings_ = nullptr;
};

}  // namespace gilscope::recorder
