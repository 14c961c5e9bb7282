"""One attachment's encryption, as a stream (protocol 11.1, 11.2, 11.5). Pure: no I/O.

    frame      = u64be(len(data)) || data || zeros, to max(1024, Padmé(8 + len(data))) bytes
    context    = "liaison/v2/attachment" || 0x00 || JCS({"attachment", "label", "message"})
    ciphertext = chunked.encrypt(K_a, salt, frame, context)     (Cobblestone-256, 16 KiB chunks)
    chunk tree = RFC 6962 tree over [salt || commitment, sealed chunk 0, sealed chunk 1, ...]

`Sealer` turns plaintext pieces of any size into ciphertext pieces and `Unsealer` the reverse,
each holding at most one chunk, so neither side ever holds a whole file; `ChunkTree` computes
the root the signed header carries from ciphertext pieces, with no key (what the server
checks on upload). Every construction is that of the v2 body (section 5.2): the same frame,
the same chunked encryption; only the context differs, binding the attachment to its
message id, its label and its own id.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import _primitives as p
from . import chunked, merkle
from .content import ATTACHMENT_ID_RE, MAX_ATTACHMENTS, padded_size
from .encoding import b64url_check, b64url_decode, b64url_encode, jcs
from .errors import DecryptionFailed, MalformedContent, MalformedEnvelope, MalformedError

__all__ = [
    "ATTACHMENT_ID_RE",
    "AttachmentRef",
    "ChunkTree",
    "Sealer",
    "Unsealer",
    "ciphertext_size",
    "context",
    "is_ciphertext_size",
    "new_attachment_id",
    "parse_refs",
]

_CONTEXT_PREFIX = b"liaison/v2/attachment\x00"
_LEN_BYTES = 8
_SEALED_CHUNK = chunked.CHUNK_SIZE + chunked.TAG_LEN


def new_attachment_id() -> str:
    """`a_` and 26 characters of lower-case unpadded base32 of 16 random bytes."""
    return "a_" + base64.b32encode(p.random_bytes(16)).decode("ascii").rstrip("=").lower()


def context(message_id: str, attachment_id: str, label: Mapping[str, Any]) -> bytes:
    """The chunked-encryption context of attachment `attachment_id` of message `message_id`
    under `label` (the label's JSON form)."""
    if not ATTACHMENT_ID_RE.fullmatch(attachment_id):
        raise MalformedError("an attachment id is a_ and 26 base32 characters")
    return _CONTEXT_PREFIX + jcs({"attachment": attachment_id, "label": dict(label), "message": message_id})


def ciphertext_size(length: int) -> int:
    """The ciphertext size of an attachment of `length` plaintext bytes (what the server, the
    header and the level's `max_attachment_bytes` see)."""
    if length < 0:
        raise ValueError("a length is not negative")
    return chunked.ciphertext_length(padded_size(length))


def is_ciphertext_size(size: int) -> bool:
    """Whether some attachment has a ciphertext of exactly `size` bytes."""
    try:
        frame = chunked.plaintext_length(size)
    except MalformedError:
        return False
    return frame >= 1024 and padded_size(frame - _LEN_BYTES) == frame


@dataclass(frozen=True)
class AttachmentRef:
    """One member of a signed header's `attachments` (protocol 11.3): what the server and
    auditors see of an attachment: its id, ciphertext size and chunk tree root."""

    id: str
    size: int
    root: bytes

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "root": b64url_encode(self.root), "size": self.size}


_REF_FIELDS = {"id", "size", "root"}


def parse_refs(value: Any) -> tuple[AttachmentRef, ...]:
    """A header's `attachments` list, checked: 1 to MAX_ATTACHMENTS members of exactly id,
    size and root; ids distinct; each size one the encryption can have; roots 32 bytes."""
    if not isinstance(value, list) or not 0 < len(value) <= MAX_ATTACHMENTS:
        raise MalformedEnvelope(
            f"attachments must be a list of 1 to {MAX_ATTACHMENTS} members (absent if none)"
        )
    refs: list[AttachmentRef] = []
    for m in value:
        if not isinstance(m, dict) or set(m) != _REF_FIELDS:
            raise MalformedEnvelope("each attachment of a header has exactly id, root and size")
        aid, size, root = m["id"], m["size"], m["root"]
        if not isinstance(aid, str) or not ATTACHMENT_ID_RE.fullmatch(aid):
            raise MalformedEnvelope("an attachment id is a_ and 26 base32 characters")
        if not isinstance(size, int) or isinstance(size, bool) or not is_ciphertext_size(size):
            raise MalformedEnvelope(f"attachment {aid}: no attachment has {size!r} ciphertext bytes")
        if not isinstance(root, str) or b64url_check(root, field="root") != 32:
            raise MalformedEnvelope(f"attachment {aid}: root must be 32 bytes of base64url")
        refs.append(AttachmentRef(aid, size, b64url_decode(root, field="root")))
    if len({r.id for r in refs}) != len(refs):
        raise MalformedEnvelope("an attachment is named twice")
    return tuple(refs)


class Sealer:
    """Encrypt one attachment of `length` bytes as it is read: `update` takes plaintext
    pieces and returns the ciphertext ready so far; `finish` returns the rest and checks
    that exactly `length` bytes came. `sha256` is the plaintext's hash, once finished."""

    def __init__(self, key: bytes, salt: bytes, ctx: bytes, length: int) -> None:
        if length < 0:
            raise ValueError("a length is not negative")
        self._derived = chunked.derive(key, salt, ctx)
        self._length, self._seen = length, 0
        self._frame_left = padded_size(length)
        self._pending = bytearray(length.to_bytes(_LEN_BYTES))
        self._frame_left -= _LEN_BYTES
        self._index = 0
        self._hash = hashlib.sha256()
        self._prefix = salt + self._derived.commitment
        self.sha256 = ""

    def update(self, data: bytes) -> bytes:
        if self._seen + len(data) > self._length:
            raise ValueError(f"more than the declared {self._length} bytes")
        self._seen += len(data)
        self._hash.update(data)
        self._pending += data
        self._frame_left -= len(data)
        return self._take_prefix() + self._seal_full()

    def finish_pieces(self, piece: int = 1 << 20) -> Iterator[bytes]:
        """What `finish` returns, as pieces: the frame's zero padding (up to a 32nd of the
        file's length, 64 MiB for 2 GiB) is sealed `piece` bytes at a time, never made whole."""
        if self._seen != self._length:
            raise ValueError(f"{self._seen} bytes came, {self._length} were declared")
        while self._frame_left > piece:
            self._pending += bytes(piece)
            self._frame_left -= piece
            out = self._take_prefix() + self._seal_full()
            if out:
                yield out
        yield self.finish()

    def finish(self) -> bytes:
        if self._seen != self._length:
            raise ValueError(f"{self._seen} bytes came, {self._length} were declared")
        self._pending += bytes(self._frame_left)  # the padding
        self._frame_left = 0
        out = self._take_prefix() + self._seal_full()
        # The final chunk is always short (empty when the frame is a multiple of 16 KiB).
        out += self._seal(bytes(self._pending))
        self._pending.clear()
        self.sha256 = self._hash.hexdigest()
        return out

    def _take_prefix(self) -> bytes:
        prefix, self._prefix = self._prefix, b""
        return prefix

    def _seal_full(self) -> bytes:
        # Every full chunk is sealed as it fills; `finish` seals the final, short one (empty
        # when the frame ends on a chunk boundary), as the one chunking of section 5.2.
        out = bytearray()
        while len(self._pending) >= chunked.CHUNK_SIZE:
            out += self._seal(bytes(self._pending[: chunked.CHUNK_SIZE]))
            del self._pending[: chunked.CHUNK_SIZE]
        return bytes(out)

    def _seal(self, chunk: bytes) -> bytes:
        sealed = chunked.encrypt_chunks(
            self._derived.key, self._derived.base_nonce, [chunk], first=self._index
        )
        self._index += 1
        return sealed


class Unsealer:
    """Decrypt one attachment as its ciphertext streams in: `update` returns the plaintext
    ready so far (the frame's length prefix and padding removed), `finish` checks the final
    chunk, the padding, the length and `sha256` (the body's values). The key commitment is
    checked before anything is decrypted (KeyCommitmentMismatch)."""

    def __init__(self, key: bytes, ctx: bytes, size: int, length: int, sha256: str) -> None:
        if not is_ciphertext_size(size) or ciphertext_size(length) != size:
            raise MalformedContent(f"a {length}-byte attachment cannot have {size} ciphertext bytes")
        self._key, self._ctx = key, ctx
        self._size, self._length, self._sha256 = size, length, sha256
        self._derived: chunked.Derived | None = None
        self._buffer = bytearray()
        self._received = 0
        self._index = 0
        self._frame_pos = 0  # frame bytes decrypted so far
        self._hash = hashlib.sha256()

    def update(self, data: bytes) -> bytes:
        if self._received + len(data) > self._size:
            raise DecryptionFailed("more ciphertext than the attachment's size")
        self._received += len(data)
        self._buffer += data
        out = bytearray()
        if self._derived is None:
            if len(self._buffer) < chunked.PREFIX_LEN:
                return b""
            self._derived = chunked.derive(self._key, bytes(self._buffer[: chunked.SALT_LEN]), self._ctx)
            chunked.check_commitment(self._derived, bytes(self._buffer[: chunked.PREFIX_LEN]))
            del self._buffer[: chunked.PREFIX_LEN]
        # Open every full sealed chunk that is surely not the final one.
        while len(self._buffer) > _SEALED_CHUNK or (
            len(self._buffer) == _SEALED_CHUNK and self._received < self._size
        ):
            out += self._open(bytes(self._buffer[:_SEALED_CHUNK]))
            del self._buffer[:_SEALED_CHUNK]
        return bytes(out)

    def finish(self) -> bytes:
        if self._received != self._size or self._derived is None:
            raise DecryptionFailed("the attachment's ciphertext is incomplete")
        out = self._open(bytes(self._buffer)) if len(self._buffer) < _SEALED_CHUNK else b""
        if len(self._buffer) >= _SEALED_CHUNK:
            raise DecryptionFailed("the attachment's final chunk is not short")
        self._buffer.clear()
        if self._hash.hexdigest() != self._sha256:
            raise MalformedContent("the attachment's SHA-256 is not the one its message names")
        return out

    def _open(self, sealed: bytes) -> bytes:
        d = self._derived
        if d is None:  # pragma: no cover - update() derives before it opens anything
            raise DecryptionFailed("the attachment's key was not derived")
        frame = chunked.decrypt_chunk(d, self._index, sealed, "attachment")
        self._index += 1
        return self._data_of(frame)

    def _data_of(self, frame: bytes) -> bytes:
        """The data bytes of this piece of the frame; checks the length prefix and padding."""
        start = self._frame_pos
        self._frame_pos += len(frame)
        if start < _LEN_BYTES:
            head = frame[: _LEN_BYTES - start]
            if start == 0 and len(frame) >= _LEN_BYTES and int.from_bytes(head) != self._length:
                raise MalformedContent("the frame's length is not the one the message names")
        lo, hi = _LEN_BYTES, _LEN_BYTES + self._length
        data = frame[max(0, lo - start) : max(0, hi - start)]
        padding = frame[max(0, hi - start) :]
        if padding.count(0) != len(padding):
            raise MalformedContent("the attachment's padding is not all zero bytes")
        self._hash.update(data)
        return data


class ChunkTree:
    """The chunk tree's root (protocol 11.2) from ciphertext pieces of any size, without the
    key: leaf 0 is the 56-byte prefix, then each 16,400-byte sealed chunk (the last shorter)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._leaves: list[bytes] = []
        self._prefix_done = False
        self.size = 0

    def update(self, data: bytes) -> None:
        self.size += len(data)
        self._buffer += data
        if not self._prefix_done and len(self._buffer) >= chunked.PREFIX_LEN:
            self._leaves.append(merkle.leaf_hash(bytes(self._buffer[: chunked.PREFIX_LEN])))
            del self._buffer[: chunked.PREFIX_LEN]
            self._prefix_done = True
        while self._prefix_done and len(self._buffer) > _SEALED_CHUNK:
            self._leaves.append(merkle.leaf_hash(bytes(self._buffer[:_SEALED_CHUNK])))
            del self._buffer[:_SEALED_CHUNK]

    def root(self) -> bytes:
        """The root, once every byte came (MalformedError for an impossible size)."""
        if not is_ciphertext_size(self.size):
            raise MalformedError(f"no attachment has {self.size} ciphertext bytes")
        leaves = list(self._leaves)
        rest = bytes(self._buffer)
        while len(rest) > _SEALED_CHUNK:  # pragma: no cover - update() keeps at most one
            leaves.append(merkle.leaf_hash(rest[:_SEALED_CHUNK]))
            rest = rest[_SEALED_CHUNK:]
        leaves.append(merkle.leaf_hash(rest))
        return merkle.root_from_leaf_hashes(leaves)
