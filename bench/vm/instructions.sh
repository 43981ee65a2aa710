#!/usr/bin/env bash
# Instructions per request of a module in V8, counted by valgrind (callgrind, no cache simulation):
# two runs of bench/vm/requests.mjs that differ only in the number of measured requests (same
# keys, same proofs, same warm-up, TurboFan only, one thread), their difference divided by the
# difference in requests. Repeatable on a loaded machine, unlike times.
#
#   bench/vm/instructions.sh CASE WASM [extra requests.mjs options...]
#
# Prints: CASE WASM instructions/request host-calls/request. About a minute per run.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case_name=$1 wasm=$2
shift 2
low=${VM_LOW:-500} high=${VM_HIGH:-2000} warmup=${VM_WARMUP:-500}
command -v valgrind >/dev/null || { echo "instructions: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
count() { # requests [options...]
  local n=$1
  shift
  valgrind --tool=callgrind --callgrind-out-file=/dev/null node --single-threaded --no-liftoff \
    "$HERE/requests.mjs" --case "$case_name" --warmup "$warmup" --proofs $((warmup + high + 1)) \
    --rounds 1 --requests "$n" "$@" "$wasm" 2>&1 >"${TMPDIR:-/tmp}/vm-instructions.$$.json" |
    awk '/Collected :/ { print $NF }'
}
a=$(count "$low" "$@")
b=$(count "$high" "$@")
calls=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["host_calls_per_request"])' "${TMPDIR:-/tmp}/vm-instructions.$$.json")
rm -f "${TMPDIR:-/tmp}/vm-instructions.$$.json"
echo "$case_name $wasm $(((b - a) / (high - low))) $calls"
