"""Lists the network requests a page made, from a Chromium --log-net-log file.

    python3 page_requests.py NETLOG

Prints one URL per line and exits 1 if the page requested anything over the
network (http, https, ws, wss, ftp); exits 0 when it requested nothing.
Chromium's own background traffic (time and update checks, which headless
Chromium makes despite --disable-background-networking) is started by the
browser process, whose requests carry the initiator "not an origin"; a page's
requests carry the page's origin ("null" for a file:// page).
"""

import json
import sys

NETWORK_SCHEMES = ("http:", "https:", "ws:", "wss:", "ftp:")
BROWSER_INITIATOR = "not an origin"


def page_requests(netlog):
    names = {number: name for name, number in netlog["constants"]["logEventTypes"].items()}
    for event in netlog.get("events", []):
        if names.get(event.get("type")) != "URL_REQUEST_START_JOB":
            continue
        params = event.get("params") or {}
        url = params.get("url") or ""
        if url.startswith(NETWORK_SCHEMES) and params.get("initiator") != BROWSER_INITIATOR:
            yield url


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        netlog = json.load(f)
    urls = sorted(set(page_requests(netlog)))
    for url in urls:
        print(url)
    return 1 if urls else 0


if __name__ == "__main__":
    sys.exit(main())
