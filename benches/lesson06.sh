#!/usr/bin/env bash
# Rung 6 against Granian and gunicorn, side by side in one run (see benches/README.md).
#
#   benches/lesson06.sh                                  # the real run (quiet machine, >= 2 cores)
#   DURATION=1 RUNS=1 benches/lesson06.sh                # a quick sanity run
#   ONLY=peers DURATION=1 RUNS=1 benches/lesson06.sh     # Granian and gunicorn alone
#
# For two apps, apps/hello.py (plain WSGI) and apps/flask_hello.py (Flask),
# measures three servers that each run the app in one process with one
# Python thread, pinned to core SERVER_CPU with wrk on core CLIENT_CPU:
#   ours      lesson06_wsgi --threads 1 --quiet
#   granian   granian --interface wsgi --workers 1 --blocking-threads 1 --http 1
#   gunicorn  gunicorn -w 1 (the sync worker: it closes every connection)
# wrk holds CONNECTIONS (50) keep-alive connections for DURATION seconds; RUNS
# runs alternate the servers. Prints the medians of requests/s and of requests
# per server CPU-second (utime+stime from /proc/PID/stat before and after,
# summed over the server's processes), the ratios ours/Granian and
# ours/gunicorn, and issue 11's goals beside them. The peers come from PyPI
# into target/venv (scripts/python-env.sh --bench), which every server uses.
# ONLY=peers (or a list such as ONLY="ours granian") picks the servers.
# Needs: wrk, taskset, curl, python3 with venv. Never run it from `cargo test`.
set -euo pipefail

DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-1}          # seconds of unmeasured load per server and app; 0 skips
CONNECTIONS=${CONNECTIONS:-50}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
APPS=${APPS:-"hello flask_hello"}
declare -A PORT=([ours]=${OUR_PORT:-18006} [granian]=${GRANIAN_PORT:-18106} [gunicorn]=${GUNICORN_PORT:-18206})
declare -A NAME=([ours]=lesson06_wsgi [granian]=Granian [gunicorn]=gunicorn)
case "${ONLY:-all}" in
    all) SERVERS="ours granian gunicorn" ;;
    peers) SERVERS="granian gunicorn" ;;
    *) SERVERS=$ONLY ;;
esac
for server in $SERVERS; do
    [ -n "${PORT[$server]:-}" ] || { echo "lesson06.sh: ONLY: unknown server '$server' (ours, granian, gunicorn, peers)" >&2; exit 2; }
done

cd "$(dirname "$0")/.."
ROOT=$PWD
. benches/lib.sh
need wrk taskset curl python3


OURS=target/release/lesson06_wsgi
if [[ " $SERVERS " == *" ours "* ]]; then
    if ! cargo build --quiet --release --bin lesson06_wsgi 2>"$TMP/build.err"; then
        echo "lesson06.sh: cannot build $OURS; cargo said:" >&2
        head -n 20 "$TMP/build.err" | sed 's/^/    /' >&2
        echo "lesson06.sh: to measure Granian and gunicorn alone: ONLY=peers benches/lesson06.sh" >&2
        exit 1
    fi
fi
scripts/python-env.sh --bench
VENV=$ROOT/target/venv

# ---------------------------------------------------------------- servers

# Start one server for one app, with apps/ as its working directory (ours:
# --chdir) and the venv's Python; sets SERVER_PID, the process that the load
# is charged to, with all its descendants.
start() { # server app
    local port=${PORT[$1]} dir=apps cmd
    case $1 in
        ours) dir=. cmd=("$OURS" --threads 1 --quiet --python "$VENV" --chdir apps --port "$port" "$2:app") ;;
        granian) cmd=("$VENV/bin/granian" --interface wsgi --workers 1 --blocking-threads 1 --http 1
                      --host 127.0.0.1 --port "$port" "$2:app") ;;
        gunicorn) cmd=("$VENV/bin/gunicorn" -w 1 -b "127.0.0.1:$port" "$2:app") ;;
    esac
    # exec: the pid that $! names is the server itself, not a shell around it.
    (cd "$dir" && exec taskset -c "$SERVER_CPU" "${cmd[@]}") >"$TMP/$1.out" 2>"$TMP/$1.err" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
}

# Wait until the server answers with the app.
wait_ready() { # server
    wait_http "http://127.0.0.1:${PORT[$1]}/" "Hello, World!" "${SERVER[$1]}" "$TMP/$1.err"
}

stop_all() {
    local server
    for server in $SERVERS; do stop "${SERVER[$server]}"; done
    PIDS=()
}

# ---------------------------------------------------------------- the run

echo "servers: $SERVERS; on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU, c=$CONNECTIONS keep-alive"
echo "versions: $("$VENV/bin/python" -V), $("$VENV/bin/granian" --version), gunicorn $("$VENV/bin/python" -c 'import gunicorn; print(gunicorn.__version__)'), Flask $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("flask"))'), $(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}')"
echo "wrk ${DURATION}s x $RUNS runs per app, alternating servers; medians below"

declare -A SERVER RESULT
for app in $APPS; do
    echo
    for server in $SERVERS; do
        start "$server" "$app"
        SERVER[$server]=$SERVER_PID
    done
    for server in $SERVERS; do wait_ready "$server"; done
    if [ "$WARMUP" != 0 ]; then
        for server in $SERVERS; do wrk_run "${SERVER[$server]}" "http://127.0.0.1:${PORT[$server]}/" "$WARMUP" "$CONNECTIONS" >/dev/null; done
    fi
    for run in $(seq "$RUNS"); do
        for server in $SERVERS; do
            read -r rps per_cpu errors < <(wrk_run "${SERVER[$server]}" "http://127.0.0.1:${PORT[$server]}/" "$DURATION" "$CONNECTIONS")
            note=""
            if [ "$errors" != 0 ]; then note=", $errors errors (wrk's socket errors and non-2xx answers)"; fi
            echo "  $app run $run ${NAME[$server]}: $rps req/s, $per_cpu req/CPU-s$note"
            RESULT[$server,$app,rps]+="$rps "
            RESULT[$server,$app,cpu]+="$per_cpu "
        done
    done
    stop_all
done

# ---------------------------------------------------------------- the table

# The goals of issue 11, per server CPU-second.
declare -A GOAL=([hello,granian]=1.25 [hello,gunicorn]=12 [flask_hello,granian]=1.0)

value() { # server app key
    if [ -n "${RESULT[$1,$2,$3]:-}" ]; then echo "${RESULT[$1,$2,$3]}" | median; else echo -; fi
}

echo
echo "| app | measure (median of $RUNS) | lesson06_wsgi | Granian | gunicorn | ours/Granian | ours/gunicorn |"
echo "|---|---|---|---|---|---|---|"
for app in $APPS; do
    for key in rps cpu; do
        ours=$(value ours "$app" $key) granian=$(value granian "$app" $key) gunicorn=$(value gunicorn "$app" $key)
        if [ $key = rps ]; then
            label="requests/s"
            to_granian=$(ratio "$ours" "$granian") to_gunicorn=$(ratio "$ours" "$gunicorn")
        else
            label="requests per CPU-s"
            to_granian=$(ratio "$ours" "$granian" "${GOAL[$app,granian]:-}")
            to_gunicorn=$(ratio "$ours" "$gunicorn" "${GOAL[$app,gunicorn]:-}")
        fi
        echo "| $app | $label | $ours | $granian | $gunicorn | $to_granian | $to_gunicorn |"
    done
done
echo
echo "goals (issue 11), per server CPU-second: hello >= 1.25x Granian and >= 12x gunicorn sync; Flask >= 1.0x Granian"
