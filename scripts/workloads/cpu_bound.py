"""CPU-bound threads contending for the GIL.

N threads (worker-0 .. worker-N-1) each run a pure-Python arithmetic loop in
`worker()`: no sleeps, no I/O, no C calls that release the GIL.  Only one of
them can run bytecode at a time, so adding threads adds no throughput.

Reading it under gilscope: the GIL is held close to 100% of the run, passed
between the workers in slices of about one switch interval
(sys.getswitchinterval(), 5 ms by default).  Almost every release is forced:
a waiting worker's timed wait expires, it sets the drop request, and the
holder gives the GIL up.  Each worker spends about (N-1)/N of the run waiting
for the GIL, and the main thread only shows up at start and at the joins.
Defaults: 2 threads, sized so one run takes about 1 s of wall time under
CPython 3.13 on a 2-core machine.
"""

import argparse
import sys
import threading
import time

DEFAULT_THREADS = 2
DEFAULT_ITERATIONS = 8_000_000


def worker(iterations, results, index):
    """Pure-Python arithmetic: holds the GIL for the whole loop."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    results[index] = total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="number of worker threads (default %(default)s)")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                        help="loop iterations per thread (default %(default)s)")
    args = parser.parse_args()
    if args.threads < 1 or args.iterations < 0:
        parser.error("--threads must be >= 1 and --iterations >= 0")

    results = [0] * args.threads
    threads = [
        threading.Thread(target=worker, name=f"worker-{i}",
                         args=(args.iterations, results, i))
        for i in range(args.threads)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start

    print(f"cpu_bound: threads={args.threads} iterations={args.iterations} "
          f"total={sum(results)} wall={wall:.3f}s "
          f"python={sys.version.split()[0]}")


if __name__ == "__main__":
    main()
