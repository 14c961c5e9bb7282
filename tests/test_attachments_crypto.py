"""One attachment's streamed encryption (crypto/attachments.py, protocol 11.1, 11.2, 11.5):
the stream gives exactly the bytes of the one-shot construction of the v2 body (the same
frame, the same chunked encryption) whatever the piece sizes, opens back under the right key,
message, label and id only, refuses every tampering, and its chunk tree is the RFC 6962 tree
over the prefix and the sealed chunks."""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liaison.crypto import attachments as att
from liaison.crypto import chunked, merkle
from liaison.crypto.content import padded_size
from liaison.crypto.errors import DecryptionFailed, KeyCommitmentMismatch, MalformedContent, MalformedError

KEY, SALT = bytes(range(32)), bytes(range(100, 124))
MID = "0192f0e8-aaaa-7bbb-8ccc-123456789abc"
AID = "a_" + "b" * 26
LABEL = {"policy": "coalition-2026", "classification": "SECRET", "compartments": [], "rel_to": ["UKR"]}
CTX = att.context(MID, AID, LABEL)


def _frame(data: bytes) -> bytes:
    size = padded_size(len(data))
    return len(data).to_bytes(8) + data + bytes(size - 8 - len(data))


def _seal(data: bytes, piece: int, key: bytes = KEY, ctx: bytes = CTX) -> tuple[bytes, str]:
    s = att.Sealer(key, SALT, ctx, len(data))
    out = b"".join(s.update(data[i : i + piece]) for i in range(0, len(data), piece)) + s.finish()
    return out, s.sha256


def _open(ct: bytes, length: int, sha: str, piece: int, key: bytes = KEY, ctx: bytes = CTX) -> bytes:
    u = att.Unsealer(key, ctx, len(ct), length, sha)
    return b"".join(u.update(ct[i : i + piece]) for i in range(0, len(ct), piece)) + u.finish()


# Lengths around the floor, the chunk size and frames ending exactly on a chunk boundary.
LENGTHS = [0, 1, 1015, 1016, 1017, 16376, 16384, 16385, 40000, 3 * 16384 - 8, 200_003]


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("piece", [1, 1000, 16384, 16400, 1 << 20])
def test_stream_is_the_one_shot_construction_and_opens_back(length: int, piece: int) -> None:
    if piece == 1 and length > 20000:
        pytest.skip("byte by byte only for the small ones")
    data = bytes((i * 7) % 251 for i in range(length))
    ct, sha = _seal(data, piece)
    assert ct == chunked.encrypt(KEY, SALT, _frame(data), CTX)
    assert len(ct) == att.ciphertext_size(length) and att.is_ciphertext_size(len(ct))
    assert sha == hashlib.sha256(data).hexdigest()
    assert _open(ct, length, sha, piece) == data


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=70_000), st.integers(min_value=1, max_value=40_000))
def test_any_data_any_pieces(data: bytes, piece: int) -> None:
    ct, sha = _seal(data, piece)
    assert _open(ct, len(data), sha, piece) == data
    tree = att.ChunkTree()
    for i in range(0, len(ct), piece):
        tree.update(ct[i : i + piece])
    sealed = ct[chunked.PREFIX_LEN :]
    step = chunked.CHUNK_SIZE + chunked.TAG_LEN
    leaves = [ct[: chunked.PREFIX_LEN]] + [sealed[i : i + step] for i in range(0, len(sealed), step)]
    if len(sealed) % step == 0:
        leaves.append(b"")  # pragma: no cover - a sealed stream never ends on a full chunk
    assert tree.root() == merkle.root_from_leaf_hashes([merkle.leaf_hash(x) for x in leaves])


def test_bound_to_key_message_label_and_id() -> None:
    data = b"imagery" * 1000
    ct, sha = _seal(data, 4096)
    others = [
        att.context("0192f0e8-aaaa-7bbb-8ccc-000000000000", AID, LABEL),
        att.context(MID, "a_" + "c" * 26, LABEL),
        att.context(MID, AID, {**LABEL, "classification": "TOP SECRET"}),
    ]
    for ctx in others:
        with pytest.raises(KeyCommitmentMismatch):
            _open(ct, len(data), sha, 4096, ctx=ctx)
    with pytest.raises(KeyCommitmentMismatch):
        _open(ct, len(data), sha, 4096, key=bytes(32))


def test_tampering_is_refused() -> None:
    data = bytes(50_000)
    ct, sha = _seal(data, 8192)
    flipped = bytearray(ct)
    flipped[chunked.PREFIX_LEN + 20_000] ^= 1
    with pytest.raises(DecryptionFailed, match="chunk 1"):
        _open(bytes(flipped), len(data), sha, 8192)
    step = chunked.CHUNK_SIZE + chunked.TAG_LEN
    body = ct[chunked.PREFIX_LEN :]
    swapped = ct[: chunked.PREFIX_LEN] + body[step : 2 * step] + body[:step] + body[2 * step :]
    with pytest.raises(DecryptionFailed):
        _open(swapped, len(data), sha, 8192)
    with pytest.raises(MalformedContent, match="SHA-256"):
        _open(ct, len(data), "00" * 32, 8192)
    with pytest.raises(MalformedContent):  # a length the size cannot carry
        att.Unsealer(KEY, CTX, len(ct), len(data) + 5000, sha)
    with pytest.raises(DecryptionFailed, match="incomplete"):
        u = att.Unsealer(KEY, CTX, len(ct), len(data), sha)
        u.update(ct[:-1])
        u.finish()


def test_a_sender_that_lies_about_the_length_or_pads_with_data_is_refused() -> None:
    # Built by hand: the frame claims another length, or carries non-zero padding.
    data = b"x" * 100
    frame = bytearray(_frame(data))
    frame[0:8] = (99).to_bytes(8)
    ct = chunked.encrypt(KEY, SALT, bytes(frame), CTX)
    with pytest.raises(MalformedContent, match="length"):
        _open(ct, 100, hashlib.sha256(data).hexdigest(), 500)
    frame = bytearray(_frame(data))
    frame[-1] = 1
    ct = chunked.encrypt(KEY, SALT, bytes(frame), CTX)
    with pytest.raises(MalformedContent, match="padding"):
        _open(ct, 100, hashlib.sha256(data).hexdigest(), 500)


def test_the_sealer_holds_the_declared_length() -> None:
    s = att.Sealer(KEY, SALT, CTX, 10)
    with pytest.raises(ValueError, match="more than"):
        s.update(b"x" * 11)
    s = att.Sealer(KEY, SALT, CTX, 10)
    s.update(b"x" * 9)
    with pytest.raises(ValueError, match="9 bytes came"):
        s.finish()


def test_ids_sizes_and_the_tree_of_an_impossible_size() -> None:
    assert att.ATTACHMENT_ID_RE.fullmatch(att.new_attachment_id())
    assert att.new_attachment_id() != att.new_attachment_id()
    with pytest.raises(MalformedError):
        att.context(MID, "a_short", LABEL)
    assert not att.is_ciphertext_size(100) and not att.is_ciphertext_size(att.ciphertext_size(0) + 1)
    tree = att.ChunkTree()
    tree.update(bytes(500))
    with pytest.raises(MalformedError):
        tree.root()


@pytest.mark.parametrize("length", [0, 1, 500, 16_384, 100_000, 1_000_000])
def test_finish_pieces_seals_the_padding_a_piece_at_a_time_as_finish_would(length: int) -> None:
    key, salt, data = os.urandom(32), os.urandom(24), os.urandom(length)
    ctx = att.context("01900000-0000-7000-8000-000000000000", att.new_attachment_id(), {"a": 1})
    one, streamed = att.Sealer(key, salt, ctx, length), att.Sealer(key, salt, ctx, length)
    expected = one.update(data) + one.finish()
    pieces = [streamed.update(data), *streamed.finish_pieces(100)]
    assert b"".join(pieces) == expected and streamed.sha256 == one.sha256
    assert max(len(p) for p in pieces[1:]) <= max(100 + 16_400, len(pieces[-1]))
    short = att.Sealer(key, salt, ctx, length + 1)
    short.update(data)
    with pytest.raises(ValueError, match="were declared"):  # the length is still checked
        list(short.finish_pieces())
