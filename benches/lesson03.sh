#!/bin/sh
# benches/lesson03.sh: what a process per request costs.
#
# Runs loadgen against three URLs, one server at a time:
#   1. lesson03_cgi, /cgi-bin/hello.sh   a fork+exec of /bin/sh per request
#   2. lesson03_cgi, /README.md          the same server, a static file, no process
#   3. lesson02_hello, /                 lesson 02's fixed answer
# Usage: benches/lesson03.sh [DURATION] [CONNECTIONS]   (defaults: 5s 8)
# Run it on a quiet machine; the lesson's "What breaks" numbers come from it.
set -eu
cd "$(dirname "$0")/.."
duration=${1:-5s}
connections=${2:-8}

cargo build --release --quiet --bin lesson03_cgi --bin lesson02_hello --bin loadgen
bin=target/release

server_pid=
stop() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; server_pid=; }
trap stop EXIT INT TERM

# start NAME ARGS...: start a server on port 0, wait for its announce line,
# and set $url to the URL it printed.
start() {
    out=$(mktemp)
    name=$1
    shift
    "$bin/$name" --quiet --port 0 "$@" >"$out" 2>/dev/null &
    server_pid=$!
    for _ in $(seq 50); do
        url=$(grep -o 'http://[0-9.:]*' "$out" | head -n 1) && [ -n "$url" ] && break
        sleep 0.1
    done
    rm -f "$out"
}

run() {
    printf '\n== %s\n' "$1"
    "$bin/loadgen" --connections "$connections" --duration "$duration" "$2"
}

start lesson03_cgi
run "lesson03_cgi: CGI hello.sh (a process per request)" "$url/cgi-bin/hello.sh"
run "lesson03_cgi: static file (no process)" "$url/README.md"
stop

start lesson02_hello
run "lesson02_hello: fixed answer" "$url/"
stop
