#!/usr/bin/env bash
# Set up (or refresh) the virtual environment and run the whole test suite, lint included.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh dev
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy (strict, crypto core)"
.venv/bin/mypy crypto
echo "== pytest"
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
