#!/usr/bin/env bash
# `make bench` (load part): requests per second and latency through Envoy with the keygate filter,
# on 127.0.0.1 only, bounded in time. Starts the demo (envoy/demo.sh) in the background, measures
# with wrk, then stops the demo by its PID.
#
#   public     GET /pets/v1/health, no token (route + path checks only)
#   allowed    GET /pets/v1/pets with a valid RS256 token (parse, verify, authorize, headers)
#   denied     GET /pets/v1/pets without a token (401 from the filter; the upstream is not involved)
#
# BENCH_SECONDS (default 8) per case, BENCH_CONNECTIONS (default 16).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_PER_CASE="${BENCH_SECONDS:-8}"
CONNECTIONS="${BENCH_CONNECTIONS:-16}"
LOG="$ROOT/target/bench-demo.log"

command -v wrk >/dev/null || { echo "bench: wrk not installed (make deps installs it as root)" >&2; exit 1; }

"$ROOT/envoy/demo.sh" >"$LOG" 2>&1 &
DEMO_PID=$!
stop_demo() { kill -INT "$DEMO_PID" 2>/dev/null || true; wait "$DEMO_PID" 2>/dev/null || true; }
trap stop_demo EXIT

deadline=$((SECONDS + 120))
until grep -q "keygate demo is running" "$LOG" 2>/dev/null; do
  kill -0 "$DEMO_PID" 2>/dev/null || { cat "$LOG" >&2; echo "bench: the demo did not start" >&2; exit 1; }
  ((SECONDS < deadline)) || { echo "bench: the demo did not start within 120 s" >&2; exit 1; }
  sleep 0.5
done

TOKEN=$(curl -s -u shop-app:shop-app-secret -d grant_type=client_credentials -d scope=pets:read \
  http://127.0.0.1:9000/token | python3 -c 'import sys, json; print(json.load(sys.stdin)["access_token"])')
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/pets/v1/pets)
[ "$status" = 200 ] || { echo "bench: a valid token got $status, not 200" >&2; exit 1; }

run() {
  local name=$1; shift
  echo "== $name"
  wrk -t 2 -c "$CONNECTIONS" -d "${SECONDS_PER_CASE}s" --latency "$@" | grep -E "Requests/sec|Latency|50%|99%|Non-2xx"
}
run "public (no token)" http://127.0.0.1:8080/pets/v1/health
run "allowed (RS256 token)" -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/pets/v1/pets
run "denied (no token, 401)" http://127.0.0.1:8080/pets/v1/pets
