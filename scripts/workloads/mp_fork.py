"""A multiprocessing.Pool of CPU work with the 'fork' start method.

Each worker process is a fork of the script's process, with a GIL of its own:
the work runs in parallel, and no worker ever waits for another's GIL.

Reading it under gilscope: report.json lists every worker under processes[]
(role "fork") and each worker's threads under threads[] with their own pid;
each process has its own GIL in gils[], busy while it crunches and never
contended by the other processes.
"""

import argparse
import multiprocessing
import time


def crunch(n):
    """Pure-Python arithmetic: holds its own process's GIL throughout."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def main(start_method="fork", doc=__doc__):
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=1_500_000)
    args = parser.parse_args()

    ctx = multiprocessing.get_context(start_method)
    start = time.perf_counter()
    with ctx.Pool(args.workers) as pool:
        results = pool.map(crunch, [args.iterations] * args.tasks)
    wall = time.perf_counter() - start
    expected = crunch(args.iterations)
    if results != [expected] * args.tasks:
        raise SystemExit(f"mp_{start_method}: wrong results {results}")
    print(f"mp_{start_method}: workers={args.workers} tasks={args.tasks} wall={wall:.3f}s")


if __name__ == "__main__":
    main()
