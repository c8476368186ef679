#!/usr/bin/env bash
# Load test of the webhook path on loopback: signed webhook -> verified -> connector -> stored
# durably (SQLite, WAL, synchronous=FULL, group commit) -> 200, against a baseline measured in the
# same run: the same server's bare `GET /healthz` handler. 64 connections, wrk on the same cores.
# Usage: tests/load/run.sh [seconds]   (needs wrk: apt-get install wrk)
# PLUGBOARD_BIN=path runs another build of plugboard (to compare two builds in one session).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
bin=${PLUGBOARD_BIN:-target/release/plugboard}
[ -n "${PLUGBOARD_BIN:-}" ] || cargo build --quiet --release -p plugboard-cli
cargo build --quiet -p plugboard-tests   # builds the echo plugin
dir=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$dir"' EXIT
secret=shpss_load_test
printf %s "$secret" > "$dir/secret"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$dir/plugboard.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[store]
path = "events.db"
[[plugin]]
id = "shop"
wasm = "$PWD/target/wasm-guests/wasm32-wasip2/guest/echo.wasm"
[plugin.webhook]
verify = { scheme = "shopify" }
secrets = ["file:secret"]
TOML
"$bin" up --config "$dir/plugboard.toml" 2>/dev/null &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
export BODY='{"id":820982911946154508,"email":"jon@example.com","total_price":"199.00","currency":"EUR"}'
export SIGNATURE=$(python3 -c 'import base64,hashlib,hmac,os,sys; print(base64.b64encode(hmac.new(sys.argv[1].encode(), os.environ["BODY"].encode(), hashlib.sha256).digest()).decode())' "$secret")
echo "== baseline: bare handler (GET /healthz)"
wrk -t2 -c64 -d"${secs}s" --latency "http://127.0.0.1:$port/healthz" | grep -E "Requests/sec|99%|Latency "
echo "== signed webhook -> verified -> stored -> 200"
wrk -t2 -c64 -d"${secs}s" --latency -s tests/load/webhook.lua "http://127.0.0.1:$port/hooks/shop" | grep -E "Requests/sec|99%|Latency |Non-2xx"
python3 - "$dir/events.db" <<'PY'
import sqlite3, sys
print("events stored:", sqlite3.connect(sys.argv[1]).execute("select count(*) from events").fetchone()[0])
PY
