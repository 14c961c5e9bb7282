#!/usr/bin/env bash
# mypy --strict over the shipped packages as they are imported: liaison.crypto, .service and
# .clients. setuptools maps those names onto ./crypto, ./service and ./clients (package-dir),
# which mypy cannot follow from an editable install, so .typecheck/liaison/ links them under
# their real names (made here, ignored by git). Usage: bash scripts/typecheck.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .typecheck/liaison
for d in crypto service clients; do ln -sfn "../../$d" ".typecheck/liaison/$d"; done
MYPYPATH=.typecheck exec "${MYPY:-.venv/bin/mypy}" --strict -p liaison.crypto -p liaison.service -p liaison.clients
