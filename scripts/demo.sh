#!/usr/bin/env bash
# The one-command demo: prepare .venv (if missing) and run scripts/demo.py, which starts its
# own TLS server in a temporary directory and always stops it. Usage: bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Always (re)install: quick when nothing changed, and a checkout with new dependencies
# never runs against an old environment.
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
# demo.py stops the server it started on every exit path; the trap covers a kill of this
# shell too, by ending the demo's process group.
.venv/bin/python scripts/demo.py "$@" &
demo=$!
trap 'kill -TERM "$demo" 2>/dev/null || true; wait "$demo" 2>/dev/null || true' INT TERM
wait "$demo"
