#!/usr/bin/env bash
# The one-command demo: prepare .venv (if missing) and run scripts/demo.py, which starts its
# own TLS server in a temporary directory and always stops it. Usage: bash scripts/demo.sh
# LIAISON_DEMO_SKIP_SETUP=1 skips bringing .venv up to date (the test suite, which has just
# done it, runs the demo that way).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${LIAISON_DEMO_SKIP_SETUP:-}" ]; then
  . scripts/_venv.sh
fi
# The demo runs `liaison` dozens of times, each a new Python process: where the shell sets
# PYTHONDONTWRITEBYTECODE (some CI images and sandboxes do), each of them compiled the
# project's modules from source again (7% of the demo's CPU, measured). Let them share the
# cache (__pycache__, which git ignores).
unset PYTHONDONTWRITEBYTECODE
# demo.py stops the server it started on every exit path; the trap covers a kill of this
# shell too, by ending the demo's process group.
.venv/bin/python scripts/demo.py "$@" &
demo=$!
trap 'kill -TERM "$demo" 2>/dev/null || true; wait "$demo" 2>/dev/null || true' INT TERM
wait "$demo"
