"""Representative standard-library threading behaviour, printed deterministically.

Every result line starts with "SEM ". The same CPython must print the same
lines under plain python and inside gilscope (tests/semantics/CMakeLists.txt
compares them): the host must not change what a threaded program computes.

    python threading_semantics.py              the body on the main thread
    python threading_semantics.py --in-thread  the body on a non-main thread
                                               (what `gilscope run --mode threads` does)
"""
import atexit
import concurrent.futures
import contextvars
import os
import queue
import signal
import sys
import threading

lines = []


def say(*parts):
    lines.append("SEM " + " ".join(str(p) for p in parts))


def locks():
    lock = threading.Lock()
    with lock:
        say("lock held, second acquire:", lock.acquire(blocking=False), "locked:", lock.locked())
    say("lock free, timed acquire:", lock.acquire(timeout=0.5))
    lock.release()
    try:
        lock.release()
    except RuntimeError as e:
        say("release unlocked lock:", type(e).__name__, e)
    r = threading.RLock()
    with r:
        with r:
            say("rlock re-entered:", r._is_owned())
    got = []
    t = threading.Thread(target=lambda: got.append(r.acquire(blocking=False)))
    with r:
        t.start()
        t.join()
    say("rlock from other thread while held:", got)


def condition_and_queue():
    cond = threading.Condition()
    items = []

    def producer():
        for i in range(5):
            with cond:
                items.append(i)
                cond.notify_all()

    consumed = []
    t = threading.Thread(target=producer)
    with cond:
        t.start()
        cond.wait_for(lambda: len(items) == 5, timeout=30)
        consumed = list(items)
    t.join()
    say("condition saw:", consumed)

    q = queue.Queue()
    out = []

    def worker():
        while True:
            item = q.get()
            if item is None:
                q.task_done()
                return
            out.append(item * 10)
            q.task_done()

    ws = [threading.Thread(target=worker) for _ in range(3)]
    [w.start() for w in ws]
    for i in range(30):
        q.put(i)
    q.join()
    for _ in ws:
        q.put(None)
    [w.join() for w in ws]
    say("queue processed:", sorted(out) == [i * 10 for i in range(30)], len(out))
    lq, pq = queue.LifoQueue(), queue.PriorityQueue()
    for x in (3, 1, 2):
        lq.put(x)
        pq.put(x)
    say("lifo:", [lq.get() for _ in range(3)], "priority:", [pq.get() for _ in range(3)])
    try:
        queue.Queue().get(timeout=0.01)
    except queue.Empty:
        say("empty queue get: Empty")


def semaphore_event_barrier():
    sem = threading.BoundedSemaphore(2)
    inside, peak = [0], [0]
    guard = threading.Lock()
    gate = threading.Barrier(4)

    def enter():
        gate.wait()
        with sem:
            with guard:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            with guard:
                inside[0] -= 1

    ts = [threading.Thread(target=enter) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    say("semaphore peak <= 2:", peak[0] <= 2)
    try:
        sem.release()
    except ValueError as e:
        say("bounded semaphore over-release:", type(e).__name__)

    ev = threading.Event()
    say("event before set:", ev.is_set(), ev.wait(timeout=0.01))
    threading.Timer(0.01, ev.set).start()
    say("event set by a timer:", ev.wait(timeout=30))

    actions = []
    b = threading.Barrier(3, action=lambda: actions.append("action"))
    indices = []
    ts = [threading.Thread(target=lambda: indices.append(b.wait())) for _ in range(3)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    say("barrier indices:", sorted(indices), "actions:", actions)
    b2 = threading.Barrier(2)
    b2.abort()
    try:
        b2.wait()
    except threading.BrokenBarrierError:
        say("aborted barrier: BrokenBarrierError")


def executor_and_locals():
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
        say("pool map:", list(ex.map(lambda x: x * x, range(10))))
        fut = ex.submit(lambda: 1 / 0)
        try:
            fut.result()
        except ZeroDivisionError as e:
            say("pool exception:", type(e).__name__, e)
        done = [f.result() for f in concurrent.futures.as_completed([ex.submit(pow, 2, k) for k in range(8)])]
        say("as_completed:", sorted(done))

    local = threading.local()
    local.value = "outer"
    seen = []

    def look(i):
        seen.append((i, getattr(local, "value", None)))
        local.value = i

    ts = [threading.Thread(target=look, args=(i,)) for i in range(3)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    say("thread-local:", sorted(seen), "still:", local.value)

    var = contextvars.ContextVar("var", default="default")
    var.set("set here")
    got = []
    t = threading.Thread(target=lambda: got.append(var.get()))
    t.start()
    t.join()
    ctx = contextvars.copy_context()
    t = threading.Thread(target=lambda: got.append(ctx.run(var.get)))
    t.start()
    t.join()
    say("contextvars in threads:", got)


def exceptions_exit_daemon():
    caught = []
    old = threading.excepthook
    threading.excepthook = lambda args: caught.append((args.exc_type.__name__, str(args.exc_value), args.thread.name))

    def boom():
        raise ValueError("in thread")

    t = threading.Thread(target=boom, name="boomer")
    t.start()
    t.join()
    t = threading.Thread(target=sys.exit, args=(3,), name="exiter")
    t.start()
    t.join()
    threading.excepthook = old
    say("excepthook saw:", caught, "exiter alive:", t.is_alive())
    say("excepthook restored to default:", threading.excepthook is threading.__excepthook__)

    forever = threading.Event()
    d = threading.Thread(target=forever.wait, daemon=True)
    d.start()
    say("daemon thread:", d.daemon, d.is_alive())
    before = threading.active_count()
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    say("active_count grows by one:", threading.active_count() - before)
    stop.set()
    t.join()
    say("ident distinct:", t.ident != threading.get_ident(), "native id int:", isinstance(t.native_id, int))


def signals():
    on_main = threading.current_thread() is threading.main_thread()
    received = []
    try:
        old = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    except ValueError as e:
        say("signal.signal off the main thread:", type(e).__name__)
        return
    os.kill(os.getpid(), signal.SIGUSR1)
    for _ in range(1000):  # the handler runs at the next bytecode boundaries
        if received:
            break
    signal.signal(signal.SIGUSR1, old)
    say("signal handled on main thread:", on_main, received == [signal.SIGUSR1])


def body():
    locks()
    condition_and_queue()
    semaphore_event_barrier()
    executor_and_locals()
    exceptions_exit_daemon()
    signals()
    atexit.register(print, "SEM atexit registered first, runs last")
    atexit.register(print, "SEM atexit registered last, runs first")
    for line in lines:
        print(line)
    sys.stdout.flush()


if "--in-thread" in sys.argv:
    runner = threading.Thread(target=body)
    runner.start()
    runner.join()
else:
    body()
