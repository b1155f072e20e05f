#!/usr/bin/env bash
# Rung 6's "what breaks": the GIL keeps Python on one core (lessons/06-wsgi.md).
#
#   benches/lesson06_gil.sh                  # the real run (quiet machine, >= 2 cores)
#   DURATION=2 benches/lesson06_gil.sh       # a quick sanity run
#
# Runs lesson06_wsgi on apps/gil.py with --threads 1 and then --threads 4
# (THREADS), and puts load on two routes that each take MS (50) ms:
#   /cpu?ms=50    pure-Python arithmetic: it holds the GIL the whole time
#   /sleep?ms=50  time.sleep: it lets go of the GIL while it waits
# loadgen keeps CONNECTIONS (8) keep-alive clients busy for DURATION (10)
# seconds on each route and thread count. The server may use the cores in
# SERVER_CPUS, loadgen runs on CLIENT_CPU (taskset). Prints a table:
# route x threads -> requests/s, the server's CPU use in % of one core
# (utime+stime of all its threads from /proc/PID/stat, over the wall time),
# the busiest thread's share, and the median time a request waited for the
# GIL before the app ran (from the server's --trace: "waited N ms for the
# GIL"). Needs: taskset, python3. Never run it from `cargo test`.
set -euo pipefail

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-8}
THREADS=${THREADS:-"1 4"}
ROUTES=${ROUTES:-"cpu sleep"}
MS=${MS:-50}
PORT=${PORT:-18016}
CORES=$(nproc)
if [ "$CORES" -ge 3 ]; then
    SERVER_CPUS=${SERVER_CPUS:-0-$((CORES - 2))}
    CLIENT_CPU=${CLIENT_CPU:-$((CORES - 1))}
else
    # Two cores: the server gets both, so that it COULD use two; loadgen
    # shares the second one, which costs it well under 1% at these rates.
    SERVER_CPUS=${SERVER_CPUS:-0-$((CORES - 1))}
    CLIENT_CPU=${CLIENT_CPU:-$((CORES - 1))}
fi

cd "$(dirname "$0")/.."
for tool in taskset python3; do
    command -v "$tool" >/dev/null || { echo "lesson06_gil.sh: $tool is not installed" >&2; exit 1; }
done

cargo build --quiet --release --bin lesson06_wsgi --bin loadgen
SERVER=target/release/lesson06_wsgi
LOADGEN=target/release/loadgen
TMP=$(mktemp -d)
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
cleanup() {
    stop_server
    rm -rf "$TMP"
}
trap cleanup EXIT

# Start the server with N Python threads; --trace narrates each call, with
# its GIL wait, on stderr (a few lines per request: nothing at these rates).
start_server() { # threads
    taskset -c "$SERVER_CPUS" "$SERVER" --quiet --trace --threads "$1" --port "$PORT" \
        --chdir apps gil:app >"$TMP/server.out" 2>"$TMP/server.err" &
    SERVER_PID=$!
    for _ in $(seq 300); do
        if grep -q "http://" "$TMP/server.out" 2>/dev/null; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "lesson06_gil.sh: the server did not start; its stderr:" >&2
    tail -n 20 "$TMP/server.err" | sed 's/^/    /' >&2
    exit 1
}

# utime+stime of every thread of the server, in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$SERVER_PID/stat" | awk '{print $12 + $13}'; }

# The same per thread: "tid ticks" lines.
thread_ticks() {
    local task
    for task in /proc/"$SERVER_PID"/task/*; do
        echo "${task##*/} $(sed 's/.*) //' "$task/stat" | awk '{print $12 + $13}')"
    done
}

HZ=$(getconf CLK_TCK)

# One measurement: prints "rps cpu_percent busiest_thread_percent gil_median_ms errors".
measure() { # route
    local url="http://127.0.0.1:$PORT/$1?ms=$MS" before after start end
    : >"$TMP/server.err" # the trace of this run only
    thread_ticks >"$TMP/threads.before"
    before=$(cpu_ticks)
    start=$(date +%s.%N)
    taskset -c "$CLIENT_CPU" "$LOADGEN" --json --connections "$CONNECTIONS" \
        --duration "${DURATION}s" --timeout 30s "$url" >"$TMP/loadgen.json"
    end=$(date +%s.%N)
    after=$(cpu_ticks)
    thread_ticks >"$TMP/threads.after"
    python3 - "$TMP" "$before" "$after" "$start" "$end" "$HZ" <<'EOF'
import json, re, statistics, sys
tmp, before, after, start, end, hz = sys.argv[1], *map(float, sys.argv[2:])
run = json.load(open(f"{tmp}/loadgen.json"))
wall = end - start
cpu = (after - before) / hz / wall * 100
ticks = lambda name: dict(l.split() for l in open(f"{tmp}/{name}") if l.strip())
old, new = ticks("threads.before"), ticks("threads.after")
busiest = max((int(t) - int(old.get(tid, 0)) for tid, t in new.items()), default=0) / hz / wall * 100
waits = [float(w) for w in re.findall(r"waited ([\d.]+) ms for the GIL", open(f"{tmp}/server.err").read())]
gil = statistics.median(waits) if waits else float("nan")
print(f"{run['requests_per_second']:.1f} {cpu:.0f} {busiest:.0f} {gil:.1f} {run['errors']['total']}")
EOF
}

echo "lesson06_wsgi gil:app; server on CPUs $SERVER_CPUS, loadgen on CPU $CLIENT_CPU ($CORES cores)"
echo "loadgen: $CONNECTIONS keep-alive clients, ${DURATION}s per row; each request asks for $MS ms"
echo
declare -A ROW
for threads in $THREADS; do
    start_server "$threads"
    for route in $ROUTES; do
        read -r rps cpu busiest gil errors < <(measure "$route")
        note=""
        if [ "$errors" != 0 ]; then note=" ($errors errors)"; fi
        echo "  /$route --threads $threads: $rps req/s, server CPU $cpu%, busiest thread $busiest%, median GIL wait $gil ms$note"
        ROW[$route,$threads]="$rps $cpu $busiest $gil"
    done
    stop_server
done

echo
echo "| route | --threads | requests/s | server CPU (% of one core) | busiest thread | median GIL wait |"
echo "|---|---|---|---|---|---|"
for route in $ROUTES; do
    for threads in $THREADS; do
        read -r rps cpu busiest gil <<<"${ROW[$route,$threads]}"
        echo "| \`/$route?ms=$MS\` | $threads | $rps | $cpu% | $busiest% | $gil ms |"
    done
done
