#!/usr/bin/env bash
# Rung 7 beside gunicorn and Granian, in one run (see benches/README.md).
#
#   benches/lesson07.sh                          # the real run (a quiet machine, 2 cores)
#   DURATION=1 RUNS=1 benches/lesson07.sh        # a quick sanity run
#   PARTS="hello" benches/lesson07.sh            # some parts only: cpu hello slow lifecycle
#
# Three parts, with the apps in apps/ and the peers from PyPI in target/venv
# (scripts/python-env.sh --bench):
#   cpu        lesson07_prefork -w 1, then -w 2 (sync workers), on workers.py's
#              /cpu?ms=10 (pure-Python work): the server may use both cores,
#              wrk (-c 4) runs on CLIENT_CPU and is nearly idle at these rates.
#              Goal: -w 2 gives >= 1.8x the requests/s of -w 1.
#   hello      hello.py with 2 workers, keep-alive, the server's processes on
#              SERVER_CPU and wrk (-c 50) on CLIENT_CPU: ours (-k gthread),
#              gunicorn (its sync worker, which closes every connection) and
#              Granian (--workers 2). Requests/s and requests per server
#              CPU-second (utime+stime of the server's processes).
#              Goals per CPU-second: >= 12x gunicorn, >= 1.25x Granian.
#   slow       the rung's failure, in numbers: -w 2 -t 10 with two slow clients
#              (loadgen --slow 2: request heads dribbled a byte every 2 s), then
#              with two slow readers (curl --limit-rate 20k of /big?mb=8): how
#              long a fresh request waits, and how many WORKER TIMEOUTs the
#              master logged; ours -k sync, ours -k gthread, gunicorn sync.
#   lifecycle  the arbiters under load (loadgen -c 4, workers.py, -w 2): ours
#              (sync and gthread) and gunicorn (sync and gthread): the time from
#              `kill -9` of a worker to its replacement's process (median of 5),
#              and the requests that failed across HUP, across TTIN then TTOU,
#              and across --max-requests 50 recycling.
# RUNS runs alternate the servers; the tables give medians. Needs: wrk, taskset,
# curl, python3 with venv. Never run it from `cargo test`.
set -euo pipefail

DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PARTS=${PARTS:-"cpu hello slow lifecycle"}
PORT=${PORT:-18007}

cd "$(dirname "$0")/.."
ROOT=$PWD
. benches/lib.sh
need wrk taskset curl python3 pgrep


if ! cargo build --quiet --release --bin lesson07_prefork --bin loadgen 2>"$TMP/build.err"; then
    echo "lesson07.sh: cannot build lesson07_prefork; cargo said:" >&2
    head -n 20 "$TMP/build.err" | sed 's/^/    /' >&2
    exit 1
fi
scripts/python-env.sh --bench
VENV=$ROOT/target/venv
OURS=$ROOT/target/release/lesson07_prefork
LOADGEN=$ROOT/target/release/loadgen
URL=http://127.0.0.1:$PORT

# Start a server in apps/ on PORT, its processes allowed on CPUS; sets
# SERVER_PID (the master) and waits until the app answers.
start() { # cpus server app [flags...]
    local cpus=$1 server=$2 app=$3 cmd
    shift 3
    case $server in
        ours) cmd=("$OURS" --quiet --python "$VENV" --port "$PORT" "$@" "$app:app") ;;
        gunicorn) cmd=("$VENV/bin/gunicorn" -b "127.0.0.1:$PORT" "$@" "$app:app") ;;
        granian) cmd=("$VENV/bin/granian" --interface wsgi --blocking-threads 1 --http 1
                      --host 127.0.0.1 --port "$PORT" "$@" "$app:app") ;;
    esac
    (cd apps && exec taskset -c "$cpus" "${cmd[@]}") >"$TMP/server.out" 2>"$TMP/server.err" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    local expect="Hello, World!"
    [ "$app" = workers ] && expect="worker pid"
    wait_http "$URL/" "$expect" "$SERVER_PID" "$TMP/server.err"
    # Every worker up (each answers only once it has imported the app).
    sleep 1
}

stop_server() { stop "$SERVER_PID"; PIDS=(); }

# The server's worker processes: the master's children, as the kernel lists
# them (quicker than pgrep, which reads all of /proc).
workers() { tr ' ' '\n' <"/proc/$SERVER_PID/task/$SERVER_PID/children" | grep . | sort; }

declare -A RESULT

# ---------------------------------------------------------------- (a) cpu

part_cpu() {
    echo
    echo "## cpu: workers.py /cpu?ms=10, sync workers, wrk -c 4 on CPU $CLIENT_CPU"
    local n run rps
    for run in $(seq "$RUNS"); do
        for n in 1 2; do
            start 0,1 ours workers -w "$n"
            read -r rps _ _ < <(wrk_run "$SERVER_PID" "$URL/cpu?ms=10" "$DURATION" 4)
            stop_server
            echo "  run $run -w $n: $rps req/s"
            RESULT[cpu,$n]+="$rps "
        done
    done
    local one two
    one=$(echo "${RESULT[cpu,1]}" | median) two=$(echo "${RESULT[cpu,2]}" | median)
    echo
    echo "| /cpu?ms=10 (median of $RUNS) | -w 1 | -w 2 | -w 2 / -w 1 |"
    echo "|---|---|---|---|"
    echo "| requests/s | $one | $two | $(ratio "$two" "$one" 1.8) |"
}

# ---------------------------------------------------------------- (b) hello

part_hello() {
    echo
    echo "## hello: hello.py, 2 workers on CPU $SERVER_CPU, wrk -c 50 keep-alive on CPU $CLIENT_CPU"
    local server run rps per_cpu errors note
    local -A flags=([ours]="-w 2 -k gthread" [gunicorn]="-w 2" [granian]="--workers 2")
    for run in $(seq "$RUNS"); do
        for server in ours gunicorn granian; do
            # shellcheck disable=SC2086 # the flags are words
            start "$SERVER_CPU" "$server" hello ${flags[$server]}
            wrk_run "$SERVER_PID" "$URL/" 1 50 >/dev/null # warm-up
            read -r rps per_cpu errors < <(wrk_run "$SERVER_PID" "$URL/" "$DURATION" 50)
            stop_server
            note=""
            if [ "$errors" != 0 ]; then note=", $errors errors (socket errors, non-2xx)"; fi
            echo "  run $run $server: $rps req/s, $per_cpu req/CPU-s$note"
            RESULT[hello,$server,rps]+="$rps "
            RESULT[hello,$server,cpu]+="$per_cpu "
        done
    done
    echo
    echo "| hello, 2 workers (median of $RUNS) | lesson07_prefork -k gthread | gunicorn (sync) | Granian | ours/gunicorn | ours/Granian |"
    echo "|---|---|---|---|---|---|"
    local key ours gunicorn granian
    for key in rps cpu; do
        ours=$(echo "${RESULT[hello,ours,$key]}" | median)
        gunicorn=$(echo "${RESULT[hello,gunicorn,$key]}" | median)
        granian=$(echo "${RESULT[hello,granian,$key]}" | median)
        if [ $key = rps ]; then
            echo "| requests/s | $ours | $gunicorn | $granian | $(ratio "$ours" "$gunicorn") | $(ratio "$ours" "$granian") |"
        else
            echo "| requests per CPU-s | $ours | $gunicorn | $granian | $(ratio "$ours" "$gunicorn" 12) | $(ratio "$ours" "$granian" 1.25) |"
        fi
    done
}

# ---------------------------------------------------------------- slow clients

# Seconds a fresh request takes while two slow clients of KIND hold the server.
fresh_wait() { # kind
    local slow=() pid took
    case $1 in
        heads) "$LOADGEN" -c 0 --slow 2 -d 30s "$URL/" >/dev/null 2>&1 & slow+=($!) ;;
        readers)
            for _ in 1 2; do
                curl -s --limit-rate 20k -o /dev/null "$URL/big?mb=8" & slow+=($!)
            done ;;
    esac
    sleep 1
    took=$(curl -s -o /dev/null --max-time 60 -w '%{time_total}' "$URL/" | awk '{printf "%.2f", $1}' || echo "60+")
    for pid in "${slow[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait "${slow[@]}" 2>/dev/null || true
    echo "$took"
}

part_slow() {
    echo
    echo "## slow: workers.py, -w 2 -t 10; a fresh curl while two slow clients are connected"
    echo
    echo "| server, worker class | fresh request, 2 dribbling clients | fresh request, 2 slow readers | WORKER TIMEOUT lines |"
    echo "|---|---|---|---|"
    local kind server heads readers
    local -A cls=([ours-sync]="-k sync" [ours-gthread]="-k gthread" [gunicorn-sync]="-k sync")
    for kind in ours-sync ours-gthread gunicorn-sync; do
        server=${kind%-*}
        # shellcheck disable=SC2086
        start 0,1 "$server" workers -w 2 -t 10 ${cls[$kind]}
        heads=$(fresh_wait heads)
        sleep 2 # the killed workers' replacements boot
        readers=$(fresh_wait readers)
        echo "| $kind | $heads s | $readers s | $(grep -c 'WORKER TIMEOUT' "$TMP/server.err" || true) |"
        stop_server
    done
}

# ---------------------------------------------------------------- (c) lifecycle

# Load in the background for SECONDS; `failed` then reads its JSON.
load() { # seconds
    "$LOADGEN" --json -c 4 -d "${1}s" --timeout 10s "$URL/" >"$TMP/load.json" 2>/dev/null &
    LOAD_PID=$!
}

# Once the load has ended: the requests that failed (loadgen's errors plus
# every answer that is not a 200), and all requests.
failed() {
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
bad = sum(n for status, n in r["statuses"].items() if status != "200")
print(r["errors"]["total"] + bad, r["requests"])
' "$TMP/load.json"
}

# ms from `kill -9` of one worker until a new worker process exists.
respawn_ms() {
    local before victim start now
    before=$(workers)
    victim=$(echo "$before" | head -n 1)
    start=$(date +%s%N)
    kill -KILL "$victim"
    for _ in $(seq 2000); do
        now=$(workers)
        if [ "$(echo "$now" | grep -vxF "$victim" | grep -cvxF -f <(echo "$before"))" -ge 1 ]; then
            echo $((($(date +%s%N) - start) / 1000000))
            return
        fi
        sleep 0.005
    done
    echo "-"
}

part_lifecycle() {
    echo
    echo "## lifecycle: workers.py, -w 2, loadgen -c 4 keep-alive (failed = errors + non-200)"
    local kind server class t respawns hup ttx recycle rest
    local -A cls=([ours-sync]="-k sync" [ours-gthread]="-k gthread" [gunicorn-sync]="-k sync" [gunicorn-gthread]="-k gthread")
    echo
    echo "| server, worker class | respawn after kill -9 (median of 5) | failed across HUP | failed across TTIN+TTOU | failed across --max-requests 50 |"
    echo "|---|---|---|---|---|"
    for kind in ours-sync ours-gthread gunicorn-sync gunicorn-gthread; do
        server=${kind%-*}
        class=${cls[$kind]}
        # shellcheck disable=SC2086
        start 0,1 "$server" workers -w 2 $class --graceful-timeout 10
        respawns=""
        for _ in 1 2 3 4 5; do respawns+="$(respawn_ms) "; sleep 1; done
        load 4; sleep 1; kill -HUP "$SERVER_PID"; wait "$LOAD_PID" || true; read -r hup rest <<<"$(failed)"
        hup="$hup of $rest"
        load 5; sleep 1; kill -TTIN "$SERVER_PID"; sleep 2; kill -TTOU "$SERVER_PID"; wait "$LOAD_PID" || true; read -r ttx rest <<<"$(failed)"
        ttx="$ttx of $rest"
        stop_server
        # shellcheck disable=SC2086
        start 0,1 "$server" workers -w 2 $class --max-requests 50 --max-requests-jitter 10
        load 4; wait "$LOAD_PID" || true; read -r recycle rest <<<"$(failed)"
        recycle="$recycle of $rest"
        stop_server
        echo "| $kind | $(echo "$respawns" | median) ms | $hup | $ttx | $recycle |"
    done
}

echo "versions: $("$VENV/bin/python" -V), gunicorn $("$VENV/bin/python" -c 'import gunicorn; print(gunicorn.__version__)'), $("$VENV/bin/granian" --version), $(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}')"
echo "wrk ${DURATION}s x $RUNS runs, alternating servers; medians below"
for part in $PARTS; do
    case $part in
        cpu) part_cpu ;;
        hello) part_hello ;;
        slow) part_slow ;;
        lifecycle) part_lifecycle ;;
        *) echo "lesson07.sh: PARTS: unknown part '$part' (cpu hello slow lifecycle)" >&2; exit 2 ;;
    esac
done
