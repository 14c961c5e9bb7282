"""Envelope v2 with attachments (protocol 11.3, 11.4): the header's and the body's members,
sealed, parsed and opened; every malformed member refused with its own error."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest

from liaison.crypto.attachments import AttachmentRef, ciphertext_size, new_attachment_id, parse_refs
from liaison.crypto.content import AttachmentInfo, Body, frame_size, padded_size, parse_frame, to_frame
from liaison.crypto.encoding import b64url_encode, jcs
from liaison.crypto.envelope import ENVELOPE_DOMAIN_V2, open_envelope, parse_envelope, seal
from liaison.crypto.errors import MalformedContent, MalformedEnvelope
from liaison.crypto.keys import generate_device
from liaison.crypto.labels import Label

LABEL = Label("coalition-2026", "SECRET", ("UKR", "USA"), ("AIRDEF",))
SENDER = generate_device("usa-analyst-1")
ALICE = generate_device("ukr-analyst-1")


def _pair(name: str = "grid.jpg", length: int = 5000) -> tuple[AttachmentRef, AttachmentInfo]:
    aid = new_attachment_id()
    info = AttachmentInfo(aid, bytes(32), name, "image/jpeg", length, hashlib.sha256(b"x").hexdigest())
    return AttachmentRef(aid, ciphertext_size(length), bytes(range(32))), info


def _seal(**kw: Any) -> dict[str, Any]:
    return seal(
        b"see attached", channel="airdef-ops", label=LABEL, sender=SENDER, recipients=[ALICE.public], **kw
    )


def _resign(env: dict[str, Any]) -> dict[str, Any]:
    unsigned = {k: v for k, v in env.items() if k != "signatures"}
    return {**unsigned, "signatures": SENDER.sign(ENVELOPE_DOMAIN_V2, jcs(unsigned))}


def test_attachments_travel_in_the_header_and_the_body() -> None:
    pairs = [_pair("a.jpg"), _pair("Пункт 4.pdf", 0)]
    env = _seal(attachments=pairs)
    assert env["attachments"] == [ref.to_json() for ref, _ in pairs]
    parsed = parse_envelope(env)
    assert parsed.attachments == tuple(ref for ref, _ in pairs)
    opened = open_envelope(env, ALICE, SENDER.public)
    assert opened.attachments == tuple(info for _, info in pairs)
    assert opened.plaintext == b"see attached"


def test_an_envelope_without_attachments_has_no_header_member() -> None:
    env = _seal()
    assert "attachments" not in env
    assert parse_envelope(env).attachments == ()
    assert open_envelope(env, ALICE, SENDER.public).attachments == ()


def test_a_body_naming_other_attachments_than_the_header_is_refused() -> None:
    one, two = _pair(), _pair()
    env = _seal(attachments=[one])
    env["attachments"] = [two[0].to_json()]
    with pytest.raises(MalformedContent, match="not the ones the signed header names"):
        open_envelope(_resign(env), ALICE, SENDER.public)
    env["attachments"] = [one[0].to_json(), two[0].to_json()]
    with pytest.raises(MalformedContent, match="not the ones the signed header names"):
        open_envelope(_resign(env), ALICE, SENDER.public)


def test_seal_refuses_members_that_disagree() -> None:
    one, two = _pair(), _pair()
    with pytest.raises(MalformedEnvelope, match="different ids"):
        _seal(attachments=[(one[0], two[1])])
    with pytest.raises(MalformedContent, match="named twice"):
        _seal(attachments=[one, one])


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda a: [], "1 to 100"),
        (lambda a: "x", "1 to 100"),
        (lambda a: [*a, a[0]], "named twice"),
        (lambda a: [{**a[0], "size": a[0]["size"] + 1}], "ciphertext bytes"),
        (lambda a: [{**a[0], "size": True}], "ciphertext bytes"),
        (lambda a: [{**a[0], "root": b64url_encode(bytes(31))}], "root must be 32 bytes"),
        (lambda a: [{**a[0], "id": "a_UPPER"}], "attachment id"),
        (lambda a: [{**a[0], "extra": 1}], "exactly id, root and size"),
        (lambda a: [a[0]] * 101, "1 to 100"),
    ],
)
def test_malformed_header_members_are_refused(change: Any, why: str) -> None:
    env = _seal(attachments=[_pair()])
    env["attachments"] = change(copy.deepcopy(env["attachments"]))
    with pytest.raises(MalformedEnvelope, match=why):
        parse_envelope(_resign(env))
    with pytest.raises(MalformedEnvelope, match=why):
        parse_refs(env["attachments"])


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a/b", "a\\b", "nul\x00", "\x1b[31mred", "bell\x07", "x" * 256, "line\u2028sep"]
)
def test_file_names_a_terminal_or_a_path_could_misuse_are_refused(name: str) -> None:
    with pytest.raises(MalformedContent, match="file name"):
        AttachmentInfo(new_attachment_id(), bytes(32), name, "image/jpeg", 1, "0" * 64)


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("key", bytes(31), "32 bytes"),
        ("media_type", "", "content type"),
        ("length", -1, "length"),
        ("length", True, "length"),
        ("length", (1 << 40) + 1, "length"),
        ("sha256", "A" * 64, "sha256"),
        ("id", "a_short", "attachment id"),
    ],
)
def test_body_members_are_checked(field: str, value: Any, why: str) -> None:
    good: dict[str, Any] = {
        "id": new_attachment_id(),
        "key": bytes(32),
        "name": "n.txt",
        "media_type": "text/plain",
        "length": 1,
        "sha256": "0" * 64,
    }
    with pytest.raises(MalformedContent, match=why):
        AttachmentInfo(**{**good, field: value})


def test_body_members_round_trip_through_the_frame_and_size_is_known_in_advance() -> None:
    members = tuple(_pair(f"f{i}.bin")[1] for i in range(3))
    body = Body(b"x" * 3000, "text/plain", members)
    frame = to_frame(body)
    assert len(frame) == frame_size(body.content, body.content_type, members)
    assert parse_frame(frame) == body
    bad = jcs({**body.to_json(), "attachments": [{**members[0].to_json(), "key": "!!"}]})
    with pytest.raises(MalformedContent, match="key"):
        parse_frame(len(bad).to_bytes(8) + bad + bytes(padded_size(len(bad)) - 8 - len(bad)))
