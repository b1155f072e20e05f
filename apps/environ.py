"""The environ printer: everything a WSGI server hands the application.

    cargo run --bin lesson06_wsgi -- --chdir apps environ:app
    curl 'http://127.0.0.1:8006/a/b%20c?x=1&y=2'
    curl -d 'name=Ada&lang=en' http://127.0.0.1:8006/form

One line per key, sorted, values shown with repr() so that types are visible
(wsgi.version is a tuple, wsgi.multithread a bool, an empty QUERY_STRING is
'' and not missing). Compare it with rung 3's cgi-bin/printenv.py: the CGI
meta-variables are all here (REQUEST_METHOD, PATH_INFO, QUERY_STRING,
HTTP_* ...), plus the wsgi.* keys through which the server lends the app its
input stream, its error log and its file sender. A request body (a form
POST, say) is echoed at the end, read from wsgi.input.
"""


def read_body(environ):
    """The request body, read the way PEP 3333 allows.

    Normally exactly CONTENT_LENGTH bytes: the app must not read past them,
    because a server need not mark the end. A server that sets
    wsgi.input_terminated does mark it (and then a chunked upload, which has
    no Content-Length, can be read too): read until b"".
    """
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        parts = []
        while True:
            part = stream.read(64 * 1024)
            if not part:
                return b"".join(parts)
            parts.append(part)
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return stream.read(length) if length > 0 else b""


def app(environ, start_response):
    lines = [f"{key} = {environ[key]!r}" for key in sorted(environ)]
    text = "\n".join(lines) + "\n"
    body = text.encode("utf-8")

    data = read_body(environ)
    if data:
        body += b"\n-- wsgi.input: %d bytes --\n" % len(data) + data + b"\n"

    start_response("200 OK", [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ])
    return [body]
