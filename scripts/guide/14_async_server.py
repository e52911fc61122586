# gilscope: title = An asyncio echo server with concurrent clients
# gilscope: lesson = server and 20 clients are coroutines in one thread: no switches and no GIL waits at all; the loop releases the GIL only briefly around each select(), as loopback replies come back at once
# gilscope: expect = ok
# gilscope: timeout = 30
# gilscope: modes = main, threads, subinterpreters, shared-subinterpreters, processes
# gilscope: modes-3.12 = main, threads, shared-subinterpreters, processes
# gilscope: skip-reason-3.12 = CPython 3.12.1 aborts when an own-GIL subinterpreter that imported ssl (asyncio does) is destroyed
# gilscope: modes-3.11 = main, threads, processes
# gilscope: skip-reason-3.11 = own-GIL subinterpreters need 3.12+, and two shared-GIL copies clash: 3.11's _asyncio keeps the running loop in process-wide state
"""An asyncio TCP echo server and 20 clients, all in one thread.

asyncio.start_server listens on 127.0.0.1 (a port chosen by the OS) and
runs handle() as a new coroutine for each connection.  Twenty client
coroutines connect at once and each sends three lines, waiting for each
echo before sending the next.  One event loop interleaves all 21 parties:
whenever one waits for its socket, another runs.  When every client is
done the server is closed; the whole run is bounded by a timeout, so it
ends by itself even if something goes wrong.

Checked: every client got back exactly the lines it sent, in order.
"""

import asyncio
import sys

CLIENTS = 20
MESSAGES = 3
RUN_TIMEOUT_S = 20.0


async def handle(reader, writer):
    try:
        while line := await reader.readline():  # b"" when the client closes
            writer.write(b"echo: " + line)
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


async def client(n, port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = []
    try:
        for m in range(MESSAGES):
            writer.write(f"client {n} message {m}\n".encode())
            await writer.drain()
            replies.append((await reader.readline()).decode().rstrip("\n"))
    finally:
        writer.close()
        await writer.wait_closed()
    return replies


async def run():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        tasks = [asyncio.create_task(client(n, port), name=f"client-{n}")
                 for n in range(CLIENTS)]
        replies = await asyncio.gather(*tasks)
    finally:
        server.close()
        await server.wait_closed()
    return port, replies


def main():
    port, replies = asyncio.run(asyncio.wait_for(run(), RUN_TIMEOUT_S))
    print(f"server on 127.0.0.1:{port}; {CLIENTS} clients x {MESSAGES} lines")
    print(f"client 0 got: {replies[0]}")
    expected = [[f"echo: client {n} message {m}" for m in range(MESSAGES)]
                for n in range(CLIENTS)]
    bad = [n for n in range(CLIENTS) if replies[n] != expected[n]]
    if bad:
        print(f"14_async_server: FAIL: wrong replies for clients {bad}",
              file=sys.stderr)
        sys.exit(1)
    print(f"all {CLIENTS * MESSAGES} replies correct")


if __name__ == "__main__":
    main()
