"""Strict base64url (crypto.encoding.b64url_decode) against a plain reference: the regular
expression of the alphabet, the standard library's decoder, and a re-encoding check."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison.crypto.encoding import b64url_check, b64url_decode, b64url_encode
from liaison.crypto.errors import MalformedError

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def reference(text: str) -> bytes | None:
    """The decoded bytes, or None where strict unpadded canonical base64url refuses."""
    if not _ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        return None
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return data if b64url_encode(data) == text else None


def decode(text: str) -> bytes | None:
    try:
        return b64url_decode(text)
    except MalformedError:
        return None


@given(st.binary(max_size=300))
def test_every_encoding_decodes_back(data: bytes) -> None:
    assert b64url_decode(b64url_encode(data)) == data


@given(
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= \n\t*é", max_size=40
    )
)
def test_agrees_with_the_reference(text: str) -> None:
    assert decode(text) == reference(text)


@given(st.text(max_size=20))
def test_any_text_is_decoded_or_refused_never_crashes(text: str) -> None:
    assert decode(text) == reference(text)


@pytest.mark.parametrize("text", ["AB", "AR", "AAB", "ab+c", "ab/c", "QQ==", "QQ", "a b=", "ab\ncd", "é"])
def test_fixed_cases(text: str) -> None:
    assert decode(text) == reference(text)


def check(text: str) -> int | None:
    try:
        return b64url_check(text)
    except MalformedError:
        return None


@given(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= \n*é", max_size=40)
)
def test_check_refuses_exactly_what_decoding_refuses(text: str) -> None:
    decoded = decode(text)
    assert check(text) == (len(decoded) if decoded is not None else None)


@given(st.binary(max_size=300))
def test_check_gives_the_decoded_length(data: bytes) -> None:
    assert b64url_check(b64url_encode(data)) == len(data)
