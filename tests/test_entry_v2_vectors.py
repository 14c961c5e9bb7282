"""The audit entry v2 vectors (tests/vectors/audit-entries-v2): salts and commitments recomputed
with hmac, hashlib and rfc8785 (not liaison.crypto), the library checked against every valid,
invalid and mismatched case, and the generator re-run byte for byte."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from liaison.crypto.commitments import parse_disclosures
from liaison.crypto.entry_v2 import build_entry_v2, open_entry, parse_entry_v2
from liaison.crypto.errors import CommitmentMismatch, MalformedError

HERE = Path(__file__).resolve().parent / "vectors" / "audit-entries-v2"
DOC = json.loads((HERE / "entries.json").read_text("utf-8"))
K_C = hashlib.sha256(b"liaison/v1/commitment-key").digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _salt(seed: bytes, name: str) -> bytes:
    return hmac.new(seed, b"liaison/v1/entry-salt\x00" + name.encode(), hashlib.sha256).digest()[:16]


def _commit(name: str, value: Any, salt: bytes) -> bytes:
    n, j = name.encode(), rfc8785.dumps(value)
    msg = salt + len(n).to_bytes(2, "big") + n + len(j).to_bytes(4, "big") + j
    return hmac.new(K_C, msg, hashlib.sha256).digest()


@pytest.mark.parametrize("case", DOC["valid"], ids=lambda c: c["about"])
def test_valid_entries(case: dict[str, Any]) -> None:
    seed = bytes.fromhex(case["seed"])
    for name, value in case["committed"].items():
        salt = _salt(seed, name)
        assert _b64(salt) == case["salts"][name]
        assert _b64(_commit(name, value, salt)) == case["commitments"][name]
    expected = rfc8785.dumps(
        {
            "v": 2,
            "type": case["type"],
            "hour": "2026-12-01T05:00:00Z",
            "clear": case["clear"],
            "c": case["commitments"],
        }
    )
    assert case["entry"].encode() == expected
    when = datetime(2026, 12, 1, 5, 42, 17, 123000, tzinfo=UTC)
    data, disclosures = build_entry_v2(case["type"], when, case["clear"], case["committed"], seed)
    assert data == expected
    entry = parse_entry_v2(data)
    assert open_entry(entry, parse_disclosures(case["disclosures"])) == case["committed"]
    assert {k: d.to_json() for k, d in disclosures.items()} == case["disclosures"]


@pytest.mark.parametrize("case", DOC["invalid"], ids=lambda c: c["about"])
def test_invalid_entries(case: dict[str, str]) -> None:
    with pytest.raises(MalformedError, match=case["error"]):
        parse_entry_v2(case["entry"].encode())


@pytest.mark.parametrize("case", DOC["mismatched"]["cases"], ids=lambda c: c["about"])
def test_mismatched_openings(case: dict[str, Any]) -> None:
    entry = parse_entry_v2(DOC["mismatched"]["entry"].encode())
    with pytest.raises(CommitmentMismatch):
        open_entry(entry, parse_disclosures({case["name"]: case["disclosure"]}))


def test_the_generator_rewrites_the_file_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(HERE / "generate.py"), "--check", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert (tmp_path / "entries.json").read_bytes() == (HERE / "entries.json").read_bytes()
