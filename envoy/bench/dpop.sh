#!/usr/bin/env bash
# The cost of a DPoP check per request through Envoy, on 127.0.0.1, bounded in time: one Envoy with
# keygate (--concurrency 1, pinned to CPU 0) loaded by wrk (CPU 1) for DPOP_SECONDS twice: a plain
# bearer token (verified-token cache hit) and a DPoP-bound token of the same client with a fresh
# ES256 proof on every request (token: cache hit; proof: verified, htu/ath/iat checked, jti recorded
# in shared data). Both tokens come from the demo key manager. A quick two-case run; `make bench`
# has the same case as `keygate-dpop` (against `keygate-cache-es256`).
#
#   envoy/bench/dpop.sh     DPOP_SECONDS (5)  DPOP_CONNECTIONS (16)  DPOP_PROOFS (60000)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/envoy/bench"
SECS="${DPOP_SECONDS:-5}"
CONNECTIONS="${DPOP_CONNECTIONS:-16}"
PROOFS="${DPOP_PROOFS:-60000}"
ENVOY_BIN="${KEYGATE_ENVOY:-$ROOT/.venv/bin/envoy}"
KEYGATE_BIN="${KEYGATE_BIN:-$ROOT/target/release/keygate}"
RUN="$ROOT/target/bench/dpop"
PIDS=()

say() { printf 'dpop-bench: %s\n' "$*"; }
die() { printf 'dpop-bench: error: %s\n' "$*" >&2; exit 1; }
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

command -v wrk >/dev/null || die "wrk is missing (sudo apt-get install wrk)"
[ -x "$KEYGATE_BIN" ] || die "$KEYGATE_BIN is missing: make cli"
[ -f "$ROOT/target/wasm32-wasip1/release/keygate.wasm" ] || die "keygate.wasm is missing: make wasm"

rm -rf "$RUN" && mkdir -p "$RUN"
mapfile -t PORTS < <(python3 "$HERE/bench.py" ports 5)
KM_PORT=${PORTS[0]} UP_PORT=${PORTS[1]} UP_ADMIN=${PORTS[2]} LISTEN=${PORTS[3]} ADMIN=${PORTS[4]}

wait_for() { # url, what
  for _ in $(seq 1 300); do curl -fs -o /dev/null "$1" && return 0; sleep 0.2; done
  die "$2 did not come up"
}

cp "$ROOT/tests/keymanager/test-signing-keys.json" "$RUN/keys.json"
(cd "$ROOT/tests/keymanager" && exec taskset -c 1 node server.mjs --port "$KM_PORT" --keys "$RUN/keys.json") \
  >"$RUN/keymanager.out" 2>"$RUN/keymanager.log" &
PIDS+=($!)
ISSUER="http://127.0.0.1:$KM_PORT"
wait_for "$ISSUER/jwks" "the key manager"

cat >"$RUN/upstream.yaml" <<YAML
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $UP_ADMIN}}}
static_resources:
  listeners:
  - address: {socket_address: {address: 127.0.0.1, port_value: $UP_PORT}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: upstream
          route_config:
            virtual_hosts:
            - {name: all, domains: ["*"], routes: [{match: {prefix: "/"}, direct_response: {status: 200, body: {inline_string: "{\"ok\":true}"}}}]}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
YAML
taskset -c 1 "$ENVOY_BIN" -c "$RUN/upstream.yaml" --concurrency 1 --use-dynamic-base-id -l warn >"$RUN/upstream.log" 2>&1 &
PIDS+=($!)
wait_for "http://127.0.0.1:$UP_ADMIN/ready" "the upstream Envoy"

cat >"$RUN/keygate.yaml" <<YAML
gateway: {environment: production, listen: "127.0.0.1:$LISTEN", admin: "127.0.0.1:$ADMIN"}
key_managers:
  - name: demo
    well_known_url: $ISSUER/.well-known/openid-configuration
    audiences: [https://api.keygate.test]
    discovery: {issuer: $ISSUER, jwks_uri: $ISSUER/jwks, token_endpoint: $ISSUER/token}
apis:
  - name: pets
    base_path: /pets/v1
    upstream: http://127.0.0.1:$UP_PORT
    resources:
      - {method: GET, path: /pets, scopes: [pets:read]}
applications:
  - name: shop
    client_ids: [{key_manager: demo, client_id: shop-app}]
    subscriptions: [{api: pets}]
# One client key sends every proof: room for them (the default store refuses some as full).
settings: {dpop_replay_slots: 65536}
YAML
"$KEYGATE_BIN" generate --input "$RUN/keygate.yaml" --out "$RUN/generated" >"$RUN/generate.log" 2>&1 \
  || { cat "$RUN/generate.log" >&2; die "keygate generate failed"; }
taskset -c 0 "$ENVOY_BIN" -c "$RUN/generated/envoy.yaml" --concurrency 1 --use-dynamic-base-id -l warn \
  >"$RUN/envoy.log" 2>&1 &
PIDS+=($!)
wait_for "http://127.0.0.1:$ADMIN/ready" "Envoy with keygate"

URL="http://127.0.0.1:$LISTEN/pets/v1/pets"
BEARER=$(curl -fs -u shop-app:shop-app-secret -d grant_type=client_credentials -d scope=pets:read "$ISSUER/token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
say "making $PROOFS proofs"
node "$HERE/dpop-proofs.mjs" "$ISSUER" "$URL" "$PROOFS" "$RUN"
# Both must be allowed before measuring (and the first request of each warms the caches).
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $BEARER" "$URL")" = 200 ] || die "bearer token refused"
FIRST=$(head -1 "$RUN/proofs")
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: DPoP $(cat "$RUN/token")" -H "DPoP: $FIRST" "$URL")" = 200 ] \
  || die "DPoP token refused"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: DPoP $(cat "$RUN/token")" -H "DPoP: $FIRST" "$URL")" = 401 ] \
  || die "a replayed proof was not refused"
tail -n +2 "$RUN/proofs" >"$RUN/proofs.load"

say "bearer (cache hit): ${SECS}s, $CONNECTIONS connections"
BEARER_JSON=$(taskset -c 1 wrk -t 1 -c "$CONNECTIONS" -d "${SECS}s" -s "$HERE/report.lua" \
  -H "Authorization: Bearer $BEARER" "$URL" | tail -1)
say "dpop (token cache hit + fresh ES256 proof): ${SECS}s, $CONNECTIONS connections"
DPOP_JSON=$(taskset -c 1 wrk -t 1 -c "$CONNECTIONS" -d "${SECS}s" -s "$HERE/dpop.lua" "$URL" \
  -- /pets/v1/pets "$RUN/token" "$RUN/proofs.load" | tail -1)
echo "bearer: $BEARER_JSON"
echo "dpop:   $DPOP_JSON"
python3 - "$BEARER_JSON" "$DPOP_JSON" <<'PY'
import json, sys
b, d = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"per request: bearer {1e6 / b['rps']:.1f} us, dpop {1e6 / d['rps']:.1f} us, "
      f"DPoP check adds {1e6 / d['rps'] - 1e6 / b['rps']:.1f} us of the one Envoy worker's time")
PY
