#!/usr/bin/env bash
# gilscope's one entry point for building, demonstrating and testing.
#
#   cmake/setup.sh build   install missing Debian packages, configure, build into build/
#   cmake/setup.sh demo    build, then run the main job: the guide suite under gilscope
#   cmake/setup.sh bench   build, run the microbenchmarks and bench/overhead.py
#                          (hooks off vs on); leaves build/bench/overhead.json
#   cmake/setup.sh test    build, then every test through CTest
#
# GILSCOPE_PYTHON=/path/to/python3.X picks the CPython to embed (default: the
# newest supported one found). GILSCOPE_BUILD_DIR changes the build folder.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build_dir="${GILSCOPE_BUILD_DIR:-build}"
jobs="$(nproc 2>/dev/null || echo 2)"

packages=(cmake g++ make python3-dev libgtest-dev libgmock-dev libspdlog-dev libcli11-dev
          nlohmann-json3-dev libbenchmark-dev zlib1g-dev)

install_missing_packages() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # An old or absent package list cannot find new packages: refresh it once.
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
  install_missing_packages
  local args=(-S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@")
  [ -n "${GILSCOPE_PYTHON:-}" ] && args+=("-DGILSCOPE_PYTHON=$GILSCOPE_PYTHON")
  mkdir -p "$build_dir"
  cmake "${args[@]}" >"$build_dir/configure.log" 2>&1 || { cat "$build_dir/configure.log" >&2; exit 1; }
  cmake --build "$build_dir" -j "$jobs"
}

case "${1:-}" in
  build)
    build
    ;;
  demo)
    build
    "$build_dir/gilscope" suite --out gilscope-out/suite
    ;;
  test)
    build
    ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
    ;;
  asan)
    # The sanitizer runtime must come first in the process: it does, as the
    # executables link it. detect_leaks=0: CPython leaves objects allocated
    # at exit by design (and forked children end in _exit). allocator_may_
    # return_null=1: a failed allocation (--memory-limit) must return NULL
    # to CPython, which raises MemoryError, as glibc malloc does.
    build_dir="${GILSCOPE_BUILD_DIR:-build-asan}"
    build -DGILSCOPE_SANITIZE=ON -DGILSCOPE_BUILD_BENCH=OFF
    # handle_segv=0: a script's own segfault must kill the runner with
    # SIGSEGV (the crash test checks status 139), not be reported by ASan.
    export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0:handle_segv=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
    # Left out under ASan, with reasons:
    # - scripts that fork while other threads run (processes mode, pools,
    #   compare, many children): GCC 12's ASan allocator has no fork
    #   handler, so a child forked while another thread holds its lock
    #   deadlocks in its first malloc (the normal build uses glibc malloc,
    #   which has one);
    # - --memory-limit: RLIMIT_DATA cannot bound a process whose allocator
    #   is ASan's (it reserves its heap and shadow up front);
    # - CPython's own suites (label cpython-suite): they fork from threaded
    #   processes (test_threading's fork tests, multiprocessing's fork and
    #   forkserver pools), as above, and take minutes each.
    ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" --timeout 120 -LE 'browser|cpython-suite' \
      -E 'Processes|Pool|Compare|ChildProcesses|ForksAndSpawns|MemoryLimitTurns'
    ;;
  bench)
    # Benchmarks, not tests (CTest never runs them). Extra arguments go to
    # overhead.py, e.g. `cmake/setup.sh bench --repeat 3`.
    build
    mkdir -p "$build_dir/bench"
    "$build_dir/bench/recorder_bench" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
      --benchmark_out="$build_dir/bench/recorder_bench.json" --benchmark_out_format=json
    # overhead.py only drives processes: the system python3 will do.
    /usr/bin/python3 bench/overhead.py --build "$build_dir" \
      --bench-json "$build_dir/bench/recorder_bench.json" "${@:2}"
    ;;
  *)
    echo "usage: cmake/setup.sh build|demo|test|asan|bench" >&2
    exit 2
    ;;
esac
