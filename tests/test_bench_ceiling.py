"""bench/_ceiling.py, the app bench/service.py measures Liaison against: its `envelope` mode
really verifies what it claims to (else the bound it prints would be too high), and its
plain mode checks the request's signature only."""

from __future__ import annotations

import importlib.util
import json
import secrets
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from liaison.crypto.envelope import seal
from liaison.crypto.httpsig import sign_request
from liaison.crypto.keys import DeviceKeys, generate_device
from liaison.crypto.labels import Label

LABEL = Label("coalition-2026", "SECRET", ("UKR", "USA"), ("AIRDEF",))
BASE = "http://testserver"


def _ceiling_module() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "_ceiling.py"
    spec = importlib.util.spec_from_file_location("_ceiling", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def devices() -> tuple[DeviceKeys, DeviceKeys, DeviceKeys]:
    return generate_device("alice"), generate_device("bob"), generate_device("carol")


def _client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, senders: list[DeviceKeys]
) -> httpx.AsyncClient:
    ceiling = _ceiling_module()
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({k.device_id: k.public.to_json() for k in senders}))
    monkeypatch.setenv(ceiling.KEYS_ENV, str(keys))
    monkeypatch.setenv(ceiling.MODE_ENV, mode)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=ceiling.make_app()), base_url=BASE)


async def _post(client: httpx.AsyncClient, signer: DeviceKeys, body: dict[str, Any]) -> int:
    data = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    headers.update(
        sign_request("POST", BASE + "/v1/messages", headers, data, signer, nonce=secrets.token_urlsafe(18))
    )
    return (await client.post("/v1/messages", content=data, headers=headers)).status_code


def _envelope(sender: DeviceKeys, to: DeviceKeys) -> dict[str, Any]:
    return seal(b"x" * 64, channel="bench-00", label=LABEL, sender=sender, recipients=[to.public])


def _forged(env: dict[str, Any], alg: str) -> dict[str, Any]:
    sig = env["signatures"][alg]
    flipped = ("A" if sig[10] != "A" else "B").join((sig[:10], sig[11:]))
    return {**env, "signatures": {**env["signatures"], alg: flipped}}


@pytest.mark.parametrize("alg", ["ed25519", "mldsa65"])
async def test_envelope_mode_refuses_a_forged_signature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, devices: tuple[DeviceKeys, ...], alg: str
) -> None:
    alice, bob, _ = devices
    client = _client(tmp_path, monkeypatch, "envelope", [alice])
    env = _envelope(alice, bob)
    assert await _post(client, alice, {"envelope": env, "to": ["bob"]}) == 201
    assert await _post(client, alice, {"envelope": _forged(env, alg), "to": ["bob"]}) == 422


async def test_envelope_mode_refuses_another_devices_envelope(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, devices: tuple[DeviceKeys, ...]
) -> None:
    alice, bob, carol = devices
    client = _client(tmp_path, monkeypatch, "envelope", [alice, carol])
    assert await _post(client, carol, {"envelope": _envelope(alice, bob), "to": ["bob"]}) == 422


async def test_envelope_mode_refuses_a_body_without_an_envelope(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, devices: tuple[DeviceKeys, ...]
) -> None:
    alice, _, _ = devices
    client = _client(tmp_path, monkeypatch, "envelope", [alice])
    assert await _post(client, alice, {"to": ["bob"]}) == 422
    assert await _post(client, alice, {"envelope": {"v": 2}}) == 422


async def test_signature_mode_checks_the_request_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, devices: tuple[DeviceKeys, ...]
) -> None:
    alice, bob, carol = devices
    client = _client(tmp_path, monkeypatch, "signature", [alice])
    forged = _forged(_envelope(alice, bob), "mldsa65")
    assert await _post(client, alice, {"envelope": forged, "to": ["bob"]}) == 201
    assert await _post(client, carol, {"envelope": forged, "to": ["bob"]}) == 401  # an unknown key
