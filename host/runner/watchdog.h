// The deadlock watchdog of the runner process.
//
// Facts, not silence: the interposed sem_wait marks a thread as blocked on a
// lock (SlotHeader::lock_wait_seq) for as long as it waits without a
// timeout, which is how threading.Lock/RLock/Condition/Event/join block in
// every supported CPython (a per-lock POSIX semaphore in 3.11/3.12, the
// parking lot's per-thread one in 3.13). When every live Python thread of the
// process has been blocked so for `after_s` seconds, nothing can ever release
// them: the watchdog takes the (idle) GIL, describes each thread (its stack,
// the lock it waits for, the locks its `with` blocks hold, who holds the one
// it wants), writes that beside the arena, marks the run a deadlock and ends
// the process with status 3.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "recorder/arena.h"

namespace gilscope::runner {

// Its thread starts only when a recorded thread of this process first
// blocks on a lock (hooks::SetOnLockBlock): until then nothing can be
// deadlocked, and the script's process has no thread it did not start (so
// os.fork() in a threadless script is not warned about, as under python).
// One Watchdog per process at a time.
class Watchdog {
 public:
  // Watches (after_s > 0) from the first blocking lock wait on. PRECONDITION:
  // the interpreter is running.
  Watchdog(recorder::Arena& arena, double after_s);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  void Loop();
  // The hook's callback: starts the thread once, in the process that armed it.
  static void OnLockBlock();
  void Start();
  // Whether every live thread of this process has been in one lock wait
  // since at least after_s before now_ns (as first seen by a check).
  bool AllBlockedSince(std::uint64_t now_ns);
  [[noreturn]] void ReportAndExit();

  // A slot's lock-wait sequence as last seen, and when it was first seen.
  struct Seen {
    std::uint64_t seq = 0;
    std::uint64_t since_ns = 0;
  };

  recorder::Arena& arena_;
  double after_s_;
  std::vector<Seen> seen_;  // by slot; the watchdog thread's only
  std::atomic<bool> stop_{false};
  std::atomic<bool> started_{false};  // Start() ran (or the watchdog closed)
  std::mutex start_mutex_;            // Start() against the destructor
  bool closed_ = false;               // under start_mutex_
  pid_t owner_ = 0;                   // the process that armed it
  std::thread thread_;
};

// Where the watchdog leaves its description: <arena path>.deadlock.json.
std::string DeadlockFilePath(const std::string& arena_path);

}  // namespace gilscope::runner
