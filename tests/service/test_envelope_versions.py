"""Envelope v2 on the service (protocol 5.2-5.4): v1 submissions refused, v1 messages stored
before still served and readable, sizes padded, key ids checked against the directory."""

from __future__ import annotations

import pytest

from liaison.crypto.content import frame_size
from liaison.crypto.envelope import open_envelope, seal_v1
from liaison.crypto.errors import MalformedEnvelope
from liaison.crypto.labels import parse_label
from liaison.service.usecases import messaging
from tests.service.harness import OPS, World, assert_problem, assert_refused, coalition

SECRET_AIRDEF = "SECRET//AIRDEF//REL TO UKR, USA"


async def test_v1_stored_before_stays_readable_and_new_v1_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = await coalition(world)
    label = parse_label(SECRET_AIRDEF, world.policy)
    recipients = await c.usa.recipients(OPS, label)
    # The previous version of the service, which accepted v1: a message stored then.
    monkeypatch.setattr(messaging, "ACCEPTED_VERSIONS", frozenset({1, 2}))
    old = seal_v1(b"stored before v2", channel=OPS, label=label, sender=c.usa.keys, recipients=recipients)
    assert (await c.usa.submit(old)).status_code == 201
    monkeypatch.setattr(messaging, "ACCEPTED_VERSIONS", frozenset({2}))
    # Now: a new v1 envelope is refused (and logged as such), a v2 one accepted.
    new_v1 = seal_v1(b"too late", channel=OPS, label=label, sender=c.usa.keys, recipients=recipients)
    entry = await assert_refused(world, lambda: c.usa.submit(new_v1), "malformed-envelope")
    assert "v1 is no longer accepted" in entry["detail"]
    v2 = await c.usa.envelope(OPS, label, b"sent with v2")
    assert (await c.usa.submit(v2)).status_code == 201
    # The stored v1 message is still served, and opens; after the policy's date it would not.
    r = await c.ukr.get(f"/v1/messages/{old['id']}")
    assert r.status_code == 200
    envelope = r.json()["envelope"]
    assert open_envelope(envelope, c.ukr.keys, c.usa.keys.public).plaintext == b"stored before v2"
    with pytest.raises(MalformedEnvelope, match="v1"):
        open_envelope(envelope, c.ukr.keys, c.usa.keys.public, v1_refused=True)
    # The inbox shows v1's exact length and v2's padded size only.
    items = {m["id"]: m for m in (await c.ukr.get("/v1/inbox")).json()["messages"]}
    assert items[old["id"]]["size"] == len(b"stored before v2")
    assert items[v2["id"]]["size"] == frame_size(b"sent with v2", "text/plain; charset=utf-8") == 1024


async def test_recipient_key_ids_must_name_the_enrolled_keys(world: World) -> None:
    c = await coalition(world)
    env = await c.usa.envelope(OPS, SECRET_AIRDEF)
    # Re-signed by the sender with another device's key id: refused before anything is stored.
    env["recipients"][0]["key_id"] = next(
        r["key_id"] for r in env["recipients"] if r["device"] != env["recipients"][0]["device"]
    )
    from liaison.crypto.encoding import jcs
    from liaison.crypto.envelope import ENVELOPE_DOMAIN_V2

    unsigned = {k: v for k, v in env.items() if k != "signatures"}
    env["signatures"] = c.usa.keys.sign(ENVELOPE_DOMAIN_V2, jcs(unsigned))
    entry = await assert_refused(world, lambda: c.usa.submit(env), "wrong-key-id")
    assert env["recipients"][0]["device"] in entry["detail"]
    # The header's salt must be the ciphertext's: the server checks it without any key.
    env = await c.usa.envelope(OPS, SECRET_AIRDEF)
    env["salt"] = env["commitment"][:32]
    assert_problem(await c.usa.submit(env), "malformed-envelope")
