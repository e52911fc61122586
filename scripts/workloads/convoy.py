"""The convoy effect: an I/O thread stuck behind a CPU-bound thread.

Three threads run for --seconds (default 1.5):
  cpu   pure-Python arithmetic in `crunch()`; it never blocks, so it holds the
        GIL whenever it can get it.
  io    request/response round trips over a loopback socket pair: send a few
        bytes, block in recv() for the reply, repeat.
  echo  the other end of the pair: recv, send the bytes back, until EOF.

Every blocking call (io's recv, echo's recv and send) releases the GIL, and
the cpu thread picks it up at once.  A thread woken by its socket then has to
wait for the GIL: its timed wait expires after one switch interval
(sys.getswitchinterval(), 5 ms), it sets the drop request, and only then does
the cpu thread give the GIL up.  A round trip that takes microseconds alone
so costs about two switch intervals (one for echo, one for io), and the round
trip rate collapses, while the cpu thread loses almost nothing.

Reading it under gilscope: the cpu thread holds the GIL nearly all the time;
io and echo show short holds (voluntary releases into recv/send), each
preceded by a GIL wait of about 5 ms that ends in a wait timeout with the
drop request and a forced release by cpu.  With --alone, a first phase runs
the same round trips without the cpu thread (threads io-alone and echo-alone):
there the GIL waits are near zero and the rate is orders of magnitude higher.

The rate with the cpu thread varies from run to run: the GIL has no queue, so
when it is released a thread that is already on a core (io or echo, just woken
by its socket) sometimes wins it before the long-waiting cpu thread wakes up,
and for a while round trips get through without the 5 ms penalty.  Typically
it is about 100 round trips/s (two switch intervals each), sometimes a few
hundred or a few thousand.  The effect needs at least two cores: pinned to one
(taskset -c 0) the scheduler runs io and echo as soon as they wake.
"""

import argparse
import socket
import sys
import threading
import time

DEFAULT_SECONDS = 1.5
MESSAGE = b"ping"
CHUNK = 10_000        # crunch iterations between clock checks (well under 1 ms)
JOIN_GRACE_S = 20.0   # safety net: never hang, whatever happens


def crunch(deadline, out):
    """Pure-Python arithmetic until the deadline; never releases the GIL."""
    total = 0
    iterations = 0
    while time.monotonic() < deadline:
        for i in range(CHUNK):
            total += i * i % 7
        iterations += CHUNK
    out["cpu_iterations"] = iterations
    out["cpu_total"] = total


def echo(sock):
    """Echo server: send back whatever arrives, exit when the peer closes."""
    try:
        while True:
            data = sock.recv(64)
            if not data:
                return
            sock.sendall(data)
    finally:
        sock.close()


def io(sock, deadline, out):
    """Client: round trips until the deadline, then close (ends echo)."""
    trips = 0
    try:
        while time.monotonic() < deadline:
            sock.sendall(MESSAGE)
            got = b""
            while len(got) < len(MESSAGE):
                chunk = sock.recv(len(MESSAGE) - len(got))
                if not chunk:
                    raise RuntimeError("echo closed the connection early")
                got += chunk
            if got != MESSAGE:
                raise RuntimeError(f"bad reply {got!r}")
            trips += 1
    finally:
        out["trips"] = trips
        sock.close()


def run_phase(seconds, with_cpu, suffix=""):
    """Run io+echo (and cpu if with_cpu) for `seconds`; return the results."""
    out = {}
    io_sock, echo_sock = socket.socketpair()
    start = time.monotonic()
    deadline = start + seconds
    threads = [
        threading.Thread(target=echo, name="echo" + suffix,
                         args=(echo_sock,), daemon=True),
        threading.Thread(target=io, name="io" + suffix,
                         args=(io_sock, deadline, out), daemon=True),
    ]
    if with_cpu:
        threads.append(threading.Thread(target=crunch, name="cpu" + suffix,
                                        args=(deadline, out), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline + JOIN_GRACE_S - time.monotonic()))
    out["wall"] = time.monotonic() - start
    out["stuck"] = [t.name for t in threads if t.is_alive()]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS,
                        help="duration of each phase (default %(default)s)")
    parser.add_argument("--alone", action="store_true",
                        help="first measure round trips without the cpu "
                             "thread, for comparison")
    args = parser.parse_args()
    if not args.seconds > 0:
        parser.error("--seconds must be > 0")

    alone = run_phase(args.seconds, with_cpu=False, suffix="-alone") if args.alone else None
    convoy = run_phase(args.seconds, with_cpu=True)

    rate = convoy.get("trips", 0) / convoy["wall"]
    cpu_rate = convoy.get("cpu_iterations", 0) / convoy["wall"]
    line = (f"convoy: seconds={args.seconds:g} with_cpu={rate:.0f} rt/s "
            f"(cpu {cpu_rate / 1e6:.1f} M it/s, wall={convoy['wall']:.3f}s)")
    stuck = convoy["stuck"]
    if alone is not None:
        alone_rate = alone.get("trips", 0) / alone["wall"]
        slowdown = alone_rate / rate if rate else float("inf")
        line += (f" alone={alone_rate:.0f} rt/s (wall={alone['wall']:.3f}s)"
                 f" slowdown={slowdown:.0f}x")
        stuck = alone["stuck"] + stuck
    line += (f" switch_interval={sys.getswitchinterval() * 1000:g}ms"
             f" python={sys.version.split()[0]}")
    if stuck:
        line += f" STUCK={','.join(stuck)}"
    print(line)
    if stuck:
        sys.exit(1)


if __name__ == "__main__":
    main()
