"""Attachments over the signed API (issue 15, protocol 11), on SQLite and PostgreSQL, with the
filesystem store in the data directory: upload in parts, complete against the chunk tree,
name in an envelope, download (ranges too) with access re-checked and the first download
logged, limits and quotas, and deletion with the message.

The attacks the issue names are performed against the real service: another device naming
(or writing to) someone's upload, an upload moved to another message, a header whose size or
root is not the upload's, a recipient who lost the clearance, a non-recipient."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from liaison.crypto import chunked
from liaison.crypto.attachments import (
    AttachmentRef,
    ChunkTree,
    Sealer,
    Unsealer,
    ciphertext_size,
    context,
    new_attachment_id,
)
from liaison.crypto.content import AttachmentInfo
from liaison.crypto.encoding import b64url_encode
from liaison.crypto.envelope import new_envelope_id
from liaison.crypto.labels import Label, parse_label
from liaison.service.usecases import attachments, messaging
from tests.service.harness import OPS, Device, World, assert_problem, coalition, world_on

SECRET = "SECRET//AIRDEF//REL TO UKR, USA"
PART = 64 * 1024


@pytest.fixture
async def world(backend: str, tmp_path: Path) -> Any:
    async with world_on(backend, tmp_path, attachment_part_bytes=PART) as w:
        yield w


@dataclass
class Upload:
    ref: AttachmentRef
    info: AttachmentInfo
    ciphertext: bytes


def encrypt(mid: str, label: Label, data: bytes, name: str = "grid.jpg") -> Upload:
    aid = new_attachment_id()
    key, salt = os.urandom(32), os.urandom(chunked.SALT_LEN)
    sealer = Sealer(key, salt, context(mid, aid, label.to_json()), len(data))
    ct = sealer.update(data) + sealer.finish()
    tree = ChunkTree()
    tree.update(ct)
    info = AttachmentInfo(aid, key, name, "image/jpeg", len(data), sealer.sha256)
    return Upload(AttachmentRef(aid, len(ct), tree.root()), info, ct)


async def upload(dev: Device, mid: str, up: Upload, *, complete: bool = True) -> dict[str, Any]:
    r = await dev.post("/v1/attachments", {"id": up.ref.id, "message": mid, "size": up.ref.size})
    assert r.status_code == 201, r.text
    status = r.json()
    assert status["part_size"] == PART and status["parts"] == -(-up.ref.size // PART)
    for n in range(status["parts"]):
        part = up.ciphertext[n * PART : (n + 1) * PART]
        r = await dev.request("PUT", f"/v1/attachments/{up.ref.id}/parts/{n + 1}", raw=part)
        assert r.status_code == 200, r.text
        assert r.json() == {"number": n + 1, "size": len(part), "sha256": hashlib.sha256(part).hexdigest()}
    if not complete:
        return status
    r = await dev.post(f"/v1/attachments/{up.ref.id}/complete", {"root": b64url_encode(up.ref.root)})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def send_with(dev: Device, mid: str, label: Label, ups: list[Upload], **kw: Any) -> Any:
    return await dev.send(
        OPS, label, b"see attached", envelope_id=mid, attachments=[(u.ref, u.info) for u in ups], **kw
    )


def read_back(up: Upload, mid: str, label: Label, ciphertext: bytes) -> bytes:
    info = up.info
    unsealer = Unsealer(
        info.key, context(mid, info.id, label.to_json()), up.ref.size, info.length, info.sha256
    )
    return unsealer.update(ciphertext) + unsealer.finish()


async def test_an_attachment_travels_in_parts_and_each_recipient_reads_it(world: World) -> None:
    c = await coalition(world)
    label = parse_label(SECRET, world.policy)
    mid = new_envelope_id()
    big = os.urandom(3 * PART + 1234)  # four parts, the last short
    ups = [encrypt(mid, label, big), encrypt(mid, label, b"", "empty.txt")]
    for up in ups:
        done = await upload(c.usa, mid, up)
        assert done["state"] == "complete" and done["root"] == b64url_encode(up.ref.root)
    r = await send_with(c.usa, mid, label, ups)
    assert r.status_code == 201, r.text
    # UKR (a recipient) reads both, whole and by range; the first download alone is logged.
    path = f"/v1/messages/{mid}/attachments/{ups[0].ref.id}"
    got = await c.ukr.get(path)
    assert got.status_code == 200 and got.headers["accept-ranges"] == "bytes"
    assert got.headers["etag"] == f'"{b64url_encode(ups[0].ref.root)}"'
    assert read_back(ups[0], mid, label, got.content) == big
    part = await c.ukr.get(path, headers={"range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == ups[0].ciphertext[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{ups[0].ref.size}"
    tail = await c.ukr.get(path, headers={"range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == ups[0].ciphertext[-10:]
    assert_problem(
        await c.ukr.get(path, headers={"range": f"bytes={ups[0].ref.size}-"}), "range-not-satisfiable"
    )
    assert_problem(await c.ukr.get(path, headers={"range": "bytes=0-1,5-6"}), "range-not-satisfiable")
    empty = await c.ukr.get(f"/v1/messages/{mid}/attachments/{ups[1].ref.id}")
    assert read_back(ups[1], mid, label, empty.content) == b""
    fetched = await world.entries("message.attachment_fetched")
    assert [(e["attachment"], e["device"]) for e in fetched] == [(u.ref.id, c.ukr.id) for u in ups]
    # The uploader's view says where each stands; a part can no longer change.
    status = (await c.usa.get(f"/v1/attachments/{ups[0].ref.id}")).json()
    assert status["state"] == "attached" and status["stored"] == []
    assert_problem(
        await c.usa.request("PUT", f"/v1/attachments/{ups[0].ref.id}/parts/1", raw=b"x" * PART),
        "upload-complete",
    )
    # FRA is not a recipient (not in REL TO): refused and logged, like a message fetch.
    assert_problem(await c.fra.get(path), "not-recipient")
    assert (await world.entries("access.denied"))[-1]["who"] == c.fra.id


async def test_access_is_rechecked_on_every_download(world: World) -> None:
    c = await coalition(world)
    label = parse_label(SECRET, world.policy)
    mid = new_envelope_id()
    up = encrypt(mid, label, b"imagery")
    await upload(c.usa, mid, up)
    assert (await send_with(c.usa, mid, label, [up])).status_code == 201
    path = f"/v1/messages/{mid}/attachments/{up.ref.id}"
    assert (await c.ukr.get(path)).status_code == 200
    r = await world.root.request("PATCH", "/v1/admin/principals/ukr-analyst", {"clearance": "CONFIDENTIAL"})
    assert r.status_code == 200, r.text
    assert_problem(await c.ukr.get(path), "clearance")
    assert (await world.entries("access.denied"))[-1]["why"] == "clearance"


async def test_another_device_can_neither_write_to_nor_name_an_upload(world: World) -> None:
    c = await coalition(world)
    label = parse_label(SECRET, world.policy)
    mid = new_envelope_id()
    up = encrypt(mid, label, b"usa's imagery")
    await upload(c.usa, mid, up)
    # UKR cannot see, write to, complete or abandon USA's upload: it does not exist for UKR.
    assert_problem(await c.ukr.get(f"/v1/attachments/{up.ref.id}"), "not-found")
    assert_problem(await c.ukr.request("PUT", f"/v1/attachments/{up.ref.id}/parts/1", raw=b"x"), "not-found")
    assert_problem(await c.ukr.request("DELETE", f"/v1/attachments/{up.ref.id}"), "not-found")
    # UKR names it in its own envelope of the same id: refused (and logged as a rejection).
    r = await send_with(c.ukr, mid, label, [up])
    assert_problem(r, "attachment-not-ready")
    assert (await world.entries("message.rejected"))[-1]["reason"] == "attachment-not-ready"
    # USA moves it to another message: refused too (its context would not open anyway).
    assert_problem(await send_with(c.usa, new_envelope_id(), label, [up]), "attachment-not-ready")
    # A header that says another size or root than the upload's.
    other = encrypt(mid, label, b"other bytes")
    forged = Upload(AttachmentRef(up.ref.id, up.ref.size, other.ref.root), up.info, up.ciphertext)
    assert_problem(await send_with(c.usa, mid, label, [forged]), "attachment-mismatch")
    # And the genuine envelope still goes through.
    assert (await send_with(c.usa, mid, label, [up])).status_code == 201


async def test_an_upload_is_checked_before_it_is_complete(world: World) -> None:
    c = await coalition(world)
    label = parse_label(SECRET, world.policy)
    mid = new_envelope_id()
    up = encrypt(mid, label, os.urandom(2 * PART + 10))
    r = await c.usa.post("/v1/attachments", {"id": up.ref.id, "message": mid, "size": up.ref.size})
    assert r.status_code == 201
    aid = up.ref.id
    assert_problem(await c.usa.request("PUT", f"/v1/attachments/{aid}/parts/1", raw=b"short"), "bad-part")
    assert_problem(await c.usa.request("PUT", f"/v1/attachments/{aid}/parts/4", raw=b"x"), "bad-part")
    ok = await c.usa.request("PUT", f"/v1/attachments/{aid}/parts/1", raw=up.ciphertext[:PART])
    assert ok.status_code == 200
    root = b64url_encode(up.ref.root)
    assert_problem(await c.usa.post(f"/v1/attachments/{aid}/complete", {"root": root}), "incomplete-upload")
    # Starting it again resumes: the parts stored so far are listed.
    again = await c.usa.post("/v1/attachments", {"id": aid, "message": mid, "size": up.ref.size})
    assert again.status_code == 200 and [p["number"] for p in again.json()["stored"]] == [1]
    for n in (2, 3):
        body = up.ciphertext[(n - 1) * PART : n * PART]
        assert (await c.usa.request("PUT", f"/v1/attachments/{aid}/parts/{n}", raw=body)).status_code == 200
    wrong = b64url_encode(bytes(32))
    assert_problem(
        await c.usa.post(f"/v1/attachments/{aid}/complete", {"root": wrong}), "attachment-mismatch"
    )
    # The parts were discarded: it is uploaded again from the start.
    assert (await c.usa.get(f"/v1/attachments/{aid}")).json()["stored"] == []
    await upload_parts(c.usa, up)
    r = await c.usa.post(f"/v1/attachments/{aid}/complete", {"root": root})
    assert r.status_code == 200 and r.json()["state"] == "complete"
    # The same id again, for another message: taken.
    taken = await c.ukr.post(
        "/v1/attachments", {"id": aid, "message": new_envelope_id(), "size": up.ref.size}
    )
    assert_problem(taken, "duplicate-attachment")
    # Abandoned: gone from the store.
    assert (await c.usa.request("DELETE", f"/v1/attachments/{aid}")).json()["state"] == "abandoned"
    assert await world.state.blobs.size(aid) is None


async def upload_parts(dev: Device, up: Upload) -> None:
    for n in range(-(-up.ref.size // PART)):
        body = up.ciphertext[n * PART : (n + 1) * PART]
        r = await dev.request("PUT", f"/v1/attachments/{up.ref.id}/parts/{n + 1}", raw=body)
        assert r.status_code == 200, r.text


async def test_the_level_limits_attachments(world: World) -> None:
    c = await coalition(world)
    label = parse_label(SECRET, world.policy)
    rule = world.policy.rule("SECRET")
    assert rule.max_attachments == 10
    mid = new_envelope_id()
    fake = [
        (AttachmentRef(new_attachment_id(), ciphertext_size(0), bytes(32)), encrypt(mid, label, b"").info)
        for _ in range(11)
    ]
    fake = [(ref, AttachmentInfo(ref.id, i.key, i.name, i.media_type, 0, i.sha256)) for ref, i in fake]
    r = await c.usa.send(OPS, label, b"x", envelope_id=mid, attachments=fake)
    assert_problem(r, "too-many-attachments")
    huge = ciphertext_size(rule.max_attachment_bytes)
    big = AttachmentRef(new_attachment_id(), huge, bytes(32))
    info = AttachmentInfo(
        big.id, bytes(32), "big.bin", "application/octet-stream", rule.max_attachment_bytes, "0" * 64
    )
    assert_problem(await c.usa.send(OPS, label, b"x", attachments=[(big, info)]), "attachment-too-large")
    # The largest any level allows is refused when the upload starts.
    largest = max(lv.max_attachment_bytes for lv in world.policy.levels)
    r = await c.usa.post(
        "/v1/attachments", {"id": new_attachment_id(), "message": mid, "size": ciphertext_size(largest)}
    )
    assert_problem(r, "attachment-too-large")
    # An impossible size is refused as such.
    r = await c.usa.post("/v1/attachments", {"id": new_attachment_id(), "message": mid, "size": 1081})
    assert_problem(r, "validation")


async def test_a_principal_has_a_quota(backend: str, tmp_path: Path) -> None:
    async with world_on(backend, tmp_path, attachment_part_bytes=PART, attachment_quota_bytes=5000) as world:
        c = await coalition(world)
        mid = new_envelope_id()
        first = {"id": new_attachment_id(), "message": mid, "size": ciphertext_size(1000)}
        assert (await c.usa.post("/v1/attachments", first)).status_code == 201
        second = {**first, "id": new_attachment_id(), "size": ciphertext_size(5000)}
        assert_problem(await c.usa.post("/v1/attachments", second), "attachment-quota")
        # Another principal's quota is its own.
        assert (
            await c.ukr.post("/v1/attachments", {**second, "size": ciphertext_size(1000)})
        ).status_code == 201


async def test_retention_deletes_the_ciphertext_and_logs_it(world: World) -> None:
    c = await coalition(world)
    label = parse_label(SECRET, world.policy)
    mid = new_envelope_id()
    up = encrypt(mid, label, os.urandom(PART + 5))
    await upload(c.usa, mid, up)
    assert (await send_with(c.usa, mid, label, [up])).status_code == 201
    assert await world.state.blobs.size(up.ref.id) == up.ref.size
    await world.sql("UPDATE message SET expires_at = accepted_at WHERE id = :id", id=mid)
    assert await messaging.expire_due(world.state) == 1
    deleted = (await world.entries("message.attachments_deleted"))[-1]
    assert deleted["id"] == mid and deleted["attachments"] == [up.ref.id] and deleted["bytes"] == up.ref.size
    assert await attachments.purge_deleted(world.state) == 1
    assert await world.state.blobs.size(up.ref.id) is None
    assert await attachments.purge_deleted(world.state) == 0
    assert_problem(await c.ukr.get(f"/v1/messages/{mid}/attachments/{up.ref.id}"), "not-found")
    # No file of it is left anywhere under the store's directory.
    left = [p.name for p in world.state.settings.attachments_dir.rglob("*") if p.is_file()]
    assert not [n for n in left if up.ref.id[2:] in n], left


async def test_a_ciphertext_missing_from_the_store_is_refused_before_the_answer_starts(world: World) -> None:
    c = await coalition(world)
    label = parse_label(SECRET, world.policy)
    mid = new_envelope_id()
    up = encrypt(mid, label, b"evidence")
    await upload(c.usa, mid, up)
    assert (await send_with(c.usa, mid, label, [up])).status_code == 201
    await world.state.blobs.delete(up.ref.id)  # an operator's mistake, a lost disk
    r = await c.ukr.get(f"/v1/messages/{mid}/attachments/{up.ref.id}")
    body = assert_problem(r, "internal")
    assert "missing from the store" in body["detail"]
