#!/usr/bin/env bash
# The memory of `plugboard up` itself (the release binary, with its allocator) holding 100 small
# distinct plugins, as issue 13's "100 plugins <= 100 MiB" asks, against the same server with
# none, in the same run. Each plugin is the echo connector with a custom section of its own (the
# same code, another digest, so each is compiled and kept apart). The server is started once to
# fill the compile cache, then again from it (a restart), and its resident memory (VmRSS) is read
# once it answers and after a webhook to one of the plugins.
# Usage: tests/load/footprint.sh [plugins]
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${1:-100}
bin=${PLUGBOARD_BIN:-target/release/plugboard}
[ -n "${PLUGBOARD_BIN:-}" ] || cargo build --quiet --release -p plugboard-cli
bin=$(realpath "$bin")
cargo build --quiet -p plugboard-tests   # builds the echo plugin
echo_wasm=$PWD/target/wasm-guests/wasm32-wasip2/guest/echo.wasm
dir=$(mktemp -d)
server=
trap '[ -z "$server" ] || kill "$server" 2>/dev/null || true; wait 2>/dev/null; rm -rf "$dir"' EXIT
python3 - "$echo_wasm" "$dir" "$count" <<'PY'
import sys
echo, dir, count = open(sys.argv[1], "rb").read(), sys.argv[2], int(sys.argv[3])
for n in range(count):
    name = f"plugboard-footprint-{n}".encode()
    section = bytes([len(name)]) + name
    open(f"{dir}/p{n}.wasm", "wb").write(echo + bytes([0, len(section)]) + section)
PY
config() { # plugins
  local port=$1 n
  printf '[server]\nlisten = "127.0.0.1:%s"\n[store]\npath = "events.db"\n' "$port"
  printf '[[plugin]]\nid = "shop"\nwasm = "%s"\nwebhook = { verify = { scheme = "none" } }\n' "$echo_wasm"
  for n in $(seq 0 $(($2 - 1))); do
    printf '[[plugin]]\nid = "p%s"\nwasm = "%s/p%s.wasm"\n' "$n" "$dir" "$n"
  done
}
# Resident memory (MiB): all of it, then its file-backed part (mostly the compiled plugins mapped
# from the compile cache: page cache the kernel can reclaim and processes share), then the rest.
rss_mib() { awk '/^(VmRSS|RssFile|RssAnon):/ {v[$1] = $2 / 1024} END {printf "%.1f %.1f %.1f", v["VmRSS:"], v["RssFile:"], v["RssAnon:"]}' "/proc/$1/status"; }
up() { # name, plugins: starts the server, reads its memory into $memory, stops it
  local port run=$dir/$1
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$run"
  config "$port" "$2" > "$run/plugboard.toml"
  (cd "$run" && exec "$bin" --cache-dir "$dir/cache" up --config plugboard.toml 2>"$run/log") &
  server=$!
  for _ in $(seq 1200); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" || { echo "the server ($1) never answered:" >&2; cat "$run/log" >&2; exit 1; }
  local ready answered
  ready=$(rss_mib $server)
  curl -sf -o /dev/null -H 'content-type: application/json' -d '{"order": 1}' "http://127.0.0.1:$port/hooks/shop"
  sleep 1
  answered=$(rss_mib $server)
  kill $server
  wait $server 2>/dev/null || true
  server=
  memory="$ready $answered"
}
up "compile" "$count"   # fills the compile cache
up "none" 0
none=$memory
up "plugins" "$count"
many=$memory
python3 - "$count" "$none" "$many" <<'PY'
import sys
count = sys.argv[1]
none, many = ([float(v) for v in line.split()] for line in sys.argv[2:4])
print(f"plugboard up, resident memory in MiB, the {count} plugins loaded from the compile cache:")
print(f"  {'':36} {'ready':>7} {'file-backed':>12} {'anonymous':>10} {'after a webhook':>16}")
rows = [("the webhook plugin only (baseline)", none, ""), (f"and {count} distinct echo plugins", many, ""),
        ("the plugins", [m - n for m, n in zip(many, none)], "+")]
for name, v, sign in rows:
    print(f"  {name:36} {v[0]:>{sign}7.1f} {v[1]:>{sign}12.1f} {v[2]:>{sign}10.1f} {v[3]:>{sign}16.1f}")
PY
