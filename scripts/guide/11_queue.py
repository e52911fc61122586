# gilscope: title = Producer and consumer over a queue.Queue
# gilscope: lesson = producer and consumer take turns: each blocks on the bounded queue (full or empty), releasing the GIL, so the GIL changes hands often, by voluntary releases, with short waits
# gilscope: expect = ok
# gilscope: timeout = 30
# gilscope: modes = main, threads, subinterpreters, shared-subinterpreters, processes
"""A producer thread and a consumer thread connected by a queue.Queue.

queue.Queue does its own locking, so the threads need no lock of their own.
The queue is bounded (5 items): put() blocks while it is full, get() while
it is empty, so the producer can never run far ahead of the consumer.  When
the producer is done it puts a sentinel (None), which tells the consumer to
stop; items come out in the order they went in.

Checked: the consumer got every item, once, in order, and then stopped.
"""

import queue
import sys
import threading

ITEMS = 200
QUEUE_SIZE = 5
SENTINEL = None  # "no more items"
JOIN_DEADLINE_S = 20.0


def producer(q):
    for i in range(ITEMS):
        q.put(f"item-{i}")  # blocks while the queue is full
    q.put(SENTINEL)


def consumer(q, consumed):
    while True:
        item = q.get()  # blocks while the queue is empty
        if item is SENTINEL:
            return
        consumed.append(item)


def main():
    q = queue.Queue(maxsize=QUEUE_SIZE)
    consumed = []
    threads = [threading.Thread(target=producer, name="producer", args=(q,)),
               threading.Thread(target=consumer, name="consumer",
                                args=(q, consumed))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_DEADLINE_S)

    print(f"consumed {len(consumed)} of {ITEMS} items: "
          f"{consumed[:3]} ... {consumed[-2:]}")
    expected = [f"item-{i}" for i in range(ITEMS)]
    if any(t.is_alive() for t in threads):
        print("11_queue: FAIL: a thread is still running", file=sys.stderr)
        sys.exit(1)
    if consumed != expected:
        print("11_queue: FAIL: items missing, repeated or out of order",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
