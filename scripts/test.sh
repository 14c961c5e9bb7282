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
# One worker per core (pytest-xdist); each test is stolen by an idle worker, so the long ones
# (the demo, the 1,000-device batch) do not hold the rest back. `-n 0` runs in one process.
exec .venv/bin/pytest -q -p no:cacheprovider -n auto --dist worksteal "$@"
