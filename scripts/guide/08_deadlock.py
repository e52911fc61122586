# gilscope: title = Deadlock: two locks taken in opposite orders
# gilscope: lesson = once both threads block on each other's lock the GIL goes idle and no thread ever takes it again: a deadlock holds Python locks, not the GIL
# gilscope: expect = deadlock
# gilscope: timeout = 10
# gilscope: modes = main
# gilscope: skip-reason = it never ends by design: copies in host threads or subinterpreters would leave threads the host cannot stop, and one run in the main mode already shows the lesson
"""Deadlock: thread_1 takes lock_1 then lock_2, thread_2 the reverse.

Each thread takes its first lock, then both meet at a Barrier, so both are
sure to hold their first lock before either asks for its second (a sleep
there, as often printed, only makes the deadlock likely).  Then thread_1
waits for lock_2, held by thread_2, which waits for lock_1, held by
thread_1: neither can go on, and as the threads are not daemons the program
never exits.  This is what the guide shows; under gilscope a watchdog ends
the run and reports the deadlock.  Run alone, stop it with Ctrl-C twice
(once for the main thread's join, once for the interpreter's own wait for
its threads at exit), or give --timeout S: the second acquire then gives up
after S seconds, and the script reports the deadlock and exits with 3.

The fixes are in 09_lock_ordering.py.
"""

import argparse
import sys
import threading

DEADLOCK_EXIT_STATUS = 3


def say(line):
    # One write per line, so the two threads' lines never mix; flushed, as
    # a watchdog may end the process while it hangs.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def worker(locks, first, second, start, timeout, gave_up):
    name = threading.current_thread().name
    with locks[first]:
        say(f"{name}: holds {first}, wants {second}")
        start.wait()  # both hold their first lock past this point
        if locks[second].acquire(timeout=-1 if timeout is None else timeout):
            locks[second].release()  # only once the other thread gave up
            say(f"{name}: got {second} once the other thread gave up")
        else:
            say(f"{name}: gave up waiting for {second} after {timeout:g}s")
            gave_up.append(name)


def main():
    parser = argparse.ArgumentParser(
        description="Two threads taking two locks in opposite orders.")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="give up the second acquire after S seconds and "
                             "exit 3 (default: wait forever, as the guide)")
    args = parser.parse_args()
    if args.timeout is not None and args.timeout < 0:
        parser.error("--timeout must be >= 0")

    locks = {"lock_1": threading.Lock(), "lock_2": threading.Lock()}
    start = threading.Barrier(2)
    gave_up = []
    threads = [
        threading.Thread(target=worker, name="thread_1",
                         args=(locks, "lock_1", "lock_2", start, args.timeout,
                               gave_up)),
        threading.Thread(target=worker, name="thread_2",
                         args=(locks, "lock_2", "lock_1", start, args.timeout,
                               gave_up)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()  # without --timeout: forever

    if gave_up:
        say(f"deadlock detected: {' and '.join(sorted(gave_up))} gave up "
            f"waiting for a lock the other thread held")
        sys.exit(DEADLOCK_EXIT_STATUS)
    print("08_deadlock: FAIL: both threads got both locks; expected a deadlock",
          file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
