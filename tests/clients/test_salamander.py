"""One signed envelope, two plaintexts: the finding of the envelope-v2 issue, performed against
the real running service and read by the real clients.

A USA sender builds one envelope whose ciphertext and tag are valid under two content keys
(an "invisible salamander", tests/salamander.py), wraps one key to the UKR device and the
other to its own USA device, and submits it: one digest, one log entry. With envelope v1
(ChaCha20-Poly1305, no key commitment) the server accepted it and each client showed
"verified, proven": "HOLD POSITION" to one nation, "ADVANCE" to the other. The server now
refuses v1; with v2 the same attack (a genuine AES-256-GCM collision under the two derived
keys) is stopped by the signed key commitment before anything is decrypted.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from liaison.clients import AsyncClient, KeyStore
from liaison.clients.errors import APIError
from liaison.crypto.encoding import format_time
from liaison.crypto.envelope import new_envelope_id
from tests.clients.conftest import FAST_KDF, PASSPHRASE, Liaison
from tests.clients.test_cli import world
from tests.salamander import envelope_v1, envelope_v2

LABEL = "SECRET//AIRDEF//REL TO UKR, USA"
HOLD, ADVANCE = b"HOLD POSITION...", b"ADVANCE AT 0400."


def _client(liaison: Liaison, profile: str) -> AsyncClient:
    store = KeyStore(liaison.home, opslimit=FAST_KDF[0], memlimit=FAST_KDF[1])
    return AsyncClient.from_profile(profile, PASSPHRASE, store=store)


async def _setup(liaison: Liaison, n: dict[str, str], usa: AsyncClient, version: int) -> tuple[Any, Any, Any]:
    """The header, the recipients' bundles and the UKR devices, as a sender plans them."""
    label = await usa.parse_label(LABEL)
    _, bundles = await usa._plan(n["chan"], label, [n["usa"], n["ukr"]])
    header: dict[str, Any] = {
        "v": version,
        "id": new_envelope_id(),
        "channel": n["chan"],
        "sender": usa.keys.device_id,
        "created": format_time(datetime.now(UTC), millis=False),
        "label": label.to_json(),
        "suite": bundles[0].kem_suite,
    }
    ukr_devices = {b.device_id for b in bundles if b.principal == n["ukr"]}
    assert ukr_devices and len(ukr_devices) < len(bundles)
    return header, bundles, ukr_devices


def test_v1_salamander_is_refused_by_the_service(liaison: Liaison) -> None:
    n = world(liaison)
    asyncio.run(_v1(liaison, n))


async def _v1(liaison: Liaison, n: dict[str, str]) -> None:
    async with _client(liaison, n["usa"]) as usa, _client(liaison, n["ukr"]) as ukr:
        header, bundles, ukr_devices = await _setup(liaison, n, usa, 1)
        header["content_type"] = "text/plain; charset=utf-8"
        recipients = {b.device_id: (b.kem_suite, b.kem_pk) for b in bundles}
        sal = envelope_v1(header, recipients, ukr_devices, HOLD, ADVANCE, usa.keys.sign)
        body = {"envelope": sal.envelope, "to": sorted([n["usa"], n["ukr"]])}
        try:
            await usa._json("POST", "/v1/messages", body=body)
        except APIError as e:
            assert e.slug == "malformed-envelope" and "v1" in str(e), e
            return
        # The old service: accepted, and each nation reads its own "verified, proven" text.
        seen_ukr, seen_usa = await ukr.read(header["id"]), await usa.read(header["id"])
        pytest.fail(
            "the service accepted one envelope with two plaintexts: "
            f"UKR read {seen_ukr.plaintext[:16]!r} (proven: {seen_ukr.log_proven}), "
            f"USA read {seen_usa.plaintext[16:32]!r} (proven: {seen_usa.log_proven})"
        )


def test_v2_salamander_stopped_by_the_key_commitment(liaison: Liaison) -> None:
    n = world(liaison)
    message_id = asyncio.run(_v2(liaison, n))
    # Through the CLI too: one line naming the cause, exit 1, nothing of the content shown.
    line = liaison.refused("-p", n["usa"], "read", message_id)
    assert "different content key" in line and "HOLD" not in line


async def _v2(liaison: Liaison, n: dict[str, str]) -> str:
    from liaison.clients.errors import KeyCommitmentMismatch

    async with _client(liaison, n["usa"]) as usa, _client(liaison, n["ukr"]) as ukr:
        header, bundles, ukr_devices = await _setup(liaison, n, usa, 2)
        recipients = {b.device_id: (b.kem_suite, b.kem_pk, b.kem_key_id) for b in bundles}
        # gcm_collision checks that the chunk opens under both derived keys: a real collision.
        sal = envelope_v2(header, recipients, ukr_devices, b"HOLD POSITION. ", usa.keys.sign)
        body = {"envelope": sal.envelope, "to": sorted([n["usa"], n["ukr"]])}
        # The server cannot tell (it never holds a key): it accepts and logs one envelope.
        answer = await usa._json("POST", "/v1/messages", body=body)
        assert answer["id"] == header["id"]
        seen = await ukr.read(header["id"])
        assert seen.plaintext.startswith(b"HOLD POSITION. ") and seen.log_proven
        with pytest.raises(KeyCommitmentMismatch, match="different content key"):
            await usa.read(header["id"])
        return str(header["id"])
