#!/usr/bin/env python3
"""form.py: a form handler. GET shows the form; POST reads the body from stdin.

The body is exactly CONTENT_LENGTH bytes (RFC 3875 §4.2): a script must not
read until end-of-file, since a server may keep stdin open.
"""
import html
import os
import sys
from urllib.parse import parse_qs

method = os.environ.get("REQUEST_METHOD", "GET")
print("Content-Type: text/html; charset=utf-8")
print()
if method == "POST":
    length = int(os.environ.get("CONTENT_LENGTH") or 0)
    body = sys.stdin.buffer.read(length).decode("utf-8", "replace")
    fields = parse_qs(body)
    name = fields.get("name", ["stranger"])[0]
    print(f"<p>Hello, {html.escape(name)}! ({length} bytes of "
          f"{html.escape(os.environ.get('CONTENT_TYPE', '?'))} read from stdin)</p>")
else:
    print('<form method="post"><input name="name"><button>Send</button></form>')
