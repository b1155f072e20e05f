#!/usr/bin/env bash
# Rung 5 against nginx, side by side in one run (see benches/lesson05.md).
#
#   benches/lesson05.sh                      # the real run (quiet machine, >= 2 cores)
#   DURATION=1 RUNS=1 IDLE=500 SLOWLORIS=100 benches/lesson05.sh   # a quick sanity run
#
# Measures, for lesson05_epoll and for nginx (1 worker), each pinned to core
# SERVER_CPU with the load generator on core CLIENT_CPU:
#   1. GET /hello over keep-alive at 50 and 1000 connections (wrk --latency):
#      requests/s, p50, p99, and requests per server CPU-second
#      (utime+stime from /proc/PID/stat before and after, all processes);
#   2. RSS growth while IDLE idle keep-alive connections are held;
#   3. the time of a fresh request while SLOWLORIS clients hold half-sent heads.
# Prints medians of RUNS runs and the ratio ours/nginx. Needs: wrk, nginx,
# python3, taskset, curl. Never run it from `cargo test`.
set -euo pipefail

DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
IDLE=${IDLE:-10000}
SLOWLORIS=${SLOWLORIS:-1000}
CONNECTIONS=${CONNECTIONS-"50 1000"}   # set it empty to skip the wrk part
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
OUR_PORT=${OUR_PORT:-18005}
NGINX_PORT=${NGINX_PORT:-18085}

cd "$(dirname "$0")/.."
for tool in wrk nginx python3 taskset curl; do
    command -v "$tool" >/dev/null || { echo "lesson05.sh: $tool is not installed" >&2; exit 1; }
done
# Every connection is an fd, on both sides.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((IDLE + 100)) ]; then
    echo "lesson05.sh: ulimit -n is $(ulimit -n), too low for IDLE=$IDLE" >&2
    exit 1
fi

cargo build --quiet --release --bin lesson05_epoll
OURS=target/release/lesson05_epoll
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# ---------------------------------------------------------------- servers

cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $(ulimit -n);
daemon off;
error_log stderr error;
pid $TMP/nginx.pid;
events { worker_connections $((IDLE + SLOWLORIS + 2000)); }
http {
    access_log off;
    client_body_temp_path $TMP/body;
    proxy_temp_path $TMP/proxy;
    fastcgi_temp_path $TMP/fastcgi;
    uwsgi_temp_path $TMP/uwsgi;
    scgi_temp_path $TMP/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_header_timeout 600s;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /hello { default_type text/plain; return 200 "Hello, World!\n"; }
    }
}
EOF

start_ours() {
    taskset -c "$SERVER_CPU" "$OURS" --port "$OUR_PORT" --quiet --directory "$TMP" \
        --header-timeout 600 --idle-timeout 600 --max-connections $((IDLE + SLOWLORIS + 2000)) \
        >"$TMP/ours.out" 2>"$TMP/ours.err" &
    PIDS+=($!)
    OURS_PID=$!
}

start_nginx() {
    taskset -c "$SERVER_CPU" nginx -p "$TMP" -c "$TMP/nginx.conf" 2>"$TMP/nginx.err" &
    PIDS+=($!)
    NGINX_PID=$!
}

wait_port() {
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$1/hello" && return 0
        sleep 0.1
    done
    echo "lesson05.sh: nothing answers on port $1" >&2
    exit 1
}

# All processes of a server: the pid and its children (nginx's worker).
family() { echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"; }

# utime+stime in clock ticks, summed over a server's processes.
cpu_ticks() {
    local total=0 pid fields
    for pid in $(family "$1"); do
        fields=$(sed 's/.*) //' "/proc/$pid/stat")
        total=$((total + $(echo "$fields" | awk '{print $12 + $13}')))
    done
    echo "$total"
}

# Resident memory in KiB, summed over a server's processes.
rss_kib() {
    local total=0 pid
    for pid in $(family "$1"); do
        total=$((total + $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")))
    done
    echo "$total"
}

HZ=$(getconf CLK_TCK)

# ---------------------------------------------------------------- measurements

# One wrk run: prints "rps p50_ms p99_ms requests_per_cpu_second".
wrk_run() { # pid port connections
    local before after out requests
    before=$(cpu_ticks "$1")
    out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c "$3" -d "${DURATION}s" --latency "http://127.0.0.1:$2/hello")
    after=$(cpu_ticks "$1")
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    echo "$out" | python3 -c '
import re, sys
text = sys.stdin.read()
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
cpu = max(int(sys.argv[2]) - int(sys.argv[1]), 1) / int(sys.argv[3])
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {int(sys.argv[4]) / cpu:.0f}")
' "$before" "$after" "$HZ" "$requests"
}

# Hold IDLE keep-alive connections (each has had one request answered);
# prints the server's RSS growth in KiB.
idle_run() { # pid port
    local before
    before=$(rss_kib "$1")
    taskset -c "$CLIENT_CPU" python3 - "$2" "$IDLE" "$TMP/idle.ready" "$TMP/idle.stop" <<'EOF' &
import os, socket, sys, time
port, n, ready, stop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
request = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(request)
    socks.append(s)
for s in socks:
    got = b""
    while not got.endswith(b"Hello, World!\n"):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("a connection closed early")
        got += chunk
open(ready, "w").close()
while not os.path.exists(stop):
    time.sleep(0.1)
EOF
    local client=$!
    while [ ! -e "$TMP/idle.ready" ]; do
        kill -0 "$client" 2>/dev/null || { echo "lesson05.sh: idle client failed" >&2; exit 1; }
        sleep 0.2
    done
    sleep 0.5
    echo $(($(rss_kib "$1") - before))
    touch "$TMP/idle.stop"
    wait "$client" || true
    rm -f "$TMP/idle.ready" "$TMP/idle.stop"
    sleep 0.5
}

# Hold SLOWLORIS half-sent request heads, then time one fresh request (ms).
slowloris_run() { # port
    taskset -c "$CLIENT_CPU" python3 - "$1" "$SLOWLORIS" "$TMP/slow.ready" "$TMP/slow.stop" <<'EOF' &
import os, socket, sys, time
port, n, ready, stop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
    socks.append(s)
open(ready, "w").close()
while not os.path.exists(stop):
    for s in socks:  # one more header byte now and then, never the end
        try:
            s.send(b"X")
        except OSError:
            pass
    time.sleep(1)
EOF
    local client=$!
    while [ ! -e "$TMP/slow.ready" ]; do
        kill -0 "$client" 2>/dev/null || { echo "lesson05.sh: slowloris client failed" >&2; exit 1; }
        sleep 0.2
    done
    sleep 0.5
    curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$1/hello" | awk '{printf "%.1f\n", $1 * 1000}'
    touch "$TMP/slow.stop"
    wait "$client" || true
    rm -f "$TMP/slow.ready" "$TMP/slow.stop"
    sleep 0.5
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# ---------------------------------------------------------------- the run

start_ours
start_nginx
wait_port "$OUR_PORT"
wait_port "$NGINX_PORT"
echo "lesson05_epoll pid $OURS_PID, nginx pid $NGINX_PID; server on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU"
echo "wrk ${DURATION}s x $RUNS runs per point, alternating servers; medians below"
echo

declare -A RESULT
for c in $CONNECTIONS; do
    for run in $(seq "$RUNS"); do
        for server in ours nginx; do
            if [ $server = ours ]; then pid=$OURS_PID port=$OUR_PORT; else pid=$NGINX_PID port=$NGINX_PORT; fi
            read -r rps p50 p99 per_cpu < <(wrk_run "$pid" "$port" "$c")
            echo "  c=$c run $run $server: $rps req/s, p50 ${p50} ms, p99 ${p99} ms, $per_cpu req/CPU-s"
            RESULT[$server,$c,rps]+="$rps "
            RESULT[$server,$c,p50]+="$p50 "
            RESULT[$server,$c,p99]+="$p99 "
            RESULT[$server,$c,cpu]+="$per_cpu "
        done
    done
done
# Memory is measured on freshly started servers: after the wrk runs, our
# connection table (and nginx's pools) are already grown, which would hide
# the cost of new connections.
restart() {
    kill "$OURS_PID" "$NGINX_PID"
    wait "$OURS_PID" "$NGINX_PID" 2>/dev/null || true
    PIDS=()
    start_ours
    start_nginx
    wait_port "$OUR_PORT"
    wait_port "$NGINX_PORT"
}
for run in $(seq "$RUNS"); do
    restart
    for server in ours nginx; do
        if [ $server = ours ]; then pid=$OURS_PID port=$OUR_PORT; else pid=$NGINX_PID port=$NGINX_PORT; fi
        grow=$(idle_run "$pid" "$port")
        slow=$(slowloris_run "$port")
        echo "  run $run $server: +$grow KiB for $IDLE idle, fresh request in $slow ms beside $SLOWLORIS slowloris"
        RESULT[$server,idle]+="$grow "
        RESULT[$server,slow]+="$slow "
    done
done

row() { # label key unit
    local ours nginx
    ours=$(echo "${RESULT[ours,$2]}" | median)
    nginx=$(echo "${RESULT[nginx,$2]}" | median)
    awk -v l="$1" -v o="$ours" -v n="$nginx" -v u="$3" \
        'BEGIN {printf "| %-34s | %12s %-6s | %12s %-6s | %6.2f |\n", l, o, u, n, u, (n > 0 ? o / n : 0)}'
}

echo
echo "| measure (median of $RUNS)              | lesson05_epoll      | nginx (1 worker)    | ratio  |"
echo "|------------------------------------|---------------------|---------------------|--------|"
for c in $CONNECTIONS; do
    row "/hello c=$c: requests/s" "$c,rps" ""
    row "/hello c=$c: requests per CPU-s" "$c,cpu" ""
    row "/hello c=$c: p50" "$c,p50" "ms"
    row "/hello c=$c: p99" "$c,p99" "ms"
done
row "RSS growth, $IDLE idle conns" "idle" "KiB"
row "fresh request, $SLOWLORIS slowloris" "slow" "ms"
awk -v o="$(echo "${RESULT[ours,idle]}" | median)" -v n="$(echo "${RESULT[nginx,idle]}" | median)" -v i="$IDLE" \
    'BEGIN {printf "\nper idle connection: lesson05_epoll %.2f KiB, nginx %.2f KiB\n", o / i, n / i}'
