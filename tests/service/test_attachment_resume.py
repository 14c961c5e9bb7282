"""Resumable uploads and the sweep of abandoned ones (issue 16, item 1), on SQLite and
PostgreSQL against the running service: where an upload stands (GET's `stored` and `offset`,
HEAD's Upload-Offset, as the resumable-upload draft asks), each part keeping the SHA-256 its
signed Content-Digest carried, and uploads never named by an accepted message swept after
their age, logged, their parts deleted, and refused from then on (`upload-expired`)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from liaison.crypto.encoding import b64url_encode
from liaison.crypto.envelope import new_envelope_id
from liaison.crypto.labels import parse_label
from liaison.service.config import StartupError
from liaison.service.storage.models import Attachment
from liaison.service.usecases import attachments, messaging
from tests.service.harness import World, assert_problem, coalition, free_port, world_on
from tests.service.s3_kit import S3_SKIP, S3Server, s3_bucket, s3_server
from tests.service.test_attachments import PART, SECRET, encrypt, send_with, upload

TTL = 3600


@pytest.fixture
async def world(backend: str, tmp_path: Path) -> Any:
    async with world_on(
        backend, tmp_path, attachment_part_bytes=PART, attachment_upload_ttl_seconds=TTL
    ) as w:
        yield w


async def test_an_upload_says_where_it_stands_in_json_and_in_headers(world: World) -> None:
    c = await coalition(world)
    label = parse_label(SECRET, world.policy)
    mid = new_envelope_id()
    up = encrypt(mid, label, os.urandom(3 * PART + 7))  # four parts, the last short
    aid, path = up.ref.id, f"/v1/attachments/{up.ref.id}"
    assert (
        await c.usa.post("/v1/attachments", {"id": aid, "message": mid, "size": up.ref.size})
    ).status_code == 201

    async def where() -> tuple[dict[str, Any], Any]:
        got, head = await c.usa.get(path), await c.usa.request("HEAD", path)
        assert got.status_code == 200 and head.status_code == 200, (got.text, head.status_code)
        assert head.content == b"" and head.headers["cache-control"] == "no-store"
        return got.json(), head.headers

    status, h = await where()
    assert status["offset"] == 0 and status["stored"] == []
    assert (h["upload-offset"], h["upload-complete"], h["upload-length"], h["upload-part-size"]) == (
        "0",
        "?0",
        str(up.ref.size),
        str(PART),
    )
    # Parts 1 and 3 arrive (two were in flight when the link dropped): the offset stops at the gap.
    for n in (1, 3):
        body = up.ciphertext[(n - 1) * PART : n * PART]
        r = await c.usa.request("PUT", f"{path}/parts/{n}", raw=body)
        assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()
    status, h = await where()
    assert [(p["number"], p["size"]) for p in status["stored"]] == [(1, PART), (3, PART)]
    assert status["offset"] == PART and h["upload-offset"] == str(PART)
    # The SHA-256 each part is kept under is the one its signed Content-Digest carried.
    assert [p["sha256"] for p in status["stored"]] == [
        hashlib.sha256(up.ciphertext[n * PART : (n + 1) * PART]).hexdigest() for n in (0, 2)
    ]
    # The rest, and the completion: Upload-Complete says so.
    for n in (2, 4):
        body = up.ciphertext[(n - 1) * PART : n * PART]
        assert (await c.usa.request("PUT", f"{path}/parts/{n}", raw=body)).status_code == 200
    status, h = await where()
    assert status["offset"] == up.ref.size and h["upload-complete"] == "?0"
    root = b64url_encode(up.ref.root)
    assert (await c.usa.post(f"{path}/complete", {"root": root})).status_code == 200
    status, h = await where()
    assert status["state"] == "complete" and h["upload-complete"] == "?1"
    assert h["upload-offset"] == str(up.ref.size)
    # HEAD is signed like every request: another device learns nothing, not even that it exists.
    assert (await c.ukr.request("HEAD", path)).status_code == 404
    assert (await world.http.head(path)).status_code == 401


async def test_a_part_whose_body_is_not_its_signed_digest_is_refused(world: World) -> None:
    c = await coalition(world)
    label = parse_label(SECRET, world.policy)
    mid = new_envelope_id()
    up = encrypt(mid, label, os.urandom(PART + 5))
    path = f"/v1/attachments/{up.ref.id}"
    assert (
        await c.usa.post("/v1/attachments", {"id": up.ref.id, "message": mid, "size": up.ref.size})
    ).status_code == 201
    # Signed over one body, sent with another of the same size (a corrupting hop).
    signed = c.usa.build("PUT", f"{path}/parts/1", raw=up.ciphertext[:PART])
    forged = httpx.Request("PUT", signed.url, headers=signed.headers, content=bytes(PART))
    assert_problem(await world.http.send(forged), "content-digest")
    assert (await c.usa.get(path)).json()["stored"] == []


async def test_a_completion_cut_short_after_the_store_joined_the_parts_is_finished(world: World) -> None:
    """The server joined the parts, then stopped before it recorded it: the object exists (and
    is never replaced), and completing again checks that object instead of failing forever."""
    c = await coalition(world)
    label = parse_label(SECRET, world.policy)
    mid = new_envelope_id()
    up = encrypt(mid, label, os.urandom(PART + 5))
    await upload(c.usa, mid, up, complete=False)
    await world.state.blobs.complete(up.ref.id, [1, 2])  # what the cut-short request did
    r = await c.usa.post(f"/v1/attachments/{up.ref.id}/complete", {"root": b64url_encode(up.ref.root)})
    assert r.status_code == 200 and r.json()["state"] == "complete", r.text
    assert (await send_with(c.usa, mid, label, [up])).status_code == 201


async def _age(world: World, aid: str, seconds: int) -> None:
    """Move an upload's start into the past (as time would), in the database and the store."""
    then = datetime.now(UTC) - timedelta(seconds=seconds)
    async with world.state.db.sessions() as s:
        await s.execute(update(Attachment).where(Attachment.id == aid).values(created_at=then))
        await s.commit()
    marker = world.state.settings.attachments_dir / "uploads" / aid / "begun"
    if marker.exists():
        os.utime(marker, (then.timestamp(), then.timestamp()))


async def test_uploads_not_sent_in_time_are_swept_logged_and_refused(world: World) -> None:
    c = await coalition(world)
    label = parse_label(SECRET, world.policy)
    mid = new_envelope_id()
    half = encrypt(mid, label, os.urandom(2 * PART + 3))  # begun, one part of three
    done = encrypt(mid, label, os.urandom(100))  # complete, never named by a message
    fresh = encrypt(mid, label, os.urandom(100))  # begun within the age: kept
    sent_mid = new_envelope_id()
    sent = encrypt(sent_mid, label, os.urandom(100))  # named by an accepted message: kept
    status = await upload(c.usa, mid, half, complete=False)
    assert status["parts"] == 3
    await c.usa.request("DELETE", f"/v1/attachments/{half.ref.id}")  # abandoned by its device...
    await upload(c.usa, mid, half, complete=False)  # ...and begun again: resumed later, or not
    await upload(c.usa, mid, done)
    await upload(c.usa, mid, fresh, complete=False)
    await upload(c.usa, sent_mid, sent)
    assert (await send_with(c.usa, sent_mid, label, [sent])).status_code == 201
    for up in (half, done, sent):
        await _age(world, up.ref.id, TTL + 60)

    assert await attachments.sweep_abandoned(world.state) == 2
    entry = (await world.entries("attachment.uploads_swept"))[-1]
    assert entry["attachments"] == sorted([half.ref.id, done.ref.id])
    assert entry["count"] == 2 and entry["bytes"] == half.ref.size + done.ref.size
    assert entry["ttl_seconds"] == TTL and entry["actor"] == "system"
    # Their parts and objects are deleted by the retention pass that follows.
    assert await attachments.purge_deleted(world.state) == 2
    assert await world.state.blobs.size(done.ref.id) is None
    assert [u.key for u in await world.state.blobs.uploads()] == [fresh.ref.id]
    # The device that comes back is told, not left to guess.
    for up in (half, done):
        again = await c.usa.post("/v1/attachments", {"id": up.ref.id, "message": mid, "size": up.ref.size})
        assert_problem(again, "upload-expired")
        assert_problem(await c.usa.get(f"/v1/attachments/{up.ref.id}"), "upload-expired")
        put = await c.usa.request("PUT", f"/v1/attachments/{up.ref.id}/parts/1", raw=b"x")
        assert_problem(put, "upload-expired")
    # An envelope naming a swept upload is refused.
    assert_problem(await send_with(c.usa, mid, label, [done]), "attachment-not-ready")
    # The fresh upload and the sent attachment are untouched; a second pass sweeps nothing.
    assert (await c.usa.get(f"/v1/attachments/{fresh.ref.id}")).json()["state"] == "uploading"
    assert await world.state.blobs.size(sent.ref.id) == sent.ref.size
    assert await attachments.sweep_abandoned(world.state) == 0
    assert len(await world.entries("attachment.uploads_swept")) == 1


async def test_the_store_own_leftovers_are_swept_too(world: World) -> None:
    """An upload the store holds that no unfinished upload names (a crash between the store and
    the database, a request racing a completion) is aborted once it is older than the age."""
    blobs = world.state.blobs
    orphan, young = "a_orphanorphanorphanorphanor", "a_youngyoungyoungyoungyoungy"
    for key in (orphan, young):
        await blobs.begin(key)

        async def one() -> Any:
            yield b"left behind"

        await blobs.put_part(key, 1, one())
    await _age(world, orphan, TTL + 60)
    assert await attachments.sweep_abandoned(world.state) == 0  # no upload row: nothing logged
    assert [u.key for u in await blobs.uploads()] == [young]


async def test_the_retention_loop_sweeps_by_itself(backend: str, tmp_path: Path) -> None:
    async with world_on(
        backend,
        tmp_path,
        attachment_part_bytes=PART,
        attachment_upload_ttl_seconds=60,
        retention_interval_seconds=0.05,
    ) as world:
        c = await coalition(world)
        label = parse_label(SECRET, world.policy)
        mid = new_envelope_id()
        up = encrypt(mid, label, os.urandom(10))
        await upload(c.usa, mid, up, complete=False)
        await _age(world, up.ref.id, 120)
        for _ in range(200):
            if await world.entries("attachment.uploads_swept") and not await world.state.blobs.uploads():
                break
            await asyncio.sleep(0.05)
        assert [e["attachments"] for e in await world.entries("attachment.uploads_swept")] == [[up.ref.id]]
        assert await world.state.blobs.uploads() == []


# --- the same service on the S3-compatible store ------------------------------------------------

S3_PART = 5 << 20  # the smallest part S3 takes (but the last)


@pytest.fixture(scope="module")
def s3_bucket_name() -> Any:
    server = s3_server()
    if server is None:
        pytest.skip(S3_SKIP)
    with s3_bucket(server) as bucket:
        yield server, bucket


def _s3_settings(server: S3Server, bucket: str) -> dict[str, Any]:
    return {
        "blob_store": "s3",
        "s3_endpoint": server.endpoint,
        "s3_bucket": bucket,
        "s3_prefix": f"t{os.urandom(4).hex()}/",
        "s3_access_key_id": server.access_key_id,
        "s3_secret_access_key": server.secret_access_key,
        "attachment_part_bytes": S3_PART,
        "attachment_upload_ttl_seconds": TTL,
    }


async def test_on_s3_an_upload_resumes_travels_expires_and_is_swept(
    backend: str, tmp_path: Path, s3_bucket_name: tuple[S3Server, str]
) -> None:
    """The whole life of attachments with the store in a bucket: resumed (the store lists the
    parts, without their SHA-256), completed, named, read by range, expired and deleted; an
    abandoned upload swept and aborted in the store."""
    server, bucket = s3_bucket_name
    async with world_on(backend, tmp_path, **_s3_settings(server, bucket)) as world:
        c = await coalition(world)
        label = parse_label(SECRET, world.policy)
        mid = new_envelope_id()
        up = encrypt(mid, label, os.urandom(S3_PART + 1000))  # two parts, the last short
        aid, path = up.ref.id, f"/v1/attachments/{up.ref.id}"
        start = {"id": aid, "message": mid, "size": up.ref.size}
        assert (await c.usa.post("/v1/attachments", start)).status_code == 201
        parts = [up.ciphertext[:S3_PART], up.ciphertext[S3_PART:]]
        r = await c.usa.request("PUT", f"{path}/parts/1", raw=parts[0])
        assert r.json()["sha256"] == hashlib.sha256(parts[0]).hexdigest()
        # The client stopped; started again, the store's own listing says what it holds.
        again = await c.usa.post("/v1/attachments", start)
        assert again.status_code == 200
        assert [(p["number"], p["size"]) for p in again.json()["stored"]] == [(1, S3_PART)]
        assert (await c.usa.request("HEAD", path)).headers["upload-offset"] == str(S3_PART)
        assert (await c.usa.request("PUT", f"{path}/parts/2", raw=parts[1])).status_code == 200
        done = await c.usa.post(f"{path}/complete", {"root": b64url_encode(up.ref.root)})
        assert done.status_code == 200 and done.json()["state"] == "complete"
        assert (await send_with(c.usa, mid, label, [up])).status_code == 201
        got = await c.ukr.get(
            f"/v1/messages/{mid}/attachments/{aid}", headers={"range": "bytes=5242870-5242889"}
        )
        assert got.status_code == 206 and got.content == up.ciphertext[5242870:5242890]
        whole = await c.ukr.get(f"/v1/messages/{mid}/attachments/{aid}")
        assert whole.content == up.ciphertext
        # An upload never sent: swept, aborted in the store.
        other = encrypt(new_envelope_id(), label, os.urandom(10))
        left = {"id": other.ref.id, "message": new_envelope_id(), "size": other.ref.size}
        assert (await c.usa.post("/v1/attachments", left)).status_code == 201
        assert [u.key for u in await world.state.blobs.uploads()] == [other.ref.id]
        await _age(world, other.ref.id, TTL + 60)
        assert await attachments.sweep_abandoned(world.state) == 1
        assert await attachments.purge_deleted(world.state) == 1
        assert await world.state.blobs.uploads() == []
        # Retention deletes the object.
        await world.sql("UPDATE message SET expires_at = accepted_at WHERE id = :id", id=mid)
        assert await messaging.expire_due(world.state) == 1
        assert await attachments.purge_deleted(world.state) == 1
        assert await world.state.blobs.size(aid) is None


async def test_a_server_whose_bucket_cannot_be_reached_does_not_start(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(StartupError) as e:
        async with world_on(
            "sqlite",
            tmp_path,
            blob_store="s3",
            s3_endpoint=f"http://127.0.0.1:{port}",
            s3_bucket="liaison-nowhere",
            s3_access_key_id="someone",
            s3_secret_access_key="not-to-be-shown",
        ):
            pass
    message = str(e.value)
    assert "attachment store" in message and "not-to-be-shown" not in message and "\n" not in message
