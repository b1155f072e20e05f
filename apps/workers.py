"""Which worker answered? The app for rung 7's pre-fork server.

    cargo run --bin lesson07_prefork -- -w 4 --chdir apps workers:app
    curl http://127.0.0.1:8007/              # worker pid 4712, request 1 in this process
    curl 'http://127.0.0.1:8007/cpu?ms=50'   # 50 ms of pure-Python work (one core)
    curl 'http://127.0.0.1:8007/sleep?s=2'   # a request that takes 2 s
    curl 'http://127.0.0.1:8007/big?mb=8'    # 8 MiB, for slow readers

Each worker is its own process with its own interpreter, so `served` below
counts the requests of ONE worker: a global in a WSGI app is not shared by
the workers (wsgi.multiprocess is True when there is more than one).
"""
import os
import time
from urllib.parse import parse_qs

from gil import burn

served = 0


def number(environ, name, default, limit):
    values = parse_qs(environ.get("QUERY_STRING", "")).get(name, [default])
    try:
        return max(0, min(float(values[0]), limit))
    except ValueError:
        return default


def app(environ, start_response):
    global served
    served += 1
    path = environ.get("PATH_INFO", "/")
    if path == "/cpu":
        burn(number(environ, "ms", 50, 10_000))
    elif path == "/sleep":
        seconds = number(environ, "s", 1, 3600)
        # A line in the server's log says the request is in the app now.
        print(f"worker pid {os.getpid()}: sleeping {seconds:g} s",
              file=environ["wsgi.errors"], flush=True)
        time.sleep(seconds)
    elif path == "/big":
        size = int(number(environ, "mb", 8, 1024) * 1024 * 1024)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])
        block = b"x" * 65536
        return (block[: min(65536, size - i)] for i in range(0, size, 65536))
    body = (f"worker pid {os.getpid()}, request {served} in this process, "
            f"multiprocess={environ['wsgi.multiprocess']}\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
