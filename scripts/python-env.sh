#!/usr/bin/env bash
# Create or update the Python venv that rungs 6-8 run their framework apps in.
#
#   scripts/python-env.sh           # target/venv with apps/requirements.txt (Flask, Werkzeug, WebOb)
#   scripts/python-env.sh --bench   # ... and apps/requirements-bench.txt (gunicorn, Granian)
#
# The venv is made by the interpreter the Rust build embeds ($PYO3_PYTHON,
# else python3 on PATH, as pyo3 chooses), so `lesson06_wsgi --python
# target/venv` sees packages built for that very Python. Idempotent: pip runs
# only when a requirements file is newer than its stamp in the venv, and the
# venv is made again when it is broken or was made by another Python version.
# Prints one line per step; pip itself stays quiet unless it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYO3_PYTHON:-python3}
VENV=target/venv
REQUIREMENTS=(apps/requirements.txt)
case "${1:-}" in
    "") ;;
    --bench) REQUIREMENTS+=(apps/requirements-bench.txt) ;;
    *) echo "usage: scripts/python-env.sh [--bench]" >&2; exit 2 ;;
esac

say() { echo "python-env: $*"; }
die() { echo "python-env: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3 (on Debian: apt-get install python3 python3-venv python3-dev)"
# Debian splits venv's pip bootstrap (ensurepip) into its own package;
# without it `python3 -m venv` leaves a venv with no pip in it.
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null ||
    die "$PYTHON cannot create a venv with pip (no ensurepip); on Debian/Ubuntu: apt-get install python3-venv"
version=$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')

# A venv is tied to the interpreter that made it: make it again when its
# python is gone (a half-made venv, a removed interpreter) or differs.
if [ -x "$VENV/bin/python" ] &&
    [ "$("$VENV/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)" = "$version" ] &&
    "$VENV/bin/python" -c 'import pip' 2>/dev/null; then
    :
else
    say "creating $VENV with $PYTHON (Python $version)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "'$PYTHON -m venv $VENV' failed; on Debian/Ubuntu: apt-get install python3-venv"
fi

for requirements in "${REQUIREMENTS[@]}"; do
    stamp="$VENV/.installed-$(basename "$requirements" .txt)"
    if [ -e "$stamp" ] && [ "$stamp" -nt "$requirements" ]; then
        say "$requirements already installed"
        continue
    fi
    say "installing $requirements"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" ||
        die "pip could not install $requirements (is the package index reachable?)"
    touch "$stamp"
done
say "ready: $VENV (Python $version); use it with --python $VENV or '. $VENV/bin/activate'"
