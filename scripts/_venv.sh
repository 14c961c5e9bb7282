# Sourced by scripts/test.sh and scripts/demo.sh: create .venv if missing and bring the
# project's installation up to date (quick when nothing changed). $1: the pip extras, if any.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".${1:+[$1]}"
