"""The smallest WSGI application: one function, two arguments, one answer.

A WSGI server (wsgiref, gunicorn, Granian, lesson06_wsgi) imports this module
once, then calls app(environ, start_response) for every request:

    cargo run --bin lesson06_wsgi -- --chdir apps hello:app
    curl -i http://127.0.0.1:8006/

benches/lesson06.sh measures what a server costs per request with it: the
app does almost nothing, so nearly all the time is the server's.
"""

BODY = b"Hello, World!\n"  # bytes: WSGI bodies are bytes, never str


def app(environ, start_response):
    # First the status line and headers, as a str and a list of (name, value).
    # Content-Length lets the server keep the connection alive without
    # chunked framing.
    start_response("200 OK", [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(BODY))),
    ])
    # Then the body: any iterable of bytes. A one-item list is the simplest.
    return [BODY]
