#!/usr/bin/env bash
# Load test of the webhook path on loopback, every system in the same run on the same cores, each
# sent the same signed Shopify `orders/create` webhook by wrk (2 threads, 64 connections), each
# request with a delivery id of its own (a random UUID in `X-Shopify-Webhook-Id`, as Shopify
# sends; PLUGBOARD_LOAD_DELIVERY_IDS=0 sends none, as the script did before):
#   1. the ceiling: a bare axum handler that reads the POST body and answers 200
#      (tests/examples/bare_handler.rs; verifies, runs and stores nothing); and the same handler
#      answering only after the body is appended to a file and fdatasynced, bodies waiting
#      together in one write (`--durable`: the least an answer after a durable write costs on
#      this machine, with none of a store's work);
#   2. plugboard, acknowledged after processing (the default): verified -> echo connector ->
#      events stored durably (SQLite, WAL, synchronous=FULL, group commit) -> 200;
#      and the same with the echo connector's instances reused (`reuse = { calls = 10000 }`);
#   3. plugboard, acknowledged on receipt (`acknowledge = "on-receipt"`): verified -> the request
#      stored durably -> 200; the connector runs afterwards as a delivery (how long that backlog
#      takes to drain is printed too), with 64 deliveries at once and with one (a burst taken in
#      while processing waits);
#   4. Node-RED 4: http in -> a function node that checks the HMAC -> http response (stores
#      nothing; installed from npm into tests/load/node-red on first use; PLUGBOARD_LOAD_NODE_RED=0
#      skips it);
#   5. the bare handler and plugboard with reused instances again, each on one runtime thread
#      (TOKIO_WORKER_THREADS=1).
# Then each one's ratio to the bare handler on the same runtime setting, to the durable bare
# handler and to Node-RED, and each server's CPU time per request during its load (steadier than
# req/s on a shared machine).
# Usage: tests/load/run.sh [seconds]   (needs wrk: apt-get install wrk)
# PLUGBOARD_BIN=path runs another build of plugboard (to compare two builds in one session).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
bin=${PLUGBOARD_BIN:-target/release/plugboard}
[ -n "${PLUGBOARD_BIN:-}" ] || cargo build --quiet --release -p plugboard-cli
cargo build --quiet --release -p plugboard-tests --example bare_handler
cargo build --quiet -p plugboard-tests   # builds the echo plugin
node_red=${PLUGBOARD_LOAD_NODE_RED:-1}
if [ "$node_red" != 0 ] && [ ! -d tests/load/node-red/node_modules/node-red ]; then
  echo "==> installing Node-RED 4 from npm (tests/load/node-red)"
  (cd tests/load/node-red && npm ci --no-audit --no-fund --silent)
fi
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null; rm -rf "$dir"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Stops a server this script started, and forgets it (the exit trap then kills only those
# still running, never a process that was given a finished one's pid).
stop() { # pid
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local kept=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
  pids=("${kept[@]}")
}
wait_for() { # port, path
  for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$1$2" && return 0; sleep 0.1; done
  echo "nothing answered on port $1" >&2; exit 1
}
secret=shpss_load_test
printf %s "$secret" > "$dir/secret"
export BODY='{"id":820982911946154508,"email":"jon@example.com","total_price":"199.00","currency":"EUR"}'
export SIGNATURE=$(python3 -c 'import base64,hashlib,hmac,os,sys; print(base64.b64encode(hmac.new(sys.argv[1].encode(), os.environ["BODY"].encode(), hashlib.sha256).digest()).decode())' "$secret")

# CPU time a process has used so far, in clock ticks (user + system, /proc/PID/stat; counted
# after the name in parentheses, which may hold spaces), or nothing if it is gone.
cpu_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null || true; }
load() { # name, port, server pid: runs wrk, prints its figures, records "name req/s p99 cpu" in $dir/results
  echo "== $1"
  local before after
  before=$(cpu_ticks "$3")
  wrk -t2 -c64 -d"${secs}s" --latency -s tests/load/webhook.lua "http://127.0.0.1:$2/hooks/shop" > "$dir/wrk.txt"
  after=$(cpu_ticks "$3")
  grep -E "Requests/sec|99%|Latency |Non-2xx|Socket errors" "$dir/wrk.txt" | sed 's/^/   /'
  # The server's CPU time per request during the load (work it left queued, such as deliveries
  # still due when wrk stops, is not counted): steadier than req/s on a shared machine, where wrk
  # takes its share of the same cores. -1 when it could not be measured.
  awk -v name="$1" -v before="$before" -v after="$after" -v hz="$(getconf CLK_TCK)" \
    '/requests in/ {n = $1} /Requests\/sec/ {r = $2} /^ +99%/ {p = $2}
     END {us = (n > 0 && before != "" && after != "") ? (after - before) * 1e6 / hz / n : -1;
          if (us >= 0) printf "   server CPU during the load: %.1f us per request\n", us > "/dev/stderr";
          printf "%s\t%s\t%s\t%.1f\n", name, (r == "" ? 0 : r), (p == "" ? "-" : p), us}' "$dir/wrk.txt" >> "$dir/results"
}

bare() { # name[, more arguments for the handler]
  local port server name=$1
  shift
  port=$(free_port)
  target/release/examples/bare_handler "127.0.0.1:$port" "$@" &
  server=$!
  pids+=($server)
  wait_for "$port" /
  load "$name" "$port" $server
  stop $server
}
if [ "${PLUGBOARD_LOAD_DELIVERY_IDS:-1}" = 0 ]; then
  echo "== every webhook without a delivery id (PLUGBOARD_LOAD_DELIVERY_IDS=0)"
else
  echo "== every webhook with a random delivery id of its own (PLUGBOARD_LOAD_DELIVERY_IDS=0 sends none)"
fi
bare "bare axum handler: POST -> 200"
bare "durable bare handler: POST -> body appended to a file, fdatasync -> 200" --durable "$dir/durable.log"
rm -f "$dir/durable.log"

plugboard() { # name, acknowledge mode, deliveries at once, directory[, more lines for the plugin table]
  local port run=$dir/$4
  port=$(free_port)
  mkdir -p "$run"
  cat > "$run/plugboard.toml" <<TOML
delivery_concurrency = $3
[server]
listen = "127.0.0.1:$port"
[store]
path = "events.db"
[[plugin]]
id = "shop"
wasm = "$PWD/target/wasm-guests/wasm32-wasip2/guest/echo.wasm"
${5:-}
[plugin.webhook]
verify = { scheme = "shopify" }
secrets = ["file:$dir/secret"]
acknowledge = "$2"
TOML
  "$bin" up --config "$run/plugboard.toml" 2>"$run/log" &
  local server=$!
  pids+=($server)
  wait_for "$port" /healthz
  load "$1" "$port" $server
  local start=$(date +%s.%N) depth
  while :; do
    depth=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^plugboard_queue_depth /{print $2}')
    [ "${depth:-1}" = 0 ] && break
    sleep 0.2
  done
  local drained
  drained=$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$start" "$(date +%s.%N)")
  stop $server
  python3 - "$run/events.db" "$drained" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
count = lambda sql: db.execute(sql).fetchone()[0]
events = count("select count(*) from events")
queued = count("select count(*) from delivery_queue")
done = count("select count(*) from delivery_queue where status = 'delivered'")
ids = count("select count(*) from webhook_deliveries")
print(f"   stored: {events} events, {ids} delivery ids; {queued} deliveries, {done} done (the backlog drained {sys.argv[2]} s after the load)")
PY
}
plugboard "plugboard, acknowledged after processing: verified -> connector -> stored -> 200" after-processing 64 after
# The same with the connector's instances reused (`reuse`: its memory shared between webhooks).
plugboard "plugboard, acknowledged after processing, instances reused (reuse = { calls = 10000 })" after-processing 64 reused "reuse = { calls = 10000 }"
plugboard "plugboard, acknowledged on receipt: verified -> request stored -> 200 (connector runs as deliveries, 64 at once)" on-receipt 64 receipt
# The same with deliveries one at a time: how fast a burst is taken in when processing waits.
plugboard "plugboard, acknowledged on receipt, deliveries one at a time (a burst taken in, processed after)" on-receipt 1 burst

if [ "$node_red" != 0 ]; then
  port=$(free_port)
  cp tests/load/node-red/flows.json tests/load/node-red/settings.js "$dir/"
  SHOPIFY_SECRET=$secret node tests/load/node-red/node_modules/node-red/red.js \
    --settings "$dir/settings.js" --userDir "$dir" --port "$port" >"$dir/node-red.log" 2>&1 &
  red=$!
  pids+=($red)
  wait_for "$port" /hooks/shop
  load "Node-RED 4: http in -> HMAC function -> response (stores nothing)" "$port" $red
  stop $red
fi

# Both again on one runtime thread (TOKIO_WORKER_THREADS=1, which `plugboard up` reads as every
# tokio program does): here wrk shares the two cores, and fewer hand-offs between threads make
# the bare handler and plugboard with reused instances cheaper per request; a fresh instance per
# webhook needs the second thread. Each is compared with the bare handler on the same setting.
TOKIO_WORKER_THREADS=1 bare "bare axum handler, one runtime thread (TOKIO_WORKER_THREADS=1)"
TOKIO_WORKER_THREADS=1 plugboard "plugboard, instances reused, one runtime thread (TOKIO_WORKER_THREADS=1)" after-processing 64 reused-1 "reuse = { calls = 10000 }"

echo "== summary (req/s, p99, ratio to the bare handler, to the durable bare handler and to Node-RED, server CPU per request during the load)"
python3 - "$dir/results" <<'PY'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
rate = {name: float(r) or float("nan") for name, r, _, _ in rows}
red = next((name for name, _, _, _ in rows if name.startswith("Node-RED")), None)
durable = None
for name, r, p99, cpu in rows:
    # Each row's ratios are to the bare handler (and the durable one) measured last before it,
    # on the same runtime settings.
    if name.startswith("bare"):
        bare, durable = name, None
    elif name.startswith("durable"):
        durable = name
    vs_durable = f"{float(r) / rate[durable]:.2f}x durable" if durable else " " * 12
    vs_red = f"{float(r) / rate[red]:.2f}x Node-RED" if red else ""
    cpu = f"{float(cpu):6.1f} us CPU" if float(cpu) >= 0 else "   n/a CPU"
    print(f"   {float(r):>10,.0f} req/s  p99 {p99:>8}  {float(r) / rate[bare]:.2f}x bare  {vs_durable}  "
          f"{vs_red}  {cpu}  {name.split(':')[0]}")
PY
