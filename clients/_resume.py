"""The send journal: what `send(..., journal=DIR)` keeps so that an interrupted send resumes.

A send with attachments, each given as a path, is named by its identity: the server, this
device, the channel, the label, `to`, the body's SHA-256, the content type, and each
attachment's absolute path, name and media type. `DIR/<hex>.json` (hex: the SHA-256 of
`liaison/v1/send-journal\\0` and the identity's canonical JSON, keys sorted) holds the
message id and, for each attachment, its id, key and salt (base64), with the file's size and
mtime_ns when they were drawn. It is written before the first upload starts (mode 0600,
atomically: a temporary file, fsync, rename) and removed once the message is accepted, or once
the send fails for a reason a rerun cannot cure (`curable`).

A later send of the same identity, the files unchanged (size and mtime_ns), seals with the
journal's message id, attachment ids, keys and salts: the ciphertext is then the very bytes
sent before, so each upload, started again, answers the parts the server holds, and only the
others are sent. A file that changed, a damaged journal or `restart=True` starts afresh: new
ids and keys, the old uploads deleted (best effort), a new journal; `notice` says so. A rerun
that finds the message accepted already (the server answers `duplicate-envelope`, or
`duplicate-attachment` for an attachment attached to it) removes the journal and raises
`Conflict` (`duplicate-envelope`) saying so: nothing is sent twice.

The journal holds the attachments' keys in clear. They only protect the ciphertext of files
that lie in clear on the same disk (the journal names them by path): whoever can read the
journal can read the files themselves, so a thief of the device gains nothing from the keys.
The journal is private (0600; the CLI keeps it under the profile's state directory, itself
0700) and the keys go with it. An upload never resumed is swept by the server after its
upload age (LIAISON_ATTACHMENT_UPLOAD_TTL_SECONDS, 7 days by default); a rerun after that
uploads the file afresh.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liaison.crypto import chunked
from liaison.crypto.attachments import AttachmentRef
from liaison.crypto.content import ATTACHMENT_ID_RE, AttachmentInfo
from liaison.crypto.envelope import UUID7_RE, new_envelope_id
from liaison.crypto.labels import Label

from . import _attachments as _att
from .errors import APIError, Conflict, InputError, TransportError

if TYPE_CHECKING:
    from .client import AsyncClient

__all__ = ["DOMAIN", "Journal", "Pending", "Uploads", "already_sent", "curable", "identity"]

#: The domain separation of a journal's name.
DOMAIN = b"liaison/v1/send-journal\x00"
_VERSION = 1
#: A one-line notice of what became of a journal (resumed, discarded).
Notice = Callable[[str], None]
#: The refusals a rerun can still cure: a timeout, a rate limit, and an upload missing parts
#: (the rerun sends them).
_CURABLE_STATUS, _CURABLE_SLUGS = frozenset({408, 429}), frozenset({"incomplete-upload"})
#: The states of an attachment whose message was accepted.
_SENT_STATES = frozenset({"attached", "deleting", "deleted"})


def identity(
    client: AsyncClient,
    channel: str,
    label: Label,
    to: Sequence[str] | None,
    data: bytes,
    content_type: str,
    sources: Sequence[_att.Source],
) -> dict[str, Any]:
    """The identity of a send (what names its journal), or an empty dict when it has none:
    an attachment is not a path, or there is none."""
    if not sources or any(s.path is None for s in sources):
        return {}
    return {
        "server": client.server,
        "device": client.device_id,
        "channel": channel,
        "label": label.to_json(),
        "to": sorted(set(to)) if to is not None else None,
        "body": hashlib.sha256(data).hexdigest(),
        "content_type": content_type,
        "attachments": [{"path": s.path, "name": s.name, "media_type": s.media_type} for s in sources],
    }


def _canonical(value: Any) -> bytes:
    # Keys sorted, no spaces, ASCII only (a path's undecodable bytes are escaped surrogates).
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True)
class Pending:
    """What a journal holds: the message id, each attachment's `Drawn` id, key and salt, and
    each file's (size, mtime_ns) when they were drawn."""

    message: str
    drawn: tuple[_att.Drawn, ...]
    files: tuple[tuple[int, int], ...]

    @classmethod
    def new(cls, files: Sequence[tuple[int, int]]) -> Pending:
        return cls(new_envelope_id(), tuple(_att.Drawn.new() for _ in files), tuple(files))

    def redrawn(self, index: int) -> Pending:
        """The same send with attachment `index` under a new id, key and salt."""
        drawn = list(self.drawn)
        drawn[index] = _att.Drawn.new()
        return replace(self, drawn=tuple(drawn))

    def to_json(self, ident: dict[str, Any]) -> dict[str, Any]:
        return {
            "v": _VERSION,
            "identity": ident,
            "message": self.message,
            "attachments": [
                {"id": d.id, "key": _b64(d.key), "salt": _b64(d.salt), "size": size, "mtime_ns": mtime}
                for d, (size, mtime) in zip(self.drawn, self.files, strict=True)
            ],
        }

    @classmethod
    def from_json(cls, obj: Any, ident: dict[str, Any]) -> Pending:
        """A journal's content, checked against the identity it must be of; ValueError if not."""
        if not isinstance(obj, dict) or obj.get("v") != _VERSION or obj.get("identity") != ident:
            raise ValueError("not a journal of this send")
        message, items = obj.get("message"), obj.get("attachments")
        if not isinstance(message, str) or not UUID7_RE.fullmatch(message):
            raise ValueError("no message id")
        if not isinstance(items, list) or len(items) != len(ident["attachments"]):
            raise ValueError("not one entry per attachment")
        drawn, files = [], []
        for item in items:
            if not isinstance(item, dict) or not ATTACHMENT_ID_RE.fullmatch(str(item.get("id"))):
                raise ValueError("an attachment without its id")
            key, salt = _unb64(item.get("key"), chunked.KEY_LEN), _unb64(item.get("salt"), chunked.SALT_LEN)
            size, mtime = item.get("size"), item.get("mtime_ns")
            if type(size) is not int or type(mtime) is not int:
                raise ValueError("an attachment without its size and mtime")
            drawn.append(_att.Drawn(str(item["id"]), key, salt))
            files.append((size, mtime))
        return cls(message, tuple(drawn), tuple(files))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, length: int) -> bytes:
    try:
        data = base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(data) != length:
        raise ValueError(f"not {length} bytes")
    return data


class _Damaged(ValueError):
    """A journal file that is not one of this send."""


class Journal:
    """The journal file of one send: `directory/<hex>.json`, hex naming the send's identity."""

    def __init__(self, directory: Path, ident: dict[str, Any]) -> None:
        self.identity = ident
        self.path = directory / f"{hashlib.sha256(DOMAIN + _canonical(ident)).hexdigest()}.json"

    def load(self) -> Pending | None:
        """The pending send, or None when there is none; _Damaged when the file is not one."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise InputError(f"cannot read the send journal {self.path}: {e.strerror or e}") from None
        try:
            return Pending.from_json(json.loads(raw), self.identity)
        except ValueError as e:  # JSON errors are ValueErrors too
            raise _Damaged(str(e)) from None

    def save(self, pending: Pending) -> None:
        """Write the journal atomically (a temporary file, fsync, rename), mode 0600."""
        directory = self.path.parent
        tmp = directory / f".{self.path.stem}.{secrets.token_hex(4)}.tmp"
        data = _canonical(pending.to_json(self.identity))
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            _fsync_directory(directory)
        except OSError as e:
            raise InputError(f"cannot write the send journal in {directory}: {e.strerror or e}") from None

    def discard(self) -> None:
        """Remove the journal (a journal that cannot be removed is found by the next send of
        the same message, which learns from the server that it was sent)."""
        with contextlib.suppress(OSError):
            self.path.unlink()


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (where the platform can open a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def curable(error: BaseException) -> bool:
    """Whether a rerun of the same send may succeed where this one failed: an interruption
    (Ctrl-C, a cancelled task), no usable connection, the server's 5xx, 408 or 429 past the
    retry budget, or an upload missing parts. A refusal (another 4xx) or anything else not."""
    if isinstance(error, KeyboardInterrupt | asyncio.CancelledError | TransportError):
        return True
    if isinstance(error, APIError):
        return error.status >= 500 or error.status in _CURABLE_STATUS or error.slug in _CURABLE_SLUGS
    return False


def already_sent(message_id: str) -> Conflict:
    """The error of a rerun whose message the server had accepted already."""
    return Conflict(
        "duplicate-envelope",
        409,
        f"message {message_id} was already sent (an earlier try of this send was accepted); "
        "nothing was sent again",
    )


def _file_state(src: _att.Source) -> tuple[int, int]:
    """(size, mtime_ns) of an attachment's file (a file object, which no journal names: 0)."""
    return src.length, (os.fstat(src.file.fileno()).st_mtime_ns if src.path is not None else 0)


class Uploads:
    """One send's attachments: the message id and each attachment's id, key and salt (new,
    or an interrupted send's from its journal), their uploads (resuming what the server
    holds), and what becomes of the journal and the uploads when the send ends."""

    def __init__(
        self,
        client: AsyncClient,
        journal: Journal | None,
        sources: Sequence[_att.Source],
        notice: Notice | None,
    ) -> None:
        self.client = client
        self.journal = journal
        self.sources = sources
        self.notice: Notice = notice or (lambda line: None)
        self.pending = Pending(new_envelope_id(), (), ())
        self.resumed = False  # the journal's message id and secrets are used again
        self.started: list[str] = []  # attachment ids the server holds an upload of

    async def prepare(self, *, restart: bool = False) -> str:
        """The message id to send under. A journal of this very send of these very files is
        resumed; one damaged, of files changed since, or `restart`, is discarded (its uploads
        deleted, best effort); a new one is written before anything is uploaded."""
        files = tuple(_file_state(s) for s in self.sources)
        if self.journal is None:
            self.pending = Pending.new(files)
            return self.pending.message
        try:
            old = self.journal.load()
        except _Damaged:
            self.notice(f"the send journal {self.journal.path.name} is unreadable: starting afresh")
            old = None
        if old is not None:
            pairs = zip(self.sources, old.files, files, strict=True)
            changed = [s.name for s, was, now in pairs if was != now]
            if not restart and not changed:
                self.pending, self.resumed = old, True
                return old.message
            why = f"{', '.join(changed)} changed since" if changed else "discarding"
            self.notice(f"{why} the interrupted send of message {old.message}: starting afresh")
            await _att.abort(self.client, [d.id for d in old.drawn])
        self.pending = Pending.new(files)
        self.journal.save(self.pending)
        return self.pending.message

    async def upload(
        self, label: Label, progress: _att.Progress | None
    ) -> list[tuple[AttachmentRef, AttachmentInfo]]:
        """Upload every attachment, one after the other, resuming what the server holds."""
        return [await self._one(i, label, progress) for i in range(len(self.sources))]

    async def _one(
        self, i: int, label: Label, progress: _att.Progress | None
    ) -> tuple[AttachmentRef, AttachmentInfo]:
        src = self.sources[i]

        def held(stored: int, parts: int) -> None:
            if self.resumed:
                self.notice(f"resuming {src.name}: {stored} of {parts} parts already stored")

        message = self.pending.message
        try:
            return await _att.upload(
                self.client, message, label, src, self.pending.drawn[i], progress, self.started, held
            )
        except APIError as e:
            if not self.resumed:
                raise
            if await self._sent(e, self.pending.drawn[i].id):
                raise already_sent(message) from None
            if e.slug != "upload-expired" or self.journal is None:
                raise
        # The server swept the interrupted upload (too old): this one goes afresh.
        self.notice(f"{src.name}: the interrupted upload expired on the server: uploading it afresh")
        self.pending = self.pending.redrawn(i)
        self.journal.save(self.pending)
        return await _att.upload(
            self.client, message, label, src, self.pending.drawn[i], progress, self.started
        )

    async def _sent(self, error: APIError, aid: str) -> bool:
        """Whether a resumed start's refusal means the message was accepted already."""
        if error.slug == "duplicate-envelope":  # the journal's message id: only this send drew it
            return True
        if error.slug != "duplicate-attachment":
            return False
        try:
            answer = await self.client._json("GET", f"/v1/attachments/{aid}")
        except APIError:
            return False
        return answer.get("state") in _SENT_STATES

    def accepted(self) -> None:
        """The message was accepted: the journal has done its work."""
        if self.journal is not None:
            self.journal.discard()

    async def failed(self, error: BaseException) -> None:
        """The send failed with `error`. With a journal and a failure a rerun may cure, the
        journal and the uploads are kept for it; an interruption leaves everything as it is
        (nothing is awaited while cancelled). Otherwise the journal is removed and the
        uploads deleted (best effort; every upload the journal names)."""
        if isinstance(error, KeyboardInterrupt | asyncio.CancelledError):
            return
        if self.journal is not None and curable(error):
            return
        ids = list(self.started)
        if self.journal is not None:
            self.journal.discard()
            ids += [d.id for d in self.pending.drawn if d.id not in ids]
        await _att.abort(self.client, ids)
