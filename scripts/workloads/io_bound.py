"""I/O-bound threads: the GIL is free most of the time.

N client threads (io-0 .. io-N-1) each own a loopback socket pair with a
partner thread (echo-0 .. echo-N-1).  Every round the client sends a small
request and blocks in recv() until the partner answers; the partner waits
--latency-ms (a select() timeout standing in for network or disk latency)
before echoing the request back.  So 2*N threads run, plus the main thread,
and nearly all their time is spent in blocking syscalls (recv, select) that
release the GIL.  Nothing leaves the process.

Reading it under gilscope: the GIL is idle most of the run.  Acquisitions are
many and short (a few Python lines per wake-up), releases are voluntary
(a blocking call) rather than forced, and waits for the GIL are rare and
short: there is no CPU-bound thread to convoy behind.  Compare with
cpu_bound.py, where the GIL is busy the whole time.
Defaults: 4 client threads, 450 rounds each at 2 ms latency, about 1 s wall.
"""

import argparse
import select
import socket
import sys
import threading
import time

DEFAULT_THREADS = 4
DEFAULT_ROUNDS = 450
DEFAULT_LATENCY_MS = 2.0
MESSAGE_SIZE = 16
JOIN_DEADLINE_S = 25.0  # safety net: never hang, whatever happens


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


def echo(sock, latency_s):
    """Partner: wait `latency_s`, echo the request back; exit on EOF."""
    try:
        while True:
            request = recv_exact(sock, MESSAGE_SIZE)
            if not request:
                return
            select.select([], [], [], latency_s)  # artificial latency
            sock.sendall(request)
    finally:
        sock.close()


def client(sock, rounds, done, index):
    """Client: send a request, block in recv() for the reply, repeat."""
    try:
        for r in range(rounds):
            request = f"{index:03d}:{r:011d}".encode().ljust(MESSAGE_SIZE)[:MESSAGE_SIZE]
            sock.sendall(request)
            reply = recv_exact(sock, MESSAGE_SIZE)
            if reply != request:
                raise RuntimeError(f"io-{index}: bad reply in round {r}")
            done[index] = r + 1
    finally:
        sock.close()  # the partner sees EOF and exits


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="client threads, each with an echo partner "
                             "(default %(default)s)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help="request/response rounds per client "
                             "(default %(default)s)")
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_MS,
                        help="partner's wait before each reply "
                             "(default %(default)s)")
    args = parser.parse_args()
    if args.threads < 1 or args.rounds < 0 or args.latency_ms < 0:
        parser.error("--threads must be >= 1, --rounds and --latency-ms >= 0")

    latency_s = args.latency_ms / 1000.0
    done = [0] * args.threads
    threads = []
    for i in range(args.threads):
        client_sock, echo_sock = socket.socketpair()
        threads.append(threading.Thread(target=echo, name=f"echo-{i}",
                                        args=(echo_sock, latency_s),
                                        daemon=True))
        threads.append(threading.Thread(target=client, name=f"io-{i}",
                                        args=(client_sock, args.rounds, done, i),
                                        daemon=True))

    start = time.perf_counter()
    for t in threads:
        t.start()
    deadline = time.monotonic() + JOIN_DEADLINE_S
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    wall = time.perf_counter() - start

    stuck = [t.name for t in threads if t.is_alive()]
    expected = args.threads * args.rounds
    print(f"io_bound: threads={args.threads} rounds={sum(done)}/{expected} "
          f"latency={args.latency_ms:g}ms wall={wall:.3f}s "
          f"python={sys.version.split()[0]}"
          + (f" STUCK={','.join(stuck)}" if stuck else ""))
    if stuck or sum(done) != expected:
        sys.exit(1)


if __name__ == "__main__":
    main()
