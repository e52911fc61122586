# gilscope: title = asyncio.gather: concurrency in one thread
# gilscope: lesson = one thread, one event loop: the GIL is held only in short bursts between the loop's waits (it sleeps in its selector, GIL released), and no other thread of the script waits for it
# gilscope: expect = ok
# gilscope: timeout = 30
# gilscope: modes = main, threads, subinterpreters, shared-subinterpreters, processes
# gilscope: modes-3.12 = main, threads, shared-subinterpreters, processes
# gilscope: skip-reason-3.12 = CPython 3.12.1 aborts when an own-GIL subinterpreter that imported ssl (asyncio does) is destroyed
# gilscope: modes-3.11 = main, threads, processes
# gilscope: skip-reason-3.11 = own-GIL subinterpreters need 3.12+, and two shared-GIL copies clash: 3.11's _asyncio keeps the running loop in process-wide state
"""Five coroutines waiting at once in one thread, with asyncio.gather.

Each task awaits asyncio.sleep(d), standing for a network call.  While a
task waits, the event loop runs the others, so all five waits overlap: the
whole run takes about the longest wait, not their sum.  There is one thread
only; concurrency comes from the tasks giving control back at each await.

Checked: the results are right, and the run took less than 0.8 x the sum of
the waits (it should take about the longest, which is 0.3 x the sum).
"""

import asyncio
import sys
import time

DELAYS_S = (0.3, 0.1, 0.2, 0.15, 0.25)


async def fetch(n, delay_s):
    await asyncio.sleep(delay_s)  # stands for a network call
    return f"result {n} after {delay_s:g}s"


async def run_all():
    tasks = [asyncio.create_task(fetch(n, d), name=f"fetch-{n}")
             for n, d in enumerate(DELAYS_S)]
    return await asyncio.gather(*tasks)


def main():
    start = time.perf_counter()
    results = asyncio.run(run_all())
    elapsed = time.perf_counter() - start

    for line in results:
        print(line)
    total, longest = sum(DELAYS_S), max(DELAYS_S)
    print(f"took {elapsed:.3f}s; waits sum to {total:g}s, longest {longest:g}s")
    expected = [f"result {n} after {d:g}s" for n, d in enumerate(DELAYS_S)]
    if results != expected:
        print("12_asyncio: FAIL: wrong results", file=sys.stderr)
        sys.exit(1)
    if elapsed >= 0.8 * total:
        print(f"12_asyncio: FAIL: took {elapsed:.3f}s, not much less than "
              f"the {total:g}s of the waits one after another", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
