# gilscope: title = ThreadPoolExecutor.map
# gilscope: lesson = four pool-worker threads share the tasks; each task waits (releasing the GIL) far longer than it computes, so the GIL is idle most of the run and the workers seldom wait for it
# gilscope: expect = ok
# gilscope: timeout = 30
# gilscope: modes = main, threads, subinterpreters, shared-subinterpreters, processes
# gilscope: modes-3.12 = main, threads, shared-subinterpreters, processes
# gilscope: skip-reason-3.12 = CPython 3.12.1 aborts when an own-GIL subinterpreter that made the first keyword call of some C functions (SimpleQueue.get(block=True) in the pool's workers) is destroyed
"""A pool of threads mapping a function over data.

ThreadPoolExecutor keeps a few worker threads (pool-worker_0 .. _3) and
hands them tasks from a queue; executor.map() returns the results in the
order of the input, whichever thread finished first.  process() stands for
I/O-bound work: it waits 20 ms (a wait on an Event that nobody sets, which
releases the GIL as a socket read would), then computes a little.  Twenty
items on four threads take about five waits, not twenty.

Checked: every result is right and in input order, and more than one worker
thread took part.
"""

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

WORKERS = 4
ITEMS = 20
IO_WAIT_S = 0.02


def process(n):
    threading.Event().wait(IO_WAIT_S)  # stands for an I/O wait
    return n * n, threading.current_thread().name


def main():
    data = list(range(ITEMS))
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=WORKERS,
                            thread_name_prefix="pool-worker") as executor:
        outcomes = list(executor.map(process, data))
    elapsed = time.perf_counter() - start

    results = [value for value, _ in outcomes]
    workers = sorted({name for _, name in outcomes})
    print(f"results: {results}")
    print(f"{ITEMS} tasks of {IO_WAIT_S * 1000:g} ms on {WORKERS} threads "
          f"took {elapsed:.3f}s (one by one: {ITEMS * IO_WAIT_S:.2f}s); "
          f"threads used: {', '.join(workers)}")
    if results != [n * n for n in data]:
        print("10_thread_pool: FAIL: wrong results or out of order",
              file=sys.stderr)
        sys.exit(1)
    if len(workers) < 2:
        print(f"10_thread_pool: FAIL: only {workers} ran tasks",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
