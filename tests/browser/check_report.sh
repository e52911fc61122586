#!/usr/bin/env bash
# Opens a generated report.html in headless Chromium and checks it.
#   check_report.sh FIXTURE OUT_DIR SLOTS EXPECTED_ROWS
# Exit 0: passed; 1: failed; 77: skipped (no Chromium), which CTest reports
# as skipped through SKIP_RETURN_CODE.
set -euo pipefail

fixture="$1" out="$2" slots="$3" expected_rows="$4"

rm -rf "$out"
mkdir -p "$out"
"$fixture" "$out" "$slots"
page="$out/report.html"

fail() { echo "FAIL: $*" >&2; exit 1; }

# The page itself, before any browser: no URL, nothing a hostile name could inject.
grep -q '//' "$page" && fail "report.html contains '//' (a URL?)"
grep -qi '<img' "$page" && fail "report.html contains an <img> tag: a hostile string was not escaped"

browser="${GILSCOPE_CHROMIUM:-}"
if [ -z "$browser" ]; then
  for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then browser="$(command -v "$candidate")"; break; fi
  done
fi
if [ -z "$browser" ]; then
  echo "SKIPPED: no Chromium found (apt-get install chromium, or set GILSCOPE_CHROMIUM)"
  exit 77
fi

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update
       --disable-sync --no-first-run --no-default-browser-check --disable-extensions
       --user-data-dir="$profile")
url="file://$(cd "$out" && pwd)/report.html"

# The DOM after the page's script ran, with every network event logged.
timeout 240 "$browser" "${flags[@]}" --window-size=1400,900 --log-net-log="$out/netlog.json" --dump-dom "$url" \
  >"$out/dom.html" 2>"$out/chromium.log" || fail "chromium --dump-dom failed: $(tail -5 "$out/chromium.log")"

attr() { grep -o "$1=\"[^\"]*\"" "$out/dom.html" | head -1 | cut -d'"' -f2; }
state="$(attr data-timeline)"
[ "$state" = "drawn" ] || fail "timeline state is '$state', not 'drawn'; error: $(attr data-error)"
[ -z "$(attr data-error)" ] || fail "script error: $(attr data-error)"
rows="$(attr data-timeline-rows)"
[ "$rows" = "$expected_rows" ] || fail "timeline drew $rows rows, expected $expected_rows"
intervals="$(attr data-intervals-drawn)"
[ "${intervals:-0}" -gt 0 ] || fail "no interval was drawn"
# The hostile thread name must be in the page as text, intact.
grep -qF '&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;' "$out/dom.html" ||
  fail "the hostile thread name is not shown as text"

# No request from the page (Chromium's own background traffic is told apart
# by page_requests.py).
python3 "$(dirname "$0")/page_requests.py" "$out/netlog.json" >"$out/network.txt" ||
  fail "the page made network requests: $(head -3 "$out/network.txt")"

# What a reader sees first, and the whole page for review.
timeout 240 "$browser" "${flags[@]}" --window-size=1400,900 --screenshot="$out/report.png" "$url" \
  >>"$out/chromium.log" 2>&1 || fail "chromium --screenshot failed"
[ -s "$out/report.png" ] || fail "no screenshot written"
timeout 240 "$browser" "${flags[@]}" --window-size=1400,2600 --screenshot="$out/report_full.png" "$url" \
  >>"$out/chromium.log" 2>&1 || fail "chromium --screenshot (full page) failed"

echo "PASS: $rows rows, $intervals intervals drawn in $(attr data-draw-ms) ms (again in $(attr data-redraw-ms) ms); screenshot $out/report.png"
