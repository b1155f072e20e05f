"""The same hello as hello.py, written with Flask (needs the venv).

    scripts/python-env.sh
    cargo run --bin lesson06_wsgi -- --python target/venv --chdir apps flask_hello:app

Flask's `app` object is itself a WSGI application: Flask.__call__(environ,
start_response). benches/lesson06.sh runs it beside hello.py; the difference
between the two is what the framework costs per request (routing, the
request and response objects, context locals).
"""
from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    # Flask turns (body, headers) into a Response; without the header it
    # would answer text/html.
    return "Hello, World!\n", {"Content-Type": "text/plain; charset=utf-8"}
