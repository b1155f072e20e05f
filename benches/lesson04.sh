#!/usr/bin/env bash
# Lesson 04 benchmarks: lesson04_http_server side by side with its peers,
# python3 -m http.server and nginx (one worker), on the same files.
#
#   benches/lesson04.sh                 # 3 runs of 3 s per server and case
#   RUNS=1 DURATION=1 benches/lesson04.sh   # a quick sanity run
#
# The server is pinned to one core (SERVER_CPU, default 0) and wrk to
# another (CLIENT_CPU, default 1; e.g. CLIENT_CPU=1-3 WRK_THREADS=3 gives
# wrk more cores), so they do not compete. Each case runs
# the peers alternately within each run, and the table shows medians, the
# ratio to the peer, and requests per server CPU-second (utime + stime of
# every server process, from /proc/PID/stat, before and after the run).
# Needs: wrk, nginx, python3, taskset (see benches/README.md).
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-3}
CONNECTIONS=${CONNECTIONS:-8}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
WRK_THREADS=${WRK_THREADS:-1}
cd "$(dirname "$0")/.."

for tool in wrk nginx python3 taskset; do
    if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
        echo "missing: $tool (see benches/README.md)" >&2
        exit 1
    fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet --bin lesson04_http_server --bin lesson02_hello
OURS=target/release/lesson04_http_server
FLOOR=target/release/lesson02_hello

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
# nginx's worker runs as an unprivileged user when started as root.
chmod 755 "$TMP"
SITE=$TMP/site
mkdir -p "$SITE"
printf 'hello, world\n' > "$SITE/13b.txt"   # 13 bytes
head -c 1048576 /dev/urandom > "$SITE/1m.bin"
head -c 104857600 /dev/urandom > "$SITE/100m.bin"
chmod -R a+rX "$SITE"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Wait until a line in FILE holds "port N" (Python's words) or a URL
# "http://host:N/" (lesson 02's); print N.
announced_port() {
    local file=$1
    for _ in $(seq 100); do
        if grep -qE 'port [0-9]|:[0-9]+/' "$file" 2>/dev/null; then
            grep -oE 'port [0-9]+|:[0-9]+/' "$file" | head -1 | tr -dc '0-9'
            return
        fi
        sleep 0.1
    done
    echo "no announce line in $file" >&2
    exit 1
}

# start_ours NAME ARGS... ; sets SERVER_PIDS and PORT
start_ours() {
    local name=$1; shift
    taskset -c "$SERVER_CPU" "$OURS" 0 -d "$SITE" "$@" >"$TMP/$name.out" 2>/dev/null &
    SERVER_PIDS=$!; PIDS+=("$SERVER_PIDS")
    PORT=$(announced_port "$TMP/$name.out")
}

# Lesson 02's one-page server: accept, read, write, close, one thread, no
# file system. Not a peer, a yardstick: no server on this setup can do a
# connection for less, and wrk cannot make connections faster than it takes.
start_floor() {
    taskset -c "$SERVER_CPU" "$FLOOR" --port 0 --quiet >"$TMP/floor.out" 2>/dev/null &
    SERVER_PIDS=$!; PIDS+=("$SERVER_PIDS")
    PORT=$(announced_port "$TMP/floor.out")
}

start_python() {
    taskset -c "$SERVER_CPU" python3 -u -m http.server 0 -b 127.0.0.1 -d "$SITE" \
        >"$TMP/python.out" 2>/dev/null &
    SERVER_PIDS=$!; PIDS+=("$SERVER_PIDS")
    PORT=$(announced_port "$TMP/python.out")
}

start_nginx() {
    PORT=$(free_port)
    mkdir -p "$TMP/nginx"
    cat >"$TMP/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$PORT;
        root $SITE;
    }
}
CONF
    taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" \
        -c "$TMP/nginx/nginx.conf" 2>/dev/null &
    local master=$!; PIDS+=("$master")
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/13b.txt" && break
        sleep 0.1
    done
    # The master only supervises; count the worker's CPU too.
    SERVER_PIDS="$master $(pgrep -P "$master" | tr '\n' ' ')"
}

stop_server() {
    for pid in $SERVER_PIDS; do kill "$pid" 2>/dev/null || true; done
    for pid in $SERVER_PIDS; do
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    done
}

# CPU ticks (utime + stime, all threads) of the given pids.
cpu_ticks() {
    local total=0 pid fields
    for pid in "$@"; do
        # Fields after the ")" that ends the command name: utime is the
        # 12th of them, stime the 13th (fields 14 and 15 of proc(5)).
        fields=$(sed 's/^.*) //' "/proc/$pid/stat")
        total=$((total + $(echo "$fields" | awk '{print $12 + $13}')))
    done
    echo "$total"
}
HZ=$(getconf CLK_TCK)

RESULTS=$TMP/results
: >"$RESULTS"

# measure CASE SERVER PATH SIZE [wrk args...]: one wrk run; appends
# "case server requests seconds cpu_ticks size transfer_per_sec" to RESULTS.
measure() {
    local case=$1 server=$2 path=$3 size=$4; shift 4
    local before after out requests transfer
    # shellcheck disable=SC2086
    before=$(cpu_ticks $SERVER_PIDS)
    out=$(taskset -c "$CLIENT_CPU" wrk -t"$WRK_THREADS" -c "$CONNECTIONS" -d "${DURATION}s" "$@" \
        "http://127.0.0.1:$PORT$path" 2>&1)
    # shellcheck disable=SC2086
    after=$(cpu_ticks $SERVER_PIDS)
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    # Bytes per second as wrk counts them, partial responses included (a
    # 100 MiB file takes a while; counting whole requests alone is coarse).
    transfer=$(echo "$out" | awk '/Transfer\/sec/ {print $2}')
    if echo "$out" | grep -q 'Non-2xx\|Socket errors'; then
        echo "$case/$server: $(echo "$out" | grep 'Non-2xx\|Socket errors')" >&2
    fi
    echo "$case $server ${requests:-0} $DURATION $(( after - before )) $size ${transfer:-0B}" >>"$RESULTS"
    printf '  %-16s %-10s run: %8s requests\n' "$case" "$server" "${requests:-0}" >&2
}

CLOSE=(-H 'Connection: close')
for run in $(seq "$RUNS"); do
    echo "run $run of $RUNS" >&2
    # 1. A 13-byte file, a new connection per request: Python's own mode.
    #    Both servers log each request (to /dev/null), as Python does.
    start_ours ours --threads 8
    measure close-13B ours /13b.txt 13 "${CLOSE[@]}"
    stop_server
    start_python
    measure close-13B python /13b.txt 13 "${CLOSE[@]}"
    stop_server
    start_floor
    measure close-13B lesson02 / 126 "${CLOSE[@]}"
    stop_server
    # 2-4. Keep-alive, against nginx with one worker; both silent.
    start_ours ours -p HTTP/1.1 --threads 8 --quiet
    measure keepalive-13B ours /13b.txt 13
    measure keepalive-1MiB ours /1m.bin 1048576
    measure keepalive-100MiB ours /100m.bin 104857600
    stop_server
    start_nginx
    measure keepalive-13B nginx /13b.txt 13
    measure keepalive-1MiB nginx /1m.bin 1048576
    measure keepalive-100MiB nginx /100m.bin 104857600
    stop_server
done

# The table: medians per case and server, then the ratio to the peer.
python3 - "$RESULTS" "$HZ" <<'PY'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    case, server, requests, seconds, ticks, size, transfer = line.split()
    units = {"GB": 2**30, "MB": 2**20, "KB": 2**10, "B": 1}
    unit = next(u for u in units if transfer.endswith(u))
    rate = float(transfer[: -len(unit)]) * units[unit]
    rows[(case, server)].append((int(requests), float(seconds), int(ticks), rate))
hz = int(sys.argv[2])
def summary(key):
    runs = rows[key]
    rps = statistics.median(r / s for r, s, _, _ in runs)
    mbs = statistics.median(rate / 1e6 for _, _, _, rate in runs)
    per_cpu = statistics.median(r / (t / hz) if t else float("nan") for r, _, t, _ in runs)
    return rps, mbs, per_cpu, len(runs)
goals = {
    "close-13B": ("python", "rps", 10.0, ">= 10x python req/s"),
    "keepalive-13B": ("nginx", "rps", 0.5, ">= 0.5x nginx req/s"),
    "keepalive-1MiB": ("nginx", "mbs", 0.9, ">= 0.9x nginx MB/s"),
    "keepalive-100MiB": ("nginx", "mbs", 0.9, ">= 0.9x nginx MB/s"),
}
print()
print(f"{'case':<18} {'server':<8} {'runs':>4} {'req/s':>11} {'MB/s':>10} {'req/CPU-s':>11} {'ratio':>7} {'CPU ratio':>9}  goal")
for case, (peer, metric, goal, text) in goals.items():
    if (case, "ours") not in rows:
        continue
    ours = summary((case, "ours"))
    theirs = summary((case, peer))
    index = 0 if metric == "rps" else 1
    ratio = ours[index] / theirs[index] if theirs[index] else float("nan")
    # The same ratio in server CPU: requests per CPU-second, ours / theirs.
    cpu_ratio = ours[2] / theirs[2] if theirs[2] else float("nan")
    verdict = "met" if ratio >= goal else "NOT met"
    shown = [("ours", ours), (peer, theirs)]
    # The yardstick row, where there is one (see start_floor).
    if (case, "lesson02") in rows:
        shown.append(("lesson02", summary((case, "lesson02"))))
    for server, (rps, mbs, per_cpu, n) in shown:
        mark = f"{ratio:7.2f} {cpu_ratio:9.2f}  {text}: {verdict}" if server == "ours" else ""
        print(f"{case:<18} {server:<8} {n:>4} {rps:>11.0f} {mbs:>10.1f} {per_cpu:>11.0f} {mark}")
PY
