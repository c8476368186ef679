#!/usr/bin/env bash
# Load test of plugboard on NATS JetStream against the same server on SQLite, in one run, on
# loopback: signed webhooks -> verified -> stored -> 200 (wrk, 64 connections in all), each
# webhook also queued for a delivery to a second echo instance (its `ping` action); then how
# long the deliveries queued during the load take to drain. Four setups: one node on SQLite; one
# node on one nats-server (R1); three nodes on that server; three nodes on a three-server
# cluster (R3). Each webhook carries a random delivery id, as run.sh's do
# (PLUGBOARD_LOAD_DELIVERY_IDS=0 sends none). Everything shares this machine's cores, so the
# figures compare costs, not how several machines would scale (see the README).
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
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$dir"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
secret=shpss_load_test
printf %s "$secret" > "$dir/secret"
nats_port=$(free_port)
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$dir/nats" >/dev/null 2>&1 &
pids+=($!)
# A three-server cluster, for three nodes with every stream on all three servers (R3).
cluster_ports=($(free_port) $(free_port) $(free_port))
routes_ports=($(free_port) $(free_port) $(free_port))
routes=$(printf 'nats://127.0.0.1:%s,' "${routes_ports[@]}")
for i in 0 1 2; do
  nats-server -a 127.0.0.1 -p "${cluster_ports[$i]}" -js -sd "$dir/cluster$i" --server_name "n$i" \
    --cluster "nats://127.0.0.1:${routes_ports[$i]}" --cluster_name load --routes "${routes%,}" >/dev/null 2>&1 &
  pids+=($!)
done
for p in "$nats_port" "${cluster_ports[@]}"; do
  for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
done
sleep 2  # the cluster elects its meta leader
export BODY='{"id":820982911946154508,"email":"jon@example.com","total_price":"199.00","currency":"EUR"}'
export SIGNATURE=$(python3 -c 'import base64,hashlib,hmac,os,sys; print(base64.b64encode(hmac.new(sys.argv[1].encode(), os.environ["BODY"].encode(), hashlib.sha256).digest()).decode())' "$secret")

run() { # name, number of nodes, [store] table (NODE is replaced by the node's number)
  local name=$1 nodes=$2 store=$3 ports=() servers=() i
  for ((i = 0; i < nodes; i++)); do
    ports+=($(free_port))
    cat > "$dir/$name-$i.toml" <<TOML
[server]
listen = "127.0.0.1:${ports[$i]}"
[store]
${store//NODE/$i}
[[plugin]]
id = "shop"
wasm = "$PWD/target/wasm-guests/wasm32-wasip2/guest/echo.wasm"
[plugin.webhook]
verify = { scheme = "shopify" }
secrets = ["file:secret"]
[[plugin]]
id = "sink"
wasm = "$PWD/target/wasm-guests/wasm32-wasip2/guest/echo.wasm"
[[route]]
name = "to-sink"
from = "shop"
kind = "echo/received"
to = "sink"
action = "ping"
TOML
    "$bin" up --config "$dir/$name-$i.toml" 2>"$dir/$name-$i.log" &
    servers+=($!)
    pids+=($!)
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:${ports[$i]}/healthz" >/dev/null && break; sleep 0.1; done
  done
  echo "== $name: signed webhook -> verified -> stored (with its delivery queued) -> 200, $nodes node(s), 64 connections in all"
  # One wrk per node, the connections shared out; their rates added up.
  local wrks=()
  for ((i = 0; i < nodes; i++)); do
    wrk -t$((nodes == 1 ? 2 : 1)) -c$((64 / nodes)) -d"${secs}s" --latency -s tests/load/webhook.lua \
      "http://127.0.0.1:${ports[$i]}/hooks/shop" > "$dir/$name-wrk-$i.txt" &
    wrks+=($!)
  done
  wait "${wrks[@]}"
  cat "$dir"/$name-wrk-*.txt | awk '/Requests\/sec/ {r += $2} /^ +99%/ {p = p " " $2} /Non-2xx/ {n += $4}
    END { printf "   %.0f req/s in all; p99 per node:%s; non-2xx: %d\n", r, p, n }'
  local start=$(date +%s.%N) depth
  while :; do
    depth=$(curl -sf "http://127.0.0.1:${ports[0]}/metrics" | awk '/^plugboard_queue_depth /{print $2}')
    [ "${depth:-1}" = 0 ] && break
    sleep 0.2
  done
  echo "   deliveries queued during the load drained in $(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$start" "$(date +%s.%N)") s after it"
  kill "${servers[@]}"; wait "${servers[@]}" 2>/dev/null || true
}

run sqlite 1 'path = "events.db"'
# The [store] table of a NATS setup: its stream and subjects (each setup its own), servers and
# replicas.
nats_store() { # name, servers, replicas
  printf 'backend = "nats"\npath = "%s-NODE.db"\n[store.nats]\nservers = [%s]\nstream = "%s"\nsubject_prefix = "%s"\nreplicas = %s\n' \
    "$1" "$2" "${1^^}" "$1" "$3"
}
one="\"nats://127.0.0.1:$nats_port\""
cluster=$(printf '"nats://127.0.0.1:%s", ' "${cluster_ports[@]}")
run nats-1-node 1 "$(nats_store one "$one" 1)"
run nats-3-nodes 3 "$(nats_store three "$one" 1)"
run nats-3-nodes-r3 3 "$(nats_store r3 "${cluster%, }" 3)"
