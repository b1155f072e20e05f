#!/usr/bin/env python3
"""printenv.py: answer with the environment and the arguments of this script."""
import os
import sys

print("Content-Type: text/plain; charset=utf-8")
print()
# Arguments first: RFC 3875 §4.4 lets a server turn a query without '=' into
# command-line arguments. Python's http.server does; Server Ladder does not.
print(f"# argv[1:] = {sys.argv[1:]!r}")
for name in sorted(os.environ):
    print(f'{name}="{os.environ[name]}"')
