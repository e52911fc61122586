#include "recorder/arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

std::size_t HeaderBytes() { return AlignUp(sizeof(ArenaHeader), 4096); }
std::size_t SlotsBytes(std::uint32_t slots) { return AlignUp(sizeof(SlotHeader) * slots, 4096); }

}  // namespace

std::unique_ptr<Arena> Arena::Map(int fd, std::size_t total, std::string path) {
  void* base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    const int err = errno;
    close(fd);
    errno = err;
    ThrowErrno("arena: mmap");
  }
  std::unique_ptr<Arena> arena(new Arena());
  arena->fd_ = fd;
  arena->base_ = base;
  arena->bytes_ = total;
  arena->path_ = std::move(path);
  return arena;
}

void Arena::Layout(std::uint32_t slot_count, std::uint32_t ring_capacity) {
  auto* bytes = static_cast<unsigned char*>(base_);
  header_ = reinterpret_cast<ArenaHeader*>(bytes);
  slots_ = reinterpret_cast<SlotHeader*>(bytes + HeaderBytes());
  rings_ = reinterpret_cast<Event*>(bytes + HeaderBytes() + SlotsBytes(slot_count));
  (void)ring_capacity;
}

std::unique_ptr<Arena> Arena::Create(const ArenaConfig& config, const std::string& path) {
  if (config.slot_count == 0 || config.ring_capacity == 0 ||
      (config.ring_capacity & (config.ring_capacity - 1)) != 0) {
    throw std::invalid_argument("arena: slot_count must be > 0 and ring_capacity a power of two");
  }
  const std::size_t ring_bytes = sizeof(Event) * std::size_t{config.ring_capacity} * config.slot_count;
  const std::size_t total = HeaderBytes() + SlotsBytes(config.slot_count) + ring_bytes;

  const int fd = path.empty() ? memfd_create("gilscope-arena", MFD_CLOEXEC)
                              : open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) ThrowErrno(path.empty() ? "arena: memfd_create" : "arena: open " + path);
  // The file is sparse: only pages that threads actually write take memory.
  if (ftruncate(fd, static_cast<off_t>(total)) != 0) {
    close(fd);
    ThrowErrno("arena: ftruncate");
  }
  std::unique_ptr<Arena> arena = Map(fd, total, path);
  auto* bytes = static_cast<unsigned char*>(arena->base_);
  new (bytes) ArenaHeader{};
  arena->Layout(config.slot_count, config.ring_capacity);
  for (std::uint32_t i = 0; i < config.slot_count; ++i) new (&arena->slots_[i]) SlotHeader{};
  arena->header_->slot_count = config.slot_count;
  arena->header_->ring_capacity = config.ring_capacity;
  arena->header_->clock = CalibrateClock();
  // The magic goes last: a reader that sees it sees a fully laid-out arena.
  std::atomic_thread_fence(std::memory_order_release);
  arena->header_->magic = kArenaMagic;
  return arena;
}

std::unique_ptr<Arena> Arena::Attach(const std::string& path) {
  const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) ThrowErrno("arena: open " + path);
  struct stat st {};
  if (fstat(fd, &st) != 0 || static_cast<std::size_t>(st.st_size) < sizeof(ArenaHeader)) {
    close(fd);
    throw std::runtime_error("arena: " + path + " is not a gilscope arena (too small)");
  }
  const std::size_t total = static_cast<std::size_t>(st.st_size);
  std::unique_ptr<Arena> arena = Map(fd, total, path);
  const auto* header = static_cast<const ArenaHeader*>(arena->base_);
  std::atomic_thread_fence(std::memory_order_acquire);
  const std::size_t expected = HeaderBytes() + SlotsBytes(header->slot_count) +
                               sizeof(Event) * std::size_t{header->ring_capacity} * header->slot_count;
  if (header->magic != kArenaMagic || header->slot_count == 0 || expected != total) {
    throw std::runtime_error("arena: " + path + " is not a gilscope arena");
  }
  arena->Layout(header->slot_count, header->ring_capacity);
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

namespace gilscope::recorder {

int Arena::ReserveGil() noexcept {
  // relaxed: uniqueness only; the record is published through its state.
  const std::uint32_t i = header_->next_gil.fetch_add(1, std::memory_order_relaxed);
  if (i >= kMaxGils) {
    header_->gils_lost.fetch_add(1, std::memory_order_relaxed);
    return -1;
  }
  return static_cast<int>(i);
}

std::uint32_t Arena::gil_count() const noexcept {
  const std::uint32_t n = header_->next_gil.load(std::memory_order_acquire);
  return n < kMaxGils ? n : kMaxGils;
}

ProcessRecord* Arena::AddProcess(std::uint32_t pid, std::uint32_t parent_pid, const char* role,
                                 std::int32_t instance, std::uint64_t start_ns) noexcept {
  const std::uint32_t i = header_->next_process.fetch_add(1, std::memory_order_relaxed);
  if (i >= kMaxProcesses) return nullptr;
  ProcessRecord& p = header_->processes[i];
  p.pid = pid;
  p.parent_pid = parent_pid;
  p.instance = instance;
  p.exit_status = 0;
  p.start_ns = start_ns;
  p.end_ns = 0;
  std::strncpy(p.role, role, kRoleSize - 1);
  p.role[kRoleSize - 1] = '\0';
  // release: the fields above are visible to whoever sees kRunning.
  p.state.store(ProcessRecord::kRunning, std::memory_order_release);
  return &p;
}

ProcessRecord* Arena::FindProcess(std::uint32_t pid) noexcept {
  const std::uint32_t n = process_count();
  for (std::uint32_t i = n; i-- > 0;) {
    ProcessRecord& p = header_->processes[i];
    if (p.state.load(std::memory_order_acquire) != ProcessRecord::kUnused && p.pid == pid) return &p;
  }
  return nullptr;
}

std::uint32_t Arena::process_count() const noexcept {
  const std::uint32_t n = header_->next_process.load(std::memory_order_acquire);
  return n < kMaxProcesses ? n : kMaxProcesses;
}

}  // namespace gilscope::recorder
