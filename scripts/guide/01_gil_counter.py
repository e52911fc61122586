# gilscope: title = The GIL does not make += atomic
# gilscope: lesson = two CPU-bound threads trade the GIL in switch-interval slices (forced releases), never running bytecode at once; that alone does not make x += 1 one step
# gilscope: expect = ok
# gilscope: timeout = 30
# gilscope: modes = main, threads, subinterpreters, shared-subinterpreters, processes
"""The GIL does not make `x += 1` atomic.

The guide's example: two threads each call increment() 100000 times, where
increment() does `x += 1` on a shared counter (the guide uses `global x`;
here the counter is an attribute of an object made per run, so copies of the
script run side by side cannot share it).  `x += 1` is three steps: read x,
add one, write x back.  The GIL lets one thread run bytecode at a time, but
it can pass to the other thread between two bytecodes, and if that happens
between the read and the write, the other thread's updates made meanwhile
are overwritten: lost.

Whether the total comes out exact depends on the CPython version and on
luck.  Since 3.10 CPython hands the GIL over only at a few points, such as
function entries and loop back-edges, none of them inside `+= 1`, so this
loop usually gives 200000; the same read-add-write with a call in the
middle loses updates by the thousand (07_race_condition.py).  An exact
result here proves nothing; only a lock (03_lock.py) makes it safe.

Checked: both threads ran all their calls, and 0 < x <= 200000 (an update can
be lost, never invented).
"""

import sys
import threading

ITERATIONS = 100_000
THREAD_NAMES = ("incrementer-1", "incrementer-2")


class Counter:
    """A shared number; `value += 1` on it is a read, an add and a write."""

    def __init__(self):
        self.value = 0


def increment(counter):
    counter.value += 1  # not atomic, GIL or not


def worker(counter, calls_done, name):
    for _ in range(ITERATIONS):
        increment(counter)
    calls_done[name] = ITERATIONS


def fail(reason):
    print(f"01_gil_counter: FAIL: {reason}", file=sys.stderr)
    sys.exit(1)


def main():
    counter = Counter()
    calls_done = {}
    threads = [threading.Thread(target=worker, name=name,
                                args=(counter, calls_done, name))
               for name in THREAD_NAMES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    expected = ITERATIONS * len(threads)
    x = counter.value
    lost = expected - x
    print(f"x = {x} (expected {expected} if no update were lost)")
    if lost > 0:
        print(f"{lost} updates were lost: += is not atomic, even with the GIL")
    else:
        print("exact this time, but only by luck of where CPython switches "
              "threads: += is still not atomic")

    missing = [n for n in THREAD_NAMES if calls_done.get(n) != ITERATIONS]
    if missing:
        fail(f"thread(s) {', '.join(missing)} did not finish their calls")
    if not 0 < x <= expected:
        fail(f"x = {x} is outside (0, {expected}]")


if __name__ == "__main__":
    main()
