"""A streaming body: a generator that the server pulls one chunk at a time.

    cargo run --bin lesson06_wsgi -- --chdir apps stream:app
    curl -N http://127.0.0.1:8006/                                   # 10 lines, 0.3 s apart
    curl -s 'http://127.0.0.1:8006/?chunks=1000&size=65536' | wc -c  # 64 MiB at full speed

Query parameters: chunks (default 10); size, bytes per chunk (default: one
numbered line); ms, the pause between chunks (default 300 for lines, 0 when
size is given).

Two things to watch:
- The app is a generator function, so calling it runs none of its code: the
  server gets a generator back, and start_response is called only when the
  server asks for the first chunk. PEP 3333 allows that, and it is why a
  server must not send the headers at start_response time but with the
  first chunk. No Content-Length is given, so on HTTP/1.1 the server frames
  the body with chunked transfer encoding.
- A server that sends each chunk before asking for the next one keeps one
  chunk in memory however long the body is: watch the server's RSS with
  `top` while curl reads chunks=1000000&size=65536 (64 GB).
When curl is stopped with Ctrl-C, the server calls close() on the generator,
which raises GeneratorExit at the paused `yield`: the `finally` runs and
logs how far it got.
"""
import time
from urllib.parse import parse_qs

MAX_CHUNKS = 10_000_000
MAX_SIZE = 16 * 1024 * 1024
MAX_MS = 10_000


def number(fields, name, default, limit):
    text = fields.get(name, [str(default)])[0]
    if not text.isdigit() or int(text) > limit:
        raise ValueError(f"{name} must be a number from 0 to {limit}")
    return int(text)


def app(environ, start_response):
    fields = parse_qs(environ.get("QUERY_STRING", ""))
    try:
        chunks = number(fields, "chunks", 10, MAX_CHUNKS)
        size = number(fields, "size", 0, MAX_SIZE)
        pause = number(fields, "ms", 0 if size else 300, MAX_MS) / 1000
    except ValueError as error:
        start_response("400 Bad Request", [("Content-Type", "text/plain; charset=utf-8")])
        yield f"{error}\n".encode("utf-8")
        return

    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    block = b"x" * (size - 1) + b"\n" if size else None  # made once, sent many times
    handed = 0
    try:
        for i in range(1, chunks + 1):
            if pause and i > 1:
                time.sleep(pause)  # sleeping releases the GIL: other requests run
            handed = i
            yield block or f"chunk {i} of {chunks} at {time.strftime('%H:%M:%S')}\n".encode()
    finally:
        environ["wsgi.errors"].write(f"stream: handed {handed} of {chunks} chunks to the server\n")
