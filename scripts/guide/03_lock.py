# gilscope: title = A Lock makes the counter exact
# gilscope: lesson = the incrementers trade the GIL as in 01; when a switch lands inside the critical section, the other thread blocks on the Lock and hands the GIL straight back (a voluntary release)
# gilscope: expect = ok
# gilscope: timeout = 30
# gilscope: modes = main, threads, subinterpreters, shared-subinterpreters, processes
"""A threading.Lock around the read-add-write makes the result exact.

The same two threads as 01_gil_counter.py, each adding one 100000 times to a
shared counter, but the update is a critical section guarded by a Lock:
`with lock:` lets one thread at a time do read, add and write, so no update
can be lost whatever CPython's thread switches do.  The price is an acquire
and a release per update.

Checked: the counter is exactly 2 x 100000.
"""

import sys
import threading

ITERATIONS = 100_000
THREAD_NAMES = ("incrementer-1", "incrementer-2")


class Counter:
    def __init__(self):
        self.value = 0
        self.lock = threading.Lock()


def increment(counter):
    with counter.lock:  # critical section: read, add, write as one step
        counter.value += 1


def worker(counter):
    for _ in range(ITERATIONS):
        increment(counter)


def main():
    counter = Counter()
    threads = [threading.Thread(target=worker, name=name, args=(counter,))
               for name in THREAD_NAMES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    expected = ITERATIONS * len(threads)
    print(f"counter = {counter.value} (expected {expected})")
    if counter.value != expected:
        print(f"03_lock: FAIL: counter is {counter.value}, not {expected}, "
              "with the lock held for every update", file=sys.stderr)
        sys.exit(1)
    print("exact: the lock made each read-add-write indivisible")


if __name__ == "__main__":
    main()
