"""Device bundles in a process's cache (`AppState.bundles`): loaded before it serves
(`warm_bundles`), so that no device's first request waits for a read of its own; held at once
by the process that enrolls a device; on SQLite, a bundle the process does not hold read at
once on the loop's thread (`storage.quickread`), through the async driver when that cannot be
done; and bundles read back from the database parsed without `from_json`'s trial
encapsulation (`PublicBundle.from_stored`)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from liaison.crypto.encoding import b64url_encode
from liaison.crypto.errors import MalformedKey
from liaison.crypto.keys import PublicBundle, generate_device
from liaison.service.storage.models import Device as DeviceRow
from liaison.service.storage.quickread import QuickReader
from liaison.service.usecases.auth import warm_bundles
from tests.service.harness import OPS, Device, World, another_service, assert_problem, coalition

LABEL = "SECRET//AIRDEF//REL TO UKR, USA"


async def test_a_starting_service_holds_every_active_device_bundle(world: World) -> None:
    c = await coalition(world)
    r = await world.root.post(f"/v1/admin/devices/{c.fra.id}/revoke")
    assert r.status_code == 200, r.text
    async with another_service(world) as other:
        held = other.state.bundles
        for d in (c.usa, c.ukr, c.sensor, world.root):
            assert d.id in held, "an active device's bundle was not loaded at start"
            assert held[d.id] == d.keys.public  # the same keys, parsed from the stored bundle
        assert c.fra.id not in held  # revoked: read only if it ever signs again
        # Its first request on the new service needs no read: the bundle is already there.
        r = await c.usa.on(other).send(OPS, LABEL, to=["ukr-analyst"])
        assert r.status_code == 201, r.text


async def test_warming_takes_the_most_recently_seen_first_up_to_its_limit(world: World) -> None:
    c = await coalition(world)
    now = datetime.now(UTC)
    async with world.state.db.sessions() as s:
        for age, d in enumerate((c.sensor, c.ukr, c.usa, c.fra, world.root)):
            seen = now - timedelta(minutes=age)
            await s.execute(update(DeviceRow).where(DeviceRow.id == d.id).values(last_seen_at=seen))
        await s.commit()
    world.state.bundles.clear()
    assert await warm_bundles(world.state, limit=2) == 2
    assert set(world.state.bundles) == {c.sensor.id, c.ukr.id}
    assert await warm_bundles(world.state, limit=10) == 3  # the ones already held are not counted
    assert len(world.state.bundles) == 5


async def test_a_stored_bundle_that_does_not_parse_leaves_the_start_alone(world: World) -> None:
    c = await coalition(world)
    async with world.state.db.sessions() as s:
        broken = update(DeviceRow).where(DeviceRow.id == c.ukr.id).values(signed_bundle='{"bundle": 1}')
        await s.execute(broken)
        await s.commit()
    async with another_service(world) as other:
        assert c.ukr.id not in other.state.bundles
        assert c.usa.id in other.state.bundles
        r = await c.usa.on(other).get("/v1/inbox")
        assert r.status_code == 200, r.text


def test_from_stored_reads_what_from_json_reads_without_the_kem_trial() -> None:
    keys = generate_device("alice")
    stored = json.dumps(keys.signed_bundle())
    parsed = PublicBundle.from_stored(stored)
    assert parsed == PublicBundle.from_json(json.loads(stored)["bundle"]) == keys.public
    bundle = json.loads(stored)
    # A KEM key of the right length that takes no encapsulation (its X25519 part all zero: a
    # low-order point): enrolment refuses it (`from_signed`, by `from_json`); a bundle read
    # back from the database was checked then, and is not checked again.
    zero = b64url_encode(bytes(len(keys.public.kem_pk)))
    bundle["bundle"]["kem"]["pk"] = zero
    assert PublicBundle.from_stored(json.dumps(bundle)).kem_pk == bytes(len(keys.public.kem_pk))
    with pytest.raises(MalformedKey):
        PublicBundle.from_json(bundle["bundle"])


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        ("not json", "not JSON"),
        ("[]", "has no bundle"),
        ('{"bundle": {"principal": "alice"}}', "exactly principal, sig, kem, created"),
    ],
)
def test_from_stored_refuses_what_does_not_parse(stored: str, why: str) -> None:
    with pytest.raises(MalformedKey, match=why):
        PublicBundle.from_stored(stored)


def test_from_stored_still_checks_key_lengths() -> None:
    bundle = generate_device("alice").signed_bundle()
    bundle["bundle"]["sig"]["ed25519"] = "AAAA"
    with pytest.raises(MalformedKey, match="ed25519 key must be 32 bytes"):
        PublicBundle.from_stored(json.dumps(bundle))


async def test_the_enrolling_process_holds_the_new_device_bundle(world: World) -> None:
    d = await world.principal("usa-new", "USA", "SECRET")
    assert world.state.bundles.get(d.id) == d.keys.public  # before its first signed request


def _count_sessions(world: World, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on (until the test ends), one item for each database session `world`'s
    service opens."""
    opened: list[str] = []
    sessions = world.state.db.sessions

    def counting_sessions() -> Any:
        opened.append("session")
        return sessions()

    monkeypatch.setattr(world.state.db, "sessions", counting_sessions)
    return opened


async def test_a_bundle_not_held_is_read_at_once_on_sqlite(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = await coalition(world)
    env = await c.usa.envelope(OPS, LABEL, to=["ukr-analyst"])  # reads the directory: before
    world.state.bundles.clear()
    # A submit (the hot path) takes no session of its own: the count shows whether reading
    # the bundle took one.
    async_reads = _count_sessions(world, monkeypatch)
    r = await c.usa.submit(env, to=["ukr-analyst"])
    assert r.status_code == 201, r.text
    assert world.state.bundles[c.usa.id] == c.usa.keys.public
    if world.state.db.is_postgres:
        assert world.state.db.quick_reader is None and async_reads  # a network read: the async way
    else:
        assert async_reads == []


async def test_a_quick_read_that_cannot_be_made_now_falls_back(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = await coalition(world)
    world.state.bundles.clear()
    quick = world.state.db.quick_reader
    if quick is None:
        pytest.skip("PostgreSQL has no quick reads")

    def busy(sql: str, params: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(quick, "one", busy)
    r = await c.usa.send(OPS, LABEL, to=["ukr-analyst"])
    assert r.status_code == 201, r.text
    assert c.usa.id in world.state.bundles


async def test_a_device_never_enrolled_is_unauthenticated(world: World) -> None:
    stranger = Device(world, "root", generate_device("root"))
    assert_problem(await stranger.get("/v1/inbox"), "unauthenticated")
    assert stranger.id not in world.state.bundles


def test_a_quick_reader_reads_only_an_existing_file_from_its_own_thread(tmp_path: Path) -> None:
    missing = QuickReader(str(tmp_path / "missing.db"))
    with pytest.raises(sqlite3.Error):
        missing.one("SELECT 1", ())
    assert not (tmp_path / "missing.db").exists()  # not created
    path = tmp_path / "one.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t VALUES ('a', 'x')")
    reader = QuickReader(str(path))
    assert reader.one("SELECT v FROM t WHERE k = ?", ("a",)) == ("x",)
    assert reader.one("SELECT v FROM t WHERE k = ?", ("b",)) is None
    with pytest.raises(sqlite3.OperationalError):  # query only
        reader.one("INSERT INTO t VALUES ('b', 'y')", ())
    # A read ends at once: a WAL checkpoint right after it is not held back by a snapshot.
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("INSERT INTO t VALUES ('b', 'y'), ('c', 'z')")
    assert reader.one("SELECT v FROM t ORDER BY k", ()) == ("x",)  # more rows than it takes
    writer.execute("INSERT INTO t VALUES ('d', 'w')")
    assert writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # not busy
    writer.close()
    errors: list[BaseException] = []

    def elsewhere() -> None:
        try:
            reader.one("SELECT 1", ())
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=elsewhere)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], sqlite3.ProgrammingError)
    reader.close()


# --- devices enrolled through another process (PostgreSQL: the listener loads them) --------


async def _held(state: Any, device_id: str, seconds: float = 10.0) -> bool:
    """Whether `state` holds the device's bundle within `seconds` (the listener's read)."""
    for _ in range(int(seconds / 0.02)):
        if device_id in state.bundles:
            return True
        await asyncio.sleep(0.02)
    return device_id in state.bundles


async def test_another_process_loads_a_device_enrolled_here_before_its_first_request(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not world.state.db.is_postgres:
        pytest.skip("SQLite reads a bundle it lacks at once at the device's first request")
    c = await coalition(world)
    async with another_service(world) as other:
        d = await world.enrol(c.usa.principal)  # a second device of USA's analyst, enrolled here
        assert await _held(other.state, d.id), "the other process did not load the new bundle"
        assert other.state.bundles[d.id] == d.keys.public
        env = await d.envelope(OPS, LABEL, to=["ukr-analyst"])  # reads the directory: before
        # A submit (the hot path) takes no session of its own: none is taken for the bundle.
        reads = _count_sessions(other, monkeypatch)
        r = await d.on(other).submit(env, to=["ukr-analyst"])
        assert r.status_code == 201, r.text
        assert reads == []


async def test_the_listener_skips_what_it_cannot_load_and_goes_on(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A notified id that is no device, a payload that is no device id, and a stored bundle
    that does not parse: each leaves the cache as it was (the last with a warning), and the
    next enrolment still loads."""
    if not world.state.db.is_postgres:
        pytest.skip("the device notifications are PostgreSQL's")
    async with another_service(world) as other:
        broken = await world.principal("usa-broken", "USA", "SECRET")
        assert await _held(other.state, broken.id)
        other.state.bundles.pop(broken.id)
        async with world.state.db.sessions() as s:
            await s.execute(update(DeviceRow).where(DeviceRow.id == broken.id).values(signed_bundle="{}"))
            await s.commit()
        before = dict(other.state.bundles)
        for payload in ("d" * 200, "no-such-device", broken.id):
            await world.sql("SELECT pg_notify('liaison_device', :p)", p=payload)
        d = await world.principal("usa-new", "USA", "SECRET")
        assert await _held(other.state, d.id)
        assert broken.id not in other.state.bundles
        assert set(other.state.bundles) - set(before) == {d.id}
        warnings = [r.getMessage() for r in caplog.records if r.name == "liaison.events"]
        assert "ignored a malformed device notification" in warnings
        assert any("stored bundle did not load" in w for w in warnings), warnings
