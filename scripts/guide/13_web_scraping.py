# gilscope: title = Fetching web pages with threads
# gilscope: lesson = the fetch threads spend their time blocked on sockets (GIL released) while the server's handler threads wait out the latency; the GIL is mostly idle, and ten overlapping fetches take about the time of one
# gilscope: expect = ok
# gilscope: timeout = 60
# gilscope: modes = main, threads, shared-subinterpreters, processes
# gilscope: skip-reason = subinterpreters: http.server and urllib import datetime, ssl and hashlib, which crash the process in own-GIL subinterpreters: on 3.13 when two import datetime at once (CPython gh-136421, gh-136423), on 3.12.1 at every interpreter teardown
"""Scraping pages one by one, then with one thread per page.

The script starts its own web server: a ThreadingHTTPServer on 127.0.0.1
(a free port chosen by the OS), serving /page/N after a 50 ms delay that
stands for network and server time.  Its serve_forever() loop runs in the
http-server thread and each request in a thread of its own (renamed
http-handler).  Nothing leaves the machine: urllib is told to use no proxy.

Fetching ten pages one by one takes ten delays.  With one thread per page
(fetch-0 .. fetch-9), each blocks in its socket read, which releases the
GIL, so the ten delays overlap and the whole takes little more than one.
The timings are printed, not checked: on a busy machine they vary.

Checked: both ways, every page arrived with the right content; the server
then shuts down cleanly (its threads joined).
"""

import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGES = 10
LATENCY_S = 0.05
FETCH_TIMEOUT_S = 10.0


def page_body(n):
    return f"<html><body><h1>Page {n}</h1></body></html>".encode()


class PageHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        threading.current_thread().name = "http-handler"
        prefix = "/page/"
        if not self.path.startswith(prefix) or not self.path[len(prefix):].isdigit():
            self.send_error(404)
            return
        time.sleep(LATENCY_S)  # stands for network and server time
        body = page_body(int(self.path[len(prefix):]))
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # no line per request on stderr


class PageServer(ThreadingHTTPServer):
    # Handler threads are joined by server_close(), not abandoned as daemons
    # (and daemon threads are not allowed in an isolated subinterpreter).
    daemon_threads = False


def fetch(opener, url):
    with opener.open(url, timeout=FETCH_TIMEOUT_S) as response:
        return response.read()


def fetch_threaded(opener, urls):
    pages = [None] * len(urls)

    def worker(i):
        pages[i] = fetch(opener, urls[i])

    threads = [threading.Thread(target=worker, name=f"fetch-{i}", args=(i,))
               for i in range(len(urls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return pages


def main():
    server = PageServer(("127.0.0.1", 0), PageHandler)
    port = server.server_address[1]
    server_thread = threading.Thread(target=server.serve_forever,
                                     name="http-server",
                                     kwargs={"poll_interval": 0.05})
    server_thread.start()
    # No proxy, whatever the environment says: 127.0.0.1 only.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    urls = [f"http://127.0.0.1:{port}/page/{n}" for n in range(PAGES)]
    try:
        start = time.perf_counter()
        one_by_one = [fetch(opener, url) for url in urls]
        sequential_s = time.perf_counter() - start

        start = time.perf_counter()
        threaded = fetch_threaded(opener, urls)
        threaded_s = time.perf_counter() - start
    finally:
        server.shutdown()      # serve_forever() returns
        server_thread.join()
        server.server_close()  # joins the handler threads

    print(f"{PAGES} pages, {LATENCY_S * 1000:g} ms each, from 127.0.0.1:{port}")
    print(f"one by one:  {sequential_s:.3f}s")
    print(f"threaded:    {threaded_s:.3f}s "
          f"({sequential_s / threaded_s:.1f}x faster)")
    expected = [page_body(n) for n in range(PAGES)]
    for label, pages in (("one by one", one_by_one), ("threaded", threaded)):
        if pages != expected:
            bad = [n for n in range(PAGES) if pages[n] != expected[n]]
            print(f"13_web_scraping: FAIL: {label}: wrong pages {bad}",
                  file=sys.stderr)
            sys.exit(1)
    print("all pages correct")


if __name__ == "__main__":
    main()
