"""One rule for time: the service logs UTC whatever the machine's time zone.

A naive datetime was once read as local time, so a server under TZ=Asia/Tokyo logged every
entry nine hours early. Here the real `liaison-server` runs (init and run, as subprocesses)
under two time zones far from UTC; every time it logs, in the entries and in the columns
readers filter on, must be UTC now. Naive datetimes are refused where they would be written.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from liaison.crypto.encoding import format_time, parse_time
from liaison.crypto.keys import generate_device
from liaison.crypto.transparency import parse_entry
from liaison.service.storage.models import to_column_time
from liaison.service.tlog.entries import Opening
from liaison.service.tlog.entries import view as entry_view
from tests.service.harness import enrol_device_sync, free_port, server_env, start_server, stop, wait_ready

#: Nine hours ahead of UTC and five behind: an error either way shows.
ZONES = ("Asia/Tokyo", "America/New_York")
SLACK = timedelta(minutes=5)


def _close_to_now(when: datetime, what: str) -> None:
    now = datetime.now(UTC)
    assert abs(when - now) < SLACK, f"{what}: {when.isoformat()} is not UTC now ({now.isoformat()})"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        to_column_time(datetime(2026, 1, 1))
    aware = datetime(2026, 1, 1, 9, tzinfo=UTC).astimezone()
    assert format_time(aware) == "2026-01-01T09:00:00.000Z"
    assert to_column_time(aware) == datetime(2026, 1, 1, 9)


@pytest.mark.parametrize("zone", ZONES)
def test_logged_times_are_utc_in_any_time_zone(zone: str, tmp_path: Path) -> None:
    env = server_env(TZ=zone)
    probe = subprocess.run(
        [sys.executable, "-c", "import time; print(time.timezone)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    if probe.stdout.strip() == "0":
        pytest.skip(f"this machine has no zone data for {zone}")
    exe = str(Path(sys.executable).with_name("liaison-server"))
    data = tmp_path / "data"
    init = subprocess.run(
        [exe, "init", "--data-dir", str(data), "--json"], env=env, capture_output=True, text=True, check=False
    )
    assert init.returncode == 0, init.stderr
    code = json.loads(init.stdout)["root_enrolment_code"]
    port = free_port()
    proc = start_server(data, port, env)
    try:
        base = f"https://127.0.0.1:{port}"
        cert = str(data / "tls" / "cert.pem")
        wait_ready(proc, base, cert)
        keys = generate_device("root")
        r = enrol_device_sync(base, code, keys, cert)
        assert r.status_code == 201, r.text
        receipt = r.json()["receipt"]
        enrolled = parse_entry(base64.b64decode(receipt["entry"]), receipt.get("opening"))
        _close_to_now(parse_time(enrolled["time"]), "the enrolment's log entry")
    finally:
        stop(proc)
    with sqlite3.connect(data / "liaison.db") as db:
        entries = db.execute("SELECT idx, data, time FROM audit_entry ORDER BY idx").fetchall()
        openings = {i: (s, f) for i, s, f in db.execute("SELECT idx, seed, fields FROM audit_opening")}
        assert len(entries) >= 4  # init's policy.loaded and code, run's policy.loaded, enrolment
        for idx, blob, column in entries:
            # An entry v2's exact time is committed (protocol 10): read it from its opening.
            entry = entry_view(blob, Opening.from_row(*openings[idx]) if idx in openings else None)
            _close_to_now(parse_time(entry["time"]), f"entry {idx} ({entry['type']})")
            # The column readers filter on (`?since=`) holds the same instant, as naive UTC.
            _close_to_now(datetime.fromisoformat(column).replace(tzinfo=UTC), f"entry {idx}'s column")
            if "expires" in entry:  # the code's expiry is a day after it was issued
                assert parse_time(entry["expires"]) - parse_time(entry["time"]) == timedelta(days=1)
        for (created,) in db.execute("SELECT created_at FROM checkpoint"):
            _close_to_now(datetime.fromisoformat(created).replace(tzinfo=UTC), "a checkpoint")
        (enrolled_at,) = db.execute("SELECT enrolled_at FROM device").fetchone()
        _close_to_now(datetime.fromisoformat(enrolled_at).replace(tzinfo=UTC), "enrolled_at")
