# gilscope: title = Avoiding deadlock: lock ordering, and timeouts with back-off
# gilscope: lesson = unlike 08 the GIL never goes idle for good: ordered threads wait on a lock briefly, back-off threads give up after a short timeout and sleep (voluntary releases) before they try again
# gilscope: expect = ok
# gilscope: timeout = 30
# gilscope: modes = main, threads, subinterpreters, shared-subinterpreters, processes
"""Two fixes for 08_deadlock.py's deadlock, both with the same two locks.

1. One global order.  thread_1 wants lock_1 then lock_2, thread_2 the
   reverse, as in 08; but both call take_in_order(), which always takes
   the locks in one fixed order (by rank).  A thread holding the first lock
   of the order never waits for a thread holding the second, so no cycle
   can form.  Both threads start together (a Barrier) and do 2000 rounds.

2. Timeouts with back-off.  Each thread takes its first lock, then tries
   the second with acquire(timeout=...).  On failure it releases what it
   holds, sleeps a random moment and starts over, so one of the two gets
   through.  In round 0 both threads meet at a Barrier while holding their
   first lock, which is exactly 08's deadlock: at least one of them must
   back off.  Each thread does 20 rounds.

Checked: every round of both fixes completed, and in the second fix the
deadlock of round 0 was met and resolved by at least one back-off.
"""

import random
import sys
import threading
import time

ORDERED_ROUNDS = 2000
BACKOFF_ROUNDS = 20
ACQUIRE_TIMEOUT_S = 0.02
MAX_BACKOFF_S = 0.01
MAX_ATTEMPTS = 100  # per round: more means back-off failed
JOIN_DEADLINE_S = 20.0


def fail(reason):
    print(f"09_lock_ordering: FAIL: {reason}", file=sys.stderr)
    sys.exit(1)


class RankedLock:
    """A Lock with a rank: locks are always taken in increasing rank."""

    def __init__(self, rank):
        self.rank = rank
        self.lock = threading.Lock()


def take_in_order(*locks):
    ordered = sorted(locks, key=lambda lock: lock.rank)
    for lock in ordered:
        lock.lock.acquire()
    return ordered


def ordered_worker(first, second, start, rounds_done, name):
    start.wait()  # both go for the locks at the same moment
    for _ in range(ORDERED_ROUNDS):
        held = take_in_order(first, second)  # not "first, then second"
        rounds_done[name] += 1
        for lock in reversed(held):
            lock.lock.release()


def backoff_worker(first, second, start, stats, name):
    rng = random.Random(name)
    for round_no in range(BACKOFF_ROUNDS):
        for _ in range(MAX_ATTEMPTS):
            with first.lock:
                if round_no == 0 and stats["attempts"][name] == 0:
                    start.wait()  # both hold their first lock: 08's deadlock
                stats["attempts"][name] += 1
                if second.lock.acquire(timeout=ACQUIRE_TIMEOUT_S):
                    stats["rounds"][name] += 1
                    second.lock.release()
                    break
            stats["backoffs"][name] += 1  # first lock released: back off
            time.sleep(rng.uniform(0, MAX_BACKOFF_S))
        else:
            return  # gave up: the round count shows it


def run_pair(label, target, lock_1, lock_2, *extra):
    """thread_1 wants lock_1 then lock_2, thread_2 the reverse (as in 08)."""
    threads = [
        threading.Thread(target=target, name=f"{label}-thread_1",
                         args=(lock_1, lock_2, *extra, "thread_1")),
        threading.Thread(target=target, name=f"{label}-thread_2",
                         args=(lock_2, lock_1, *extra, "thread_2")),
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + JOIN_DEADLINE_S
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        fail(f"{', '.join(stuck)} still running after {JOIN_DEADLINE_S:g}s")


def main():
    lock_1, lock_2 = RankedLock(1), RankedLock(2)

    rounds_done = {"thread_1": 0, "thread_2": 0}
    run_pair("ordered", ordered_worker, lock_1, lock_2,
             threading.Barrier(2, timeout=JOIN_DEADLINE_S), rounds_done)
    print(f"global lock order: rounds done {rounds_done} "
          f"(of {ORDERED_ROUNDS} each)")
    if any(n != ORDERED_ROUNDS for n in rounds_done.values()):
        fail(f"lock ordering: rounds done {rounds_done}")

    stats = {key: {"thread_1": 0, "thread_2": 0}
             for key in ("rounds", "attempts", "backoffs")}
    run_pair("backoff", backoff_worker, lock_1, lock_2,
             threading.Barrier(2, timeout=JOIN_DEADLINE_S), stats)
    print(f"timeout and back-off: rounds done {stats['rounds']} "
          f"(of {BACKOFF_ROUNDS} each), back-offs {stats['backoffs']}")
    if any(n != BACKOFF_ROUNDS for n in stats["rounds"].values()):
        fail(f"back-off: rounds done {stats['rounds']}")
    if sum(stats["backoffs"].values()) < 1:
        fail("back-off: round 0's deadlock was not met (no thread backed off)")


if __name__ == "__main__":
    main()
