// A GIL built the way CPython's take_gil/drop_gil build theirs
// (Python/ceval_gil.c, FORCE_SWITCHING): the same pthread calls in the same
// order on the same kinds of objects, and gil->locked and gil->last_holder
// written with relaxed stores under the GIL's mutex as CPython writes them.
// It keeps its own switch counter and counts its forced drops, so recorded
// events can be checked against the truth, exactly as gilscope checks
// CPython's counter. Shared by the hooks' tests and the hot-path benchmark
// (bench/recorder_bench.cc, BM_GilCycle), so both drive the hooks through
// the same calls CPython makes.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <ctime>

#include "hooks/gil_watch.h"

namespace gilscope::test_support {

struct FakeGil {
  long interval_us = 100;
  std::atomic<void*> last_holder{nullptr};
  int locked = 0;  // read by the hooks as gil->locked
  unsigned long switch_number = 0;
  pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
  pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t switch_cond = PTHREAD_COND_INITIALIZER;
  pthread_mutex_t switch_mutex = PTHREAD_MUTEX_INITIALIZER;
  std::atomic<int> drop_request{0};
  std::atomic<int> forced_drops{0};  // the truth for forced releases

  void Take(void* tstate) {
    pthread_mutex_lock(&mutex);
    while (__atomic_load_n(&locked, __ATOMIC_RELAXED)) {
      const unsigned long saved = switch_number;
      timespec deadline;
      clock_gettime(CLOCK_REALTIME, &deadline);
      deadline.tv_nsec += interval_us * 1000;
      if (deadline.tv_nsec >= 1'000'000'000) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1'000'000'000;
      }
      const int r = pthread_cond_timedwait(&cond, &mutex, &deadline);
      if (r == ETIMEDOUT && locked && switch_number == saved) drop_request.store(1);
    }
    pthread_mutex_lock(&switch_mutex);
    __atomic_store_n(&locked, 1, __ATOMIC_RELAXED);
    if (tstate != last_holder.load(std::memory_order_relaxed)) {
      last_holder.store(tstate, std::memory_order_relaxed);
      ++switch_number;
    }
    pthread_cond_signal(&switch_cond);
    pthread_mutex_unlock(&switch_mutex);
    drop_request.store(0);
    pthread_mutex_unlock(&mutex);
  }

  void Drop(void* tstate) {
    last_holder.store(tstate, std::memory_order_relaxed);
    pthread_mutex_lock(&mutex);
    if (drop_request.load()) forced_drops.fetch_add(1);
    __atomic_store_n(&locked, 0, __ATOMIC_RELAXED);
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&mutex);
    if (drop_request.load()) {
      pthread_mutex_lock(&switch_mutex);
      if (last_holder.load() == tstate) {
        drop_request.store(0);
        pthread_cond_wait(&switch_cond, &switch_mutex);
      }
      pthread_mutex_unlock(&switch_mutex);
    }
  }

  hooks::GilAddresses Addresses() const {
    hooks::GilAddresses a;
    a.mutex = &mutex;
    a.cond = &cond;
    a.switch_cond = &switch_cond;
    a.locked = &locked;
    a.switch_number = &switch_number;
    a.last_holder = reinterpret_cast<void* const*>(&last_holder);
    return a;
  }
};
static_assert(sizeof(std::atomic<void*>) == sizeof(void*));

}  // namespace gilscope::test_support
