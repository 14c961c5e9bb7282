"""Canonical encodings: RFC 8785 JSON (JCS), strict base64url and base64, RFC 3339 times."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any

import rfc8785

from .errors import MalformedError

__all__ = ["b64decode", "b64encode", "b64url_decode", "b64url_encode", "format_time",
           "jcs", "parse_time"]

_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_B64URL_INDEX = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}


def jcs(value: Any) -> bytes:
    """RFC 8785 canonical JSON bytes of `value` (via the rfc8785 package)."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as e:
        raise MalformedError(f"value cannot be canonicalised: {e}") from e


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, *, field: str = "value") -> bytes:
    """Strict base64url without padding; refuses padding, other alphabets and non-canonical tails.

    Refusing non-canonical encodings means one byte string has exactly one text form, so a
    signed field cannot be altered without changing its bytes (no malleability).
    """
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise MalformedError(f"{field} is not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise MalformedError(f"{field} is not unpadded base64url") from e
    # Canonical iff the bits the last character carries beyond the data are zero (4 bits when
    # len % 4 == 2, 2 bits when len % 4 == 3): checked on that one character, not by encoding
    # the whole (possibly megabyte) value again.
    spare = {2: 0b1111, 3: 0b11}.get(len(text) % 4, 0)
    if spare and _B64URL_INDEX[text[-1]] & spare:
        raise MalformedError(f"{field} is not canonical base64url")
    return data


def b64encode(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 section 4), as C2SP notes use."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, *, field: str = "value") -> bytes:
    """Strict standard base64 with padding; refuses non-canonical forms."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as e:
        raise MalformedError(f"{field} is not base64") from e
    if b64encode(data) != text:
        raise MalformedError(f"{field} is not canonical base64")
    return data


_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"
)


def format_time(t: datetime, *, millis: bool = True) -> str:
    """RFC 3339 UTC with a `Z`, to milliseconds (or seconds)."""
    t = t.astimezone(UTC)
    if millis:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, *, field: str = "time") -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset; returns an aware UTC datetime."""
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        raise MalformedError(f"{field} is not an RFC 3339 timestamp")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as e:
        raise MalformedError(f"{field} is not a valid RFC 3339 timestamp") from e
