#!/usr/bin/env bash
# Rung 8 beside nginx, in one run (see benches/README.md).
#
#   benches/lesson08.sh                          # the real run (a quiet machine, 2 cores)
#   DURATION=1 RUNS=1 benches/lesson08.sh        # a quick sanity run
#   PARTS="hello" benches/lesson08.sh            # some parts only: hello memory slow
#
# Three parts; both proxies run with one thread/worker on SERVER_CPU, nginx
# from benches/nginx-proxy.conf (proxy_pass, an upstream keep-alive pool):
#   hello   through each proxy to the same fast upstream (lesson05_epoll's
#           /hello, on CLIENT_CPU beside wrk -c 50 keep-alive): requests/s and
#           requests per proxy CPU-second. Goal: >= 1.0x nginx per CPU-second.
#   memory  100 slow readers (loadgen --slow-readers 100) of an 8 MiB file
#           that lesson04_http_server serves: the proxy's resident memory
#           (VmRSS, summed over its processes) before and at the end.
#   slow    the failure rung 7 showed, and its fix: lesson07_prefork -k sync
#           -w 2 -t 10 with workers.py, and 100 slow clients (loadgen --slow
#           100), then 20 slow readers of /big?mb=8: how long a fresh request
#           waits, direct, through our proxy, through nginx; the WORKER
#           TIMEOUTs the app server logged; its workers' CPU time meanwhile.
# Needs: wrk, nginx, taskset, curl, python3 (for the Python app: the venv
# scripts/python-env.sh makes). Never run it from `cargo test`.
set -euo pipefail

DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PARTS=${PARTS:-"hello memory slow"}
PROXY_PORT=${PROXY_PORT:-18008}
NGINX_PORT=${NGINX_PORT:-18108}
UP_PORT=${UP_PORT:-18208}

cd "$(dirname "$0")/.."
ROOT=$PWD
. benches/lib.sh
need wrk nginx taskset curl python3
NGINX=$(command -v nginx)
chmod 755 "$TMP" # nginx's worker runs as an unprivileged user when started as root

if ! cargo build --quiet --release --bin lesson08_proxy --bin lesson05_epoll \
    --bin lesson04_http_server --bin lesson07_prefork --bin loadgen 2>"$TMP/build.err"; then
    echo "lesson08.sh: cannot build the rungs; cargo said:" >&2
    head -n 20 "$TMP/build.err" | sed 's/^/    /' >&2
    exit 1
fi
scripts/python-env.sh >/dev/null
BIN=$ROOT/target/release
LOADGEN=$BIN/loadgen

# Start a background process on CPUS; its pid goes to PIDS and to $!.
on() { # cpus name command...
    local cpus=$1 name=$2
    shift 2
    taskset -c "$cpus" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    LAST=$!
    PIDS+=("$LAST")
}

start_ours() { # upstream
    on "$SERVER_CPU" ours "$BIN/lesson08_proxy" --quiet --port "$PROXY_PORT" --upstream "$1"
    OURS=$LAST
}

start_nginx() { # upstream
    mkdir -p "$TMP/nginx"
    sed -e "s|@DIR@|$TMP/nginx|g" -e "s|@PORT@|$NGINX_PORT|g" -e "s|@UPSTREAM@|$1|g" \
        benches/nginx-proxy.conf >"$TMP/nginx/nginx.conf"
    on "$SERVER_CPU" nginx "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf"
    NGINX_PID=$LAST
}

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do stop "$pid"; done
    PIDS=()
}

# VmRSS in kB, summed over a process and its descendants.
rss_kb() {
    local total=0 pid kb
    for pid in $(family "$1"); do
        kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

declare -A RESULT

# ---------------------------------------------------------------- hello

part_hello() {
    echo
    echo "## hello: lesson05_epoll /hello behind each proxy (CPU $SERVER_CPU); upstream and wrk -c 50 on CPU $CLIENT_CPU"
    on "$CLIENT_CPU" upstream "$BIN/lesson05_epoll" --quiet --port "$UP_PORT"
    start_ours "127.0.0.1:$UP_PORT"
    start_nginx "127.0.0.1:$UP_PORT"
    wait_http "http://127.0.0.1:$PROXY_PORT/hello" "Hello" "$OURS" "$TMP/ours.err"
    wait_http "http://127.0.0.1:$NGINX_PORT/hello" "Hello" "$NGINX_PID" "$TMP/nginx/error.log"
    local run server pid port rps per_cpu errors
    for server in ours nginx; do # warm-up, unmeasured
        if [ $server = ours ]; then port=$PROXY_PORT pid=$OURS; else port=$NGINX_PORT pid=$NGINX_PID; fi
        wrk_run "$pid" "http://127.0.0.1:$port/hello" 1 50 >/dev/null
    done
    for run in $(seq "$RUNS"); do
        for server in ours nginx; do
            if [ $server = ours ]; then port=$PROXY_PORT pid=$OURS; else port=$NGINX_PORT pid=$NGINX_PID; fi
            read -r rps per_cpu errors < <(wrk_run "$pid" "http://127.0.0.1:$port/hello" "$DURATION" 50)
            echo "  run $run $server: $rps req/s, $per_cpu req/CPU-s, $errors errors"
            RESULT[hello,$server,rps]+="$rps "
            RESULT[hello,$server,cpu]+="$per_cpu "
        done
    done
    stop_all
    local ours nginx
    echo
    echo "| /hello through the proxy (median of $RUNS) | lesson08_proxy | nginx | ours/nginx |"
    echo "|---|---|---|---|"
    ours=$(echo "${RESULT[hello,ours,rps]}" | median) nginx=$(echo "${RESULT[hello,nginx,rps]}" | median)
    echo "| requests/s | $ours | $nginx | $(ratio "$ours" "$nginx") |"
    ours=$(echo "${RESULT[hello,ours,cpu]}" | median) nginx=$(echo "${RESULT[hello,nginx,cpu]}" | median)
    echo "| requests per proxy CPU-s | $ours | $nginx | $(ratio "$ours" "$nginx" 1.0) |"
}

# ---------------------------------------------------------------- memory

part_memory() {
    echo
    echo "## memory: 100 slow readers (1 KiB per 2 s) of an 8 MiB file, for 10 s"
    mkdir -p "$TMP/site"
    head -c 8388608 /dev/urandom >"$TMP/site/8m.bin"
    on "$CLIENT_CPU" upstream "$BIN/lesson04_http_server" --quiet --port "$UP_PORT" -d "$TMP/site"
    local up=$LAST
    wait_http "http://127.0.0.1:$UP_PORT/" "8m.bin" "$up" "$TMP/upstream.err"
    echo
    echo "| proxy | VmRSS idle | VmRSS with 100 slow readers | the readers at the end |"
    echo "|---|---|---|---|"
    local server pid port before after
    for server in ours nginx; do
        if [ $server = ours ]; then
            start_ours "127.0.0.1:$UP_PORT"; pid=$OURS port=$PROXY_PORT
        else
            start_nginx "127.0.0.1:$UP_PORT"; pid=$NGINX_PID port=$NGINX_PORT
        fi
        wait_http "http://127.0.0.1:$port/" "8m.bin" "$pid" "$TMP/$server.err"
        before=$(rss_kb "$pid")
        "$LOADGEN" --json -c 0 --slow-readers 100 -d 10s "http://127.0.0.1:$port/8m.bin" >"$TMP/load.json" 2>/dev/null &
        local load=$!
        sleep 9
        after=$(rss_kb "$pid")
        wait "$load" || true
        echo "| $server | $before kB | $after kB | $(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["slow_readers"]
print("%d of %d still connected, %d bytes read" % (r["open"], r["clients"], r["bytes"]))
' "$TMP/load.json") |"
        stop "$pid"
    done
    stop_all
}

# ---------------------------------------------------------------- slow clients

# Seconds a fresh request to URL takes while slow clients of KIND hold the app server.
fresh_wait() { # url kind
    local slow=() took
    case $2 in
        heads) "$LOADGEN" -c 0 --slow 100 -d 60s "$1" >/dev/null 2>&1 & slow+=($!) ;;
        readers) "$LOADGEN" -c 0 --slow-readers 20 -d 60s "${1}big?mb=8" >/dev/null 2>&1 & slow+=($!) ;;
    esac
    sleep 2
    took=$(curl -s -o /dev/null --max-time 60 -w '%{time_total}' "$1" | awk '{printf "%.3f", $1}' || echo "60+")
    kill "${slow[@]}" 2>/dev/null || true
    wait "${slow[@]}" 2>/dev/null || true
    echo "$took"
}

part_slow() {
    echo
    echo "## slow: lesson07_prefork -k sync -w 2 -t 10 (workers.py); a fresh curl while slow clients are connected"
    echo
    echo "| path | fresh request, 100 dribbling clients | fresh request, 20 slow readers of 8 MiB | WORKER TIMEOUTs | workers' CPU-s |"
    echo "|---|---|---|---|---|"
    local way url heads readers app ticks
    for way in direct lesson08_proxy nginx; do
        on 0,1 app "$BIN/lesson07_prefork" --python "$ROOT/target/venv" --chdir "$ROOT/apps" \
            --port "$UP_PORT" -k sync -w 2 -t 10 workers:app
        app=$LAST
        wait_http "http://127.0.0.1:$UP_PORT/" "worker pid" "$app" "$TMP/app.err"
        case $way in
            direct) url="http://127.0.0.1:$UP_PORT/" ;;
            lesson08_proxy) start_ours "127.0.0.1:$UP_PORT"; url="http://127.0.0.1:$PROXY_PORT/" ;;
            nginx) start_nginx "127.0.0.1:$UP_PORT"; url="http://127.0.0.1:$NGINX_PORT/" ;;
        esac
        wait_http "$url" "worker pid" "$app" "$TMP/app.err"
        ticks=$(cpu_ticks "$app")
        heads=$(fresh_wait "$url" heads)
        sleep 2
        readers=$(fresh_wait "$url" readers)
        ticks=$(( $(cpu_ticks "$app") - ticks ))
        echo "| $way | $heads s | $readers s | $(grep -c 'WORKER TIMEOUT' "$TMP/app.err" || true) | $(awk -v t="$ticks" -v hz="$HZ" 'BEGIN {printf "%.2f", t / hz}') |"
        stop_all
    done
}

echo "versions: $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}')"
for part in $PARTS; do
    case $part in
        hello) part_hello ;;
        memory) part_memory ;;
        slow) part_slow ;;
        *) echo "lesson08.sh: PARTS: unknown part '$part' (hello memory slow)" >&2; exit 2 ;;
    esac
done
