"""Attachments (protocol 11): files sent beside a message, streamed so no side holds a file.

Sending: each file is read in 1 MiB pieces, encrypted by `Sealer` as it is read, its chunk tree
computed by `ChunkTree` from the ciphertext, and the ciphertext cut into the parts the server
asked for (`PartSplitter`), each PUT as soon as it is full: at most one part and one piece are
held. Saving: the download streams into a `ChunkTree` and an `Unsealer`, the plaintext goes to
the file as it is decrypted, and the file is named complete only after the root, every chunk,
the length and the SHA-256 checked (`DirectoryTarget`: a temporary file, renamed at the end,
removed on any failure; an existing file is never replaced unless asked).

Uploads resume: a part, a start or a completion whose connection dropped is tried again after
a short wait (`Backoff`, within the client's `Retry`), once the server said what it holds
(`GET /v1/attachments/{id}`), so only what is missing is sent again (the parts on their way are
still in memory). An upload started before, with the same id, key and salt (`Drawn`, kept by
`_resume`'s journal), answers the parts it holds: the file is read and sealed again (the chunk
tree and the SHA-256 need every byte) into the same ciphertext, and only the other parts go.

`AsyncClient.send(..., attachments=)` and `AsyncClient.save_attachment` use what is here; the
HTTP requests themselves are the client's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import mimetypes
import os
import re
import secrets
import stat
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import httpx

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
from liaison.crypto.content import AttachmentInfo, check_content_type, check_file_name
from liaison.crypto.encoding import b64url_encode
from liaison.crypto.errors import DecryptionFailed, MalformedContent, MalformedError
from liaison.crypto.errors import KeyCommitmentMismatch as _CryptoKeyCommitmentMismatch
from liaison.crypto.labels import Label

from . import _models as m
from ._http import check_response, json_of, transport_error
from ._retry import Retry
from .errors import (
    APIError,
    ClientError,
    ContentInvalid,
    InputError,
    KeyCommitmentMismatch,
    MalformedResponse,
    ServerUnreachable,
)

if TYPE_CHECKING:
    from .client import AsyncClient

__all__ = [
    "FIRST_WAIT",
    "PIECE",
    "Attachment",
    "Backoff",
    "DirectoryTarget",
    "Drawn",
    "PartSplitter",
    "Progress",
    "Source",
    "abort",
    "again",
    "download",
    "open_source",
    "parts_of",
    "safe_file_name",
    "upload",
]

T = TypeVar("T")

#: How much of a file is read (and encrypted) at a time.
PIECE = 1024 * 1024
#: The part sizes a client accepts from a server: a smaller one would be a flood of requests,
#: a larger one more memory than this client holds for an upload.
MIN_PART, MAX_PART = 64 * 1024, 64 * 1024 * 1024
DEFAULT_MEDIA_TYPE = "application/octet-stream"

#: A progress callback: (the attachment's name, bytes done, bytes in all).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Attachment:
    """A file to send with a message (`send(..., attachments=[...])`).

    `source` is a path, or a binary file object open for reading whose length is known (a
    regular file, or any seekable stream: what is left from its current position is sent).
    `name` is the file name recipients see (default: the path's base name, or the file
    object's); `media_type` its media type (default: guessed from the name, else
    application/octet-stream).
    """

    source: str | os.PathLike[str] | BinaryIO
    name: str | None = None
    media_type: str | None = None


@dataclass
class Source:
    """An attachment ready to be read: its open file, name, media type and length; `path` is
    the file's absolute path when it was given as one (None for a file object)."""

    file: BinaryIO
    name: str
    media_type: str
    length: int
    owned: bool  # opened here (from a path): closed here
    path: str | None = None

    def close(self) -> None:
        if self.owned:
            self.file.close()

    def pieces(self) -> Iterator[bytes]:
        """Exactly `length` bytes, a piece at a time; InputError if the file ends early."""
        left = self.length
        while left:
            piece = self.file.read(min(PIECE, left))
            if not piece:
                raise InputError(
                    f"{self.name}: the file ended {left} bytes early (did it change while read?)"
                )
            left -= len(piece)
            yield piece


def _length(file: BinaryIO, what: str) -> int:
    """The bytes left from the file's position: from fstat for a regular file, else by seeking."""
    try:
        st = os.fstat(file.fileno())
        if stat.S_ISREG(st.st_mode):
            return max(st.st_size - file.tell(), 0)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
    try:
        here = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(here)
    except (OSError, ValueError, io.UnsupportedOperation):
        raise InputError(
            f"{what}: its length is not known (give a regular file or a seekable stream)"
        ) from None
    return max(end - here, 0)


def open_source(attachment: Attachment) -> Source:
    """Open (or take) an attachment's file and settle its name, media type and length;
    InputError, one line, for a file that cannot be read or a name recipients would refuse."""
    src = attachment.source
    if isinstance(src, str | os.PathLike):
        path = Path(src)
        try:
            if path.is_dir():
                raise InputError(f"cannot attach {path}: it is a directory")
            file: BinaryIO = path.open("rb")
        except OSError as e:
            raise InputError(f"cannot attach {path}: {e.strerror or e}") from None
        owned, default_name, where = True, path.name, os.path.abspath(path)
    else:
        if not hasattr(src, "read"):
            raise InputError("an attachment is a path or a binary file object")
        file, owned, where = src, False, None
        default_name = os.path.basename(str(getattr(src, "name", "") or ""))
    try:
        name = attachment.name if attachment.name is not None else default_name
        if not name:
            raise InputError("an attachment given as a file object needs a name")
        try:
            check_file_name(name)
        except MalformedContent as e:
            raise InputError(f"attachment name {name!r} refused: {e}") from None
        media_type = (
            attachment.media_type or mimetypes.guess_type(name, strict=False)[0] or DEFAULT_MEDIA_TYPE
        )
        try:
            check_content_type(media_type)
        except MalformedContent as e:
            raise InputError(f"attachment {name!r}: media type refused: {e}") from None
        return Source(file, name, media_type, _length(file, name), owned, where)
    except BaseException:
        if owned:
            file.close()
        raise


def parts_of(size: int, part_size: int) -> int:
    """How many parts an upload of `size` ciphertext bytes has: ceil(size / part_size)."""
    return -(-size // part_size)


class PartSplitter:
    """Cut a stream of ciphertext pieces into parts of exactly `part_size` bytes (the last
    one the rest), holding at most one part and one piece."""

    def __init__(self, part_size: int) -> None:
        if part_size < 1:
            raise ValueError("a part has at least one byte")
        self.part_size = part_size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The parts `data` completes, in order."""
        self._buffer += data
        while len(self._buffer) >= self.part_size:
            with memoryview(self._buffer) as view:  # one copy, not a slice and then a copy
                part = bytes(view[: self.part_size])
            del self._buffer[: self.part_size]
            yield part

    def rest(self) -> bytes:
        """The last, short part (empty when the stream ended on a part boundary)."""
        out = bytes(self._buffer)
        self._buffer.clear()
        return out


def safe_file_name(name: str) -> str:
    """The file name to write a sender's name under, in a directory the user chose: the name
    as it is (protocol 11.4 already refuses /, \\, controls, `.` and `..`), except that a
    leading `.` becomes `_.` so a sender cannot plant a hidden file (`.bashrc`, `.ssh`)."""
    try:
        check_file_name(name)
    except MalformedContent as e:  # pragma: no cover - AttachmentInfo refused it before
        raise InputError(f"the sender's file name is unusable: {e}") from None
    if os.path.basename(name) != name:  # pragma: no cover - belt and braces
        raise InputError("the sender's file name is a path")
    return "_" + name if name.startswith(".") else name


class DirectoryTarget:
    """Where a saved attachment goes in a directory: a temporary file (mode 0600, created
    exclusively) that becomes `name` only by `commit()`, never replacing an existing file
    unless `overwrite`; `discard()` removes it."""

    def __init__(self, directory: Path, name: str, *, overwrite: bool = False) -> None:
        self.path = directory / safe_file_name(name)
        self.overwrite = overwrite
        self._tmp = directory / f".liaison-{secrets.token_hex(8)}.part"
        self.check()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self._tmp, flags, 0o600)
        except OSError as e:
            raise InputError(f"cannot write in {directory}: {e.strerror or e}") from None
        self.file: BinaryIO = os.fdopen(fd, "wb")

    def check(self) -> None:
        """InputError if the target exists and may not be replaced (or is a directory)."""
        exists = self.path.exists() or self.path.is_symlink()
        if exists and (not self.overwrite or self.path.is_dir()):
            why = "a directory" if self.path.is_dir() else "exists"
            raise InputError(
                f"{self.path} {why}: nothing was replaced (remove it, or choose another directory)"
            )

    def commit(self) -> Path:
        """Name the finished file; the temporary one is gone either way."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            if self.overwrite:
                os.replace(self._tmp, self.path)
            else:
                self._link()
        except OSError as e:
            self.discard()
            raise InputError(f"cannot write {self.path}: {e.strerror or e}") from None
        return self.path

    def _link(self) -> None:
        """Rename without replacing: a hard link fails if the name was taken meanwhile."""
        try:
            os.link(self._tmp, self.path, follow_symlinks=False)
        except FileExistsError:
            self.discard()
            raise InputError(f"{self.path} exists: nothing was replaced") from None
        except OSError:  # a file system without hard links
            self.check()
            os.rename(self._tmp, self.path)
            return
        os.unlink(self._tmp)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)


# --- upload (protocol 11.1, 11.2; docs/api.md "Attachments") ---------------------------------


@dataclass(frozen=True)
class Drawn:
    """One attachment's id, key and salt, drawn once for a send. A resumed send (`_resume`)
    uses them again, and its ciphertext is then the very bytes sent before: `Sealer` is
    deterministic for one key, salt, context and length."""

    id: str
    key: bytes = field(repr=False)  # key material: kept out of repr (logs, messages)
    salt: bytes = field(repr=False)

    @classmethod
    def new(cls) -> Drawn:
        return cls(
            new_attachment_id(), secrets.token_bytes(chunked.KEY_LEN), secrets.token_bytes(chunked.SALT_LEN)
        )


#: The first wait after a dropped connection (seconds); each next one is twice as long.
FIRST_WAIT = 0.5


class Backoff:
    """The waits of one step of an upload (its start, a part, its completion) between tries
    after dropped connections: FIRST_WAIT, then twice as long each time, within the client's
    `Retry`: `attempts` tries in all, no wait over `max_wait`, `budget` seconds of waiting."""

    def __init__(self, retry: Retry) -> None:
        self.retry = retry
        self.tries = 1
        self.waited = 0.0

    async def wait(self, error: ClientError) -> None:
        """Sleep before the next try; raise `error` when the policy allows none."""
        delay = min(FIRST_WAIT * 2 ** (self.tries - 1), self.retry.max_wait)
        if self.tries >= self.retry.attempts or self.waited + delay > self.retry.budget:
            raise error
        await asyncio.sleep(delay)
        self.tries += 1
        self.waited += delay


async def again(call: Callable[[], Awaitable[T]], backoff: Backoff) -> T:
    """`call()`, tried again after each dropped connection while `backoff` allows. A refusal
    is raised at once (the client's `_request` already waited on those that say when)."""
    while True:
        try:
            return await call()
        except ServerUnreachable as e:
            await backoff.wait(e)


_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def _hex_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class _Stored:
    """A part the server holds: its size, and its SHA-256 (hex) where the store keeps one. An
    S3-compatible store does not: the size is then trusted, and the chunk tree root, which the
    server checks at completion and every recipient checks again, catches anything else."""

    size: int
    sha256: str | None

    async def holds(self, part: bytes) -> bool:
        """Whether this stored part is `part` (hashed in a worker thread when there is a
        SHA-256 to compare with)."""
        if self.size != len(part):
            return False
        return self.sha256 is None or self.sha256 == await asyncio.to_thread(_hex_sha256, part)


@dataclass(frozen=True)
class _Upload:
    """The server's view of an upload, checked: its part size and count, whether it is
    complete already (a completion whose answer was lost), and the parts it holds."""

    part_size: int
    parts: int
    complete: bool
    stored: Mapping[int, _Stored]

    def held(self) -> int:
        """How many of its parts the server holds."""
        return self.parts if self.complete else len(self.stored)

    async def holds(self, number: int, part: bytes) -> bool:
        """Whether the server holds `part` as part `number` (it need not be sent)."""
        stored = self.stored.get(number)
        return self.complete or (stored is not None and await stored.holds(part))


def _started(answer: dict[str, Any], aid: str, message_id: str, size: int) -> _Upload:
    """An upload's status (the answer to starting it, or to `GET /v1/attachments/{id}`), checked."""
    what = f"attachment {aid}"
    if (answer.get("id"), answer.get("message"), answer.get("size")) != (aid, message_id, size):
        raise MalformedResponse(f"{what}: the server started another upload than the one asked for")
    part_size, parts = answer.get("part_size"), answer.get("parts")
    if type(part_size) is not int or not MIN_PART <= part_size <= MAX_PART:
        raise MalformedResponse(
            f"{what}: a part size of {part_size!r} bytes (this client takes 64 KiB to 64 MiB)"
        )
    if type(parts) is not int or parts != parts_of(size, part_size):
        raise MalformedResponse(f"{what}: {parts!r} parts of {part_size} bytes cannot hold {size} bytes")
    state = answer.get("state")
    if state not in ("uploading", "complete"):
        raise MalformedResponse(f"{what}: the server answered for an upload in state {str(state)[:20]!r}")
    stored = _stored_parts(answer, what, size, part_size, parts)
    return _Upload(part_size, parts, state == "complete", stored)


def _stored_parts(
    answer: dict[str, Any], what: str, size: int, part_size: int, parts: int
) -> dict[int, _Stored]:
    """The parts a status lists as `stored` (none on a new upload): those of the size their
    number must have (another is sent again, and replaces it)."""
    items = answer.get("stored", [])
    if not isinstance(items, list):
        raise MalformedResponse(f"{what}: its stored parts are not a list")
    out: dict[int, _Stored] = {}
    for item in items:
        if not isinstance(item, dict):
            raise MalformedResponse(f"{what}: a stored part is not an object")
        number, length, sha256 = item.get("number"), item.get("size"), item.get("sha256")
        if type(number) is not int or type(length) is not int:
            raise MalformedResponse(f"{what}: a stored part without its number and size")
        if sha256 is not None and not (isinstance(sha256, str) and _SHA256_HEX.fullmatch(sha256)):
            raise MalformedResponse(f"{what}: a stored part's sha256 is not 64 hex digits")
        expected = part_size if number < parts else size - (parts - 1) * part_size
        if 1 <= number <= parts and length == expected:
            out[number] = _Stored(length, sha256)
    return out


#: Parts on their way at once: one being sent while the server stores the other.
IN_FLIGHT = 2


def _sent_sha256(request: httpx.Request) -> str:
    """The hex SHA-256 of a request's body, from the Content-Digest its signing added
    (`sha-256=:<base64>:`, RFC 9530)."""
    value = request.headers.get("content-digest", "")
    if not (value.startswith("sha-256=:") and value.endswith(":")):
        raise MalformedResponse("a part was sent without its sha-256 Content-Digest")
    return base64.b64decode(value[len("sha-256=:") : -1], validate=True).hex()


def _release(response: httpx.Response) -> None:
    """Let the part a request carried go now. An httpx response and its stream refer to each
    other, and through the stream to the request's body: freed only by the cyclic garbage
    collector, which runs on object counts, not bytes, so a 2 GiB upload would pile up parts
    (8 MiB each) by the dozen. The body was read: the stream is not needed any more."""
    response.stream = httpx.ByteStream(b"")


async def _put(client: AsyncClient, aid: str, number: int, part: bytes) -> None:
    """PUT part `number` of upload `aid` once; MalformedResponse unless stored as sent."""
    path = f"/v1/attachments/{aid}/parts/{number}"
    response = await client._request("PUT", path, raw=part)
    got = json_of(response, f"PUT {path}")
    # The part's SHA-256 as the request's signed Content-Digest carried it: hashed once. (A
    # store that does not keep it may leave it out of the answer: the size is checked.)
    digest = _sent_sha256(response.request)
    _release(response)
    if (got.get("number"), got.get("size"), got.get("sha256", digest)) != (number, len(part), digest):
        raise MalformedResponse(f"attachment {aid}: the server did not store part {number} as sent")


async def _complete(client: AsyncClient, aid: str, root: bytes) -> None:
    """Complete upload `aid` with its chunk tree root, checked. After a dropped connection it
    is asked again (a completion with the same root answers the same); the lost try may still
    be joining the parts on the server, so `incomplete-upload` is then waited on as well."""
    path, want = f"/v1/attachments/{aid}/complete", b64url_encode(root)
    backoff, retried = Backoff(client.retry), False
    while True:
        try:
            completed = await client._json("POST", path, body={"root": want})
            break
        except ServerUnreachable as e:
            await backoff.wait(e)
        except APIError as e:
            if not retried or e.slug != "incomplete-upload":
                raise
            await backoff.wait(e)
        retried = True
    if (completed.get("id"), completed.get("root"), completed.get("state")) != (aid, want, "complete"):
        raise MalformedResponse(f"attachment {aid}: the server did not complete the upload as asked")


def _raise_first(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Raise the first failure of finished tasks, once each one's outcome was looked at (an
    exception never looked at is reported by asyncio when the task is collected)."""
    failures = [e for t in tasks if not t.cancelled() and (e := t.exception()) is not None]
    if failures:
        raise failures[0]


async def upload(
    client: AsyncClient,
    message_id: str,
    label: Label,
    src: Source,
    drawn: Drawn,
    progress: Progress | None,
    started: list[str],
    on_start: Callable[[int, int], None] | None = None,
) -> tuple[AttachmentRef, AttachmentInfo]:
    """Encrypt and upload one attachment of message `message_id` under `drawn`'s id, key and
    salt as it is read, and complete it with its chunk tree root; its header and body
    members. Its id is added to `started` as soon as the server holds the upload (so a failure
    can abort it). The server may hold some of its parts already (an upload started before
    with the same id): `on_start(held, parts)` is told how many, and only the others are sent
    (progress counts those held as done). A dropped connection is tried again (`Backoff`)."""
    aid, size = drawn.id, ciphertext_size(src.length)
    body = {"id": aid, "message": message_id, "size": size}
    answer = await again(lambda: client._json("POST", "/v1/attachments", body=body), Backoff(client.retry))
    started.append(aid)
    plan = _started(answer, aid, message_id, size)
    if on_start is not None:
        on_start(plan.held(), plan.parts)
    sealer = Sealer(drawn.key, drawn.salt, context(message_id, aid, label.to_json()), src.length)
    tree, splitter = ChunkTree(), PartSplitter(plan.part_size)
    uploaded = 0  # ciphertext bytes the server holds

    def report(n: int) -> None:
        """Progress in plaintext bytes, as the part just stored brings it; on the event loop,
        so that a callback's exception stops the send."""
        nonlocal uploaded
        uploaded += n
        if progress is not None:
            progress(src.name, min(src.length, uploaded * src.length // size), src.length)

    def parts() -> Generator[bytes, None, None]:
        """Read, seal, hash into the chunk tree and cut into parts: run in a worker thread, a
        part at a time, while the parts before it are on their way (the file is read, and the
        ciphertext sealed and hashed, in C that lets other threads run)."""
        for piece in src.pieces():
            ciphertext = sealer.update(piece)
            tree.update(ciphertext)
            yield from splitter.feed(ciphertext)
        for ciphertext in sealer.finish_pieces(PIECE):
            tree.update(ciphertext)
            yield from splitter.feed(ciphertext)
        if rest := splitter.rest():
            yield rest

    async def status() -> _Upload:
        return _started(await client._json("GET", f"/v1/attachments/{aid}"), aid, message_id, size)

    async def put(number: int, part: bytes) -> None:
        """Send a part until the server holds it: after a dropped connection, wait, ask what
        the server holds (the part may have arrived), and send it again if it does not."""
        backoff = Backoff(client.retry)
        while True:
            try:
                await _put(client, aid, number, part)
                break
            except ServerUnreachable as e:
                await backoff.wait(e)
            if await (await again(status, backoff)).holds(number, part):
                break
        report(len(part))

    number = 0
    source = parts()
    inflight: set[asyncio.Task[None]] = set()
    try:
        # The next part is sealed while up to IN_FLIGHT parts are sent: neither side waits
        # for the other (at most IN_FLIGHT + 1 parts held).
        while (item := await asyncio.to_thread(next, source, None)) is not None:
            number += 1
            if number > plan.parts:
                raise MalformedResponse(
                    f"attachment {aid}: more ciphertext than the {plan.parts} parts asked for"
                )
            if await plan.holds(number, item):
                report(len(item))  # stored by an earlier send of these very bytes
                continue
            while len(inflight) >= IN_FLIGHT:
                done, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                _raise_first(done)
            inflight.add(asyncio.create_task(put(number, item)))
        for outcome in await asyncio.gather(*inflight, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
        inflight.clear()
    except (asyncio.CancelledError, KeyboardInterrupt):
        for task in inflight:  # interrupted: the parts on their way are dropped
            task.cancel()
        raise
    finally:
        # After a failure, the parts still on their way finish first (stored for a rerun to
        # find, their connections closed, never dropped half-way through a TLS handshake);
        # their outcomes are looked at, and dropped.
        await asyncio.gather(*inflight, return_exceptions=True)
        with contextlib.suppress(ValueError):  # a cancelled wait leaves the thread in it
            source.close()
    if number != plan.parts or tree.size != size:  # pragma: no cover - the sizes were checked above
        raise MalformedResponse(f"attachment {aid}: {number} parts sent, {plan.parts} asked for")
    root = tree.root()
    await _complete(client, aid, root)
    if progress is not None and src.length == 0:
        progress(src.name, 0, 0)
    info = AttachmentInfo(aid, drawn.key, src.name, src.media_type, src.length, sealer.sha256)
    return AttachmentRef(aid, size, root), info


async def abort(client: AsyncClient, started: list[str]) -> None:
    """Delete uploads that will not be named by an accepted message (best effort: one the
    server already attached to an accepted message is refused, and stays)."""
    for aid in started:
        with contextlib.suppress(Exception):
            await client._request("DELETE", f"/v1/attachments/{aid}")


# --- download (protocol 11.5) -----------------------------------------------------------


class _Opener:
    """Feeds downloaded ciphertext to a `ChunkTree` and an `Unsealer`, the plaintext to `out`."""

    def __init__(
        self, msg: m.Message, meta: m.AttachmentMeta, key: bytes, out: BinaryIO, progress: Progress | None
    ) -> None:
        self.what = f"attachment {meta.index} ({meta.id}) of message {msg.id}"
        self.meta, self.out, self.progress = meta, out, progress
        self.tree = ChunkTree()
        self.written = 0
        ctx = context(msg.id, meta.id, msg.label.to_json())
        try:
            self.unsealer = Unsealer(key, ctx, meta.size, meta.length, meta.sha256)
        except MalformedContent as e:
            raise ContentInvalid(f"{self.what}: {e}") from None

    def feed(self, ciphertext: bytes) -> None:
        self.tree.update(ciphertext)
        self._write(self._crypto(lambda: self.unsealer.update(ciphertext)))

    def finish(self) -> None:
        if self.tree.size != self.meta.size:
            raise ContentInvalid(
                f"{self.what}: the server sent {self.tree.size} bytes, "
                f"the signed header names {self.meta.size}"
            )
        if self.tree.root() != self.meta.root:
            raise ContentInvalid(
                f"{self.what}: its chunk tree root is not the one the sender signed "
                "(the ciphertext was altered in storage or on the way)"
            )
        self._write(self._crypto(self.unsealer.finish))

    def _crypto(self, step: Callable[[], bytes]) -> bytes:
        try:
            return step()
        except _CryptoKeyCommitmentMismatch:
            raise KeyCommitmentMismatch(
                f"{self.what}: the ciphertext does not match the key the sender sealed "
                "(altered, or moved from another message)"
            ) from None
        except DecryptionFailed as e:
            raise ContentInvalid(
                f"{self.what} does not decrypt ({e}): the ciphertext was altered in storage or on the way"
            ) from None
        except (MalformedContent, MalformedError) as e:
            raise ContentInvalid(f"{self.what}: {e}") from None

    def _write(self, plaintext: bytes) -> None:
        if not plaintext:
            return
        try:
            self.out.write(plaintext)
        except OSError as e:
            raise InputError(f"cannot write {self.meta.name!r}: {e.strerror or e}") from None
        self.written += len(plaintext)
        if self.progress is not None:
            self.progress(self.meta.name, self.written, self.meta.length)


async def download(
    client: AsyncClient,
    msg: m.Message,
    meta: m.AttachmentMeta,
    key: bytes,
    out: BinaryIO,
    progress: Progress | None = None,
) -> None:
    """Stream attachment `meta` of `msg` from the server into `out`, decrypted, every byte
    checked (the chunk tree root against the signed header's, every chunk, the frame, the
    length and the SHA-256); ClientError on the first failure (`out` then holds a prefix)."""
    opener = _Opener(msg, meta, key, out, progress)
    path = f"/v1/messages/{msg.id}/attachments/{meta.id}"
    attempt, waited = 0, 0.0
    while True:
        attempt += 1
        wait: float | None = None
        try:
            async with client._http.stream("GET", path) as r:
                if r.is_success:
                    if r.status_code != 200:
                        raise MalformedResponse(
                            f"{opener.what}: HTTP {r.status_code} to a request for all of it"
                        )
                    async for piece in r.aiter_bytes():
                        opener.feed(piece)
                    break
                await r.aread()
                try:
                    check_response(r)
                except APIError as e:
                    wait = client.retry.delay(e, attempt, waited)
                    if wait is None:
                        raise
        except httpx.TransportError as e:
            raise transport_error(client.server, e) from None
        assert wait is not None
        await asyncio.sleep(wait)
        waited += wait
    opener.finish()
    if progress is not None and meta.length == 0:
        progress(meta.name, 0, 0)
