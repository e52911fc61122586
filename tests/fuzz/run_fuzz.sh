#!/usr/bin/env bash
# Builds the events.raw reader's libFuzzer target in its own folder and runs
# it for a bounded time. Exits non-zero when the fuzzer finds a crash, a
# sanitizer report, a broken invariant or a hang (a unit slower than 10 s).
#
#   tests/fuzz/run_fuzz.sh [SECONDS]      default 60
#
# GILSCOPE_FUZZ_BUILD_DIR changes the build folder (default build-fuzz).
# New interesting inputs go to <build>/corpus, never into the checked-in
# seeds (tests/fuzz/corpus); a crashing input is saved in <build>/artifacts
# and can be replayed with: <build>/raw_reader_fuzz <build>/artifacts/crash-...
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build_dir="${GILSCOPE_FUZZ_BUILD_DIR:-build-fuzz}"
case "$build_dir" in /*) ;; *) build_dir="$root/$build_dir" ;; esac
seconds="${1:-60}"

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

# libFuzzer ships with Debian's clang (clang-14 on Debian 12).
if ! command -v clang++ >/dev/null 2>&1; then
  echo "run_fuzz: installing clang" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends clang >/dev/null
fi
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
printf '#include <cstddef>\n#include <cstdint>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' \
  >"$probe/probe.cc"
if ! clang++ -fsanitize=fuzzer,address,undefined "$probe/probe.cc" -o "$probe/probe" 2>"$probe/log"; then
  cat "$probe/log" >&2
  echo "run_fuzz: clang++ cannot link -fsanitize=fuzzer (install the clang runtime, e.g. libclang-rt-dev)" >&2
  exit 1
fi

mkdir -p "$build_dir"
cmake -S "$root/tests/fuzz" -B "$build_dir" -DGILSCOPE_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build_dir/configure.log" 2>&1 || { cat "$build_dir/configure.log" >&2; exit 1; }
cmake --build "$build_dir" -j "$(nproc 2>/dev/null || echo 2)" --target raw_reader_fuzz

mkdir -p "$build_dir/corpus" "$build_dir/artifacts"
# -rss_limit_mb: a hostile length must never make the reader allocate much;
# -timeout: nor loop; -max_len leaves room for files of several blocks.
"$build_dir/raw_reader_fuzz" \
  -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
  -dict="$root/tests/fuzz/raw.dict" -artifact_prefix="$build_dir/artifacts/" \
  "$build_dir/corpus" "$root/tests/fuzz/corpus"
