"""The time app with WebOb (needs the venv).

    scripts/python-env.sh
    cargo run --bin lesson06_wsgi -- --python target/venv --chdir apps time_webob:app
    curl 'http://127.0.0.1:8006/?name=Ada'
    curl -d name=Ada http://127.0.0.1:8006/

Same answers as time_raw.py and time_werkzeug.py. WebOb (under Pyramid) has
the same two ideas as Werkzeug, a Request built from the environ and a
Response that knows how to call start_response, with other names.
"""
import time

from webob import Response
from webob.dec import wsgify

ALLOWED = ["GET", "HEAD", "POST"]


def now():
    return time.strftime("%H:%M:%S UTC on %A %d %B %Y", time.gmtime())


# wsgify does what Werkzeug's Request.application does: it makes a WSGI
# application out of a function `request -> Response`.
@wsgify
def app(request):
    if request.method not in ALLOWED:
        response = Response(text=f"{request.method} is not allowed here.\n", status=405,
                            content_type="text/plain", charset="utf-8")
        response.allow = ALLOWED
        return response
    # request.params: the query's fields and a posted form's, decoded.
    name = request.params.get("name", "stranger")
    return Response(text=f"Hello, {name}: it is {now()}.\n",
                    content_type="text/plain", charset="utf-8")
