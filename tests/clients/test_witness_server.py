"""Item 23: the witness side of c2sp.org/tlog-witness (`liaison audit witness --serve`).

Every answer the spec names, for a log built here in memory: 200 with a timestamped
cosignature, 409 with the witness's size as `text/x.tlog.size`, 400, 403, 404, 413 and 422;
the state kept on disk (atomically, across restarts, refusing a damaged record), one winner
among concurrent requests, the monitoring path; then the real CLI as a TLS server against the
live service's checkpoint, and the one-shot `audit witness` sharing the same record.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from liaison.clients._witness import MAX_BODY, SIZE_TYPE, Witness, WitnessState, origin_hash, witness_app
from liaison.crypto import merkle, note
from liaison.crypto.encoding import b64encode
from tests.clients.conftest import BIN, PASSPHRASE, Liaison, Server, uid
from tests.service.harness import free_port

ORIGIN = "log.example/test"
LOG = note.parse_signer_key(note.generate_signer_key(ORIGIN)[0])
OTHER_LOG = note.parse_signer_key(note.generate_signer_key(ORIGIN)[0])  # same name, other key
LEAVES = [merkle.leaf_hash(f"entry {i}".encode()) for i in range(300)]
NOW = 1_790_000_000


def checkpoint(
    size: int, signer: note.Signer = LOG, leaves: list[bytes] = LEAVES, origin: str = ORIGIN
) -> str:
    root = merkle.root_from_leaf_hashes(leaves[:size])
    return note.sign_checkpoint(note.Checkpoint(origin, size, root), signer).decode()


def body(old: int, size: int, *, proof: list[bytes] | None = None, signed: str | None = None) -> bytes:
    if proof is None:
        proof = merkle.consistency_proof(LEAVES, old, size) if 0 < old < size else []
    lines = "".join(b64encode(h) + "\n" for h in proof)
    return f"old {old}\n{lines}\n{signed or checkpoint(size)}".encode()


@pytest.fixture
def witness(tmp_path: Path) -> Witness:
    skey, _ = note.generate_signer_key("witness.test", sig_type=note.SIG_COSIGNATURE_V1)
    state = WitnessState(tmp_path / "state.json")
    return Witness(note.parse_signer_key(skey), [LOG.verifier], state, clock=lambda: NOW)


def cosigned(w: Witness, answer_body: bytes, size: int) -> note.Cosignature:
    cp = note.parse_checkpoint(checkpoint(size).split("\n\n")[0] + "\n")
    return note.verify_cosignature_line(answer_body.decode(), cp, [w.signer.verifier])


def test_add_checkpoint_answers(witness: Witness, tmp_path: Path) -> None:
    w = witness
    a = w.add_checkpoint(body(0, 10))
    assert (a.status, a.content_type) == (200, "text/plain; charset=utf-8"), a
    assert cosigned(w, a.body, 10).timestamp == NOW
    assert a.body.decode().startswith("\u2014 witness.test ") and a.body.endswith(b"\n")
    # The old size must be the one it cosigned last: 409 with that size, as text/x.tlog.size.
    for old in (0, 5, 11):
        a = w.add_checkpoint(body(old, 20))
        assert (a.status, a.content_type, a.body) == (409, SIZE_TYPE, b"10\n"), (old, a)
    a = w.add_checkpoint(body(10, 20))
    assert a.status == 200 and cosigned(w, a.body, 20)
    # The same tree again: cosigned again (a fresh timestamp); the same size with another root: 422.
    assert w.add_checkpoint(body(20, 20)).status == 200
    forked = [*LEAVES[:19], merkle.leaf_hash(b"forked")]
    assert w.add_checkpoint(body(20, 20, signed=checkpoint(20, leaves=forked))).status == 422
    # A proof that does not verify, or one that proves another tree: 422, nothing changes.
    bad = merkle.consistency_proof(forked + LEAVES[20:], 20, 40)
    assert w.add_checkpoint(body(20, 40, proof=bad)).status == 422
    assert w.add_checkpoint(body(20, 40, proof=[])).status == 422
    assert w.add_checkpoint(body(20, 40, signed=checkpoint(40, leaves=forked + LEAVES[20:]))).status == 422
    seen = w.state.get(ORIGIN)
    assert seen is not None and (seen.size, seen.root_hash) == (20, merkle.root_from_leaf_hashes(LEAVES[:20]))
    # Refused-but-signed checkpoints are kept as evidence of a misbehaving log.
    kept = [json.loads(line) for line in w.evidence.read_text().splitlines()]
    assert len(kept) == 4 and {k["status"] for k in kept} == {422}
    # Signatures: unknown origin 404; only an unknown key's signature 403; a bad one 403.
    assert w.add_checkpoint(body(20, 40, signed=checkpoint(40, origin="other.example/log"))).status == 404
    assert w.add_checkpoint(body(20, 40, signed=checkpoint(40, signer=OTHER_LOG))).status == 403
    good = checkpoint(40)
    text, line = good.split("\n\n")
    sig = note.parse_signature_line(line.strip())
    bad_sig = note.Signature(sig.name, sig.key_id, bytes([sig.blob[0] ^ 1]) + sig.blob[1:])
    assert w.add_checkpoint(body(20, 40, signed=text + "\n\n" + bad_sig.line)).status == 403
    root40 = b64encode(merkle.root_from_leaf_hashes(LEAVES[:40]))
    assert w.add_checkpoint(body(20, 40, signed=good.replace(root40, b64encode(bytes(32))))).status == 403
    # old > size, and malformed bodies: 400.
    assert w.add_checkpoint(body(41, 40)).status == 400
    for raw in (
        b"",
        b"old 20\n",
        b"old 020\n\n" + good.encode(),
        b"old -1\n\n" + good.encode(),
        b"new 20\n\n" + good.encode(),
        b"old 20\nnot base64\n\n" + good.encode(),
        b"old 20\n" + b64encode(bytes(31)).encode() + b"\n\n" + good.encode(),
        b"old 20\n" + (b64encode(bytes(32)).encode() + b"\n") * 64 + b"\n" + good.encode(),
        b"old 20\n\nnot a checkpoint",
        b"\xff\xfe",
    ):
        assert w.add_checkpoint(raw).status == 400, raw[:40]
    assert w.add_checkpoint(body(20, 40)).status == 200
    assert w.answers[200] == 4 and w.answers[500] == 0


def test_empty_tree_and_proofs_from_zero(witness: Witness) -> None:
    w = witness
    empty = note.sign_checkpoint(note.Checkpoint(ORIGIN, 0, bytes(32)), LOG).decode()
    assert w.add_checkpoint(body(0, 0, signed=empty)).status == 422
    assert w.add_checkpoint(body(0, 8, proof=[LEAVES[0]])).status == 422
    assert w.add_checkpoint(body(0, 0)).status == 200
    assert w.add_checkpoint(body(0, 8)).status == 200


def test_state_survives_restarts_and_refuses_damage(witness: Witness, tmp_path: Path) -> None:
    assert witness.add_checkpoint(body(0, 30)).status == 200
    assert oct(witness.state.path.stat().st_mode & 0o777) == "0o600"
    again = Witness(witness.signer, [LOG.verifier], WitnessState(witness.state.path), clock=lambda: NOW)
    assert again.add_checkpoint(body(0, 40)).body == b"30\n"
    assert again.add_checkpoint(body(30, 40)).status == 200
    witness.state.path.write_text("{not json")
    a = again.add_checkpoint(body(40, 50))
    assert a.status == 500 and b"state" in a.body  # never cosigns over a record it cannot read
    assert again.add_checkpoint(body(0, 50)).status == 500


def test_concurrent_requests_have_one_winner(witness: Witness) -> None:
    """Checking the old size and recording the new one are one atomic step."""
    assert witness.add_checkpoint(body(0, 100)).status == 200
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: witness.add_checkpoint(body(100, n)), range(101, 133)))
    assert sorted(a.status for a in answers).count(200) == 1
    winner = next(n for n, a in zip(range(101, 133), answers, strict=True) if a.status == 200)
    assert all(a.body == f"{winner}\n".encode() for a in answers if a.status == 409)
    assert witness.state.get(ORIGIN).size == winner  # type: ignore[union-attr]


async def test_http_interface(witness: Witness) -> None:
    from tests.service.harness import serve_app

    async with serve_app(witness_app(witness, "/witness")) as base, httpx.AsyncClient(base_url=base) as http:
        r = await http.post("/witness/add-checkpoint", content=body(0, 12))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        r = await http.post("/witness/add-checkpoint", content=body(0, 13))
        assert (r.status_code, r.headers["content-type"], r.text) == (409, SIZE_TYPE, "12\n")
        r = await http.post("/witness/add-checkpoint", content=b"old 12\n" + b"x" * MAX_BODY)
        assert r.status_code == 413
        assert (await http.get("/witness/add-checkpoint")).status_code == 405
        assert (await http.post("/add-checkpoint", content=body(12, 13))).status_code == 404
        r = await http.get(f"/witness/{origin_hash(ORIGIN)}/checkpoint")
        assert r.status_code == 200
        opened = note.open_note(r.content, [LOG.verifier, witness.signer.verifier])
        assert {s.name for s in opened.signatures} == {ORIGIN, "witness.test"}
        assert (await http.get(f"/witness/{origin_hash('other')}/checkpoint")).status_code == 404


def _checkpoint_of(server: Server) -> str:
    return httpx.get(server.url + "/v1/audit/checkpoint", verify=_trust(server)).text


def _trust(server: Server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=server.cert)


def test_cli_serves_over_tls_and_shares_its_record(liaison: Liaison, server: Server) -> None:
    """`liaison audit witness --serve` (the real console script, TLS 1.3) cosigns the live log's
    checkpoint; the one-shot `audit witness` of the same key then keeps to the same record."""
    auditor = uid("witness")
    liaison.principal(auditor, "FRA", "SECRET", "--role", "auditor")
    key = liaison("-p", auditor, "--json", "audit", "witness-key").json()["verifier_key"]
    state = liaison.home / "state" / auditor / "witness-state.json"
    port = free_port()
    env = {**os.environ, "LIAISON_HOME": str(liaison.home), "LIAISON_PASSPHRASE": PASSPHRASE}
    tls = ["--tls-cert", server.cert, "--tls-key", str(Path(server.cert).with_name("key.pem"))]
    args = [str(BIN / "liaison"), "-p", auditor, "audit", "witness", "--serve", "--port", str(port), *tls]
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        url = f"https://localhost:{port}/add-checkpoint"
        signed = _checkpoint_of(server)
        for _ in range(300):
            try:
                r = httpx.post(url, content=f"old 0\n\n{signed}", verify=_trust(server))
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                time.sleep(0.1)
        assert r.status_code == 200, r.text
        cp = note.parse_checkpoint(signed.split("\n\n")[0] + "\n")
        note.verify_cosignature_line(r.text, cp, [note.parse_verifier_key(key)])
        assert r.text.startswith(f"\u2014 {auditor}.witness ")
        # Refuses TLS below 1.3, like the service.
        ctx = _trust(server)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(httpx.TransportError):
            httpx.post(url, content=b"old 0\n\n", verify=ctx)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert "Traceback" not in err.decode(), err.decode()
    assert "POST https://127.0.0.1:" in err.decode() and "cosigned" in err.decode()
    assert json.loads(state.read_text())["logs"][cp.origin]["size"] == cp.size

    # The one-shot witness uses the same record: it moves it forward...
    server.witness_keys.append(key)
    server.restart()
    out = liaison("-p", auditor, "--json", "audit", "witness").json()
    assert json.loads(state.read_text())["logs"][cp.origin]["size"] == out["size"] >= cp.size
    # ...and refuses a log that does not extend what this key cosigned (here: a record that
    # claims another root at that size, as if the key had cosigned a fork).
    doc = json.loads(state.read_text())
    doc["logs"][cp.origin]["root"] = b64encode(bytes(32))
    state.write_text(json.dumps(doc))
    line = liaison.refused("-p", auditor, "audit", "witness")
    assert "inconsistent-log" in line and "fork" in line, line


def test_cli_serve_refusals(liaison: Liaison) -> None:
    args = ["-p", "root", "audit", "witness", "--serve"]
    assert "no witness key" in liaison.refused(*args, "--port", str(free_port()))
    assert "go together" in liaison.refused(*args, "--tls-cert", "/etc/hostname")
    assert "--log-key" in liaison.refused(*args, "--log-key", "not a key")
    assert "--prefix" in liaison.refused(*args, "--prefix", "witness/")
