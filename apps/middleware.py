"""A middleware: a WSGI application that wraps another WSGI application.

    cargo run --bin lesson06_wsgi -- --chdir apps middleware:app
    curl -i http://127.0.0.1:8006/        # see the Server-Timing header
    curl -N 'http://127.0.0.1:8006/stream' # and the server's log at the end

To the server, Timing(app) is an app; to the app, it is the server. It shows
the three places a middleware can act:
  1. on the way in: it may read or change the environ before calling the app;
  2. in start_response: it may add, drop or change the status and headers;
  3. on the body: it may pass each chunk on (or change it), and it must pass
     close() on, or the wrapped app never learns that the response ended.
Timing adds a Server-Timing header with the time from the call until the
app called start_response, and when the body has been sent it logs the whole
time to wsgi.errors (the server's log). The two differ when the app streams:
a generator's work happens while the server iterates over it, after the call
has returned.
"""
import time

from stream import app as stream_app
from time_raw import app as time_app


class Timing:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        started = time.perf_counter()

        def timed_start_response(status, headers, exc_info=None):
            took_ms = (time.perf_counter() - started) * 1000
            headers = headers + [("Server-Timing", f"app;dur={took_ms:.3f}")]
            # Pass exc_info on unchanged: the server decides what it means
            # (replace the headers, or raise if they are already sent). And
            # return the server's write() callable: old apps use it.
            return start_response(status, headers, exc_info)

        body = self.app(environ, timed_start_response)
        return TimedBody(body, started, environ)


class TimedBody:
    """The app's body, passed through chunk by chunk, timed until close().

    In production a middleware that wraps the body also hides a
    wsgi.file_wrapper object from the server, which then cannot use sendfile;
    careful middlewares hand such a body on unwrapped.
    """

    def __init__(self, body, started, environ):
        self.body = body
        self.started = started
        self.environ = environ

    def __iter__(self):
        # Yield chunk by chunk, never join them: a middleware must not hold
        # a streamed body back.
        yield from self.body

    def close(self):
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            took_ms = (time.perf_counter() - self.started) * 1000
            self.environ["wsgi.errors"].write(
                f"timing: {self.environ['REQUEST_METHOD']} {self.environ.get('PATH_INFO', '')}"
                f" took {took_ms:.3f} ms, body included\n")


def router(environ, start_response):
    """Two apps to wrap: /stream is stream.py, anything else time_raw.py."""
    if environ.get("PATH_INFO", "").startswith("/stream"):
        return stream_app(environ, start_response)
    return time_app(environ, start_response)


# Wrapping is one call; it works for any WSGI app, a Flask app included:
#     flask_app.wsgi_app = Timing(flask_app.wsgi_app)
app = Timing(router)
