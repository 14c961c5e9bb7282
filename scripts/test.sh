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
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
