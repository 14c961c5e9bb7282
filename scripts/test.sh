#!/usr/bin/env bash
# Set up (or refresh) the virtual environment and run the whole test suite, lint included.
# Usage: bash scripts/test.sh [pytest args...]   (e.g. -m "not slow" for the fast loop)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh dev
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy (strict: liaison.crypto, .service, .clients)"
bash scripts/typecheck.sh
echo "== pytest"
# Many tests start `liaison` or `liaison-server` as new Python processes: let them share the
# compiled modules (__pycache__, ignored by git) even where the shell sets
# PYTHONDONTWRITEBYTECODE, as some CI images and sandboxes do (see scripts/demo.sh).
unset PYTHONDONTWRITEBYTECODE
# One worker per core and one more (pytest-xdist): many tests spend part of their time waiting
# on a subprocess, a socket or PostgreSQL, and the extra worker fills those gaps (2 cores,
# 2026-12-02: the same CPU, 23 minutes of it, in 839 s with 3 workers against 1,000 s with 2,
# though the apps' shared routes came in between). Each test is stolen by an idle
# worker, so the long ones (the demo, the 1,000-device batch) do not hold the rest back.
# `-n 0` after the command runs in one process. The 15 slowest tests are listed at the end:
# where the 20-minute budget of CI goes.
workers=$(( $(nproc 2>/dev/null || echo 1) + 1 ))
exec .venv/bin/pytest -q -p no:cacheprovider -n "$workers" --dist worksteal --durations=15 "$@"
