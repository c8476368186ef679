#!/usr/bin/env bash
# Polyglot connectors under `plugboard up`, as issue 13 measures them: each webhook (unverified,
# on loopback) makes one event, routed to the `handle` of seven instances, delivered one at a
# time: the Rust echo plugin, the Python connector (componentize-py, tests/python-guest) and the
# JavaScript one (componentize-js, tests/js-guest), the last two each on a fresh instance per
# event (the default), with `reuse = { calls = 1000 }`, and with `prepare_ahead = true` (a fresh
# instance per event, instantiated before the event comes). Webhooks arrive one by one, 20 ms
# apart; each attempt's duration is what the server recorded (claim to outcome excluded). Then
# each of the seven gets a burst of its own: as many webhooks again, sent back to back to a
# webhook routed to it alone, delivered one at a time while the burst comes in (a steady stream
# of events, where the instance's code and memory stay in the CPU's caches).
# Usage: tests/load/polyglot.sh [webhooks]
set -euo pipefail
# Any other failing step (a request refused, the server gone) says where, instead of ending silently.
trap 'echo "polyglot.sh: the command on line $LINENO failed" >&2' ERR
cd "$(dirname "$0")/../.."
n=${1:-50}
cargo build --quiet --release -p plugboard-cli
cargo build --quiet -p plugboard-tests   # builds the echo plugin
mapfile -t components < <(cargo run --quiet --release -p plugboard-tests --example polyglot_components)
python=${components[0]}
js=${components[1]}
dir=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; wait 2>/dev/null; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo_wasm=$PWD/target/wasm-guests/wasm32-wasip2/guest/echo.wasm
grants='grants = { capabilities = ["kv", "log"] }'
targets="rust python python-reused python-prepared js js-reused js-prepared"
{
  cat <<TOML
delivery_concurrency = 1
[server]
listen = "127.0.0.1:$port"
[store]
path = "events.db"
[[plugin]]
id = "shop"
wasm = "$echo_wasm"
webhook = { verify = { scheme = "none" } }
[[plugin]]
id = "rust"
wasm = "$echo_wasm"
grants = { capabilities = ["kv", "log", "config", "emit"] }
TOML
  for lang in python js; do
    wasm=$([ $lang = python ] && echo "$python" || echo "$js")
    printf '[[plugin]]\nid = "%s"\nwasm = "%s"\n%s\n' "$lang" "$wasm" "$grants"
    printf '[[plugin]]\nid = "%s-reused"\nwasm = "%s"\n%s\nreuse = { calls = 1000 }\n' "$lang" "$wasm" "$grants"
    printf '[[plugin]]\nid = "%s-prepared"\nwasm = "%s"\n%s\nprepare_ahead = true\n' "$lang" "$wasm" "$grants"
  done
  for target in $targets; do
    printf '[[route]]\nname = "to-%s"\nfrom = "shop"\nkind = "echo/*"\nto = "%s"\n' "$target" "$target"
    # The burst's own webhook, routed to this target alone.
    printf '[[plugin]]\nid = "burst-%s"\nwasm = "%s"\nwebhook = { verify = { scheme = "none" } }\n' "$target" "$echo_wasm"
    printf '[[route]]\nname = "burst-%s"\nfrom = "burst-%s"\nkind = "echo/*"\nto = "%s"\n' "$target" "$target" "$target"
  done
} > "$dir/plugboard.toml"
(cd "$dir" && exec "$OLDPWD/target/release/plugboard" up --config plugboard.toml 2>"$dir/log") &
server=$!
# A first start compiles the Python and JavaScript components (seconds each on this machine).
for _ in $(seq 1800); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" || { echo "plugboard never answered:" >&2; cat "$dir/log" >&2; exit 1; }
drained() { # waits until every delivery is done
  for _ in $(seq 3000); do
    depth=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^plugboard_queue_depth /{print $2}')
    [ "${depth:-1}" = 0 ] && return 0
    sleep 0.01
  done
}
for i in $(seq "$n"); do
  curl -sf -o /dev/null -H 'content-type: application/json' -d "{\"order\": $i}" "http://127.0.0.1:$port/hooks/shop"
  # Wait for the seven deliveries, so that each runs on its own, as when events arrive one by one.
  drained
  sleep 0.02
done
for target in $targets; do
  python3 - "$port" "$target" "$n" <<'PY'
import http.client, sys
port, target, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
connection = http.client.HTTPConnection("127.0.0.1", int(port))
for i in range(n):
    connection.request("POST", f"/hooks/burst-{target}", body=b'{"order": %d}' % i,
                       headers={"content-type": "application/json"})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"the burst's webhook {i} to {target} was answered {response.status}")
PY
  drained
done
kill $server; wait $server 2>/dev/null || true
python3 - "$dir/events.db" "$n" "$targets" <<'PY'
import sqlite3, statistics, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute(
    "select q.route, q.target, a.duration_us from attempts a join delivery_queue q on q.id = a.delivery "
    "where a.outcome = 'delivered'"
).fetchall()
by = {}
for route, target, us in rows:
    by.setdefault((route.startswith("burst-"), target), []).append(us)
for burst, title in [(False, "events one by one"), (True, "events back to back, one plugin at a time")]:
    print(f"`handle` under plugboard up, {sys.argv[2]} {title}: median ms per attempt (p90)")
    for target in sys.argv[3].split():
        runs = sorted(by.get((burst, target), []))
        if not runs:
            print(f"   {target:<16} no attempts delivered")
            continue
        p90 = runs[int(len(runs) * 0.9) - 1] if len(runs) >= 10 else runs[-1]
        print(f"   {target:<16} {statistics.median(runs) / 1000:6.2f} ms  (p90 {p90 / 1000:.2f} ms, {len(runs)} attempts)")
PY
