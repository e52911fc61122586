"""The convoy effect: an I/O thread stuck behind a CPU-bound thread.

A client talks to a server process over a loopback socket pair, while a
CPU-bound thread runs beside it.  For --seconds (default 1.5) the script runs
these threads:
  cpu   pure-Python arithmetic in `crunch()`; it never blocks, so it holds the
        GIL whenever it can get it.
  app   the application: it sends a request (--pipeline of them, default 1,
        in one sendall) and waits for the replies, again and again.
  io    the connection's reader thread, as in many client libraries: it
        blocks in recv() for exactly one length-framed reply, hands it to app
        through a queue, and goes straight back into recv().
and a server process (started with sys.executable, so it has its own GIL and
answers with real, fixed latency): for each request it waits --latency-ms
(default 1.0), then sends a fixed-size reply stamped with the time it sent
it; it exits when the client closes the connection.

Every blocking call releases the GIL, and the cpu thread picks it up at once.
A thread woken by its socket or its queue then has to wait for the GIL: its
timed wait expires after one switch interval (sys.getswitchinterval(), 5 ms),
it sets the drop request, and only then does the cpu thread give the GIL up.
So a round trip that takes about 1.3 ms alone (the 1 ms latency plus
wake-ups) costs one to two switch intervals more (io always waits one, app
often another): the rate falls from about 750 round trips/s to 80-140,
while the cpu thread loses almost nothing.  Each reply carries the server's
send time, so the script also prints io_lag, the median time from the server
sending a reply to io running Python code for it: the wake-up plus io's GIL
wait, measured without gilscope (about 0.03 ms alone, 4-8 ms with cpu).

Reading it under gilscope: the cpu thread holds the GIL nearly all the time.
io shows one short hold per reply (read it, queue it, back into recv), each
preceded by a GIL wait of about one switch interval (p50 4-5 ms) that ends
when cpu is forced to release.  The server process is not traced (it has its
own GIL).  With --alone, a first phase runs the same round trips without the
cpu thread (threads io-alone and app-alone): there the GIL waits are near
zero and the rate is several times higher.

Why io does not send the requests itself: a send returns at once, and a
thread that releases the GIL for a call that does not block usually takes it
back before the sleeping cpu thread has woken up.  A client that sent and
received in one thread would show one such near-zero wait per round trip,
as many as its long ones, and its median wait would hide the convoy.
--pipeline N shows a milder form: the N replies come back one latency apart,
so the later ones arrive while io waits for the GIL for an earlier one, and
io then reads them without blocking; the rate goes up, and many of io's
waits are near zero.
"""

import argparse
import queue
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

DEFAULT_SECONDS = 1.5
DEFAULT_LATENCY_MS = 1.0
DEFAULT_PIPELINE = 1
REQUEST = struct.Struct("!Q")      # sequence number: 8 bytes
REPLY = struct.Struct("!QQ48x")    # sequence number, send time (ns): 64 bytes
CHUNK = 10_000        # crunch iterations between clock checks (well under 1 ms)
REPLY_TIMEOUT_S = 10.0  # app gives up on a reply after this long
JOIN_GRACE_S = 20.0   # safety net: never hang, whatever happens
SERVER_EXIT_S = 2.0   # time the server gets to exit on EOF before terminate()

# The server process: argv = socket fd, latency in ms, request and reply
# struct formats.  One request at a time: wait the latency, send the reply.
SERVER_CODE = r"""
import socket, struct, sys, time

sock = socket.socket(fileno=int(sys.argv[1]))
latency_s = float(sys.argv[2]) / 1000
request, reply = struct.Struct(sys.argv[3]), struct.Struct(sys.argv[4])
pending = bytearray()
try:
    while True:
        data = sock.recv(65536)
        if not data:
            break                      # the client closed: done
        pending += data
        while len(pending) >= request.size:
            (seq,) = request.unpack_from(pending)
            del pending[:request.size]
            time.sleep(latency_s)      # the service latency
            sock.sendall(reply.pack(seq, time.monotonic_ns()))
except (BrokenPipeError, ConnectionResetError):
    pass                               # the client went away: done too
finally:
    sock.close()
"""


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


def recv_exact(sock, size):
    """Blocking read of exactly `size` bytes; b"" if the peer closed first."""
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            return b""
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def io(sock, replies):
    """Reader: block in recv for each reply, hand it to app; stop at EOF."""
    try:
        while True:
            reply = recv_exact(sock, REPLY.size)
            if not reply:
                return
            replies.put((reply, time.monotonic_ns()))  # keeps the GIL
    finally:
        replies.put(None)  # EOF (or an error): app must not wait for more


def app(sock, replies, deadline, pipeline, out):
    """Send requests, wait for their replies; at the deadline close our side."""
    seq = 1  # 0 was the handshake
    trips = 0
    lags = []
    try:
        while time.monotonic() < deadline:
            sock.sendall(b"".join(REQUEST.pack(seq + k) for k in range(pipeline)))
            for k in range(pipeline):
                item = replies.get(timeout=REPLY_TIMEOUT_S)
                if item is None:
                    raise RuntimeError("the server closed the connection early")
                reply, seen_ns = item
                got_seq, sent_ns = REPLY.unpack(reply)
                if got_seq != seq + k:
                    raise RuntimeError(f"reply {got_seq} for request {seq + k}")
                lags.append(seen_ns - sent_ns)
                trips += 1
            seq += pipeline
        out["ok"] = True
    finally:
        out["trips"] = trips
        out["lags_ns"] = lags
        # EOF for the server, which exits and closes its end: io sees EOF.
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def start_server(latency_ms):
    """Start the server process; return (process, our end of the socket)."""
    if not sys.executable:
        raise RuntimeError("sys.executable is unknown: cannot start the server")
    ours, theirs = socket.socketpair()
    try:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER_CODE, str(theirs.fileno()),
             repr(latency_ms), REQUEST.format, REPLY.format],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()  # the server has its own copy
    return server, ours


def stop_server(server):
    """Reap the server: it exits on EOF; terminate (then kill) it if not."""
    try:
        server.wait(timeout=SERVER_EXIT_S)
    except subprocess.TimeoutExpired:
        server.terminate()
        try:
            server.wait(timeout=SERVER_EXIT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_phase(seconds, latency_ms, pipeline, with_cpu, suffix=""):
    """Run app+io (and cpu if with_cpu) for `seconds`; return the results."""
    out = {}
    server, sock = start_server(latency_ms)
    try:
        # One round trip before the clock starts, so that the server's
        # start-up is not counted (and a server that fails shows up here).
        sock.settimeout(REPLY_TIMEOUT_S)
        sock.sendall(REQUEST.pack(0))
        if not recv_exact(sock, REPLY.size):
            raise RuntimeError(f"the server exited (status {server.wait()})")
        sock.settimeout(None)  # plain blocking calls from here on

        replies = queue.SimpleQueue()
        start = time.monotonic()
        deadline = start + seconds
        threads = [
            threading.Thread(target=io, name="io" + suffix,
                             args=(sock, replies), daemon=True),
            threading.Thread(target=app, name="app" + suffix,
                             args=(sock, replies, deadline, pipeline, out),
                             daemon=True),
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
    finally:
        try:
            # EOF both ways: ends the server, and wakes io if it is stuck in
            # recv (close() alone would do neither while io is in recv).
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        stop_server(server)
    return out


def summary(phase):
    """'N rt/s (io_lag=X ms)' for one phase."""
    rate = phase.get("trips", 0) / phase["wall"]
    lags = phase.get("lags_ns")
    lag = f"{statistics.median(lags) / 1e6:.2f}ms" if lags else "n/a"
    return rate, f"{rate:.0f} rt/s (io_lag={lag}, wall={phase['wall']:.3f}s)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS,
                        help="duration of each phase (default %(default)s)")
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_MS,
                        help="server time per request (default %(default)s)")
    parser.add_argument("--pipeline", type=int, default=DEFAULT_PIPELINE,
                        help="requests sent at once (default %(default)s)")
    parser.add_argument("--alone", action="store_true",
                        help="first measure round trips without the cpu "
                             "thread, for comparison")
    args = parser.parse_args()
    if not args.seconds > 0:
        parser.error("--seconds must be > 0")
    if not 0 <= args.latency_ms <= 1000:
        parser.error("--latency-ms must be between 0 and 1000")
    if not 1 <= args.pipeline <= 1000:
        parser.error("--pipeline must be between 1 and 1000")

    phase = dict(seconds=args.seconds, latency_ms=args.latency_ms,
                 pipeline=args.pipeline)
    alone = run_phase(**phase, with_cpu=False, suffix="-alone") if args.alone else None
    convoy = run_phase(**phase, with_cpu=True)

    rate, text = summary(convoy)
    cpu_rate = convoy.get("cpu_iterations", 0) / convoy["wall"]
    line = (f"convoy: seconds={args.seconds:g} latency={args.latency_ms:g}ms "
            f"pipeline={args.pipeline} with_cpu={text} "
            f"cpu={cpu_rate / 1e6:.1f}M it/s")
    stuck = convoy["stuck"]
    failed = not convoy.get("ok")
    if alone is not None:
        alone_rate, alone_text = summary(alone)
        slowdown = alone_rate / rate if rate else float("inf")
        line += f" alone={alone_text} slowdown={slowdown:.1f}x"
        stuck = alone["stuck"] + stuck
        failed = failed or not alone.get("ok")
    line += (f" switch_interval={sys.getswitchinterval() * 1000:g}ms"
             f" python={sys.version.split()[0]}")
    if stuck:
        line += f" STUCK={','.join(stuck)}"
    if failed:
        line += " FAILED"
    print(line)
    if stuck or failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
