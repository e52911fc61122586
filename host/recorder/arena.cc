#include "recorder/arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <stdexcept>

namespace gilscope::recorder {
namespace {

std::size_t AlignUp(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }

[[noreturn]] void ThrowErrno(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

}  // namespace

std::unique_ptr<Arena> Arena::Create(const ArenaConfig& config, const std::string& path) {
  if (config.slot_count == 0 || config.ring_capacity == 0 ||
      (config.ring_capacity & (config.ring_capacity - 1)) != 0) {
    throw std::invalid_argument("arena: slot_count must be > 0 and ring_capacity a power of two");
  }
  const std::size_t header_bytes = AlignUp(sizeof(ArenaHeader), 4096);
  const std::size_t slots_bytes = AlignUp(sizeof(SlotHeader) * config.slot_count, 4096);
  const std::size_t ring_bytes = sizeof(Event) * std::size_t{config.ring_capacity} * config.slot_count;
  const std::size_t total = header_bytes + slots_bytes + ring_bytes;

  std::unique_ptr<Arena> arena(new Arena());
  arena->fd_ = path.empty() ? memfd_create("gilscope-arena", MFD_CLOEXEC)
                            : open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (arena->fd_ < 0) ThrowErrno(path.empty() ? "arena: memfd_create" : "arena: open " + path);
  // The file is sparse: only pages that threads actually write take memory.
  if (ftruncate(arena->fd_, static_cast<off_t>(total)) != 0) ThrowErrno("arena: ftruncate");
  void* base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, arena->fd_, 0);
  if (base == MAP_FAILED) ThrowErrno("arena: mmap");
  arena->base_ = base;
  arena->bytes_ = total;

  auto* bytes = static_cast<unsigned char*>(base);
  arena->header_ = new (bytes) ArenaHeader{};
  arena->slots_ = reinterpret_cast<SlotHeader*>(bytes + header_bytes);
  arena->rings_ = reinterpret_cast<Event*>(bytes + header_bytes + slots_bytes);
  for (std::uint32_t i = 0; i < config.slot_count; ++i) new (&arena->slots_[i]) SlotHeader{};
  arena->header_->slot_count = config.slot_count;
  arena->header_->ring_capacity = config.ring_capacity;
  // The magic goes last: a reader that sees it sees a fully laid-out arena.
  std::atomic_thread_fence(std::memory_order_release);
  arena->header_->magic = kArenaMagic;
  return arena;
}

Arena::~Arena() {
  if (base_ != nullptr) munmap(base_, bytes_);
  if (fd_ >= 0) close(fd_);
}

SlotHeader* Arena::Claim(std::uint64_t native_id, std::uint32_t pid) noexcept {
  // relaxed: the index only needs to be unique; the slot's identity is
  // published by the release store of kActive below.
  const std::uint32_t i = header_->next_slot.fetch_add(1, std::memory_order_relaxed);
  if (i >= header_->slot_count) return nullptr;
  SlotHeader& s = slots_[i];
  s.state.store(SlotState::kClaiming, std::memory_order_relaxed);
  s.native_id = native_id;
  s.pid = pid;
  s.name[0] = '\0';
  s.state.store(SlotState::kActive, std::memory_order_release);
  return &s;
}

std::uint32_t Arena::claimed() const noexcept {
  const std::uint32_t n = header_->next_slot.load(std::memory_order_acquire);
  return n < header_->slot_count ? n : header_->slot_count;
}

}  // namespace gilscope::recorder
