# gilscope: title = Starting and joining threads
# gilscope: lesson = ten short-lived task threads each hold the GIL briefly; the main thread mostly waits in join(), which releases the GIL
# gilscope: expect = ok
# gilscope: timeout = 30
# gilscope: modes = main, threads, subinterpreters, shared-subinterpreters, processes
"""Start ten threads, then wait for all of them with join().

Each thread (task-0 .. task-9) prints "Task N started" and records that it
ran.  start() only schedules a thread: the order of the lines is up to the
OS and the GIL, and it changes from run to run.  join() blocks the main
thread until that thread has finished; without it, the main thread could
check the results before the tasks have run.

Checked: after the joins, all ten tasks have run, each exactly once.
"""

import sys
import threading

TASKS = 10


def task(n, ran, ran_lock):
    # One write per line, so lines printed by different threads never mix.
    sys.stdout.write(f"Task {n} started\n")
    with ran_lock:
        ran.append(n)


def main():
    ran = []
    ran_lock = threading.Lock()
    threads = [threading.Thread(target=task, name=f"task-{n}",
                                args=(n, ran, ran_lock))
               for n in range(TASKS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    print(f"all {len(threads)} threads joined; tasks that ran: {sorted(ran)}")
    if sorted(ran) != list(range(TASKS)):
        print(f"02_start_threads: FAIL: expected tasks 0..{TASKS - 1} once "
              f"each, got {sorted(ran)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
