"""The time app, raw WSGI: no library between the app and PEP 3333.

    cargo run --bin lesson06_wsgi -- --chdir apps time_raw:app
    curl 'http://127.0.0.1:8006/?name=Ada'
    curl -d name=Ada http://127.0.0.1:8006/

The same app is written with Werkzeug in time_werkzeug.py and with WebOb in
time_webob.py; all three give the same answers. Here we do by hand what those
libraries do for us: decode the query, read and parse a posted form, build
the status line and the header list.
"""
import time
from urllib.parse import parse_qs

ALLOWED = "GET, HEAD, POST"


def now():
    return time.strftime("%H:%M:%S UTC on %A %d %B %Y", time.gmtime())


def respond(start_response, status, text, extra_headers=()):
    body = text.encode("utf-8")
    start_response(status, [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        *extra_headers,
    ])
    return [body]


def app(environ, start_response):
    method = environ["REQUEST_METHOD"]
    if method not in ALLOWED.split(", "):
        return respond(start_response, "405 Method Not Allowed",
                       f"{method} is not allowed here.\n", [("Allow", ALLOWED)])

    # PEP 3333 hands us the query as a latin-1 "native string": turn it back
    # into the bytes that came over the wire, then read them as UTF-8.
    query = environ.get("QUERY_STRING", "").encode("latin-1").decode("utf-8", "replace")
    fields = parse_qs(query)

    # A posted form is the body: exactly CONTENT_LENGTH bytes of wsgi.input.
    if method == "POST" and environ.get("CONTENT_TYPE", "").startswith(
            "application/x-www-form-urlencoded"):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = environ["wsgi.input"].read(length).decode("utf-8", "replace")
        fields.update(parse_qs(form))

    name = fields.get("name", ["stranger"])[0]
    return respond(start_response, "200 OK", f"Hello, {name}: it is {now()}.\n")
