"""The envelope v2 vectors (tests/vectors/envelope-v2, protocol 5.2): each opens, or fails
with exactly its error, for each of its readers; and the generator rewrites them byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from liaison.crypto import errors
from liaison.crypto.encoding import b64url_decode
from liaison.crypto.envelope import open_envelope, parse_envelope
from liaison.crypto.keys import DeviceKeys, PublicBundle

HERE = Path(__file__).parent / "vectors" / "envelope-v2"
CASES = sorted(p for p in HERE.glob("*.json") if p.name not in ("keys.json", "wraps.json"))


def _keys() -> dict[str, DeviceKeys]:
    out = {}
    for name, k in json.loads((HERE / "keys.json").read_text()).items():
        priv, bundle = k["private"], k["bundle"]
        keys = DeviceKeys(
            bundle["principal"],
            bundle["created"],
            bytes.fromhex(priv["ed25519"]),
            None,
            priv["kem_suite"],
            bytes.fromhex(priv["kem"]),
        )
        assert keys.device_id == k["device"] and keys.public.kem_key_id == k["key_id"]
        assert keys.public.to_json() == bundle
        out[name] = keys
    return out


KEYS = _keys()


def test_there_are_as_many_invalid_vectors_as_valid_ones() -> None:
    names = [p.stem for p in CASES]
    valid = [n for n in names if n.startswith("valid-")]
    invalid = [n for n in names if n.startswith("invalid-")]
    assert len(valid) + len(invalid) == len(names) and len(invalid) >= len(valid) >= 5


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_vector(path: Path) -> None:
    case: dict[str, Any] = json.loads(path.read_text())
    sender = PublicBundle.from_json(case["sender"])
    for reader, expect in case["expect"].items():
        if "error" in expect:
            wanted = getattr(errors, expect["error"])
            with pytest.raises(wanted) as caught:
                open_envelope(case["envelope"], KEYS[reader], sender)
            assert type(caught.value) is wanted, f"{reader}: {caught.value!r}"
            if wanted is errors.MalformedEnvelope:  # what a server refuses too
                with pytest.raises(errors.MalformedEnvelope):
                    parse_envelope(case["envelope"])
        else:
            opened = open_envelope(case["envelope"], KEYS[reader], sender)
            assert opened.content_type == expect["content_type"]
            if "content" in expect:
                assert opened.plaintext == b64url_decode(expect["content"])
            import hashlib

            assert hashlib.sha256(opened.plaintext).hexdigest() == expect["content_sha256"]
            assert [a.to_json() for a in opened.attachments] == expect.get("attachments", [])
            assert parse_envelope(case["envelope"]).padded_size >= 1024


def test_the_generator_rewrites_every_file_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(HERE / "generate.py"), "--check", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    written = sorted(p.name for p in tmp_path.iterdir())
    here = sorted(p.name for p in HERE.iterdir() if p.suffix == ".json")
    assert written == here
    for name in written:
        assert (tmp_path / name).read_bytes() == (HERE / name).read_bytes(), name
