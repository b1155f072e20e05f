"""The GIL demo: a CPU-bound route, a sleeping route, and a hello.

    cargo run --release --bin lesson06_wsgi -- --chdir apps --threads 4 gil:app
    curl 'http://127.0.0.1:8006/cpu?ms=50'     # 50 ms of pure-Python work
    curl 'http://127.0.0.1:8006/sleep?ms=50'   # 50 ms of time.sleep
    curl http://127.0.0.1:8006/hello

Put load on each route with --threads 1 and then --threads 4 and compare:
- /cpu runs Python bytecode the whole time, and a thread must hold the GIL
  to run bytecode. Four threads take turns: requests/s stays where one
  thread had it and the process never uses more than one core (top).
- /sleep spends its time in time.sleep, which lets go of the GIL while it
  waits: four threads serve about four times the requests.
Each answer names the thread that ran it (its Linux thread id, as shown by
`top -H` or `ps -L`), so you can see the requests spread over the threads.
"""
import threading
import time
from urllib.parse import parse_qs

MAX_MS = 10_000


def burn(ms):
    """Run pure-Python arithmetic until this thread has used `ms` ms of CPU.

    thread_time() counts only this thread's CPU time, not the time it spent
    waiting for the GIL: every /cpu?ms=50 request does the same 50 ms of
    work, however many threads compete for the interpreter.
    """
    deadline = time.thread_time() + ms / 1000
    total = 0
    while time.thread_time() < deadline:
        for i in range(2_000):  # a fraction of a millisecond of bytecode
            total += i * i
    return total


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    fields = parse_qs(environ.get("QUERY_STRING", ""))
    try:
        ms = int(fields.get("ms", ["50"])[0])
        if not 0 <= ms <= MAX_MS:
            raise ValueError
    except ValueError:
        return answer(start_response, "400 Bad Request", f"ms must be 0 to {MAX_MS}\n")

    thread = f"thread {threading.get_native_id()}"
    if path == "/cpu":
        burn(ms)
        return answer(start_response, "200 OK", f"burned {ms} ms of CPU on {thread}\n")
    if path == "/sleep":
        time.sleep(ms / 1000)
        return answer(start_response, "200 OK", f"slept {ms} ms on {thread}\n")
    if path == "/hello":
        return answer(start_response, "200 OK", "Hello, World!\n")
    return answer(start_response, "404 Not Found",
                  "try /cpu?ms=50, /sleep?ms=50 or /hello\n")


def answer(start_response, status, text):
    body = text.encode("utf-8")
    start_response(status, [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ])
    return [body]
