"""The time app with Werkzeug's Request and Response (needs the venv).

    scripts/python-env.sh
    cargo run --bin lesson06_wsgi -- --python target/venv --chdir apps time_werkzeug:app
    curl 'http://127.0.0.1:8006/?name=Ada'
    curl -d name=Ada http://127.0.0.1:8006/

Same answers as time_raw.py. Werkzeug wraps the environ in a Request (the
query, the form, headers and cookies already decoded) and turns a Response
object back into the start_response call and the body iterable. Flask is
built on these two classes.
"""
import time

from werkzeug.wrappers import Request, Response

ALLOWED = ["GET", "HEAD", "POST"]


def now():
    return time.strftime("%H:%M:%S UTC on %A %d %B %Y", time.gmtime())


# Request.application turns a function `request -> Response` into a WSGI
# application `(environ, start_response) -> iterable`.
@Request.application
def app(request):
    if request.method not in ALLOWED:
        return Response(f"{request.method} is not allowed here.\n", status=405,
                        headers={"Allow": ", ".join(ALLOWED)})
    # request.values: the query's fields and a posted form's, decoded.
    name = request.values.get("name", "stranger")
    # A str body is encoded as UTF-8; the type defaults to text/plain and
    # Content-Length is computed.
    return Response(f"Hello, {name}: it is {now()}.\n")
