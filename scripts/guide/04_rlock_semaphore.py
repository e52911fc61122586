# gilscope: title = RLock and Semaphore
# gilscope: lesson = eight sem-worker threads, at most three inside the Semaphore at once; the others wait on the Semaphore, not on the GIL, so their GIL waits stay short
# gilscope: expect = ok
# gilscope: timeout = 30
# gilscope: modes = main, threads, subinterpreters, shared-subinterpreters, processes
"""RLock: re-entrant by its owner.  Semaphore(3): at most three at a time.

A plain Lock taken a second time by the thread that holds it blocks forever
(the thread waits for itself); here the second attempt is non-blocking, so
it just reports failure.  An RLock counts its owner's acquisitions instead:
the owner may take it again (a locked function calling another locked
function), and it is free once every acquire has been released.

A Semaphore(3) lets at most three threads into a section.  Eight threads
(sem-worker-0 .. 7) enter it; each counts itself in and out under a small
Lock, keeping the peak.  The first three in wait on an Event that is set
when three are inside at once, so the peak reaches three without any sleep;
later ones find the Event set and leave at once.

Checked: the RLock is taken twice by one thread and is then free; the plain
Lock refuses a second acquire; the Semaphore's peak concurrency is exactly 3.
"""

import sys
import threading

LIMIT = 3
WORKERS = 8
WAIT_S = 10.0  # safety net: a broken Semaphore fails the check, never hangs


def fail(reason):
    print(f"04_rlock_semaphore: FAIL: {reason}", file=sys.stderr)
    sys.exit(1)


def rlock_demo():
    lock = threading.Lock()
    lock.acquire()
    plain_again = lock.acquire(blocking=False)  # blocking=True: deadlock
    lock.release()
    print(f"plain Lock, second acquire by its holder: "
          f"{'taken' if plain_again else 'refused (would block forever)'}")

    rlock = threading.RLock()
    depth = []

    def owner():
        with rlock:
            with rlock:  # the same thread again: fine for an RLock
                depth.append(2)

    t = threading.Thread(target=owner, name="rlock-owner")
    t.start()
    t.join()
    free_after = rlock.acquire(blocking=False)  # by a thread not its owner
    if free_after:
        rlock.release()
    print(f"RLock taken twice by rlock-owner: {bool(depth)}; "
          f"free afterwards: {free_after}")
    if plain_again:
        fail("a plain Lock was acquired twice by the same thread")
    if not depth or not free_after:
        fail("the RLock was not re-entered, or not released after")


class Section:
    """Counts the threads inside the Semaphore and keeps the peak."""

    def __init__(self):
        self.semaphore = threading.Semaphore(LIMIT)
        self.count_lock = threading.Lock()
        self.inside = 0
        self.peak = 0
        self.full = threading.Event()  # set when LIMIT are inside at once


def sem_worker(section):
    with section.semaphore:
        with section.count_lock:
            section.inside += 1
            section.peak = max(section.peak, section.inside)
            if section.inside == LIMIT:
                section.full.set()
        section.full.wait(WAIT_S)  # hold the slot until the section is full
        with section.count_lock:
            section.inside -= 1


def semaphore_demo():
    section = Section()
    threads = [threading.Thread(target=sem_worker, name=f"sem-worker-{i}",
                                args=(section,))
               for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"Semaphore({LIMIT}) with {WORKERS} threads: "
          f"peak concurrency {section.peak}")
    if section.peak != LIMIT:
        fail(f"peak concurrency {section.peak}, expected exactly {LIMIT}")


def main():
    rlock_demo()
    semaphore_demo()


if __name__ == "__main__":
    main()
