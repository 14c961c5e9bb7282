"""Device keys: bundles, self-signatures, fingerprint ids, private-key serialisation."""

from __future__ import annotations

import base64
import copy

import pytest

from liaison.crypto import _primitives as prim
from liaison.crypto.encoding import jcs
from liaison.crypto.errors import BadSignature, MalformedKey, UnsupportedSuite
from liaison.crypto.keys import DeviceKeys, PublicBundle, device_id_of, generate_device

KEYS = generate_device("ukr-diu-analyst-07")


def test_device_id_is_fingerprint_of_bundle() -> None:
    bundle = KEYS.public.to_json()
    digest = prim.sha256(jcs(bundle))
    expected = "d_" + base64.b32encode(digest).decode().lower().rstrip("=")[:26]
    assert KEYS.device_id == expected == device_id_of(bundle)
    assert set(bundle) == {"principal", "sig", "kem", "created"}
    assert set(bundle["sig"]) == {"ed25519", "mldsa65"}
    assert bundle["kem"]["suite"] == "MLKEM768-X25519"


def test_swapping_a_key_changes_the_id() -> None:
    other = generate_device("ukr-diu-analyst-07")
    bundle = copy.deepcopy(KEYS.public.to_json())
    bundle["kem"] = other.public.to_json()["kem"]
    assert device_id_of(bundle) != KEYS.device_id


def test_signed_bundle_verifies_and_tampering_fails() -> None:
    signed = KEYS.signed_bundle()
    assert PublicBundle.from_signed(signed) == KEYS.public
    tampered = copy.deepcopy(signed)
    tampered["bundle"]["principal"] = "usa-analyst-1"
    with pytest.raises(BadSignature):
        PublicBundle.from_signed(tampered)
    stripped = copy.deepcopy(signed)
    del stripped["signatures"]["mldsa65"]
    with pytest.raises(BadSignature, match="mldsa65"):
        PublicBundle.from_signed(stripped)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.pop("created"),
        lambda b: b.update(extra=1),
        lambda b: b.update(principal="Bad Name"),
        lambda b: b["sig"].update(ed25519="AAAA"),
        lambda b: b["sig"].pop("ed25519"),
        lambda b: b["sig"].update(mldsa65="AAAA"),
        lambda b: b["kem"].update(pk="AAAA"),
        lambda b: b.update(created="soon"),
    ],
)
def test_malformed_bundles_refused(mutate: object) -> None:
    bundle = copy.deepcopy(KEYS.public.to_json())
    mutate(bundle)  # type: ignore[operator]
    with pytest.raises(MalformedKey):
        PublicBundle.from_json(bundle)


def test_unknown_suite() -> None:
    bundle = copy.deepcopy(KEYS.public.to_json())
    bundle["kem"]["suite"] = "P256"
    with pytest.raises(UnsupportedSuite):
        PublicBundle.from_json(bundle)
    with pytest.raises(UnsupportedSuite):
        generate_device("x", suite="P256")


def test_private_serialisation_round_trip() -> None:
    for keys in (KEYS, generate_device("pol-system-1", suite="X25519", mldsa65=False)):
        again = DeviceKeys.from_bytes(keys.to_bytes())
        assert again.device_id == keys.device_id
        assert again.public == keys.public


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"{}",
        b"[]",
        b'{"v": 1}',
        b"\xff",
        b'{"v":1,"principal":"x",'
        b'"created":"2026-01-01T00:00:00Z","ed25519":"AA","kem":'
        b'{"suite":"X25519","sk":"AA"}}',
    ],
)
def test_malformed_private_keys_refused(blob: bytes) -> None:
    with pytest.raises(MalformedKey):
        DeviceKeys.from_bytes(blob)


def test_repr_never_shows_private_keys() -> None:
    text = repr(KEYS) + str(KEYS)
    assert KEYS.device_id in text
    assert base64.urlsafe_b64encode(KEYS.ed25519).decode()[:20] not in text
