#!/usr/bin/env bash
# Set up (or refresh) the virtual environment and run the whole test suite, lint included.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy (strict, crypto core)"
.venv/bin/mypy crypto
echo "== pytest"
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
