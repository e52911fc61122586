"""Release-heavy: the GIL is released and taken back a million times.

The main thread makes --calls (default 1,000,000) 1-byte os.read() calls on
/dev/zero.  Each call releases the GIL around the read(2) system call and
takes it back afterwards, so every call is one drop_gil plus one take_gil --
the most GIL traffic per second a single thread can make, and so the worst
case for a tool that records every acquisition and release.  The read itself
never blocks, so nothing else dilutes the cost: the loop is all GIL traffic,
system calls and bytecode.

With --threads N (N > 1) the calls are shared out between N worker threads
(worker-0 .. worker-N-1) instead, which adds contention: a thread that
releases the GIL for a read may find another one holding it when it comes
back, and then waits.

Reading it under gilscope: about one acquisition and one voluntary release
per call, each hold a few microseconds long.  With one thread there are no
waits to speak of; with several, waits and switches appear.

The script prints the time of its read loop alone (wall=..., measured with
time.perf_counter around the calls), so that interpreter start-up and
gilscope's report writing are not part of it: bench/overhead.py compares
this figure with and without the hooks.  cpu=... is the CPU time the whole
process (every thread, gilscope's drain thread too) used during the loop.
Default: about 0.5-1 s of wall time on a 2-core machine.
"""

import argparse
import os
import sys
import threading
import time

DEFAULT_CALLS = 1_000_000
DEFAULT_THREADS = 1


def read_loop(fd, calls):
    """`calls` 1-byte reads; each releases and retakes the GIL."""
    read = os.read  # a local: the loop should be the calls, not lookups
    got = 0
    for _ in range(calls):
        got += len(read(fd, 1))
    return got


def status_kib(field):
    """A figure of this process from /proc/self/status, in KiB (None if absent)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS,
                        help="os.read calls in all (default %(default)s)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="threads sharing the calls; 1 means the main "
                             "thread alone (default %(default)s)")
    parser.add_argument("--rss", action="store_true",
                        help="also print this process's resident memory (VmRSS) "
                             "before and after the loop and its peak (VmHWM), in KiB")
    args = parser.parse_args()
    if args.calls < 0 or args.threads < 1:
        parser.error("--calls must be >= 0 and --threads >= 1")

    fd = os.open("/dev/zero", os.O_RDONLY)
    rss_start = status_kib("VmRSS")
    try:
        if args.threads == 1:
            start, cpu_start = time.perf_counter(), time.process_time()
            got = read_loop(fd, args.calls)
            wall = time.perf_counter() - start
        else:
            shares = [args.calls // args.threads + (i < args.calls % args.threads)
                      for i in range(args.threads)]
            counts = [0] * args.threads

            def worker(index):
                counts[index] = read_loop(fd, shares[index])

            threads = [threading.Thread(target=worker, name=f"worker-{i}", args=(i,))
                       for i in range(args.threads)]
            start, cpu_start = time.perf_counter(), time.process_time()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
            got = sum(counts)
        cpu = time.process_time() - cpu_start
    finally:
        os.close(fd)

    print(f"release_heavy: threads={args.threads} calls={args.calls} "
          f"bytes={got} wall={wall:.3f}s cpu={cpu:.3f}s python={sys.version.split()[0]}")
    if args.rss:
        print(f"release_heavy: rss_start_kib={rss_start} rss_end_kib={status_kib('VmRSS')} "
              f"hwm_kib={status_kib('VmHWM')}")
    if got != args.calls:
        sys.exit(1)


if __name__ == "__main__":
    main()
