"""Small WSGI apps for tests/wsgi_gateway.rs, each breaking or keeping one
rule of PEP 3333. Imported once by the test binary (module `wsgi_apps`).

Each request carries an `X-Test` header naming the test that sent it, so
tests running side by side keep what they record apart (SEEN[test]).
"""

import io
import sys
import threading
import time
import warnings
from wsgiref.validate import validator

SEEN = {}
_lock = threading.Lock()


def record(environ, what):
    with _lock:
        SEEN.setdefault(environ.get("HTTP_X_TEST", ""), []).append(what)


TEXT = [("Content-Type", "text/plain")]


# ------------------------------------------------------------------ environ

def environ_app(environ, start_response):
    """Record the environ's str values and a few facts about the rest."""
    seen = {k: v for k, v in environ.items() if isinstance(v, str)}
    seen["wsgi.version"] = repr(environ["wsgi.version"])
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated"):
        seen[key] = repr(environ[key])
    seen["type(environ)"] = type(environ).__name__
    record(environ, seen)
    start_response("200 OK", TEXT)
    return [b"ok"]


def wsgiref_environ(raw, client_port, server_port):
    """The environ wsgiref's own server computes for the request `raw`."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

    class Server:
        server_name = "localhost"

    server = Server()
    server.server_port = server_port
    WSGIServer.setup_environ(server)  # the base environ: SERVER_NAME, ...
    handler = WSGIRequestHandler.__new__(WSGIRequestHandler)
    handler.server = server
    handler.client_address = ("127.0.0.1", client_port)
    handler.rfile = io.BytesIO(raw)
    handler.wfile = io.BytesIO()
    handler.raw_requestline = handler.rfile.readline(65537)
    assert handler.parse_request()
    return handler.get_environ()


def input_app(environ, start_response):
    """Read wsgi.input every way PEP 3333 names, and report."""
    stream = environ["wsgi.input"]
    out = []
    out.append(stream.read(3))
    out.append(stream.readline())
    out.append(stream.readline(2))
    out.append(stream.readline())
    out.append(b"|".join(stream.readlines(1)))
    out.append(b"|".join(line for line in stream))
    out.append(stream.read())
    out.append(stream.read(10))
    start_response("200 OK", TEXT)
    return [repr(out).encode()]


def input_all(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", TEXT)
    return [b"%d:" % len(body), body]


def errors_app(environ, start_response):
    errors = environ["wsgi.errors"]
    errors.write("half a line, ")
    errors.write("then the rest\n")
    print("printed", file=errors)
    errors.writelines(["one\n", "two\n"])
    errors.flush()
    start_response("200 OK", TEXT)
    return [b"logged"]


# ------------------------------------------------------------ validation

def _simple(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    environ["wsgi.errors"].write("validated request\n")
    environ["wsgi.errors"].flush()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body) + 4))])
    return [b"got ", body]


_validated = validator(_simple)


def validated_app(environ, start_response):
    """_simple behind wsgiref's validator, with every warning an error: a
    server that breaks a rule makes this raise, and the test sees a 500."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = _validated(environ, start_response)
        record(environ, result)  # the validator's wrapper: did we close it?
        return result


def validator_closed(test):
    return [getattr(r, "closed", None) for r in SEEN.get(test, [])]


# --------------------------------------------------------- start_response

def late_start(environ, start_response):
    yield b""  # no body byte yet: no head may go out
    start_response("200 OK", TEXT)
    yield b"hello "
    yield b"world"


def exc_info_before_head(environ, start_response):
    start_response("200 OK", TEXT)
    try:
        raise ValueError("oops")
    except ValueError:
        start_response("500 Oops", TEXT, sys.exc_info())
    return [b"sorry"]


def exc_info_after_head(environ, start_response):
    start_response("200 OK", TEXT)
    yield b"first"
    try:
        raise KeyError("late")
    except KeyError:
        start_response("500 Oops", TEXT, sys.exc_info())  # re-raises KeyError
    yield b"never"


def start_twice(environ, start_response):
    start_response("200 OK", TEXT)
    start_response("404 Not Found", TEXT)
    return [b"x"]


def write_app(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"one ")
    write(b"")
    write(b"two ")
    return [b"three"]


def write_generator(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"written ")
    yield b"yielded"


def write_then_raise(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"partial")
    raise RuntimeError("after write")


def write_str(environ, start_response):
    write = start_response("200 OK", TEXT)
    write("text")
    return []


def status_app(environ, start_response):
    """Status and headers from the test, via the query: eval'd, tests only."""
    import ast
    status, headers = ast.literal_eval(environ["HTTP_X_START"])
    start_response(status, headers)
    return [b"body"]


def headers_tuple(environ, start_response):
    start_response("200 OK", tuple(TEXT))
    return [b"x"]


def date_header(environ, start_response):
    start_response("200 OK", TEXT + [("Date", "Thu, 01 Jan 1970 00:00:00 GMT"), ("X-A", "1")])
    return [b"x"]


def no_start(environ, start_response):
    return [b"body without a status"]


def no_start_empty(environ, start_response):
    return []


# ---------------------------------------------------------------- bodies

def returns_str(environ, start_response):
    start_response("200 OK", TEXT)
    return "hello"


def returns_bytes(environ, start_response):
    start_response("200 OK", TEXT)
    return b"hello"


def yields_str(environ, start_response):
    start_response("200 OK", TEXT)
    return ["text", b"ok"]


def yields_str_later(environ, start_response):
    start_response("200 OK", TEXT)
    return [b"ok", "text"]


def returns_int(environ, start_response):
    start_response("200 OK", TEXT)
    return 42


def returns_none(environ, start_response):
    start_response("200 OK", TEXT)


def raises(environ, start_response):
    raise ValueError("boom")


def list_body(environ, start_response):
    start_response("200 OK", TEXT)
    return [b"hello ", b"list"]


def generator_body(environ, start_response):
    start_response("200 OK", TEXT)
    yield b"hello "
    yield b"generator"


def empty_body(environ, start_response):
    start_response("200 OK", TEXT)
    return []


def no_content(environ, start_response):
    start_response("204 No Content", [])
    return [b""]


def head_with_length(environ, start_response):
    start_response("200 OK", TEXT + [("Content-Length", "10")])
    return []


class Tracked:
    """An iterable with close(), which records how far it got."""

    def __init__(self, environ, chunks, fail_at=None):
        self.environ = environ
        self.chunks = chunks
        self.fail_at = fail_at

    def __iter__(self):
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_at:
                raise RuntimeError("mid-stream")
            record(self.environ, "produced %d" % i)
            yield chunk

    def close(self):
        record(self.environ, "closed")


def too_long(environ, start_response):
    start_response("200 OK", TEXT + [("Content-Length", "5")])
    return Tracked(environ, [b"hel", b"lo", b" world", b"!"])


def too_short(environ, start_response):
    start_response("200 OK", TEXT + [("Content-Length", "10")])
    return Tracked(environ, [b"hello"])


def tracked(environ, start_response):
    start_response("200 OK", TEXT)
    return Tracked(environ, [b"a", b"b", b"c", b"d"])


def tracked_failing(environ, start_response):
    start_response("200 OK", TEXT)
    return Tracked(environ, [b"a", b"b", b"c"], fail_at=1)


def tracked_failing_first(environ, start_response):
    start_response("200 OK", TEXT)
    return Tracked(environ, [b"a", b"b"], fail_at=0)


class BadClose(Tracked):
    def close(self):
        raise OSError("close failed")


def bad_close(environ, start_response):
    start_response("200 OK", TEXT)
    return BadClose(environ, [b"fine"])


# ------------------------------------------------------------- file_wrapper

class ClosingFile(io.FileIO):
    """A real file that records its close()."""

    environ = None

    def close(self):
        if not self.closed and self.environ is not None:
            record(self.environ, "file closed")
        super().close()


def file_app(environ, start_response):
    f = ClosingFile(environ["HTTP_X_FILE"], "rb")
    f.environ = environ
    if "HTTP_X_SKIP" in environ:
        f.read(int(environ["HTTP_X_SKIP"]))
    headers = [("Content-Type", "application/octet-stream")]
    if "HTTP_X_LENGTH" in environ:
        headers.append(("Content-Length", environ["HTTP_X_LENGTH"]))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](f, 4096)


def file_like_app(environ, start_response):
    start_response("200 OK", TEXT)
    return environ["wsgi.file_wrapper"](io.BytesIO(b"x" * 10000), 4096)


# ------------------------------------------------------------------ threads

def sleepy(environ, start_response):
    time.sleep(0.05)
    start_response("200 OK", TEXT)
    return [threading.current_thread().name.encode()]
