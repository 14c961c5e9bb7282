"""A full disk (hardening issue, item 25).

The SQLite data directory lives on a small tmpfs the test mounts (it needs root and a kernel
that lets this process mount; elsewhere the test is skipped, saying so). The filesystem is
then filled: submits must be refused cleanly with their own problem type (`storage-full`,
507, with `Retry-After`), never a 500; the log must stay consistent (it verifies, and every
stored message matches its entry); and once space returns the service must accept messages
again by itself.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from liaison.crypto.labels import parse_label
from liaison.service.tlog.verify import verify_log
from tests.service.harness import OPS, World, assert_problem, coalition, running_world

SECRET_AIRDEF = "SECRET//AIRDEF//REL TO UKR, USA"
SIZE = "24m"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs of its own, unmounted afterwards."""
    mnt = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("the full-disk test mounts a small tmpfs, which needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (the full-disk test needs to): {result.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):  # big writes, then smaller, until not a byte fits
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
    finally:
        os.close(fd)
    return filler


async def assert_consistent(world: World) -> None:
    report = await verify_log(world.state.db, world.state.log.signer.verifier)
    assert report.ok and report.size == await world.log_size(), report
    rows = (await world.sql("SELECT id, log_index FROM message")).all()
    for mid, index in rows:
        entry = await world.entry(index)
        assert (entry["type"], entry["id"]) == ("message.accepted", mid)
    entries = await world.entries("message.accepted")
    assert len(entries) == len(rows)
    deliveries = (await world.sql("SELECT count(*) FROM delivery")).scalar()
    assert deliveries == sum(len(e["recipients"]) for e in entries)


async def test_a_full_disk_refuses_submits_cleanly_and_recovers(small_fs: Path) -> None:
    limits = {"rate_limit_per_second": 100_000.0, "rate_limit_burst": 100_000}
    async with running_world(small_fs, None, **limits) as world:
        c = await coalition(world)
        label = parse_label(SECRET_AIRDEF, world.policy)
        bundles = await c.usa.recipients(OPS, label)
        assert (await c.usa.send(OPS, label, recipients=bundles)).status_code == 201
        filler = fill(small_fs)
        try:
            statuses = []
            for _ in range(200):  # SQLite may still find room in pages it holds
                r = await c.usa.send(OPS, label, b"x" * 4000, recipients=bundles)
                statuses.append(r.status_code)
                if r.status_code != 201:
                    body = assert_problem(r, "storage-full")
                    assert int(r.headers["retry-after"]) >= 1 and "Traceback" not in json.dumps(body)
                    if statuses.count(507) >= 5:
                        break
            assert set(statuses) <= {201, 507} and statuses.count(507) >= 5, statuses
            # Reads still work, and what is stored is whole.
            assert (await c.ukr.get("/v1/inbox")).status_code in (200, 507)
            await assert_consistent(world)
        finally:
            filler.unlink()
        # Space is back: the service accepts messages again by itself.
        again = [(await c.usa.send(OPS, label, b"back", recipients=bundles)).status_code for _ in range(5)]
        assert again == [201] * 5, again
        await assert_consistent(world)
