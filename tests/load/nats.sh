#!/usr/bin/env bash
# Load test of plugboard on NATS JetStream against the same server on SQLite, in one run, on
# loopback: signed webhooks -> verified -> stored -> 200 (wrk, 64 connections), each webhook
# also queued for a delivery to a second echo instance (its `ping` action); then how long the
# deliveries queued during the load take to drain. One nats-server (R1, file storage), so the
# figures are the path's own cost, not replication's.
# Usage: tests/load/nats.sh [seconds]   (needs wrk, and nats-server: ./dev setup installs it)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
command -v nats-server >/dev/null || { echo "nats-server is not installed (./dev setup)" >&2; exit 1; }
bin=${PLUGBOARD_BIN:-target/release/plugboard}
[ -n "${PLUGBOARD_BIN:-}" ] || cargo build --quiet --release -p plugboard-cli
cargo build --quiet -p plugboard-tests   # builds the echo plugin
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null; rm -rf "$dir"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
secret=shpss_load_test
printf %s "$secret" > "$dir/secret"
nats_port=$(free_port)
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$dir/nats" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break; sleep 0.1; done
export BODY='{"id":820982911946154508,"email":"jon@example.com","total_price":"199.00","currency":"EUR"}'
export SIGNATURE=$(python3 -c 'import base64,hashlib,hmac,os,sys; print(base64.b64encode(hmac.new(sys.argv[1].encode(), os.environ["BODY"].encode(), hashlib.sha256).digest()).decode())' "$secret")

run() { # backend, store table
  local name=$1 store=$2 port
  port=$(free_port)
  cat > "$dir/$name.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[store]
$store
[[plugin]]
id = "shop"
wasm = "$PWD/target/wasm-guests/wasm32-wasip2/guest/echo.wasm"
[plugin.webhook]
verify = { scheme = "shopify" }
secrets = ["file:secret"]
[[plugin]]
id = "sink"
wasm = "$PWD/target/wasm-guests/wasm32-wasip2/guest/echo.wasm"
grants = { capabilities = ["kv", "emit", "config", "log"] }
[[route]]
name = "to-sink"
from = "shop"
kind = "echo/received"
to = "sink"
action = "ping"
TOML
  "$bin" up --config "$dir/$name.toml" 2>"$dir/$name.log" &
  local server=$!
  pids+=($server)
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  echo "== $name: signed webhook -> verified -> stored (with its delivery queued) -> 200"
  wrk -t2 -c64 -d"${secs}s" --latency -s tests/load/webhook.lua "http://127.0.0.1:$port/hooks/shop" | grep -E "Requests/sec|99%|Non-2xx"
  local start=$(date +%s.%N) depth
  while :; do
    depth=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^plugboard_queue_depth /{print $2}')
    [ "${depth:-1}" = 0 ] && break
    sleep 0.2
  done
  echo "   deliveries queued during the load drained in $(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$start" "$(date +%s.%N)") s"
  kill "$server"; wait "$server" 2>/dev/null || true
}

run sqlite 'path = "events.db"'
run nats "backend = \"nats\"
path = \"node.db\"
[store.nats]
servers = [\"nats://127.0.0.1:$nats_port\"]
replicas = 1"
