#!/usr/bin/env bash
# `make bench` (load part): keygate side by side with Envoy's native jwt_authn + rbac, in one run, on
# 127.0.0.1 only, bounded in time. Prints the table and writes target/bench/summary.json.
#
# Cases (RS256 and ES256 where a token is verified; the same declaration, key manager and token
# claims everywhere; every token-carrying case sends the same Authorization header size). Tokens are
# realistic RFC 9068 access tokens (RS256 about 1,100 bytes: the key manager's claims plus those of a
# production key manager, envoy/bench/tokens.mjs) and every request carries the headers of a real
# API client (REQUEST_HEADERS below), because keygate reads the whole header map and keys its cache
# by the raw token: a 600-byte token and a bare `Host` header flatter it.
#   noauth                  Envoy, same route and upstream, no filter
#   floor                   a proxy-wasm filter that reads one header (bench/floor)
#   native-cache-{rs,es}256   jwt_authn + rbac from the same declaration, jwt_cache_config on
#   native-nocache-{rs,es}256 the same without the JWT cache
#   keygate-cache-{rs,es}256  keygate, verified-token cache hit
#   keygate-nocache-{rs,es}256 keygate, settings.token_cache_entries: 0 (signature checked every request)
#   keygate-public          keygate, public resource, no token
#   keygate-wide            keygate-cache-rs256 with 1,000 APIs of 20 resources each in the plugin
#                           config (bench.py's WIDE_APIS; the route table unchanged): routing must
#                           not grow with the configuration (its "of hit": at least 0.97)
#   keygate-apikey          keygate, an API key (the demo key, /catalog/v1/items): one SHA-256, one lookup
#   keygate-backendjwt      keygate, cache hit (RS256) on an API with backend_jwt (/pets-jwt/v1, added
#                           to the demo declaration here): the cached backend JWT is forwarded again
#   keygate-backendjwt-miss the same with the cache off: every request verifies the token and signs
#                           a backend JWT (Envoy's `sign`)
#   The table's "of hit" column sets the API-key and backend-JWT rows against keygate-cache-rs256
#   (req/s over req/s); "cpu µs/req" is the Envoy under test's CPU time per request, steadier than
#   req/s when the machine is shared and that Envoy does not get its whole CPU.
#   keygate-dpop            keygate, a DPoP-bound token (verified-token cache hit) with a fresh ES256
#                           proof on every request (envoy/bench/dpop-proofs.mjs makes them just
#                           before each run, BENCH_DPOP_RATE per second of the run, distinct jti,
#                           iat then: a run stays well inside the 300 s window; envoy/bench/dpop.lua
#                           sends each once): signature on the host, htm/htu/iat/ath, jti recorded;
#                           its "of hit" column is set against keygate-cache-es256
#   {keygate,native}-zipf-{10k,100k}  a population: each request carries one of 10,000 (100,000)
#                           distinct valid tokens, drawn Zipf (s = 1) by envoy/bench/zipf.lua, with
#                           each filter's default cache (hit rate reported)
#
# Method: every Envoy under test runs --concurrency 1 pinned to CPU 0 (taskset -c 0), with its own
# dynamic --base-id; wrk, the upstream and the key manager run on CPU 1. Before measuring, each case
# must answer what it should (200; and each auth case refuses a forged signature, a missing token,
# an unsubscribed client and a token without the scope). Then BENCH_WARMUP seconds of load per case,
# then BENCH_ROUNDS rounds in which the cases alternate, BENCH_SECONDS each; the best round (highest
# req/s) of each case is reported. Last, an Envoy with keygate on 2 workers is loaded for
# BENCH_SECONDS and its VmRSS read from /proc. The summary fails the run when keygate.wasm is over
# 1 MB (1,000,000 bytes; `make wasm` shrinks it with binaryen's wasm-opt).
#
#   BENCH_SECONDS (5)  BENCH_ROUNDS (3)  BENCH_CONNECTIONS (16)  BENCH_THREADS (1)  BENCH_WARMUP (1)
#   BENCH_CASES        space-separated subset of the case names above (default: all)
#   BENCH_UPSTREAM     envoy (default: a second Envoy answering 200 itself) or echo (the node echo
#                      upstream of the demo, tests/keymanager/echo.mjs; costlier per request)
#   BENCH_CPU_ENVOY (0), BENCH_CPU_LOAD (1)
#   BENCH_DPOP_RATE (30000)  proofs made per second of a keygate-dpop run (more than it can answer)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/envoy/bench"
SECONDS_PER_CASE="${BENCH_SECONDS:-5}"
ROUNDS="${BENCH_ROUNDS:-3}"
CONNECTIONS="${BENCH_CONNECTIONS:-16}"
THREADS="${BENCH_THREADS:-1}"
WARMUP="${BENCH_WARMUP:-1}"
UPSTREAM_KIND="${BENCH_UPSTREAM:-envoy}"
CPU_ENVOY="${BENCH_CPU_ENVOY:-0}"
CPU_LOAD="${BENCH_CPU_LOAD:-1}"
DPOP_RATE="${BENCH_DPOP_RATE:-30000}"
ENVOY_BIN="${KEYGATE_ENVOY:-$ROOT/.venv/bin/envoy}"
KEYGATE_BIN="${KEYGATE_BIN:-$ROOT/target/release/keygate}"
WASM="$ROOT/target/wasm32-wasip1/release/keygate.wasm"
FLOOR_TARGET="$ROOT/target/bench-floor"
FLOOR_WASM="$FLOOR_TARGET/wasm32-wasip1/release/keygate_bench_floor.wasm"
KEYMANAGER_DIR="$ROOT/tests/keymanager"
OUT="$ROOT/target/bench"
RUN="$OUT/run"
READY_SECONDS=60

ALL_CASES="noauth floor native-cache-rs256 native-cache-es256 native-nocache-rs256 native-nocache-es256
  keygate-cache-rs256 keygate-cache-es256 keygate-nocache-rs256 keygate-nocache-es256 keygate-public keygate-wide
  keygate-apikey keygate-backendjwt keygate-backendjwt-miss keygate-dpop native-zipf-10k keygate-zipf-10k native-zipf-100k keygate-zipf-100k"
CASES="${BENCH_CASES:-$ALL_CASES}"

say() { printf 'bench: %s\n' "$*"; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

# --- what is needed -------------------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=("wrk (make deps installs it as root; else: sudo apt-get install wrk)")
command -v taskset >/dev/null || missing+=("taskset (util-linux)")
command -v curl >/dev/null || missing+=("curl")
command -v node >/dev/null || missing+=("node (Node.js 20.19+)")
command -v python3 >/dev/null || missing+=("python3")
command -v cargo >/dev/null || missing+=("cargo (Rust, for the floor filter)")
[[ -x "$ENVOY_BIN" ]] || missing+=("Envoy at $ENVOY_BIN (make deps)")
[[ -x "$KEYGATE_BIN" ]] || missing+=("keygate CLI at $KEYGATE_BIN (make cli)")
[[ -f "$WASM" ]] || missing+=("$WASM (make wasm)")
[[ -d "$KEYMANAGER_DIR/node_modules/oidc-provider" ]] || missing+=("key manager dependencies (make deps)")
if ((${#missing[@]})); then
  printf 'bench: missing: %s\n' "${missing[@]}" >&2
  exit 1
fi
(($(nproc) >= 2)) || die "needs 2 CPUs (Envoy on one, load on the other); this machine has $(nproc)"
[[ "$UPSTREAM_KIND" == envoy || "$UPSTREAM_KIND" == echo ]] || die "BENCH_UPSTREAM: envoy or echo, not $UPSTREAM_KIND"
for c in $CASES; do [[ " ${ALL_CASES//$'\n'/ } " == *" $c "* ]] || die "BENCH_CASES: unknown case $c"; done

# --- processes: exactly the ones started here, by PID ----------------------------------------------
PIDS=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if ((${#PIDS[@]})); then
    kill "${PIDS[@]}" 2>/dev/null || true
    wait "${PIDS[@]}" 2>/dev/null || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for_line() {
  local file=$1 prefix=$2 pid=$3 deadline=$((SECONDS + READY_SECONDS))
  until grep -q "^$prefix" "$file" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; die "process $pid exited before printing '$prefix'"; }
    ((SECONDS < deadline)) || die "no '$prefix' from pid $pid within ${READY_SECONDS}s (see $file)"
    sleep 0.2
  done
}

rm -rf "$RUN"
mkdir -p "$RUN"

say "building the floor filter (bench/floor)"
cargo build --quiet --manifest-path "$ROOT/bench/floor/Cargo.toml" --release --target wasm32-wasip1 \
  --target-dir "$FLOOR_TARGET"

# Ports: key manager, upstream, upstream admin, then listener + admin per Envoy under test.
ENVOYS="noauth floor native-cache native-nocache keygate keygate-nocache keygate-wide keygate-2w"
mapfile -t PORTS < <(python3 "$HERE/bench.py" ports 19)
KM_PORT=${PORTS[0]} UPSTREAM_PORT=${PORTS[1]} UPSTREAM_ADMIN=${PORTS[2]}
declare -A LISTEN ADMIN
i=3
for e in $ENVOYS; do LISTEN[$e]=${PORTS[$i]}; ADMIN[$e]=${PORTS[$((i + 1))]}; i=$((i + 2)); done

# 1. Key manager (committed test keys: its EC P-256 private key signs the ES256 token below).
cp "$KEYMANAGER_DIR/test-signing-keys.json" "$RUN/keymanager-keys.json"
(cd "$KEYMANAGER_DIR" && exec taskset -c "$CPU_LOAD" node server.mjs --port "$KM_PORT" --keys "$RUN/keymanager-keys.json") \
  >"$RUN/keymanager.out" 2>"$RUN/keymanager.log" &
PIDS+=($!)
wait_for_line "$RUN/keymanager.out" "KEYMANAGER READY" "$!"
ISSUER="http://127.0.0.1:$KM_PORT"

# 2. Plugin config from the demo declaration (its ports replaced), by the keygate CLI.
sed -e "s#127.0.0.1:9000#127.0.0.1:$KM_PORT#g" -e "s#127.0.0.1:3000#127.0.0.1:$UPSTREAM_PORT#g" \
  "$ROOT/envoy/demo.keygate.yaml" >"$RUN/keygate.yaml"
# The backend-JWT API: a copy of pets with backend_jwt, a signing key made here (its private JWK
# goes only into the environment of the Envoys under test, below).
BACKEND_KEY_ENV=KEYGATE_BENCH_BACKEND_KEY
"$KEYGATE_BIN" backend-key new --env "$BACKEND_KEY_ENV" >"$RUN/backend-key.txt" || die "keygate backend-key new failed"
BACKEND_KEY=$(sed -n "s/^$BACKEND_KEY_ENV='\(.*\)'\$/\1/p" "$RUN/backend-key.txt")
BACKEND_ENTRY=$(grep '^- {env' "$RUN/backend-key.txt")
[[ -n "$BACKEND_KEY" && -n "$BACKEND_ENTRY" ]] || die "keygate backend-key new printed no key"
rm -f "$RUN/backend-key.txt"
python3 - "$RUN/keygate.yaml" "$BACKEND_ENTRY" "$UPSTREAM_PORT" <<'PY'
import sys
path, entry, port = sys.argv[1:]
text = open(path, encoding="utf-8").read()
edits = [
    ("\nkey_managers:\n", f"  backend_jwt:\n    keys:\n      {entry}\n\nkey_managers:\n"),
    ("\n# Client ids match", f"""  - name: pets-jwt
    version: v1
    base_path: /pets-jwt/v1
    upstream: http://127.0.0.1:{port}
    backend_jwt: {{}}
    resources:
      - {{method: GET, path: /pets, scopes: [pets:read]}}

# Client ids match"""),
    ("      - {api: catalog}\n", "      - {api: catalog}\n      - {api: pets-jwt}\n"),
]
for old, new in edits:
    if old not in text:
        sys.exit(f"bench: the demo declaration changed: no {old!r} to extend")
    text = text.replace(old, new, 1)
# keygate-dpop sends every proof of one client key, tens of thousands a run, all remembered for
# dpop_max_age_seconds (300): the default replay store (4,096 slots x 32, one key at most half a
# slot) refuses some of them as full (503, as documented), which would fail the run. Room for
# about a million proofs per window (at most 32 MiB of shared data, about 16 bytes per proof used).
if "\nsettings:" in text:
    sys.exit("bench: the demo declaration has settings now: merge dpop_replay_slots into them")
text += "\nsettings:\n  dpop_replay_slots: 65536\n"
open(path, "w", encoding="utf-8").write(text)
PY
"$KEYGATE_BIN" generate --input "$RUN/keygate.yaml" --out "$RUN/generated" >"$RUN/generate.log" 2>&1 \
  || { cat "$RUN/generate.log" >&2; die "keygate generate failed"; }

# 3. Every case's bootstrap from that plugin config.
{
  printf '{"keymanager_port": %s, "upstream_port": %s, "upstream_envoy": {"admin": %s},' "$KM_PORT" "$UPSTREAM_PORT" "$UPSTREAM_ADMIN"
  printf ' "keygate_wasm": "%s", "floor_wasm": "%s", "filters_of": {"keygate-2w": "keygate"}, "envoys": {' "$WASM" "$FLOOR_WASM"
  sep=""
  for e in $ENVOYS; do printf '%s"%s": {"listen": %s, "admin": %s}' "$sep" "$e" "${LISTEN[$e]}" "${ADMIN[$e]}"; sep=", "; done
  printf '}}\n'
} >"$RUN/spec.json"
python3 "$HERE/bench.py" configs --plugin-config "$RUN/generated/plugin-config.json" --spec "$RUN/spec.json" --out "$RUN"

ready() { [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/ready")" == 200 ]]; }

declare -A ENVOY_PID
start_envoy() { # name cpus concurrency
  local name=$1 cpus=$2 workers=$3
  KEYGATE_BENCH_BACKEND_KEY=$BACKEND_KEY taskset -c "$cpus" "$ENVOY_BIN" -c "$RUN/envoy-$name.json" --concurrency "$workers" \
    --use-dynamic-base-id --base-id-path "$RUN/$name.base-id" -l warn >"$RUN/envoy-$name.log" 2>&1 &
  ENVOY_PID[$name]=$!
  PIDS+=($!)
}
await_envoy() { # name admin_port
  local deadline=$((SECONDS + READY_SECONDS))
  until ready "$2"; do
    kill -0 "${ENVOY_PID[$1]}" 2>/dev/null || { tail -n 30 "$RUN/envoy-$1.log" >&2; die "Envoy $1 exited (log: $RUN/envoy-$1.log)"; }
    ((SECONDS < deadline)) || die "Envoy $1 not ready within ${READY_SECONDS}s (log: $RUN/envoy-$1.log)"
    sleep 0.2
  done
}

# 4. Upstream on the load CPU.
if [[ "$UPSTREAM_KIND" == envoy ]]; then
  taskset -c "$CPU_LOAD" "$ENVOY_BIN" -c "$RUN/envoy-upstream.json" --concurrency 1 --use-dynamic-base-id \
    --base-id-path "$RUN/upstream.base-id" -l warn >"$RUN/envoy-upstream.log" 2>&1 &
  ENVOY_PID[upstream]=$!
  PIDS+=($!)
  await_envoy upstream "$UPSTREAM_ADMIN"
else
  (cd "$KEYMANAGER_DIR" && exec taskset -c "$CPU_LOAD" node echo.mjs --port "$UPSTREAM_PORT") >"$RUN/echo.out" 2>"$RUN/echo.log" &
  PIDS+=($!)
  wait_for_line "$RUN/echo.out" "ECHO READY" "$!"
fi

# 5. The Envoys under test, all on CPU 0 (idle while another case is measured).
say "starting Envoys (listeners: $(for e in $ENVOYS; do [[ $e == keygate-2w ]] || printf '%s=%s ' "$e" "${LISTEN[$e]}"; done))"
for e in $ENVOYS; do [[ $e == keygate-2w ]] || start_envoy "$e" "$CPU_ENVOY" 1; done
for e in $ENVOYS; do [[ $e == keygate-2w ]] || await_envoy "$e" "${ADMIN[$e]}"; done

# 6. Tokens: the key manager's RS256 token; the same claims signed ES256; forged signatures.
token() { # client scope
  curl -sf -u "$1:$1-secret" -d grant_type=client_credentials -d "scope=$2" "$ISSUER/token" \
    | python3 -c 'import sys, json; print(json.load(sys.stdin)["access_token"])'
}
RS256_KM=$(token shop-app pets:read) || die "no token from the key manager"
OTHER_APP=$(token other-app pets:read)
NO_SCOPE=$(token shop-app orders:read)
TOKENS_JSON=$(node "$HERE/tokens.mjs" "$RUN/keymanager-keys.json" "$RS256_KM" --population 100000 "$RUN/population-100k.txt")
head -n 10000 "$RUN/population-100k.txt" >"$RUN/population-10k.txt"
pick() { python3 -c 'import sys, json; print(json.load(sys.stdin)[sys.argv[1]])' "$1" <<<"$TOKENS_JSON"; }
RS256=$(pick rs256)
ES256=$(pick es256)
RS256_FORGED=$(pick rs256_forged)
ES256_FORGED=$(pick es256_forged)

say "tokens: RS256 ${#RS256} bytes, ES256 ${#ES256} bytes (the key manager's own: ${#RS256_KM}); 100,000 distinct ES256 for the Zipf cases"

API=/pets/v1/pets
PUBLIC=/pets/v1/health
# The demo declaration's API-key API and its public demo key (envoy/demo.keygate.yaml).
KEYED=/catalog/v1/items
API_KEY=kg_MRNQcG-fEvMzRYn7Gad0yxqJ4bKRuFT1VqUA1bV2nkU
# The same resource as $API on the API with backend_jwt.
SIGNED=/pets-jwt/v1/pets
# What a browser-backed or SDK API client sends besides the token (wrk adds Host).
REQUEST_HEADERS=(
  -H "User-Agent: shop-backend/4.2.1 (okhttp/4.12.0; Linux x86_64)"
  -H "Accept: application/json, text/plain, */*"
  -H "Accept-Encoding: gzip, deflate, br"
  -H "Accept-Language: en-US,en;q=0.9"
  -H "X-Request-Id: 6f1c2a9e-3b7d-4e58-9a0c-1d2e3f405162"
  -H "X-Forwarded-For: 203.0.113.7, 10.0.0.12"
  -H "X-Forwarded-Proto: https"
  -H "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
  -H "Cookie: session=Fe26.2**0cdd607945dd1dffb7da0b0bf5f1a7a4; consent=essential,analytics"
)
status_of() { # port path [token]
  local auth=()
  [[ -n "${3:-}" ]] && auth=(-H "Authorization: Bearer $3")
  curl -s -o /dev/null -w '%{http_code}' "${REQUEST_HEADERS[@]}" "${auth[@]}" "http://127.0.0.1:$1$2"
}
FAILED=0
expect() { # envoy expected path token what
  local got deadline=$((SECONDS + 10))
  got=$(status_of "${LISTEN[$1]}" "$3" "$4")
  # The first requests may wait for the JWKS fetch at start-up; a 5xx then is retried briefly.
  while [[ "$got" != "$2" && "$got" == 5* ]] && ((SECONDS < deadline)); do sleep 0.3; got=$(status_of "${LISTEN[$1]}" "$3" "$4"); done
  if [[ "$got" == "$2" ]]; then
    printf '  ok   %-16s %-34s %s\n' "$1" "$5" "$got"
  else
    printf '  FAIL %-16s %-34s %s, expected %s\n' "$1" "$5" "$got" "$2"
    FAILED=1
  fi
}
say "checking each case answers what it should"
expect noauth 200 "$API" "$RS256" "RS256 token (not checked)"
expect floor 200 "$API" "$RS256" "RS256 token (not checked)"
for e in native-cache native-nocache keygate keygate-nocache; do
  expect "$e" 200 "$API" "$RS256" "RS256 token"
  expect "$e" 200 "$API" "$RS256_KM" "RS256, the key manager's own"
  expect "$e" 200 "$API" "$ES256" "ES256 token, same claims"
  expect "$e" 200 "$API" "$(tail -n 1 "$RUN/population-100k.txt")" "ES256, a Zipf population token"
  expect "$e" 401 "$API" "$RS256_FORGED" "RS256, forged signature"
  expect "$e" 401 "$API" "$ES256_FORGED" "ES256, forged signature"
  expect "$e" 401 "$API" "" "no token"
  expect "$e" 403 "$API" "$OTHER_APP" "client not subscribed (other-app)"
  expect "$e" 403 "$API" "$NO_SCOPE" "token without pets:read"
  expect "$e" 200 "$PUBLIC" "" "public resource, no token"
done
expect keygate-wide 200 "$API" "$RS256" "RS256 token, 1,000 APIs"
expect keygate-wide 403 "$API" "$OTHER_APP" "client not subscribed, 1,000 APIs"
expect keygate-wide 401 "$API" "" "no token, 1,000 APIs"
expect keygate-wide 200 "$PUBLIC" "" "public resource, 1,000 APIs"
for e in keygate keygate-nocache; do
  for k in "$API_KEY:200:API key" "kg_unknown:401:unknown API key"; do
    got=$(curl -s -o /dev/null -w '%{http_code}' "${REQUEST_HEADERS[@]}" -H "apikey: ${k%%:*}" "http://127.0.0.1:${LISTEN[$e]}$KEYED")
    want=${k#*:}; want=${want%%:*}
    if [[ "$got" == "$want" ]]; then printf '  ok   %-16s %-34s %s\n' "$e" "${k##*:}" "$got"
    else printf '  FAIL %-16s %-34s %s, expected %s\n' "$e" "${k##*:}" "$got" "$want"; FAILED=1; fi
  done
done
for e in keygate keygate-nocache; do
  # The upstream answers with the first characters of the x-jwt-assertion it received.
  jwt=$(curl -s -o /dev/null -D - "${REQUEST_HEADERS[@]}" -H "Authorization: Bearer $RS256" -H "x-jwt-assertion: forged" \
    "http://127.0.0.1:${LISTEN[$e]}$SIGNED" | tr -d '\r' | sed -n 's/^x-bench-backend-jwt: //Ip')
  if [[ "$jwt" == eyJ* ]]; then printf '  ok   %-16s %-34s %s\n' "$e" "backend JWT forwarded" "${jwt:0:12}..."
  else printf '  FAIL %-16s %-34s %s\n' "$e" "backend JWT forwarded" "upstream saw '${jwt}'"; FAILED=1; fi
  expect "$e" 403 "$SIGNED" "$NO_SCOPE" "backend-JWT API, no pets:read"
done
# DPoP: a bound token with a proof for the gateway's public URL (the plugin config's origin of
# the pets API), accepted once; the same proof again is a replay.
DPOP_DIR="$RUN/dpop"
mkdir -p "$DPOP_DIR"
DPOP_HTU="$(python3 "$HERE/bench.py" origin --plugin-config "$RUN/generated/plugin-config.json" --api pets)$API"
node "$HERE/dpop-proofs.mjs" "$ISSUER" "$DPOP_HTU" 1 "$DPOP_DIR" || die "no DPoP-bound token from the key manager"
for e in keygate keygate-nocache; do
  for want in 200 401; do
    got=$(curl -s -o /dev/null -w '%{http_code}' "${REQUEST_HEADERS[@]}" -H "Authorization: DPoP $(cat "$DPOP_DIR/token")" \
      -H "DPoP: $(head -n 1 "$DPOP_DIR/proofs")" "http://127.0.0.1:${LISTEN[$e]}$API")
    what="DPoP token + proof"; [[ $want == 401 ]] && what="the same proof again (replay)"
    if [[ "$got" == "$want" ]]; then printf '  ok   %-16s %-34s %s\n' "$e" "$what" "$got"
    else printf '  FAIL %-16s %-34s %s, expected %s\n' "$e" "$what" "$got" "$want"; FAILED=1; fi
  done
  # A fresh proof for the next Envoy (the first is spent there, and would be here too: one store
  # per Envoy, but keep the check honest).
  node "$HERE/dpop-proofs.mjs" --again "$DPOP_HTU" 1 "$DPOP_DIR"
done
((FAILED == 0)) || die "a case did not answer as it should; not measuring (logs in $RUN)"

# 7. Load.
case_envoy() {
  case $1 in
    noauth | floor | keygate-wide) echo "$1" ;;
    native-cache-* | native-zipf-*) echo native-cache ;;
    native-nocache-*) echo native-nocache ;;
    keygate-cache-* | keygate-public | keygate-apikey | keygate-zipf-* | keygate-backendjwt | keygate-dpop) echo keygate ;;
    keygate-nocache-* | keygate-backendjwt-miss) echo keygate-nocache ;;
  esac
}
case_token() {
  case $1 in
    *-es256) echo "$ES256" ;;
    keygate-public | keygate-apikey | keygate-dpop) echo "" ;;
    *) echo "$RS256" ;;
  esac
}
case_label() {
  case $1 in
    noauth) echo "Envoy, no authentication" ;;
    floor) echo "wasm floor (reads one header)" ;;
    native-cache-*) echo "native jwt_authn+rbac, cache, ${1##*-}" ;;
    native-nocache-*) echo "native jwt_authn+rbac, no cache, ${1##*-}" ;;
    keygate-cache-*) echo "keygate, cache hit, ${1##*-}" ;;
    keygate-nocache-*) echo "keygate, cache off, ${1##*-}" ;;
    keygate-public) echo "keygate, public resource" ;;
    keygate-wide) echo "keygate, cache hit, 1,000 APIs x 20 resources, rs256" ;;
    keygate-apikey) echo "keygate, API key" ;;
    keygate-backendjwt) echo "keygate, cache hit + backend JWT, rs256" ;;
    keygate-backendjwt-miss) echo "keygate, cache off + backend JWT signed, rs256" ;;
    keygate-dpop) echo "keygate, cache hit + fresh DPoP proof, es256" ;;
    native-zipf-*) echo "native, cache, Zipf over ${1##*-} tokens" ;;
    keygate-zipf-*) echo "keygate, cache, Zipf over ${1##*-} tokens" ;;
  esac
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The filter's own cache counters, "hits misses": keygate's keygate_token_cache, jwt_authn's
# jwt_cache_hit/jwt_cache_miss (summed over providers).
cache_counts() { # envoy
  curl -s "http://127.0.0.1:${ADMIN[$1]}/stats?filter=(keygate_token_cache|jwt_cache_hit|jwt_cache_miss)" | awk -F': ' '
    /keygate_token_cache.result.hit|jwt_cache_hit/ { h += $2 }
    /keygate_token_cache.result.miss|jwt_cache_miss/ { m += $2 }
    END { printf "%d %d\n", h, m }'
}
TICKS=$(getconf CLK_TCK)
RESULTS="$RUN/results.jsonl"
: >"$RESULTS"
BAD=0
load() { # case seconds round (round 0: warm-up, not recorded)
  local name=$1 secs=$2 round=$3 envoy port tok pid before after line auth=()
  envoy=$(case_envoy "$name")
  port=${LISTEN[$envoy]}
  pid=${ENVOY_PID[$envoy]}
  tok=$(case_token "$name")
  [[ -n "$tok" ]] && auth=(-H "Authorization: Bearer $tok")
  local path=$API script=("$HERE/report.lua") cache_before cache_after
  [[ "$name" == keygate-public ]] && path=$PUBLIC
  [[ "$name" == keygate-apikey ]] && path=$KEYED && auth=(-H "apikey: $API_KEY")
  [[ "$name" == keygate-backendjwt* ]] && path=$SIGNED
  case $name in
    *-zipf-*) auth=() script=("$HERE/zipf.lua" "http://127.0.0.1:$port$path" -- "$path" "$RUN/population-${name##*-}.txt") ;;
    keygate-dpop)
      # Fresh proofs (iat now) for this run only, made before the clock of the run starts.
      node "$HERE/dpop-proofs.mjs" --again "$DPOP_HTU" $((secs * DPOP_RATE)) "$DPOP_DIR" || die "could not make DPoP proofs"
      script=("$HERE/dpop.lua" "http://127.0.0.1:$port$path" -- "$path" "$DPOP_DIR/token" "$DPOP_DIR/proofs" "$THREADS") ;;
    *) script+=("http://127.0.0.1:$port$path") ;;
  esac
  cache_before=$(cache_counts "$envoy")
  before=$(cpu_ticks "$pid")
  line=$(taskset -c "$CPU_LOAD" wrk -t "$THREADS" -c "$CONNECTIONS" -d "${secs}s" "${REQUEST_HEADERS[@]}" "${auth[@]}" \
    -s "${script[@]}" | tail -n 1)
  after=$(cpu_ticks "$pid")
  cache_after=$(cache_counts "$envoy")
  ((round > 0)) || return 0
  python3 - "$name" "$round" "$line" "$(((after - before)))" "$TICKS" "$secs" "$cache_before" "$cache_after" >>"$RESULTS" <<'PY'
import json, sys
name, rnd, line, ticks, hz, secs, before, after = sys.argv[1:]
run = json.loads(line)
run.update(case=name, round=int(rnd), envoy_cpu=int(ticks) / int(hz) / float(secs))
if not name.startswith(("noauth", "floor")):
    (h0, m0), (h1, m1) = (map(int, before.split()), map(int, after.split()))
    run.update(cache_hits=h1 - h0, cache_misses=m1 - m0)
print(json.dumps(run))
PY
  python3 - "$name" "$round" "$(tail -n 1 "$RESULTS")" <<'PY' || BAD=1
import json, sys
run = json.loads(sys.argv[3]); e = run["errors"]
cache = ""
if "cache_hits" in run:
    looked = run["cache_hits"] + run["cache_misses"]
    cache = f"  cache {run['cache_hits']:,} hits {run['cache_misses']:,} misses" + (
        f" ({run['cache_hits'] / looked:.1%})" if looked else "")
print(f"  round {sys.argv[2]} {sys.argv[1]:<22} {run['rps']:>9,.0f} req/s  p50 {run['p50_ms']:.2f} ms  p99 {run['p99_ms']:.2f} ms"
      + cache + (f"  ERRORS {e}" if any(e.values()) else ""))
sys.exit(1 if e["status"] else 0)
PY
}

N_CASES=$(wc -w <<<"$CASES")
say "load: $N_CASES cases x $ROUNDS rounds x ${SECONDS_PER_CASE}s, $CONNECTIONS connections, $THREADS wrk thread(s), upstream: $UPSTREAM_KIND"
if ((WARMUP > 0)); then
  say "warm-up ${WARMUP}s per case"
  for c in $CASES; do load "$c" "$WARMUP" 0; done
fi
for ((r = 1; r <= ROUNDS; r++)); do
  for c in $CASES; do load "$c" "$SECONDS_PER_CASE" "$r"; done
done

# Evidence that the native JWT cache was used (hit) in the cache case and not in the other.
for e in native-cache native-nocache; do
  printf '  %-15s %s\n' "$e" "$(curl -s "http://127.0.0.1:${ADMIN[$e]}/stats?filter=jwt_authn\\..*(jwt_cache|allowed|denied)" | tr '\n' ' ')"
done

# 8. Resident memory of an Envoy with keygate on 2 workers, after a load run (cache hits, RS256).
start_envoy keygate-2w "$CPU_ENVOY,$CPU_LOAD" 2
await_envoy keygate-2w "${ADMIN[keygate-2w]}"
FAILED=0
expect keygate-2w 200 "$API" "$RS256" "RS256 token (2 workers)"
((FAILED == 0)) || die "keygate on 2 workers did not answer 200"
wrk -t 2 -c "$CONNECTIONS" -d "${SECONDS_PER_CASE}s" "${REQUEST_HEADERS[@]}" -H "Authorization: Bearer $RS256" \
  "http://127.0.0.1:${LISTEN[keygate-2w]}$API" >/dev/null
RSS_KB=$(awk '/^VmRSS:/ {print $2}' "/proc/${ENVOY_PID[keygate-2w]}/status")

# 9. Table and summary.json.
{
  printf '{"wasm_bytes": %s, "envoy_rss_bytes": %s, "cases": [' "$(wc -c <"$WASM")" "$((RSS_KB * 1024))"
  sep=""
  for c in $CASES; do printf '%s{"name": "%s", "label": "%s"}' "$sep" "$c" "$(case_label "$c")"; sep=", "; done
  printf '], "method": {"envoy": "%s", "seconds": %s, "rounds": %s, "connections": %s, "wrk_threads": %s, "upstream": "%s", "envoy_cpu": %s, "load_cpu": %s, "best_of": "highest req/s"}}\n' \
    "$("$ENVOY_BIN" --version | grep -o '[0-9]*\.[0-9]*\.[0-9]*' | head -n 1)" "$SECONDS_PER_CASE" "$ROUNDS" "$CONNECTIONS" "$THREADS" \
    "$UPSTREAM_KIND" "$CPU_ENVOY" "$CPU_LOAD"
} >"$RUN/meta.json"
echo
python3 "$HERE/bench.py" summarize --results "$RESULTS" --meta "$RUN/meta.json" --out "$OUT/summary.json"
echo
say "keygate.wasm $(wc -c <"$WASM") bytes; Envoy with keygate on 2 workers: VmRSS $((RSS_KB / 1024)) MiB after load"
say "wrote ${OUT#"$ROOT"/}/summary.json (runs: ${RESULTS#"$ROOT"/})"
((BAD == 0)) || die "some runs had non-2xx answers (see ERRORS above): those numbers do not measure the case"
WASM_LIMIT=1000000
(($(wc -c <"$WASM") <= WASM_LIMIT)) || die "keygate.wasm is $(wc -c <"$WASM") bytes, over the 1 MB budget ($WASM_LIMIT bytes)"
