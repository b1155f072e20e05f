"""A Flask app with a login session (needs the venv).

    scripts/python-env.sh
    cargo run --bin lesson06_wsgi -- --python target/venv --chdir apps flask_login:app
    curl -c jar -d username=ada -d password=lovelace http://127.0.0.1:8006/login
    curl -b jar http://127.0.0.1:8006/                 # greets ada
    grep session jar                                  # the cookie Flask set
    python3 apps/decode_session.py 'COOKIE VALUE'     # and what is inside it
    curl -b jar -c jar -X POST http://127.0.0.1:8006/logout

Flask keeps the session in the browser: session['user'] = 'ada' ends up in a
cookie named `session`, serialised as JSON and signed with app.secret_key.
The signature stops a client from forging or changing the cookie; it does not
hide it. Anyone who has the cookie can read it (decode_session.py does), so
never put a secret in a Flask session.
"""
import hmac
import os

from flask import Flask, redirect, render_template_string, request, session, url_for

app = Flask(__name__)
# The key that signs every session cookie. The fixed default is there only so
# that the lesson runs with no set-up: it is public, in this file, so anyone
# could sign a cookie saying they are ada. A real deployment sets
# FLASK_SECRET_KEY to a long random value (python3 -c 'import secrets;
# print(secrets.token_hex())') and keeps it out of the repository.
app.secret_key = os.environ.get("FLASK_SECRET_KEY", "dev-only-secret-for-the-lesson")

# Our user table. In production: a database holding password hashes
# (werkzeug.security.generate_password_hash), never the passwords.
USERS = {"ada": "lovelace", "alan": "turing"}

PAGE = """<!doctype html>
<title>Server Ladder login</title>
{%- if user %}
<p>Hello, {{ user }}! You are logged in.</p>
<form method="post" action="{{ url_for('logout') }}"><button>Log out</button></form>
{%- else %}
{%- if error %}
<p>{{ error }}</p>
{%- endif %}
<form method="post" action="{{ url_for('login') }}">
  <input name="username" placeholder="username">
  <input name="password" type="password" placeholder="password">
  <button>Log in</button>
</form>
{%- endif %}
"""


@app.get("/")
def index():
    # Reading the session: Flask has already checked the cookie's signature.
    # {{ user }} is escaped by Jinja, so a name cannot inject HTML.
    return render_template_string(PAGE, user=session.get("user"))


@app.get("/login")
def login_form():
    return render_template_string(PAGE, user=None)


@app.post("/login")
def login():
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    expected = USERS.get(username)
    # compare_digest takes as long whatever the first wrong character is.
    if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
        return render_template_string(PAGE, user=None, error="Wrong username or password."), 401
    # Writing the session: Flask sends a new signed cookie with this response.
    session["user"] = username
    return redirect(url_for("index"))


@app.post("/logout")
def logout():
    session.pop("user", None)
    return redirect(url_for("index"))
