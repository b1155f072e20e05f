#!/usr/bin/env bash
# Lesson 04, "what breaks": what idle clients cost a blocking server.
#
#   benches/lesson04_idle.sh            # 10000 idle connections
#   CLIENTS=1000 benches/lesson04_idle.sh
#
# Starts lesson04_http_server twice on an empty directory: with a fixed pool
# (--threads 8) and with a thread per connection (--threads 0, Python's
# ThreadingHTTPServer model). Each time it opens CLIENTS connections that
# never send a byte (--timeout 0, as Python, so nobody is dropped), then
# prints the server's threads and resident memory from /proc/PID/status,
# and whether a real request still gets through.
# Needs: python3, curl. Every connection is an fd on both sides, so the
# script raises its soft `ulimit -n` to the hard limit itself (as lesson05.sh
# does); only a hard limit below CLIENTS + 100 stops it.
set -euo pipefail
CLIENTS=${CLIENTS:-10000}
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -le $((CLIENTS + 100)) ]; then
    echo "lesson04_idle.sh: the hard limit of open files (ulimit -Hn) is $(ulimit -n)," \
        "too low for CLIENTS=$CLIENTS; try CLIENTS=$(( $(ulimit -n) - 200 ))" >&2
    exit 1
fi
cargo build --release --quiet --bin lesson04_http_server
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
mkdir "$TMP/site"
echo hello > "$TMP/site/hello.txt"

status() {
    grep -E '^(Threads|VmRSS)' "/proc/$1/status" | tr -s ' \t' ' ' | tr '\n' ' '
}

printf '%-12s %8s   %s\n' "mode" "clients" "server (from /proc/PID/status)"
for threads in 8 0; do
    target/release/lesson04_http_server 0 -d "$TMP/site" --quiet --timeout 0 \
        --threads "$threads" >"$TMP/out" &
    server=$!; PIDS+=("$server")
    for _ in $(seq 100); do grep -q port "$TMP/out" && break; sleep 0.1; done
    port=$(grep -o 'port [0-9]*' "$TMP/out" | cut -d' ' -f2)
    printf '%-12s %8s   %s\n' "--threads $threads" 0 "$(status "$server")"
    # Hold CLIENTS silent connections open until told to let go.
    python3 - "$port" "$CLIENTS" "$TMP/ready" "$TMP/go" <<'PY' &
import os, socket, sys, time
port, n, ready, go = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
held = []
for _ in range(n):
    held.append(socket.create_connection(("127.0.0.1", port)))
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.1)
PY
    holder=$!; PIDS+=("$holder")
    while [ ! -e "$TMP/ready" ]; do sleep 0.2; done
    sleep 1  # let the server accept the last of them
    printf '%-12s %8s   %s\n' "--threads $threads" "$CLIENTS" "$(status "$server")"
    if answer=$(curl -s -m 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/hello.txt"); then
        echo "             a new client: HTTP $answer"
    else
        echo "             a new client: no answer within 3 s"
    fi
    touch "$TMP/go"; wait "$holder" || true
    kill "$server"; wait "$server" || true
    rm -f "$TMP/ready" "$TMP/go"
done
