"""An echo server measured alone, then beside one CPU-bound thread.

David Beazley's convoy demo ("Understanding the Python GIL", 2010), in two
phases of --seconds each (default 1.5):

  alone     the echo-server thread serves one connection on 127.0.0.1: it
            blocks in recv() for a request, sends it back with sendall(), and
            blocks again.  A client in a child process (started with
            sys.executable, so it has a GIL of its own) sends a 16-byte
            request, waits for the echo, and sends the next one, as fast as
            it can.
  with_cpu  the same, while a thread named cpu runs pure-Python arithmetic
            beside the server, never blocking.

Each recv() releases the GIL and cpu takes it.  When the next request
arrives, echo-server has to wait for cpu to give the GIL back, and cpu
only does when the switch interval (sys.getswitchinterval(), 5 ms) has run
out and the waiter's drop request forces it off: about one switch interval
per round trip that finds the GIL taken.  The round trip rate falls from
thousands per second to a few hundred or less (how far depends on how often
cpu wins the GIL before the next request arrives, hence on the machine).

The server counts the requests it answers; the main thread reads the count
at the start and end of each phase.  The script prints one line:
  echo_phases: alone=N rt/s with_cpu=M rt/s slowdown=Xx switch_ns=S ...
where switch_ns is time.monotonic_ns() just before cpu started: the boundary
between the phases on the clock gilscope's events use, so a test can compare
the phase gilscope finds with it.  It exits 1 if the echo stopped working.

Under gilscope the report shows two phases (and a short one for start-up or
shutdown): in the first, echo-server's GIL waits are near zero; in the
second, a convoy finding for echo-server, whose waits after each recv that
found the GIL held last about one switch interval.  Its whole-run wait median
stays near zero (most of its acquisitions are in the quiet phase): that is
what the phases are for.
"""

import argparse
import socket
import subprocess
import sys
import threading
import time

DEFAULT_SECONDS = 1.5
REQUEST = b"0123456789abcdef"  # 16 bytes: one recv() each way
CHUNK = 10_000        # crunch iterations between stop checks (well under 1 ms)
CONNECT_TIMEOUT_S = 10.0
JOIN_GRACE_S = 20.0   # safety net: never hang, whatever happens
CLIENT_EXIT_S = 5.0   # time the client gets to exit on EOF before terminate()

# The client process: argv = port.  Send a request, read its echo, repeat,
# until the server closes the connection.
CLIENT_CODE = r"""
import socket, sys
request = sys.argv[2].encode()
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
try:
    while True:
        sock.sendall(request)
        got = b""
        while len(got) < len(request):
            chunk = sock.recv(len(request) - len(got))
            if not chunk:
                sys.exit(0)            # the server closed: done
            got += chunk
        if got != request:
            sys.exit(f"echo mismatch: {got!r}")
except (BrokenPipeError, ConnectionResetError):
    pass                               # the server went away: done too
"""


def serve(listener, served, failure, connection):
    """Echo one connection until it closes; count requests in served[0].

    The connection goes into connection[0], so that main can shut it down.
    """
    try:
        conn, _ = listener.accept()
    except OSError as e:
        failure.append(f"accept failed: {e}")
        return
    connection.append(conn)
    with conn:
        try:
            while True:
                data = conn.recv(len(REQUEST))
                if not data:
                    return
                conn.sendall(data)
                served[0] += 1   # a partial read counts too: rates, not exact
        except (BrokenPipeError, ConnectionResetError):
            return


def crunch(stop, out):
    """Pure-Python arithmetic until stop is set; never releases the GIL."""
    total = 0
    iterations = 0
    while not stop.is_set():
        for i in range(CHUNK):
            total += i * i % 7
        iterations += CHUNK
    out["cpu_iterations"] = iterations
    out["cpu_total"] = total


def wait_for_first_echo(served, client, failure):
    """Block until the first request is served; False if it never is."""
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while served[0] == 0:
        if failure or client.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def measure(served, seconds):
    """Requests served per second over `seconds` (the caller sleeps here)."""
    count, start = served[0], time.monotonic()
    time.sleep(seconds)
    return (served[0] - count) / (time.monotonic() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS,
                        help="duration of each phase (default %(default)s)")
    args = parser.parse_args()
    if not 0 < args.seconds <= 600:
        parser.error("--seconds must be > 0 and at most 600")
    if not sys.executable:
        sys.exit("echo_phases: sys.executable is unknown: cannot start the client")

    listener = socket.create_server(("127.0.0.1", 0))
    served = [0]
    failure = []
    connection = []
    server = threading.Thread(target=serve, name="echo-server", args=(listener, served, failure, connection),
                              daemon=True)
    server.start()
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT_CODE, str(listener.getsockname()[1]), REQUEST.decode()],
        stdin=subprocess.DEVNULL)
    cpu_out = {}
    stop = threading.Event()
    cpu = threading.Thread(target=crunch, name="cpu", args=(stop, cpu_out), daemon=True)
    switch_ns = 0
    alone = with_cpu = 0.0
    try:
        if not wait_for_first_echo(served, client, failure):
            sys.exit(f"echo_phases: the echo never started ({'; '.join(failure) or 'no reply'})")
        alone = measure(served, args.seconds)
        switch_ns = time.monotonic_ns()
        cpu.start()
        with_cpu = measure(served, args.seconds)
    finally:
        stop.set()
        listener.close()
        if cpu.is_alive():
            cpu.join(JOIN_GRACE_S)
        # EOF both ways: the server's recv returns b"" and it ends, and the
        # client sees EOF and exits (give it time, then make sure).
        for conn in connection:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            client.wait(timeout=CLIENT_EXIT_S)
        except subprocess.TimeoutExpired:
            client.terminate()
            client.wait()
        server.join(JOIN_GRACE_S)

    slowdown = alone / with_cpu if with_cpu else float("inf")
    print(f"echo_phases: seconds={args.seconds:g} alone={alone:.0f} rt/s with_cpu={with_cpu:.0f} rt/s "
          f"slowdown={slowdown:.1f}x switch_ns={switch_ns} "
          f"cpu={cpu_out.get('cpu_iterations', 0) / args.seconds / 1e6:.1f}M it/s "
          f"switch_interval={sys.getswitchinterval() * 1000:g}ms python={sys.version.split()[0]}")
    if with_cpu <= 0 or alone <= 0:
        sys.exit("echo_phases: no round trips in a phase")


if __name__ == "__main__":
    main()
