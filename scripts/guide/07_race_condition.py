# gilscope: title = A race condition, and the Lock that fixes it
# gilscope: lesson = with the switch interval at 1 microsecond the racers swap the GIL far more often than 01's threads (compare the switch counts), mostly by forced releases; racer threads lose updates, locked-racer threads none
# gilscope: expect = ok
# gilscope: timeout = 60
# gilscope: modes = main, threads, subinterpreters, shared-subinterpreters, processes
"""Read, compute, write: updates lost between the read and the write.

Each racer thread does, 50000 times:
    tmp = counter.value;  tmp = add_one(tmp);  counter.value = tmp
If CPython switches threads between the read and the write, the other
thread's updates made meanwhile are overwritten: lost.  CPython only
switches at certain points (function entries, loop back-edges, after some
calls), so the call to add_one() between the read and the write is what
opens the window, and the script lowers the switch interval from 5 ms to
1 microsecond (sys.setswitchinterval, restored after): a thread waiting for
the GIL then asks for it after 1 microsecond instead of 5 ms, so the
threads swap it many times more often.

Two details make the loss reliable rather than likely.  The racers spin
until both are running, so one cannot finish before the other starts.  And
add_one() does a little work of random length: with a fixed amount, the
two threads can fall into step, and a run then loses about half of the
updates or none at all.

The racer threads then lose thousands of updates, but how many is luck, so
that count is printed, not checked.  The locked-racer threads do the same
under a Lock, in the same conditions.

Checked: the locked version is exact (2 x 50000).
"""

import random
import sys
import threading

ITERATIONS = 50_000
THREADS = 2
TINY_SWITCH_INTERVAL_S = 1e-6


class Counter:
    def __init__(self):
        self.value = 0


def add_one(value, rng):
    for _ in range(rng.randrange(3)):  # a little work, of varying length
        pass
    return value + 1


def wait_for_rival(ready):
    """Return once every racer thread is running Python code.

    A Barrier is not enough: the thread it wakes may get a CPU only after
    the other has finished its whole loop.  Spinning costs little here, as
    the tiny switch interval passes the GIL on at once.
    """
    ready.append(threading.current_thread().name)
    while len(ready) < THREADS:
        pass


def racer(counter, rng, ready):
    wait_for_rival(ready)
    for _ in range(ITERATIONS):
        tmp = counter.value
        tmp = add_one(tmp, rng)  # a switch in here loses the rival's updates
        counter.value = tmp


def locked_racer(counter, rng, ready, lock):
    wait_for_rival(ready)
    for _ in range(ITERATIONS):
        with lock:
            tmp = counter.value
            tmp = add_one(tmp, rng)
            counter.value = tmp


def run(name, target, *extra):
    counter = Counter()
    ready = []
    threads = [threading.Thread(target=target, name=f"{name}-{i}",
                                args=(counter, random.Random(i), ready, *extra))
               for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counter.value


def main():
    expected = ITERATIONS * THREADS
    saved = sys.getswitchinterval()
    sys.setswitchinterval(TINY_SWITCH_INTERVAL_S)
    try:
        unlocked = run("racer", racer)
        locked = run("locked-racer", locked_racer, threading.Lock())
    finally:
        sys.setswitchinterval(saved)

    print(f"switch interval {TINY_SWITCH_INTERVAL_S * 1e6:g} us, "
          f"{THREADS} threads x {ITERATIONS} updates")
    print(f"without a lock: {unlocked} ({expected - unlocked} updates lost)")
    print(f"with a lock:    {locked} ({expected - locked} updates lost)")
    if locked != expected:
        print(f"07_race_condition: FAIL: the locked counter is {locked}, "
              f"not {expected}", file=sys.stderr)
        sys.exit(1)
    if unlocked == expected:
        print("(no update lost this time: the race is real, its outcome luck)")


if __name__ == "__main__":
    main()
