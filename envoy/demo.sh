#!/usr/bin/env bash
# `make run`: the keygate demo on 127.0.0.1. Starts the demo key manager (oidc-provider), the echo
# upstream and Envoy with the keygate filter, prints how to get a token and call the API, and stops
# everything it started when it exits (Ctrl-C included).
#
# Ports: KEYMANAGER_PORT (9000), ECHO_PORT (3000); listener 8080 and admin 9901 come from the
# declaration. Envoy: KEYGATE_ENVOY, else .venv/bin/envoy. CLI: KEYGATE_BIN, else target/release/keygate.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KEYMANAGER_PORT="${KEYMANAGER_PORT:-9000}"
ECHO_PORT="${ECHO_PORT:-3000}"
LISTEN_PORT=8080
ADMIN_PORT=9901
ENVOY_BIN="${KEYGATE_ENVOY:-$ROOT/.venv/bin/envoy}"
KEYGATE_BIN="${KEYGATE_BIN:-$ROOT/target/release/keygate}"
DEMO="$ROOT/target/demo"
KEYMANAGER_DIR="$ROOT/tests/keymanager"
READY_SECONDS="${DEMO_READY_SECONDS:-60}"

PIDS=()

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

# Kill exactly the processes this script started, by PID, then reap them.
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if ((${#PIDS[@]})); then
    say "stopping (pids ${PIDS[*]})"
    kill "${PIDS[@]}" 2>/dev/null || true
    wait "${PIDS[@]}" 2>/dev/null || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# True when something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp, no curl needed).
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Status code of GET http://127.0.0.1:$1$2, or nothing when the connection fails.
http_status() {
  local line
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
  IFS=' ' read -r -t 5 _ line _ <&3 || true
  exec 3<&-
  printf '%s' "$line"
}

# Waits until file $1 has a line starting with $2, while process $3 lives; bounded by READY_SECONDS.
wait_for_line() {
  local file=$1 prefix=$2 pid=$3 deadline=$((SECONDS + READY_SECONDS))
  until grep -q "^$prefix" "$file" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; die "process $pid exited before printing '$prefix'"; }
    ((SECONDS < deadline)) || die "no '$prefix' from pid $pid within ${READY_SECONDS}s (see $file)"
    sleep 0.2
  done
}

require_free() {
  if listening "$1"; then
    die "127.0.0.1:$1 is already in use ($2); stop whatever listens there or set another port"
  fi
}

[[ -d "$KEYMANAGER_DIR/node_modules/oidc-provider" ]] || die "key manager dependencies missing: run 'make deps'"
[[ -x "$ENVOY_BIN" ]] || die "Envoy not found at $ENVOY_BIN: run 'make deps' (or set KEYGATE_ENVOY)"
[[ -x "$KEYGATE_BIN" ]] || die "keygate CLI not found at $KEYGATE_BIN: run 'make cli'"
command -v node >/dev/null || die "node not found: install Node.js 20.19+"

require_free "$KEYMANAGER_PORT" "key manager"
require_free "$ECHO_PORT" "echo upstream"
require_free "$LISTEN_PORT" "Envoy listener"
require_free "$ADMIN_PORT" "Envoy admin"

mkdir -p "$DEMO"

# 1. Key manager. Its keys persist in target/demo so tokens survive a restart of the demo.
say "starting key manager on 127.0.0.1:$KEYMANAGER_PORT"
(cd "$KEYMANAGER_DIR" && exec node server.mjs --port "$KEYMANAGER_PORT" --keys "$DEMO/keymanager-keys.json") \
  >"$DEMO/keymanager.out" 2>"$DEMO/keymanager.log" &
PIDS+=($!)
wait_for_line "$DEMO/keymanager.out" "KEYMANAGER READY" "$!"
ISSUER="http://127.0.0.1:$KEYMANAGER_PORT"

# 2. Echo upstream: shows which headers the gateway forwards.
say "starting echo upstream on 127.0.0.1:$ECHO_PORT"
(cd "$KEYMANAGER_DIR" && exec node echo.mjs --port "$ECHO_PORT") >"$DEMO/echo.out" 2>"$DEMO/echo.log" &
PIDS+=($!)
wait_for_line "$DEMO/echo.out" "ECHO READY" "$!"

# 3. Generate the Envoy bootstrap from the declaration (with this run's ports).
sed -e "s#127.0.0.1:9000#127.0.0.1:$KEYMANAGER_PORT#g" -e "s#127.0.0.1:3000#127.0.0.1:$ECHO_PORT#g" \
  "$ROOT/envoy/demo.keygate.yaml" >"$DEMO/keygate.yaml"
say "keygate generate --input target/demo/keygate.yaml --out target/demo"
"$KEYGATE_BIN" generate --input "$DEMO/keygate.yaml" --out "$DEMO" \
  || die "keygate generate failed (see the message above)"
[[ -f "$DEMO/envoy.yaml" ]] || die "keygate generate wrote no $DEMO/envoy.yaml"

# 4. Envoy with the filter.
say "starting Envoy (listener 127.0.0.1:$LISTEN_PORT, admin 127.0.0.1:$ADMIN_PORT)"
"$ENVOY_BIN" -c "$DEMO/envoy.yaml" --use-dynamic-base-id --concurrency 1 -l info \
  >"$DEMO/envoy.log" 2>&1 &
ENVOY_PID=$!
PIDS+=("$ENVOY_PID")
deadline=$((SECONDS + READY_SECONDS))
until [[ "$(http_status "$ADMIN_PORT" /ready 2>/dev/null)" == 200 ]]; do
  kill -0 "$ENVOY_PID" 2>/dev/null || { tail -n 40 "$DEMO/envoy.log" >&2; die "Envoy exited (log: target/demo/envoy.log)"; }
  ((SECONDS < deadline)) || die "Envoy not ready within ${READY_SECONDS}s (log: target/demo/envoy.log)"
  sleep 0.2
done

# 5. The console (keygate console): its own store and output directory, target/demo/console,
#    signing in at the demo key manager (client keygate-console). It is also the application
#    directory of the Envoy it configures (--directory-url: applications, client IDs and
#    subscriptions reach that Envoy from the console's /keygate/directory, not the plugin config).
CONSOLE_PORT="${CONSOLE_PORT:-9500}"
require_free "$CONSOLE_PORT" "console"
say "starting keygate console on 127.0.0.1:$CONSOLE_PORT"
mkdir -p "$DEMO/console"
KEYGATE_CONSOLE_CLIENT_SECRET=keygate-console-secret "$KEYGATE_BIN" console --out "$DEMO/console" \
  --listen "127.0.0.1:$CONSOLE_PORT" --oidc-well-known-url "$ISSUER/.well-known/openid-configuration" \
  --api-audience https://api.keygate.test --gateway-listen "127.0.0.1:$((LISTEN_PORT + 1))" \
  --gateway-admin "127.0.0.1:$((ADMIN_PORT + 1))" \
  --directory-url "http://127.0.0.1:$CONSOLE_PORT/keygate/directory" \
  >"$DEMO/console.out" 2>"$DEMO/console.log" &
PIDS+=("$!")
wait_for_line "$DEMO/console.out" "CONSOLE READY" "$!"

API="http://127.0.0.1:$LISTEN_PORT/pets/v1"
TOKEN_URL="$ISSUER/token"
PICK='import sys, json; print(json.load(sys.stdin)["access_token"])'
cat <<MSG

keygate demo is running. Ctrl-C stops it.

  key manager  $ISSUER   (discovery: $ISSUER/.well-known/openid-configuration)
  upstream     http://127.0.0.1:$ECHO_PORT   (echoes method, path and headers)
  gateway      $API   (Envoy admin: http://127.0.0.1:$ADMIN_PORT)
  logs         target/demo/{keymanager,echo,envoy}.log

Where each decision shows:

  access log   target/demo/envoy.log: one JSON line per request, "keygate_code" the reason code
               (allowed, missing_token, not_subscribed, ...; "details" is Envoy's own), e.g.
               tail -f target/demo/envoy.log | grep --line-buffered keygate_code
  metrics      curl -s http://127.0.0.1:$ADMIN_PORT/stats/prometheus | grep '^keygate_'
               (keygate_requests{outcome, reason, key_manager, api} and the rest: docs/metrics.md)
  dashboard    dashboards/keygate.json: import it into Grafana over a Prometheus that scrapes
               http://127.0.0.1:$ADMIN_PORT/stats/prometheus

Application token (client_credentials), then call the API with it:

  TOKEN=\$(curl -s -u shop-app:shop-app-secret -d grant_type=client_credentials -d scope=pets:read $TOKEN_URL | python3 -c '$PICK')
  curl -i -H "Authorization: Bearer \$TOKEN" $API/pets

User token (password grant; alice is in group pet-admins, so she may POST):

  TOKEN=\$(curl -s -u shop-app:shop-app-secret -d grant_type=password -d username=alice -d password=alice-pass -d scope=pets:write $TOKEN_URL | python3 -c '$PICK')
  curl -i -X POST -H "Authorization: Bearer \$TOKEN" -H 'content-type: application/json' -d '{"name":"rex"}' $API/pets

Without a token (401), and the public resource (200):

  curl -i $API/pets
  curl -i $API/health

With the demo API key instead of a token (the catalog API accepts only keys):

  curl -i -H 'apikey: kg_MRNQcG-fEvMzRYn7Gad0yxqJ4bKRuFT1VqUA1bV2nkU' http://127.0.0.1:$LISTEN_PORT/catalog/v1/items

Console: http://127.0.0.1:$CONSOLE_PORT  (docs/console.md)
  administrator carol / carol-pass (group keygate-admins); developers dave / dave-pass, erin / erin-pass
  Its gateway configuration goes to target/demo/console (envoy -c target/demo/console/envoy.yaml
  runs a second Envoy on 127.0.0.1:$((LISTEN_PORT + 1)) once a key manager and an API are added;
  that Envoy reads applications from the console's directory, http://127.0.0.1:$CONSOLE_PORT/keygate/directory).

Other demo clients: other-app (not subscribed: 403), blocked-app (subscription blocked: 403),
orphan-app (no application: 403); secrets are <client>-secret. User bob/bob-pass has no groups.
Rotate the signing key: curl -X POST $ISSUER/admin/rotate

MSG

# Stay in the foreground until Ctrl-C, or until one of the processes dies on its own.
set +e
wait -n "${PIDS[@]}"
status=$?
set -e
say "a demo process exited (status $status); stopping the rest"
exit 1
