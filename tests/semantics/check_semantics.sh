#!/usr/bin/env bash
# The Python semantics check: threading_semantics.py must print the same
# "SEM " lines under plain python (the CPython gilscope embeds) and under
# `gilscope run` (main mode on the main thread; threads mode on a host
# thread, compared with plain python running the body on a thread).
#
#   check_semantics.sh PYTHON GILSCOPE SCRIPT OUT_DIR
set -euo pipefail
python="$1" gilscope="$2" script="$3" out="$4"
rm -rf "$out" && mkdir -p "$out"

# Lines of the script's own output only (gilscope's report follows it).
run() {
  local name="$1"; shift
  local rc=0
  "$@" >"$out/$name.out" 2>"$out/$name.err" || rc=$?
  grep '^SEM ' "$out/$name.out" >"$out/$name.sem" || true
  echo "$rc" >"$out/$name.rc"
}

run python-main "$python" "$script"
run python-thread "$python" "$script" --in-thread
run gilscope-main "$gilscope" run "$script" --out "$out/main"
run gilscope-threads "$gilscope" run "$script" --mode threads --instances 1 --out "$out/threads"

status=0
lines="$(wc -l <"$out/python-main.sem")"
if [ "$lines" -lt 20 ]; then
  echo "plain python printed only $lines SEM lines:"; cat "$out/python-main.out" "$out/python-main.err"; exit 1
fi
for pair in python-main:gilscope-main python-thread:gilscope-threads; do
  want="${pair%%:*}" got="${pair#*:}"
  if ! diff -u "$out/$want.sem" "$out/$got.sem"; then
    echo "FAIL: $got printed other results than $want (stderr follows)"; cat "$out/$got.err"; status=1
  fi
  if [ "$(cat "$out/$want.rc")" != "$(cat "$out/$got.rc")" ]; then
    echo "FAIL: $got exited $(cat "$out/$got.rc"), $want exited $(cat "$out/$want.rc")"; status=1
  fi
done
[ "$status" -eq 0 ] && echo "ok: $lines identical lines in main mode and in threads mode"
exit "$status"
