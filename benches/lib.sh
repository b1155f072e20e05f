# Shared by the bench scripts (source it from the repository's root):
# process trees, clean stops, CPU accounting, one wrk run, medians, ratios.
# Sourcing it makes TMP (a temporary directory) and PIDS (servers the
# script starts): on exit, every server in PIDS is stopped and TMP removed.

HZ=$(getconf CLK_TCK)
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop "$pid"; done
    rm -rf "$TMP"
}
trap cleanup EXIT

# Exit unless every tool named is on PATH.
need() { # tool...
    local tool package
    for tool in "$@"; do
        command -v "$tool" >/dev/null && continue
        case $tool in
            nginx) package=nginx-light ;;
            taskset) package=util-linux ;;
            nc) package=netcat-openbsd ;;
            *) package=$tool ;;
        esac
        echo "$(basename "$0"): $tool is not installed; on Debian or Ubuntu: sudo apt-get install $package (see benches/README.md)" >&2
        exit 1
    done
}

# A server's processes: the pid and all its descendants (workers).
family() {
    local child
    echo "$1"
    for child in $(pgrep -P "$1"); do family "$child"; done
}

running() { [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | grep -q '^Z'; }

# TERM a server's processes and wait until every one is gone (KILL after
# 10 s), so that no worker outlives its server or the script.
stop() { # pid
    local pids pid alive=""
    pids=$(family "$1")
    kill $pids 2>/dev/null || true
    for _ in $(seq 100); do
        alive=""
        for pid in $pids; do if running "$pid"; then alive+=" $pid"; fi; done
        [ -z "$alive" ] && break
        sleep 0.1
    done
    if [ -n "$alive" ]; then kill -KILL $alive 2>/dev/null || true; fi
    wait "$1" 2>/dev/null || true
}

# utime+stime in clock ticks, summed over a server's processes (a worker
# that exits during a run takes its ticks with it: keep runs free of exits).
cpu_ticks() {
    local total=0 pid fields
    for pid in $(family "$1"); do
        fields=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
        total=$((total + $(echo "$fields" | awk '{print $12 + $13}')))
    done
    echo "$total"
}

# Wait until URL answers with a body containing EXPECT; exit with the
# server's stderr (file ERR) if it never does.
wait_http() { # url expect pid err
    local body
    for _ in $(seq 300); do
        if body=$(curl -s "$1") && [[ "$body" == *"$2"* ]]; then return 0; fi
        kill -0 "$3" 2>/dev/null || break
        sleep 0.1
    done
    echo "$(basename "$0"): nothing answers '$2' at $1; the server's stderr:" >&2
    tail -n 20 "$4" | sed 's/^/    /' >&2
    exit 1
}

# One wrk run on CLIENT_CPU: prints "rps requests_per_cpu_second errors".
wrk_run() { # pid url seconds connections
    local before after out
    before=$(cpu_ticks "$1")
    out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c "$4" -d "${3}s" "$2")
    after=$(cpu_ticks "$1")
    echo "$out" | python3 -c '
import re, sys
text = sys.stdin.read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
requests = int(re.search(r"(\d+) requests in", text).group(1))
errors = sum(map(int, re.findall(r"(?:connect|read|write|timeout) (\d+)", text)))
m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors += int(m.group(1)) if m else 0
cpu = max(int(sys.argv[2]) - int(sys.argv[1]), 1) / int(sys.argv[3])
print(f"{rps:.0f} {requests / cpu:.0f} {errors}")
' "$before" "$after" "$HZ"
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# ours/peer to two decimals, with " (goal G: met|NOT met)" when a goal is given.
ratio() { # ours peer [goal]
    awk -v o="$1" -v p="$2" -v g="${3:-}" 'BEGIN {
        if (o == "-" || p == "-" || p == 0) { printf "%s", "-"; exit }
        r = o / p
        printf "%.2f", r
        if (g != "") printf " (goal %s: %s)", g, (r >= g ? "met" : "NOT met")
    }'
}
