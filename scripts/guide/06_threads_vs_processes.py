# gilscope: title = Threads vs processes for CPU work
# gilscope: lesson = in the threads phase the two cpu-thread workers take turns holding the GIL (about one switch interval each, forced releases); in the processes phase the work runs in child processes with GILs of their own
# gilscope: expect = ok
# gilscope: timeout = 60
# gilscope: modes = main, processes
# gilscope: skip-reason = subinterpreters cannot start child processes (an isolated one forbids fork, and in a legacy shared one the forked children fail); in a host thread the pool fails to pickle burn(), which it sends by name and looks up in the real __main__ module, not the copy's
"""The same CPU-bound work in two threads, then in two processes.

burn() is pure-Python arithmetic: it never releases the GIL on purpose.  Run
in two threads (a ThreadPoolExecutor), the threads take turns on the one GIL,
so two of them take about as long as running the work twice in a row.  Run
in two processes (a ProcessPoolExecutor, same code otherwise), each worker
has its own interpreter and GIL and, given two free cores, both run at once:
the processes phase should be close to twice as fast, minus the cost of
starting the workers.  On a busy machine the timings vary, so they are only
printed.

Checked: both phases compute the same results.
"""

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

WORKERS = 2
WORK = 2_000_000  # loop iterations per task


def burn(n):
    """Pure-Python arithmetic: holds the GIL for the whole loop."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def run_phase(executor):
    start = time.perf_counter()
    with executor:
        results = list(executor.map(burn, [WORK] * WORKERS))
    return results, time.perf_counter() - start


def main():
    print(f"{WORKERS} workers x {WORK} iterations; cpu_count={os.cpu_count()}")
    thread_results, thread_s = run_phase(ThreadPoolExecutor(
        max_workers=WORKERS, thread_name_prefix="cpu-thread"))
    print(f"threads:   {thread_s:.3f}s")
    process_results, process_s = run_phase(
        ProcessPoolExecutor(max_workers=WORKERS))
    print(f"processes: {process_s:.3f}s "
          f"(speed-up over threads: {thread_s / process_s:.2f}x)")

    if thread_results != process_results:
        print(f"06_threads_vs_processes: FAIL: threads gave {thread_results}, "
              f"processes {process_results}", file=sys.stderr)
        sys.exit(1)
    print(f"both gave {thread_results}")


if __name__ == "__main__":
    main()
