"""Canonical encodings: RFC 8785 JSON (JCS), strict I-JSON parsing, base64url and base64, RFC 3339
times."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import rfc8785

from .errors import JSONRefused, MalformedError

__all__ = [
    "MAX_JSON_DEPTH",
    "b64decode",
    "b64encode",
    "b64url_check",
    "b64url_decode",
    "b64url_encode",
    "format_time",
    "jcs",
    "loads_strict",
    "parse_time",
]

_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_INDEX = {
    c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
}


# --- RFC 8785 (JCS) --------------------------------------------------------------------------
#
# `jcs` is on the server's hot path (every envelope is canonicalised to be signed, verified and
# hashed), and the pure-Python rfc8785 package spends ~5 us per kilobyte of string. `_fast_jcs`
# produces the same bytes for the values that actually occur, several times faster; every other
# value, and every value rfc8785 refuses, goes to rfc8785 itself, so output and errors are the
# package's. tests/test_jcs.py checks the two against each other (property tests and the
# published test data).
#
# The fast path serialises a value only when each part of it is of one of these exact types
# (subclasses, whose methods could be overridden, take the rfc8785 path), and its output is then
# RFC 8785's for the following reasons:
#
# * dict with str keys: members are written in RFC 8785 order (section 3.2.3, by the UTF-16
#   code units of the keys). When every key is ASCII, Python's sort (by code point) is that
#   order, as a UTF-16 code unit of an ASCII character is its code point. (Code point and
#   UTF-16 order disagree only between a character >= U+10000, whose UTF-16 form starts with a
#   surrogate D800..DBFF, and one in U+E000..U+FFFF.) Otherwise keys are sorted by
#   `k.encode("utf-16-be")`, the very key rfc8785 sorts by; a lone surrogate makes that raise,
#   which hands the value to rfc8785. A key that is not exactly a str hands it over too.
# * list and tuple: elements in order (rfc8785 writes a tuple as an array as well).
# * str: RFC 8785 section 3.2.2.2 escapes only `"`, `\` and U+0000..U+001F (as \b \t \n \f \r, or
#   as \u00xx in lowercase hex) and writes every other character, U+007F and U+2028/U+2029
#   included, as its UTF-8. Strings are first written as they are, between quotes. The output
#   is then encoded to UTF-8, which raises on a lone surrogate (rfc8785 refuses those too, so
#   the value is handed over). Apart from the two quotes around each string, only a string's
#   own characters can put a `"`, `\` or byte below 0x20 into the output: punctuation, numbers
#   and literals contain none, and the UTF-8 form of a non-ASCII character has only bytes
#   >= 0x80. So when the output holds exactly two such bytes per string written, no string
#   needed an escape and the output is JCS (one `bytes.translate` pass checks this).
#   Otherwise the value is written again with every string passed through
#   json's `encode_basestring` (`JSONEncoder(ensure_ascii=False).encode` of a str), which
#   escapes exactly the characters JCS escapes, in the same forms (\b \t \n \f \r, other
#   controls as \u00xx with lowercase hex), and leaves every other character as it is.
# * int with |n| < 2**53: `str(n)`, as rfc8785 writes it. rfc8785 refuses larger magnitudes
#   (IntegerDomainError), so those are handed over. bool and None: true, false, null.
# * float: its JCS form comes from rfc8785 itself (ECMAScript number formatting: 1e+21, not
#   1e21, and 1, not 1.0). JCS serialises each value independently of where it sits, so the
#   float's text can be placed into the rest. NaN and the infinities make rfc8785 raise, and
#   the whole value is handed over.
#
# Nesting deeper than `_FAST_MAX_DEPTH` is handed over as well, so cyclic and very deep values
# run into rfc8785's recursion limit (RecursionError) as before, not the fast path's. A
# RecursionError in the fast path also hands over. The fast path runs none of the caller's
# code: it touches only the exact built-in types above before it gives up, so handing over
# repeats no side effects.

_SAFE_INT = 2**53  # rfc8785 accepts exactly -(2**53 - 1) ..= 2**53 - 1
_FAST_MAX_DEPTH = 64
# Bytes that JCS escapes inside a string: `"`, `\` and the controls U+0000..U+001F.
_JCS_SPECIAL = b'"\\' + bytes(range(0x20))
# `bytes.translate(None, _JCS_ORDINARY)` keeps only the special bytes.
_JCS_ORDINARY = bytes(b for b in range(256) if b not in _JCS_SPECIAL)
_json_string: Callable[[str], str] = json.JSONEncoder(ensure_ascii=False).encode


class _HandOver(Exception):
    """The fast path does not take this value: rfc8785 serialises it (or refuses it)."""


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be")


def _sorted_keys(obj: dict[Any, Any]) -> list[str]:
    """The keys of `obj` in RFC 8785 order (by UTF-16 code units); hands over non-str keys."""
    for k in obj:
        if type(k) is not str or not k.isascii():
            break
    else:
        return sorted(obj)  # ASCII only: code point order is UTF-16 order
    for k in obj:
        if type(k) is not str:
            raise _HandOver
    return sorted(obj, key=_utf16_key)


def _scalar(x: Any) -> str:
    """JCS text of a number, bool or None."""
    t = type(x)
    if t is int:
        if -_SAFE_INT < x < _SAFE_INT:
            return str(x)
        raise _HandOver
    if t is bool:
        return "true" if x else "false"
    if x is None:
        return "null"
    if t is float:
        return rfc8785.dumps(x).decode("ascii")
    raise _HandOver


def _emit(obj: Any, parts: list[str], escape: bool, depth: int) -> int:
    """Append the JCS text of the dict, list or tuple `obj` to `parts`.

    With `escape` false strings are written as they are and the number of strings written is
    returned (the caller checks that none needed escaping); with `escape` true every string
    is escaped.
    """
    if depth > _FAST_MAX_DEPTH:
        raise _HandOver
    append = parts.append
    n = 0
    if type(obj) is dict:
        if not obj:
            append("{}")
            return 0
        keys = _sorted_keys(obj)
        n = len(keys)
        sep = "{"
        for k in keys:
            x = obj[k]
            t = type(x)
            if t is str:
                append(f"{sep}{_json_string(k)}:{_json_string(x)}" if escape else f'{sep}"{k}":"{x}"')
                n += 1
            elif t is dict or t is list or t is tuple:
                append(f"{sep}{_json_string(k)}:" if escape else f'{sep}"{k}":')
                n += _emit(x, parts, escape, depth + 1)
            else:
                append(f"{sep}{_json_string(k)}:{_scalar(x)}" if escape else f'{sep}"{k}":{_scalar(x)}')
            sep = ","
        append("}")
        return n
    if not obj:
        append("[]")
        return 0
    sep = "["
    for x in obj:
        t = type(x)
        if t is str:
            append(sep + _json_string(x) if escape else f'{sep}"{x}"')
            n += 1
        elif t is dict or t is list or t is tuple:
            append(sep)
            n += _emit(x, parts, escape, depth + 1)
        else:
            append(sep + _scalar(x))
        sep = ","
    append("]")
    return n


def _fast_jcs(value: Any) -> bytes:
    """JCS bytes of `value`, or _HandOver / CanonicalizationError / UnicodeEncodeError /
    RecursionError, on which `jcs` asks rfc8785 instead."""
    t = type(value)
    if t is dict or t is list or t is tuple:
        parts: list[str] = []
        strings = _emit(value, parts, False, 1)
        data = "".join(parts).encode("utf-8")
        if len(data.translate(None, _JCS_ORDINARY)) != 2 * strings:
            # Some string holds a `"`, `\` or control character: write it again, escaping.
            parts = []
            _emit(value, parts, True, 1)
            data = "".join(parts).encode("utf-8")
        return data
    if t is str:
        return _json_string(value).encode("utf-8")
    return _scalar(value).encode("ascii")


def jcs(value: Any) -> bytes:
    """RFC 8785 canonical JSON bytes of `value`.

    Byte for byte what the rfc8785 package produces, and the same MalformedError where it
    refuses; common values take a faster path (see the comment above `_SAFE_INT`).
    """
    try:
        return _fast_jcs(value)
    except (_HandOver, rfc8785.CanonicalizationError, UnicodeEncodeError, RecursionError):
        pass
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as e:
        raise MalformedError(f"value cannot be canonicalised: {e}") from e


# --- strict JSON (RFC 7493 I-JSON) ---------------------------------------------------------------
#
# Python's json module takes the last of two equal member names, the first of them in other
# parsers; a signature or Content-Digest over such bytes covers text whose meaning depends on
# the reader, so `loads_strict` refuses it. It also refuses what I-JSON rules out (a string
# with a lone surrogate, NaN and Infinity, numbers beyond a double) and nesting deeper than the
# caller accepts (recursive consumers such as JCS or pydantic would otherwise meet what the C
# parser took). The string checks walk the value only when the text has an escape at all; a
# typical body pays for the duplicate-key hook and a walk over its containers (some 10 us for
# a 10 KB envelope, against 20 us for json.loads itself).

#: Nesting allowed by default: far beyond any object of the protocol (an envelope is 4 deep).
MAX_JSON_DEPTH = 32
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # may also match an escaped backslash
_NUL_ESCAPE = "\\u0000"


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise JSONRefused("duplicate-key", f"the member name {name[:64]!r} appears more than once")
            seen.add(name)
    return obj


def _no_constant(name: str) -> Any:
    raise MalformedError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):
        raise MalformedError("a number is beyond the range of a double")
    return value


def _check_depth(value: Any, max_depth: int) -> None:
    """Refuse nesting deeper than `max_depth` (iterative: the value may be deep)."""
    stack = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if depth > max_depth:
            raise JSONRefused("json-too-deep", f"JSON is nested deeper than {max_depth} levels")
        for child in item.values() if type(item) is dict else item:
            kind = type(child)
            if kind is dict or kind is list:
                push((child, depth + 1))


def _check_strings(value: Any, surrogates: bool, nul: bool) -> None:
    """Refuse strings (member names too) holding a lone surrogate or, if `nul`, U+0000."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            stack.extend(item)
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is str:
            if nul and "\x00" in item:
                raise JSONRefused("invalid-character", "a JSON string holds U+0000")
            if surrogates:
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise JSONRefused("invalid-character", "a JSON string holds a lone surrogate") from None


def loads_strict(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH, forbid_nul: bool = False) -> Any:
    """Parse I-JSON (RFC 7493) from UTF-8 bytes (or text): MalformedError if it is not JSON
    (or not UTF-8), JSONRefused if it repeats a member name in an object, holds a lone
    surrogate, or nests deeper than `max_depth`; with `forbid_nul`, a string holding U+0000
    (which PostgreSQL text cannot store) is refused too."""
    if isinstance(data, str):
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8")  # strict: raw (CESU-style) surrogates are refused
        except UnicodeDecodeError:
            raise MalformedError("JSON must be UTF-8") from None
    try:
        value = json.loads(
            text, object_pairs_hook=_unique_members, parse_constant=_no_constant, parse_float=_finite
        )
    except json.JSONDecodeError as e:
        raise MalformedError(f"not JSON: {e.msg} (at character {e.pos})") from None
    except RecursionError:
        raise JSONRefused("json-too-deep", f"JSON is nested deeper than {max_depth} levels") from None
    except MalformedError:
        raise
    except ValueError:  # an integer of more digits than int() converts
        raise MalformedError("a JSON number has too many digits") from None
    if "\\" in text:  # a lone surrogate or U+0000 can only come from an escape (one memchr)
        surrogates = _SURROGATE_ESCAPE.search(text) is not None
        nul = forbid_nul and _NUL_ESCAPE in text
        if surrogates or nul:
            _check_strings(value, surrogates, nul)
    if type(value) is dict or type(value) is list:
        _check_depth(value, max_depth)
    return value


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, *, field: str = "value") -> bytes:
    """Strict base64url without padding; refuses padding, other alphabets and non-canonical tails.

    Refusing non-canonical encodings means one byte string has exactly one text form, so a
    signed field cannot be altered without changing its bytes (no malleability).
    """
    raw = _checked(text, field)
    # Every character is of the alphabet and the length is possible: this cannot fail.
    return binascii.a2b_base64(raw.translate(_TO_STANDARD) + b"=" * (-len(raw) % 4))


def b64url_check(text: str, *, field: str = "value") -> int:
    """Check what `b64url_decode` checks, without decoding; returns the decoded length.

    For values a verifier only stores or passes on (wrapped keys, the ciphertext at the
    server): refused exactly where decoding would refuse them.
    """
    return len(_checked(text, field)) * 3 // 4


def _checked(text: str, field: str) -> bytes:
    """The ASCII bytes of strict, canonical, unpadded base64url text; MalformedError if not."""
    if not isinstance(text, str) or len(text) % 4 == 1:
        raise MalformedError(f"{field} is not unpadded base64url")
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise MalformedError(f"{field} is not unpadded base64url") from None
    if raw.translate(None, _B64URL_ALPHABET):  # anything left is outside the alphabet
        raise MalformedError(f"{field} is not unpadded base64url")
    # Canonical iff the bits the last character carries beyond the data are zero (4 bits when
    # len % 4 == 2, 2 bits when len % 4 == 3): checked on that one character, not by encoding
    # the whole (possibly megabyte) value again.
    spare = {2: 0b1111, 3: 0b11}.get(len(text) % 4, 0)
    if spare and _B64URL_INDEX[text[-1]] & spare:
        raise MalformedError(f"{field} is not canonical base64url")
    return raw


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


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")


def format_time(t: datetime, *, millis: bool = True) -> str:
    """RFC 3339 UTC with a `Z`, to milliseconds (or seconds). `t` must be timezone-aware: a
    naive datetime is refused (ValueError), never read as local time."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("format_time needs a timezone-aware datetime, not a naive one")
    t = t.astimezone(UTC)
    if millis:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, *, field: str = "time") -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset; returns an aware UTC datetime."""
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        raise MalformedError(f"{field} is not an RFC 3339 timestamp")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise MalformedError(f"{field} is not a valid RFC 3339 timestamp") from e
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 and the like: before year 1 or after 9999
        raise MalformedError(f"{field} is out of range (years 0001 to 9999, in UTC)") from None
