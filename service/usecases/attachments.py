"""Attachment use cases (issue 15, protocol 11): upload in parts, complete against the chunk
tree, hand over to the envelope that names it, download with access re-checked, delete on expiry.

The ciphertext never passes through the writer: a job decides (who, which upload, which
part, whose message), the blob store (`service/storage/blobs.py`) holds the bytes, and a job
records the outcome. An upload belongs to the device that started it and to the message id
it was started for; nobody else learns it exists (another device's upload is `not-found`).

States of an attachment row: `uploading` -> `complete` (every part stored, the chunk tree
root checked) -> `attached` (the envelope naming it was accepted) -> `deleting` (its
message expired; logged) -> `deleted` (its ciphertext gone from the store). An upload not
named by an accepted message within `attachment_upload_ttl_seconds` of its start goes
`uploading`/`complete` -> `abandoned` (swept; logged) -> `swept` (its parts gone); starting
it again is then `upload-expired`.
"""

from __future__ import annotations

import asyncio
import errno
import re
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import func, select, update

from liaison.crypto.attachments import ChunkTree, is_ciphertext_size
from liaison.crypto.content import ATTACHMENT_ID_RE
from liaison.crypto.encoding import b64url_encode
from liaison.crypto.envelope import UUID7_RE, ParsedEnvelope
from liaison.crypto.errors import PolicyViolation
from liaison.crypto.policy import LevelRule, Policy

from ..problems import Problem
from ..state import AppState
from ..storage.blobs import BlobError, PartInfo
from ..storage.db import utcnow
from ..storage.models import Attachment, AttachmentFetch, Message
from ..writer import Tx
from .access import delivered, recheck
from .auth import SignedRequest

__all__ = [
    "Range",
    "abort",
    "check_named",
    "check_sizes",
    "complete",
    "download",
    "mark_attached",
    "part_size",
    "purge_deleted",
    "put_part",
    "start",
    "status",
    "sweep_abandoned",
]

T = TypeVar("T")
#: The states whose ciphertext counts against the principal's quota.
_STORED = ("uploading", "complete", "attached")


def part_size(state: AppState) -> int:
    """The size of every part but the last: the setting, at most the largest request body."""
    return min(state.settings.attachment_part_bytes, state.settings.max_body_bytes)


def _parts(size: int, part: int) -> int:
    return max(1, -(-size // part))


#: The states of an upload the sweep took away (`upload-expired` from then on).
_SWEPT = ("abandoned", "swept")


def _expired(aid: str) -> Problem:
    return Problem("upload-expired", f"upload {aid} was not finished in time and was swept; start a new one")


def _status(row: Attachment, stored: Sequence[PartInfo] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "message": row.message_id,
        "size": row.size,
        "part_size": row.part_size,
        "parts": _parts(row.size, row.part_size),
        "state": row.state,
    }
    if row.root is not None:
        out["root"] = row.root
    if stored is not None:
        out["stored"] = [_part(p) for p in stored]
    return out


def _part(p: PartInfo) -> dict[str, Any]:
    """A stored part as the API shows it (`sha256` only where the store keeps it)."""
    out: dict[str, Any] = {"number": p.number, "size": p.size}
    if p.sha256 is not None:
        out["sha256"] = p.sha256
    return out


def _not_found(aid: str) -> Problem:
    # The same answer for an id nobody uses and for another device's upload.
    return Problem("not-found", f"no upload {aid[:40]} of this device")


def _own(tx: Tx, signed: SignedRequest, aid: str) -> Attachment:
    """This device's attachment `aid` (the request consumed first), or not-found."""
    caller = signed.caller(tx)
    row = tx.session.get(Attachment, aid) if ATTACHMENT_ID_RE.fullmatch(aid) else None
    if row is None or row.device_id != caller.device_id:
        raise _not_found(aid)
    if row.state in _SWEPT:
        raise _expired(aid)
    return row


def _largest(policy: Policy) -> int:
    return max((lv.max_attachment_bytes for lv in policy.levels), default=0)


async def start(
    state: AppState, signed: SignedRequest, aid: str, message: str, size: int
) -> tuple[dict[str, Any], bool]:
    """Start attachment `aid` of message `message` (`size` ciphertext bytes). Returns its
    status and whether it is new; starting it again (same device, message and size) answers
    its status with the parts stored so far, for a resumed upload."""
    if not ATTACHMENT_ID_RE.fullmatch(aid):
        raise Problem("validation", "an attachment id is a_ and 26 base32 characters (protocol 11.1)")
    if not UUID7_RE.fullmatch(message):
        raise Problem("validation", "message must be the envelope's id, a lower-case UUIDv7")
    if not is_ciphertext_size(size):
        raise Problem("validation", f"no attachment has {size} ciphertext bytes (protocol 11.1)")
    largest = _largest(state.policy)
    if size > largest:
        raise Problem("attachment-too-large", f"{size} bytes exceeds {largest}, the most any level allows")
    part = part_size(state)

    def job(tx: Tx) -> tuple[Attachment, bool]:
        caller = signed.caller(tx)
        s = tx.session
        row = s.get(Attachment, aid)
        if row is not None:
            same = (row.device_id, row.message_id, row.size) == (caller.device_id, message, size)
            if same and row.state in _SWEPT:
                raise _expired(aid)
            if not same or row.state not in ("uploading", "complete"):
                raise Problem("duplicate-attachment", f"attachment {aid} already exists")
            return row, False
        if s.get(Message, message) is not None:
            raise Problem("duplicate-envelope", f"message {message} was already accepted")
        used = s.scalar(
            select(func.coalesce(func.sum(Attachment.size), 0)).where(
                Attachment.principal_id == caller.principal.id, Attachment.state.in_(_STORED)
            )
        )
        quota = state.settings.attachment_quota_bytes
        if int(used or 0) + size > quota:
            raise Problem(
                "attachment-quota",
                f"{caller.principal.id} stores {used} bytes of attachments; {size} more exceeds its {quota}",
            )
        row = Attachment(
            id=aid,
            message_id=message,
            device_id=caller.device_id,
            principal_id=caller.principal.id,
            size=size,
            part_size=part,
            state="uploading",
            created_at=tx.now,
        )
        s.add(row)
        return row, True

    row, new = (await state.writer.run(job, shares_cache=True, savepoint=False)).value
    if row.state == "uploading":
        # Begun again on a resume too (idempotent): a crash between the row and the store's
        # upload, or a completion refused for its root, left no upload to resume.
        await _blob(state.blobs.begin(aid))
    stored = None if new else await _stored(state, row)
    return _status(row, stored), new


async def _stored(state: AppState, row: Attachment) -> list[PartInfo]:
    if row.state != "uploading":
        return []
    return await _blob(state.blobs.parts(row.id))


async def status(state: AppState, signed: SignedRequest, aid: str) -> dict[str, Any]:
    """The uploader's view of its attachment: state, size, parts stored (to resume), and
    `offset`: the bytes stored from the start without a gap (the resumable-upload draft's
    Upload-Offset, which HEAD answers)."""
    row = (await state.writer.run(lambda tx: _own(tx, signed, aid), shares_cache=True, savepoint=False)).value
    stored = await _stored(state, row)
    out = _status(row, stored)
    out["offset"] = row.size if row.state != "uploading" else _offset(stored)
    return out


def _offset(stored: Sequence[PartInfo]) -> int:
    """The bytes of parts 1, 2, ... stored with no part missing before them."""
    offset = 0
    for expected, part in enumerate(stored, start=1):
        if part.number != expected:
            break
        offset += part.size
    return offset


async def put_part(
    state: AppState, signed: SignedRequest, aid: str, number: int, data: bytes, sha256: bytes | None
) -> dict[str, Any]:
    """Store part `number` of this device's upload `aid`: every part `part_size` bytes but
    the last, which holds the rest. Durable when this returns (the store's contract).
    `sha256`: the part's SHA-256 as the request's verified Content-Digest carried it (the
    store does not hash it again; an S3 store has its server check it)."""

    def job(tx: Tx) -> Attachment:
        row = _own(tx, signed, aid)
        if row.state != "uploading":
            raise Problem(
                "upload-complete", f"attachment {aid} is {row.state}: its parts can no longer change"
            )
        count = _parts(row.size, row.part_size)
        if not 1 <= number <= count:
            raise Problem("bad-part", f"attachment {aid} has parts 1 to {count}")
        expected = row.part_size if number < count else row.size - (count - 1) * row.part_size
        if len(data) != expected:
            raise Problem("bad-part", f"part {number} of {count} is {expected} bytes, not {len(data)}")
        return row

    await state.writer.run(job, shares_cache=True, savepoint=False)

    async def one() -> AsyncIterator[bytes]:
        yield data

    try:
        info = await state.blobs.put_part(aid, number, one(), sha256)
    except BlobError:
        # No upload in the store (a crash after the row was made): begin it, try once more.
        await _blob(state.blobs.begin(aid))
        info = await _blob(state.blobs.put_part(aid, number, one(), sha256))
    except OSError as e:
        raise _store_problem(e) from None
    return _part(info)


async def complete(state: AppState, signed: SignedRequest, aid: str, root: str) -> dict[str, Any]:
    """Join the parts into the attachment's object and check its chunk tree (protocol 11.2)
    against `root`; on a mismatch the object and parts are discarded (`attachment-mismatch`)
    and the upload starts over."""
    row = (await state.writer.run(lambda tx: _own(tx, signed, aid), shares_cache=True, savepoint=False)).value
    if row.state != "uploading":
        if row.state == "complete" and row.root == root:
            return _status(row)  # a retried completion
        raise Problem("upload-complete", f"attachment {aid} is {row.state}")
    size = await _blob(state.blobs.size(aid))
    if size is None:
        size = await _join(state, aid, _parts(row.size, row.part_size))
    # else: a completion cut short after the store joined the parts (an object is never
    # replaced): its bytes are checked as if just joined.
    computed = b64url_encode(await _chunk_root(state, aid)) if size == row.size else None
    if computed != root:
        await _blob(state.blobs.delete(aid))
        await _blob(state.blobs.begin(aid))  # the upload starts over
        why = "its size" if computed is None else f"its chunk tree root is {computed}, not {root}"
        raise Problem("attachment-mismatch", f"attachment {aid}: {why}; upload it again")

    def done(tx: Tx) -> Attachment:
        # The request was consumed by the first job; the row is still this device's (no
        # other device can reach it, and only this path completes it).
        r = tx.session.get(Attachment, aid)
        if r is None or r.device_id != row.device_id or r.state != "uploading":
            raise Problem("upload-complete", f"attachment {aid} changed while it was completed")
        r.state, r.root, r.completed_at = "complete", root, tx.now
        return r

    return _status((await state.writer.run(done, shares_cache=True)).value)


async def _join(state: AppState, aid: str, count: int) -> int:
    """Join the `count` parts of upload `aid` into its object; its size."""
    stored = {p.number: p.size for p in await _blob(state.blobs.parts(aid))}
    missing = [n for n in range(1, count + 1) if n not in stored]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise Problem("incomplete-upload", f"attachment {aid} is missing part(s) {shown} of {count}")
    try:
        return await state.blobs.complete(aid, list(range(1, count + 1)))
    except BlobError:  # another completion of it took the parts first
        raise Problem("incomplete-upload", f"attachment {aid}: its parts are gone; start it again") from None
    except OSError as e:
        raise _store_problem(e) from None


async def _chunk_root(state: AppState, key: str) -> bytes:
    """The chunk tree root of stored object `key`, read a piece at a time (hashing in a
    thread: a 2 GiB attachment is 131,072 chunks)."""
    tree = ChunkTree()
    size = await _blob(state.blobs.size(key))
    async for piece in state.blobs.read(key, 0, size or 0):
        await asyncio.to_thread(tree.update, piece)
    return tree.root()


async def abort(state: AppState, signed: SignedRequest, aid: str) -> None:
    """Abandon this device's upload `aid` (not once its message was accepted)."""

    def job(tx: Tx) -> Attachment:
        row = _own(tx, signed, aid)
        if row.state not in ("uploading", "complete"):
            raise Problem("upload-complete", f"attachment {aid} belongs to an accepted message")
        tx.session.delete(row)
        return row

    await state.writer.run(job, shares_cache=True)
    await _blob(state.blobs.abort(aid))
    await _blob(state.blobs.delete(aid))


# --- the envelope that names attachments (called from messaging) ------------------------------


def check_sizes(rule: LevelRule, parsed: ParsedEnvelope) -> None:
    """The level's limits on the header's attachments (pure; PolicyViolation)."""
    refs = parsed.attachments
    if len(refs) > rule.max_attachments:
        raise PolicyViolation(
            "too-many-attachments", f"{len(refs)} attachments; {rule.max_attachments} allowed at {rule.name}"
        )
    for ref in refs:
        if ref.size > rule.max_attachment_bytes:
            raise PolicyViolation(
                "attachment-too-large",
                f"attachment {ref.id} is {ref.size} bytes; "
                f"{rule.max_attachment_bytes} allowed at {rule.name}",
            )


def check_named(tx: Tx, device_id: str, parsed: ParsedEnvelope) -> None:
    """Every attachment the header names is a complete upload of `device_id` for this
    message, of the size and root the header says (PolicyViolation otherwise)."""
    refs = parsed.attachments
    rows = {
        r.id: r for r in tx.session.scalars(select(Attachment).where(Attachment.id.in_([x.id for x in refs])))
    }
    for ref in refs:
        row = rows.get(ref.id)
        if row is None or row.device_id != device_id or row.message_id != parsed.id:
            raise PolicyViolation(
                "attachment-not-ready",
                f"attachment {ref.id} is not an upload of this device for this message",
            )
        # "attached": this very message was accepted already (a retried submit), which the
        # store answers as the duplicate it is.
        if row.state not in ("complete", "attached"):
            raise PolicyViolation("attachment-not-ready", f"attachment {ref.id} is {row.state}, not complete")
        if row.size != ref.size or row.root != b64url_encode(ref.root):
            raise PolicyViolation(
                "attachment-mismatch", f"attachment {ref.id}: the header's size or root is not the upload's"
            )


def mark_attached(tx: Tx, parsed: ParsedEnvelope) -> None:
    tx.session.execute(
        update(Attachment)
        .where(Attachment.id.in_([r.id for r in parsed.attachments]))
        .values(state="attached")
    )


# --- downloads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """The bytes [start, end) of an attachment of `size` bytes; `partial` when a Range asked."""

    start: int
    end: int
    size: int
    partial: bool

    @classmethod
    def parse(cls, header: str | None, size: int) -> Range:
        """RFC 9110 14.1.2: one `bytes=a-b`, `bytes=a-` or `bytes=-n`; anything else is refused
        (`range-not-satisfiable`) rather than guessed at."""
        if header is None:
            return cls(0, size, size, False)
        m = re.fullmatch(r"bytes=(\d{0,19})-(\d{0,19})", header.strip())
        if m is None or (not m[1] and not m[2]):
            raise Problem("range-not-satisfiable", "Range must be one bytes=a-b, bytes=a- or bytes=-n")
        if not m[1]:
            n = int(m[2])
            if n == 0:
                raise Problem("range-not-satisfiable", "a suffix range of 0 bytes")
            return cls(max(0, size - n), size, size, True)
        first = int(m[1])
        last = min(int(m[2]), size - 1) if m[2] else size - 1
        if first >= size or last < first:
            raise Problem(
                "range-not-satisfiable", f"the attachment has {size} bytes; {header[:60]} is outside it"
            )
        return cls(first, last + 1, size, True)


@dataclass(frozen=True)
class Download:
    root: str
    range: Range
    pieces: AsyncIterator[bytes]


async def download(
    state: AppState, signed: SignedRequest, message_id: str, aid: str, range_header: str | None
) -> Download:
    """Attachment `aid` of message `message_id` for one of its recipient devices: access is
    re-checked as a message fetch does (SPEC 4), and each device's first download is logged
    (`message.attachment_fetched`). The bytes stream from the store."""

    def job(tx: Tx) -> tuple[Attachment, Range]:
        caller = signed.caller(tx)
        s = tx.session
        m, _ = delivered(tx, caller, message_id)
        recheck(state, caller, caller.principal, m)
        row = s.get(Attachment, aid) if ATTACHMENT_ID_RE.fullmatch(aid) else None
        if row is None or row.message_id != m.id or row.state not in ("attached", "deleting"):
            raise Problem("not-found", f"message {m.id} has no attachment {aid[:40]}")
        if m.envelope is None or row.state != "attached":
            raise Problem("not-found", "the message expired and its attachments were destroyed")
        rng = Range.parse(range_header, row.size)  # refused before anything is logged or written
        if s.get(AttachmentFetch, (aid, caller.device_id)) is None:
            s.add(AttachmentFetch(attachment_id=aid, device_id=caller.device_id, fetched_at=tx.now))
            tx.audit(
                "message.attachment_fetched",
                caller.device_id,
                m.id,
                id=m.id,
                attachment=aid,
                device=caller.device_id,
            )
        return row, rng

    row, rng = (await state.writer.run(job, shares_cache=True, savepoint=False)).value
    if row.root is None or await _blob(state.blobs.size(aid)) != row.size:
        # Refused before the answer starts: a stream cut short would be all a reader saw.
        raise Problem("internal", f"attachment {aid}: its ciphertext is missing from the store")
    return Download(row.root, rng, state.blobs.read(aid, rng.start, rng.end))


# --- retention ---------------------------------------------------------------------------------


def expire(tx: Tx, messages: Sequence[str]) -> None:
    """In the expiry job: the attachments of `messages` are to be deleted; log it per message
    (`message.attachments_deleted`); `purge_deleted` then deletes their ciphertext."""
    rows = tx.session.execute(
        select(Attachment.message_id, Attachment.id, Attachment.size).where(
            Attachment.message_id.in_(messages), Attachment.state == "attached"
        )
    ).all()
    by_message: dict[str, list[tuple[str, int]]] = {}
    for mid, aid, size in rows:
        by_message.setdefault(mid, []).append((aid, size))
    for mid, items in sorted(by_message.items()):
        tx.audit(
            "message.attachments_deleted",
            "system",
            mid,
            id=mid,
            attachments=sorted(a for a, _ in items),
            bytes=sum(n for _, n in items),
        )
    if rows:
        tx.session.execute(
            update(Attachment).where(Attachment.id.in_([aid for _, aid, _ in rows])).values(state="deleting")
        )


async def purge_deleted(state: AppState, limit: int = 500) -> int:
    """Delete the ciphertext of attachments marked `deleting` (their messages expired) or
    `abandoned` (swept), then mark them `deleted` or `swept`. Idempotent: a pass cut short is
    finished by the next one."""

    def due(tx: Tx) -> list[tuple[str, str]]:
        rows = tx.session.execute(
            select(Attachment.id, Attachment.state)
            .where(Attachment.state.in_(("deleting", "abandoned")))
            .limit(limit)
        )
        return [(aid, st) for aid, st in rows]

    rows = (await state.writer.run(due, shares_cache=True)).value
    for aid, _ in rows:
        await _blob(state.blobs.delete(aid))
        await _blob(state.blobs.abort(aid))
    if rows:

        def gone(tx: Tx) -> None:
            for before, after in (("deleting", "deleted"), ("abandoned", "swept")):
                ids = [aid for aid, st in rows if st == before]
                if ids:
                    tx.session.execute(
                        update(Attachment)
                        .where(Attachment.id.in_(ids), Attachment.state == before)
                        .values(state=after)
                    )

        await state.writer.run(gone, shares_cache=True)
    return len(rows)


async def sweep_abandoned(state: AppState, limit: int = 500) -> int:
    """Sweep uploads not named by an accepted message within `attachment_upload_ttl_seconds`
    of their start: mark them `abandoned` and log one `attachment.uploads_swept` entry (their
    ids, count and bytes) in the same transaction; `purge_deleted` then deletes their parts.
    Then abort the store's own uploads begun before that age that no unfinished upload row
    names (left by a crash, or by a request racing a completion): listed by the store, so
    nothing is forgotten. Returns how many uploads were swept."""
    ttl = timedelta(seconds=state.settings.attachment_upload_ttl_seconds)

    def due(tx: Tx) -> list[str]:
        rows = tx.session.execute(
            select(Attachment.id, Attachment.size)
            .where(Attachment.state.in_(("uploading", "complete")), Attachment.created_at < tx.now - ttl)
            .order_by(Attachment.created_at)
            .limit(limit)
        ).all()
        if not rows:
            return []
        ids = sorted(aid for aid, _ in rows)
        tx.audit(
            "attachment.uploads_swept",
            "system",
            None,
            attachments=ids,
            count=len(ids),
            bytes=sum(size for _, size in rows),
            ttl_seconds=state.settings.attachment_upload_ttl_seconds,
        )
        tx.session.execute(update(Attachment).where(Attachment.id.in_(ids)).values(state="abandoned"))
        return ids

    swept = (await state.writer.run(due, shares_cache=True)).value
    open_uploads = await _blob(state.blobs.uploads())
    if open_uploads:
        cutoff = utcnow() - ttl
        old = [u.key for u in open_uploads if u.begun < cutoff][:limit]

        def live(tx: Tx) -> set[str]:
            return set(
                tx.session.scalars(
                    select(Attachment.id).where(Attachment.id.in_(old), Attachment.state == "uploading")
                )
            )

        alive = (await state.writer.run(live, shares_cache=True)).value if old else set()
        for key in old:
            if key not in alive:
                await _blob(state.blobs.abort(key))
    return len(swept)


async def _blob(call: Awaitable[T]) -> T:
    """Await a blob store call; its failures as problems (a full disk is `storage-full`)."""
    try:
        return await call
    except BlobError as e:
        raise Problem("internal", f"attachment storage: {e}") from None
    except OSError as e:
        raise _store_problem(e) from None


def _store_problem(e: OSError) -> Problem:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return Problem("storage-full", "the attachment store is full")
    return Problem("unavailable", "the attachment store failed; try again")
