"""The plaintext of an envelope v2: a structured body in a padded frame (protocol 5.2).

    body  = JCS({"attachments": [member, ...], "content": b64url(content), "content_type": type})
    frame = u64be(len(body)) || body || zero bytes, to padded_size(len(body)) bytes

Padding follows Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and
Communication with PURBs", PETS 2019): a length L is rounded up by clearing its low bits so that
at most about log log L bits of it remain, for an overhead of at most 12%, with a floor of
1024 bytes. Whoever sees only the ciphertext learns the padded size, never the exact length.
A frame has exactly one valid form for each body: recipients refuse any other (non-zero or
extra padding, a non-canonical body), so a sender cannot hide a side channel in it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .encoding import b64url_decode, b64url_encode, jcs, loads_strict
from .errors import MalformedContent, MalformedError

__all__ = [
    "ATTACHMENT_ID_RE",
    "FRAME_FLOOR",
    "MAX_ATTACHMENTS",
    "AttachmentInfo",
    "Body",
    "check_content_type",
    "check_file_name",
    "encode_body",
    "frame_size",
    "is_padded_size",
    "padded_size",
    "padme",
    "parse_frame",
    "to_frame",
]

FRAME_FLOOR = 1024
_LEN_BYTES = 8
_MAX_CONTENT_TYPE = 200
_BODY_FIELDS = {"attachments", "content", "content_type"}
#: An attachment id (protocol 11.1): "a_" and 26 characters of lower-case unpadded base32.
ATTACHMENT_ID_RE = re.compile(r"^a_[a-z2-7]{26}$")
#: The most attachments one envelope can name (a level's `max_attachments` is lower).
MAX_ATTACHMENTS = 100
_ATTACHMENT_FIELDS = {"id", "key", "name", "media_type", "length", "sha256"}
_MAX_NAME = 255
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
#: The largest attachment length the format allows (2^40 bytes: a terabyte).
MAX_ATTACHMENT_LENGTH = 1 << 40


def padme(length: int) -> int:
    """Padmé: `length` rounded up so that only its top ~log2(log2(length)) + 1 bits vary."""
    if length < 2:
        return length
    e = length.bit_length() - 1  # floor(log2 L)
    s = e.bit_length()  # floor(log2 E) + 1
    mask = (1 << (e - s)) - 1
    return (length + mask) & ~mask


def padded_size(body_len: int) -> int:
    """The frame size of a body of `body_len` bytes: max(1024, Padmé(8 + body_len))."""
    return max(FRAME_FLOOR, padme(_LEN_BYTES + body_len))


def is_padded_size(size: int) -> bool:
    """Whether some frame has this size: what a server checks without decrypting anything.
    (Padmé values are fixed points of Padmé, and every frame is at least 1024 bytes.)"""
    return size >= FRAME_FLOOR and padme(size) == size


def check_file_name(name: str) -> None:
    """An attachment's file name (protocol 11.4): 1 to 255 characters, no control character
    (nor any other a terminal could act on), no `/`, `\\` or NUL, and not `.` or `..`."""
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= _MAX_NAME
        or not name.isprintable()
        or any(c in name for c in "/\\\x00")
        or name in (".", "..")
    ):
        raise MalformedContent(
            f"a file name is 1 to {_MAX_NAME} printable characters, without / or \\, not . or .."
        )


@dataclass(frozen=True)
class AttachmentInfo:
    """One member of the body's `attachments` (protocol 11.4): what only recipients learn of
    an attachment: its key, file name, media type, true length and plaintext SHA-256."""

    id: str
    key: bytes
    name: str
    media_type: str
    length: int
    sha256: str

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not ATTACHMENT_ID_RE.fullmatch(self.id):
            raise MalformedContent("an attachment id is a_ and 26 base32 characters")
        if not isinstance(self.key, bytes) or len(self.key) != 32:
            raise MalformedContent("an attachment key is 32 bytes")
        check_file_name(self.name)
        if not isinstance(self.media_type, str):
            raise MalformedContent("an attachment's media type is a string")
        check_content_type(self.media_type)
        if (
            not isinstance(self.length, int)
            or isinstance(self.length, bool)
            or not 0 <= self.length <= MAX_ATTACHMENT_LENGTH
        ):
            raise MalformedContent(f"an attachment's length is an integer from 0 to {MAX_ATTACHMENT_LENGTH}")
        if not isinstance(self.sha256, str) or not _SHA256_HEX.fullmatch(self.sha256):
            raise MalformedContent("an attachment's sha256 is 64 lower-case hex digits")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": b64url_encode(self.key),
            "length": self.length,
            "media_type": self.media_type,
            "name": self.name,
            "sha256": self.sha256,
        }

    @classmethod
    def from_json(cls, obj: Any) -> AttachmentInfo:
        if not isinstance(obj, dict) or set(obj) != _ATTACHMENT_FIELDS:
            raise MalformedContent(
                "each attachment of a body has exactly " + ", ".join(sorted(_ATTACHMENT_FIELDS))
            )
        if not isinstance(obj["key"], str):
            raise MalformedContent("an attachment key is base64url text")
        try:
            key = b64url_decode(obj["key"], field="key")
        except MalformedError as e:
            raise MalformedContent(str(e)) from None
        return cls(obj["id"], key, obj["name"], obj["media_type"], obj["length"], obj["sha256"])


@dataclass(frozen=True)
class Body:
    """What the sender wrote: the content, its media type, and its attachments' members."""

    content: bytes
    content_type: str
    attachments: tuple[AttachmentInfo, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "attachments": [a.to_json() for a in self.attachments],
            "content": b64url_encode(self.content),
            "content_type": self.content_type,
        }


def check_content_type(content_type: str) -> None:
    """A media type as v2 carries it: 1 to 200 printable characters (no control, format or
    separator character a terminal could act on)."""
    if not 0 < len(content_type) <= _MAX_CONTENT_TYPE or not content_type.isprintable():
        raise MalformedContent(f"a content type must be 1 to {_MAX_CONTENT_TYPE} printable characters")


#: JCS of a body is these bytes around the content's base64url and the type's JSON string
#: (members sorted: "attachments" < "content" < "content_type"; base64url needs no escape).
_HEAD = b'{"attachments":[],"content":"'
_MIDDLE = b'","content_type":'


def encode_body(body: Body) -> bytes:
    """JCS(body), written directly: the same bytes as `jcs(body.to_json())`, without building
    and canonicalising a JSON string of the whole content."""
    check_content_type(body.content_type)
    if body.attachments:  # the general form: a few members more to canonicalise
        _check_attachment_ids(body.attachments)
        return jcs(body.to_json())
    return _HEAD + b64url_encode(body.content).encode() + _MIDDLE + jcs(body.content_type) + b"}"


def _check_attachment_ids(members: Sequence[AttachmentInfo]) -> None:
    if len(members) > MAX_ATTACHMENTS:
        raise MalformedContent(f"at most {MAX_ATTACHMENTS} attachments")
    if len({a.id for a in members}) != len(members):
        raise MalformedContent("an attachment is named twice")


def to_frame(body: Body) -> bytes:
    """The padded frame of `body`."""
    encoded = encode_body(body)
    size = padded_size(len(encoded))
    return len(encoded).to_bytes(_LEN_BYTES) + encoded + bytes(size - _LEN_BYTES - len(encoded))


def frame_size(content: bytes, content_type: str, attachments: Sequence[AttachmentInfo] = ()) -> int:
    """The padded size `content` will have: what a level's `max_bytes` limits. Computed from
    the lengths alone (unpadded base64url of n bytes is ceil(4n/3) characters), without
    encoding the content: `encode_body` does that once, when the message is sealed."""
    check_content_type(content_type)
    encoded_len = len(_HEAD) + (4 * len(content) + 2) // 3 + len(_MIDDLE) + len(jcs(content_type)) + 1
    if attachments:  # each member, and a comma between two
        encoded_len += sum(len(jcs(a.to_json())) for a in attachments) + len(attachments) - 1
    return padded_size(encoded_len)


def parse_frame(frame: bytes) -> Body:
    """The body of a frame, refusing every frame but the one the format allows."""
    if len(frame) < _LEN_BYTES:
        raise MalformedContent("frame is shorter than its length prefix")
    length = int.from_bytes(frame[:_LEN_BYTES])
    if length > len(frame) - _LEN_BYTES:
        raise MalformedContent("the body length runs past the end of the frame")
    if len(frame) != padded_size(length):
        raise MalformedContent(
            f"the frame is {len(frame)} bytes; a {length}-byte body pads to {padded_size(length)}"
        )
    encoded, padding = frame[_LEN_BYTES : _LEN_BYTES + length], frame[_LEN_BYTES + length :]
    if padding.count(0) != len(padding):
        raise MalformedContent("the padding is not all zero bytes")
    fast = _parse_canonical(encoded)
    return fast if fast is not None else _parse_body(encoded)


def _parse_canonical(encoded: bytes) -> Body | None:
    """The body, if `encoded` has the one canonical layout; None sends it to `_parse_body`,
    which names what is wrong (or accepts exactly the same bodies, more slowly)."""
    end = encoded.find(b'"', len(_HEAD))
    if not encoded.startswith(_HEAD) or end < 0 or not encoded.endswith(b"}"):
        return None
    if not encoded.startswith(_MIDDLE, end):
        return None
    type_json = encoded[end + len(_MIDDLE) : -1]
    try:
        content_type = loads_strict(type_json)
        content = b64url_decode(encoded[len(_HEAD) : end].decode("ascii"), field="content")
    except (MalformedError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(content_type, str) or jcs(content_type) != type_json:
        return None
    if not 0 < len(content_type) <= _MAX_CONTENT_TYPE or not content_type.isprintable():
        return None
    return Body(content, content_type)


def _parse_body(encoded: bytes) -> Body:
    try:
        obj = loads_strict(encoded)
    except (MalformedError, UnicodeDecodeError, ValueError) as e:
        raise MalformedContent(f"the body is not JSON ({e})") from None
    if not isinstance(obj, dict) or set(obj) != _BODY_FIELDS:
        raise MalformedContent("the body must have exactly attachments, content and content_type")
    if jcs(obj) != encoded:
        raise MalformedContent("the body is not in canonical (JCS) form")
    if not isinstance(obj["attachments"], list):
        raise MalformedContent("attachments must be a list")
    members = tuple(AttachmentInfo.from_json(a) for a in obj["attachments"])
    _check_attachment_ids(members)
    if not isinstance(obj["content"], str) or not isinstance(obj["content_type"], str):
        raise MalformedContent("content and content_type must be strings")
    check_content_type(obj["content_type"])
    try:
        content = b64url_decode(obj["content"], field="content")
    except MalformedError as e:
        raise MalformedContent(str(e)) from None
    return Body(content, obj["content_type"], members)
