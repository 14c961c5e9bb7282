"""The v2 plaintext (crypto/content.py) and C2SP chunked encryption (crypto/chunked.py)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison.crypto import chunked
from liaison.crypto.content import (
    Body,
    _parse_body,
    _parse_canonical,
    encode_body,
    is_padded_size,
    padded_size,
    padme,
    parse_frame,
    to_frame,
)
from liaison.crypto.encoding import jcs
from liaison.crypto.errors import DecryptionFailed, KeyCommitmentMismatch, MalformedContent, MalformedError

#: Media types as a sender may write them: 1 to 60 printable characters of any script.
TYPES = st.text(
    st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_categories=("Cs",)), min_size=1, max_size=60
).filter(str.isprintable)


@pytest.mark.parametrize(
    ("length", "padded"),
    # Worked by hand from the definition (Nikitin et al., PETS 2019, Algorithm 1).
    [
        (8, 8),
        (9, 10),
        (100, 104),
        (1000, 1024),
        (1025, 1088),
        (5000, 5120),
        (100000, 100352),
        (1 << 20, 1 << 20),
    ],
)
def test_padme_values(length: int, padded: int) -> None:
    assert padme(length) == padded


@given(st.integers(8, 1 << 34))
def test_padme_overhead_at_most_12_percent_and_a_fixed_point(length: int) -> None:
    p = padme(length)
    assert length <= p <= length * 1.12 + 1
    assert padme(p) == p and is_padded_size(max(1024, p))


def test_frame_floor_and_padded_sizes() -> None:
    assert padded_size(0) == 1024 and padded_size(1016) == 1024 and padded_size(1017) == 1088
    assert not is_padded_size(1000) and not is_padded_size(1025) and is_padded_size(1088)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), TYPES)
def test_body_round_trip_and_direct_encoding_is_jcs(content: bytes, content_type: str) -> None:
    body = Body(content, content_type)
    assert encode_body(body) == jcs(body.to_json())
    frame = to_frame(body)
    assert len(frame) == padded_size(len(encode_body(body)))
    assert parse_frame(frame) == body


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), TYPES, st.integers(0, 400), st.integers(0, 255))
def test_fast_and_full_body_parsers_accept_exactly_the_same(
    content: bytes, content_type: str, where: int, value: int
) -> None:
    """The fast path accepts only what the full check accepts; any byte changed is refused."""
    encoded = bytearray(encode_body(Body(content, content_type)))
    encoded[where % len(encoded)] = value
    mutated = bytes(encoded)
    fast = _parse_canonical(mutated)
    try:
        full = _parse_body(mutated)
    except MalformedContent:
        assert fast is None
        return
    assert fast is None or fast == full
    assert encode_body(full) == mutated


def _frame(body: bytes, size: int, pad: bytes = b"") -> bytes:
    return len(body).to_bytes(8, "big") + body + pad + bytes(size - 8 - len(body) - len(pad))


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (b"\x00" * 4, "shorter"),
        ((2000).to_bytes(8, "big") + b"\xff" * 1016, "runs past"),
        (_frame(jcs(Body(b"x", "t").to_json()), 2048), "pads to"),
        (_frame(jcs(Body(b"x", "t").to_json()), 1024, b"\x00\x07"), "not all zero"),
        (_frame(b'{"attachments": [], "content": "eA", "content_type": "t"}', 1024), "canonical"),
        (_frame(b'{"attachments":[1],"content":"eA","content_type":"t"}', 1024), "each attachment"),
        (_frame(b'{"content":"eA","content_type":"t"}', 1024), "exactly"),
        (_frame(b'{"attachments":[],"content":"eB","content_type":"t"}', 1024), "content"),
        (_frame(b'{"attachments":[],"content":"eA","content_type":""}', 1024), "content type"),
        (_frame(b"\xff\xfe", 1024), "not JSON"),
    ],
)
def test_frames_refused(frame: bytes, why: str) -> None:
    with pytest.raises(MalformedContent, match=why):
        parse_frame(frame)


# --- C2SP chunked encryption ------------------------------------------------------------------


def _expand(prk: bytes, info: bytes, n: int) -> bytes:
    out, block, i = b"", b"", 1
    while len(out) < n:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha512).digest()
        out, i = out + block, i + 1
    return out[:n]


def test_derivation_is_the_specification_s() -> None:
    key, salt, context = bytes(range(32)), bytes(range(24)), b"ctx"
    out = _expand(key, b"c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM\x00" + salt + context, 76)
    d = chunked.derive(key, salt, context)
    assert (d.key, d.base_nonce, d.commitment) == (out[:32], out[32:44], out[44:])


@pytest.mark.parametrize("n", [0, 1, 16383, 16384, 16385, 40000])
def test_lengths_round_trip_and_one_chunking_per_length(n: int) -> None:
    key, salt = bytes(32), bytes(24)
    ct = chunked.encrypt(key, salt, bytes(n), b"c")
    assert len(ct) == chunked.ciphertext_length(n) and chunked.plaintext_length(len(ct)) == n
    assert chunked.decrypt(key, ct, b"c") == bytes(n)
    assert ct[:24] == salt and len(ct) == 56 + n + 16 * (n // 16384 + 1)


def test_commitment_checked_before_any_chunk_and_context_bound() -> None:
    ct = chunked.encrypt(bytes(32), bytes(24), b"hello", b"header A")
    with pytest.raises(KeyCommitmentMismatch):
        chunked.decrypt(b"\x01" * 32, ct, b"header A")
    with pytest.raises(KeyCommitmentMismatch):
        chunked.decrypt(bytes(32), ct, b"header B")


def test_truncation_reordering_and_duplication_fail() -> None:
    key, salt = bytes(32), bytes(24)
    ct = chunked.encrypt(key, salt, bytes(40000), b"")
    size = 16384 + 16
    head, chunks = ct[:56], [ct[56 + i : 56 + i + size] for i in range(0, len(ct) - 56, size)]
    assert len(chunks) == 3
    with pytest.raises(MalformedError, match="truncated"):
        chunked.decrypt(key, head + chunks[0] + chunks[1], b"")
    for order in ([1, 0, 2], [0, 0, 2], [0, 1, 1]):
        with pytest.raises((DecryptionFailed, MalformedError)):
            chunked.decrypt(key, head + b"".join(chunks[i] for i in order), b"")
    with pytest.raises(MalformedError):
        chunked.decrypt(key, ct[:60], b"")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), TYPES)
def test_frame_size_from_lengths_is_the_frame_s_size(content: bytes, content_type: str) -> None:
    from liaison.crypto.content import frame_size

    assert frame_size(content, content_type) == len(to_frame(Body(content, content_type)))
