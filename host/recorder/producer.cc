#include "recorder/producer.h"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "recorder/clock.h"

namespace gilscope::recorder {
namespace internal {

constinit thread_local ProducerTls t_producer __attribute__((tls_model("local-exec"))){};
// A forked child's thread keeps its name: the parent's slot name, carried
// over to the slot the child claims.
thread_local char t_inherited_name[kThreadNameSize];

}  // namespace internal

void RecordCurrentThreadCpu() noexcept;
void RecordThreadExit() noexcept;

namespace {

// acquire/release: threads that read the arena pointer see the arena the
// installer built.
std::atomic<Arena*> g_arena{nullptr};
pthread_key_t g_exit_key;
std::atomic<bool> g_key_ready{false};

void OnThreadExit(void* slot_ptr) {
  auto* slot = static_cast<SlotHeader*>(slot_ptr);
  if (slot == nullptr || internal::t_producer.slot != slot) return;
  RecordThreadExit();
}

void AfterForkInChild() {
  // Only the forking thread survives, and its slot belongs to the parent's
  // thread of the same name: the child must claim a slot of its own.
  if (internal::t_producer.slot != nullptr) {
    std::memcpy(internal::t_inherited_name, internal::t_producer.slot->name, kThreadNameSize);
    internal::t_inherited_name[kThreadNameSize - 1] = '\0';
  }
  internal::t_producer = {};
}

}  // namespace

void Install(Arena* arena) {
  if (!g_key_ready.exchange(true)) {
    pthread_key_create(&g_exit_key, &OnThreadExit);
    pthread_atfork(nullptr, nullptr, &AfterForkInChild);
  }
  internal::t_producer = {};
  // The run's time axis: the calibration its arena carries.
  if (arena != nullptr) UseClock(arena->header().clock);
  g_arena.store(arena, std::memory_order_release);
}

Arena* Installed() noexcept { return g_arena.load(std::memory_order_acquire); }

namespace internal {

bool ClaimSlow() noexcept {
  Arena* arena = g_arena.load(std::memory_order_acquire);
  if (arena == nullptr) return false;
  SlotHeader* slot = arena->Claim(static_cast<std::uint64_t>(syscall(SYS_gettid)),
                                  static_cast<std::uint32_t>(getpid()));
  if (slot == nullptr) {
    t_producer.no_slot = true;
    return false;
  }
  if (t_inherited_name[0] != '\0') {
    std::memcpy(slot->name, t_inherited_name, kThreadNameSize);
    t_inherited_name[0] = '\0';
  }
  t_producer.slot = slot;
  t_producer.ring = arena->ring(arena->index_of(slot));
  t_producer.mask = arena->ring_capacity() - 1;
  t_producer.head = 0;  // a fresh slot: its ring is all free cells
  t_producer.frame_sent = false;
  if (g_key_ready.load(std::memory_order_relaxed)) pthread_setspecific(g_exit_key, slot);
  return true;
}

void CountNoSlot() noexcept {
  if (Arena* arena = g_arena.load(std::memory_order_acquire)) {
    arena->header().dropped_no_slot.fetch_add(1, std::memory_order_relaxed);
  }
}

bool RecordSlow(const Event& event) noexcept {
  ProducerTls& p = t_producer;
  if (p.ring == nullptr) {
    if (p.no_slot || !ClaimSlow()) {
      CountNoSlot();
      return false;
    }
  }
  CellWord* const cell = CellWords(&p.ring[p.head & p.mask]);
  // acquire: as in Record().
  if (__atomic_load_n(&cell[1], __ATOMIC_ACQUIRE) != 0) {
    // The consumer has not copied this cell's event yet: the ring is full.
    SlotHeader& s = *p.slot;
    // relaxed load + store, no read-modify-write: only this thread writes it.
    s.dropped.store(s.dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return false;
  }
  cell[0] = event.ts;
  // release: as in Record().
  __atomic_store_n(&cell[1], RestWord(event.kind, event.gil, event.flags, event.aux), __ATOMIC_RELEASE);
  ++p.head;
  return true;
}

}  // namespace internal

void RecordThreadExit() noexcept {
  SlotHeader* slot = internal::t_producer.slot;
  if (slot == nullptr) return;
  RecordCurrentThreadCpu();
  Record(EventKind::kThreadExit, 0, 0, Stamp());
  slot->state.store(SlotState::kExited, std::memory_order_release);
  internal::t_producer = {};
  internal::t_producer.no_slot = true;  // no more events from a dying thread
}

void RecordCurrentThreadCpu() noexcept {
  SlotHeader* slot = internal::t_producer.slot;
  if (slot == nullptr) return;
  timespec ts{};
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return;
  slot->cpu_ns = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
  // release: cpu_ns is complete before a reader sees it known.
  slot->cpu_known.store(1, std::memory_order_release);
}

void SetCurrentThreadName(std::string_view name) noexcept {
  internal::ProducerTls& p = internal::t_producer;
  if (p.slot == nullptr && (p.no_slot || !internal::ClaimSlow())) return;
  const std::size_t n = std::min(name.size(), kThreadNameSize - 1);
  std::memcpy(p.slot->name, name.data(), n);
  p.slot->name[n] = '\0';
}

}  // namespace gilscope::recorder
