"""The unlock agent through the real CLI against a live server: unlock once, then commands need
no passphrase; private operations happen in the agent, for this user only; lock and the idle
timeout forget the keys. Each test runs its own agent in its own runtime directory and stops it."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from liaison.clients import _agent
from liaison.crypto.envelope import ENVELOPE_DOMAIN, ENVELOPE_DOMAIN_V2, WRAP_DOMAIN, wrap_info_v2
from liaison.crypto.keys import BUNDLE_DOMAIN, KEM_CHALLENGE_INFO, verify_signatures
from tests.clients.conftest import BIN, Liaison, uid
from tests.clients.test_cli import world

LABEL = "SECRET//AIRDEF//REL TO FRA, UKR, USA"


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private XDG_RUNTIME_DIR (short: a socket path has at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="lr"))
    os.chmod(path, 0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(path))
    try:
        yield path
    finally:
        for sock in path.glob("liaison/agent-*.sock"):
            _stop(sock)
        shutil.rmtree(path, ignore_errors=True)


def _stop(sock: Path) -> None:
    """Stop the agent serving `sock`, if it still runs (and wait until it has gone)."""
    agent = _agent.AgentClient(sock)
    hello = agent.alive()
    if hello is None:
        return
    agent.call("lock")
    _wait_gone(int(hello["pid"]))


def _wait_gone(pid: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"agent {pid} still runs")


def _no_passphrase(liaison: Liaison, *args: str, ok: bool = True) -> Any:
    """Run with no passphrase anywhere: only the agent can open the profile."""
    liaison.monkeypatch.delenv("LIAISON_PASSPHRASE", raising=False)
    from liaison.clients import _cli_common

    _cli_common.PASSPHRASE.clear()
    r = liaison.runner.invoke(__import__("liaison.clients.cli", fromlist=["app"]).app, list(args))
    if ok:
        assert r.exit_code == 0, r.stderr
    return r


def test_unlock_then_no_passphrase_then_lock(liaison: Liaison, runtime: Path) -> None:
    n = world(liaison)
    # Without an agent, a command with no passphrase (and no terminal) is refused.
    r = _no_passphrase(liaison, "-p", n["ukr"], "whoami", ok=False)
    assert r.exit_code == 1 and "LIAISON_PASSPHRASE" in r.stderr
    for pid in (n["usa"], n["ukr"]):
        out = liaison("-p", pid, "--json", "unlock", "--idle-timeout", "10m").json()
        assert out["profile"] == pid and out["idle_timeout"] == 600
    agent_pid = out["agent_pid"]
    assert liaison("-p", n["usa"], "--json", "unlock").json()["agent_pid"] == agent_pid  # reused

    # Whoami, send (the envelope signed by the agent), inbox, read (its key unwrapped there).
    me = json.loads(_no_passphrase(liaison, "-p", n["ukr"], "--json", "whoami").stdout)
    assert me["principal"] == n["ukr"]
    sent = json.loads(
        liaison.runner.invoke(
            __import__("liaison.clients.cli", fromlist=["app"]).app,
            ["-p", n["usa"], "--json", "send", "-c", n["chan"], "-l", LABEL],
            input="via the agent",
        ).stdout
    )
    assert sent["recipients"] == 2
    got = json.loads(_no_passphrase(liaison, "-p", n["ukr"], "--json", "read", sent["id"][:13]).stdout)
    assert got["text"] == "via the agent" and got["id"] == sent["id"]

    listed = json.loads(_no_passphrase(liaison, "--json", "unlock", "--list").stdout)
    assert listed["pid"] == agent_pid
    assert {p["profile"] for p in listed["profiles"]} == {n["usa"], n["ukr"]}
    assert listed["idle"] == 900 and 0 < listed["idle_left"] <= 900  # the last unlock's (default) timeout

    # A profile the agent does not hold still asks for the passphrase.
    assert _no_passphrase(liaison, "-p", n["fra"], "whoami", ok=False).exit_code == 1
    assert liaison("-p", n["fra"], "--json", "whoami").json()["principal"] == n["fra"]

    # Lock one profile, then all: the agent stops, and the passphrase is needed again.
    assert liaison("-p", n["usa"], "--json", "lock").json()["still_unlocked"] == [n["ukr"]]
    assert _no_passphrase(liaison, "-p", n["usa"], "whoami", ok=False).exit_code == 1
    assert liaison("--json", "lock").json() == {"agent": True, "profile": None, "still_unlocked": []}
    _wait_gone(agent_pid)
    assert _no_passphrase(liaison, "-p", n["ukr"], "whoami", ok=False).exit_code == 1
    assert "nothing to lock" in liaison("lock").stdout


def test_socket_and_directory_are_private_and_nothing_is_written(liaison: Liaison, runtime: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in liaison.home.rglob("*")}
    liaison("-p", "root", "unlock")
    sock = _agent.socket_path(liaison.home)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600 and stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    assert sock.parent == runtime / "liaison"
    assert sorted(p.name for p in sock.parent.iterdir()) == sorted(
        [sock.name, sock.with_suffix(".lock").name]
    )
    assert sock.with_suffix(".lock").stat().st_size == 0  # nothing but a lock
    # The key store is untouched: the agent keeps the keys in memory only.
    assert {p: p.stat().st_mtime_ns for p in liaison.home.rglob("*")} == before
    hello = _agent.AgentClient(sock).call("hello")
    if sys.platform.startswith("linux"):  # no core file, no ptrace, no /proc/PID/mem for the user
        assert hello["dumpable"] is False
        limits = Path(f"/proc/{hello['pid']}/limits").read_text().splitlines()
        assert [line.split()[4:6] for line in limits if line.startswith("Max core file size")] == [["0", "0"]]
    # The agent refuses a runtime directory others could enter.
    os.chmod(sock.parent, 0o755)
    try:
        r = liaison("-p", "root", "whoami", ok=True)  # falls back to the passphrase, never the agent
        assert "root" in r.stdout
        with pytest.raises(_agent.AgentError, match="not a private directory"):
            _agent.socket_path(liaison.home)
    finally:
        os.chmod(sock.parent, 0o700)


def _keys(liaison: Liaison, profile: str) -> Any:
    from liaison.clients.keystore import KeyStore

    return KeyStore(liaison.home).load(profile, liaison.passphrase)[1]


def test_the_agent_performs_only_the_operations_commands_need(liaison: Liaison, runtime: Path) -> None:
    """Someone who can talk to the agent gets envelope and request signatures and envelope keys
    of this device, and nothing else: no bundle or enrolment-proof signature, no enrolment
    challenge opened, no request base of another device signed, the keys never given out."""
    liaison("-p", "root", "unlock")
    agent = _agent.AgentClient(_agent.socket_path(liaison.home))
    keys = _keys(liaison, "root")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    ok = agent.call("sign", profile="root", domain=b64(ENVELOPE_DOMAIN_V2), message=b64(b"{}"))
    assert ok["signatures"]["ed25519"] == keys.sign(ENVELOPE_DOMAIN_V2, b"{}")["ed25519"]  # deterministic
    verify_signatures(
        keys.public, ENVELOPE_DOMAIN_V2, b"{}", ok["signatures"], required=keys.public.algorithms
    )
    for domain in (BUNDLE_DOMAIN, b"liaison/v1/kem-proof", b"", ENVELOPE_DOMAIN):  # v1: no new ones
        with pytest.raises(_agent.AgentError, match="envelopes and requests only"):
            agent.call("sign", profile="root", domain=b64(domain), message=b64(b"{}"))
    base = (
        f'"@method": GET\n"@signature-params": ("@method");created=1;keyid="{keys.device_id}";alg="ed25519"'
    )
    assert agent.call("sign-http", profile="root", base=b64(base.encode()))["signature"]
    for bad in (base.replace(keys.device_id, "d_" + "a" * 26), "liaison/v1/envelope\x00" + base):
        with pytest.raises(_agent.AgentError, match="not a request signature base"):
            agent.call("sign-http", profile="root", base=b64(bad.encode()))
    challenge_info = KEM_CHALLENGE_INFO + b"\x00" + keys.device_id.encode()
    wrap_v1 = WRAP_DOMAIN + b"\x00" + b"some-envelope" + b"\x00" + keys.device_id.encode()
    wrap_v2 = wrap_info_v2("some-envelope", keys.device_id, keys.public.kem_key_id)
    other_key = wrap_info_v2("some-envelope", keys.device_id, "k_" + "a" * 26)
    for refused in (challenge_info, other_key):
        with pytest.raises(_agent.AgentError, match="its own device only"):
            agent.call("unwrap", profile="root", sealed=b64(b"x" * 64), info=b64(refused))
    for info in (wrap_v1, wrap_v2):
        assert agent.call("unwrap", profile="root", sealed=b64(b"x" * 64), info=b64(info)) == {
            "ok": True,
            "opened": False,
        }
    answer = agent.call("public", profile="root")
    assert answer == {"ok": True, "bundle": keys.public.to_json()}  # the public half only
    for op in ("export", "keys", "dump"):
        with pytest.raises(_agent.AgentError, match="unknown operation"):
            agent.call(op, profile="root")
    with pytest.raises(_agent.AgentError, match="not unlocked"):
        agent.call("public", profile="nobody")
    # AgentKeys refuses to serialise what it does not hold.
    held = _agent.keys_for(liaison.home, "root", keys.device_id)
    assert held is not None
    with pytest.raises(_agent.AgentError, match="never leave"):
        held.to_bytes()
    assert _agent.keys_for(liaison.home, "root", "d_" + "b" * 26) is None  # another device: not used


@pytest.mark.skipif(
    not hasattr(os, "setuid") or os.geteuid() != 0, reason="needs root to act as another user"
)
def test_another_user_is_refused_even_through_an_open_socket(liaison: Liaison, runtime: Path) -> None:
    """The directory and the socket keep other users out; if both were opened up, the agent's
    own peer check still answers nothing to another uid."""
    liaison("-p", "root", "unlock")
    sock = _agent.socket_path(liaison.home)
    os.chmod(runtime, 0o711)
    os.chmod(sock.parent, 0o711)
    os.chmod(sock, 0o777)
    probe = (
        "import os, socket, struct, sys, json\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "req = json.dumps({'op': 'public', 'profile': 'root'}).encode()\n"
        "try:\n"
        "    s.sendall(struct.pack('>I', len(req)) + req)\n"
        "    print(repr(s.recv(100)))\n"
        "except (BrokenPipeError, ConnectionResetError):\n"
        "    print('closed')\n"
    )
    try:
        r = subprocess.run(
            [sys.executable, "-c", probe, str(sock)], capture_output=True, timeout=30, check=False
        )
    finally:
        os.chmod(sock, 0o600)
        os.chmod(sock.parent, 0o700)
        os.chmod(runtime, 0o700)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() in ("b''", "closed")  # connected, and closed without a word
    assert _agent.AgentClient(sock).call("public", profile="root")["bundle"]  # we still are served


def test_idle_timeout_forgets_the_keys(liaison: Liaison, runtime: Path) -> None:
    out = liaison("-p", "root", "--json", "unlock", "--idle-timeout", "1s").json()
    _wait_gone(out["agent_pid"])
    assert not _agent.socket_path(liaison.home).exists()
    assert _no_passphrase(liaison, "-p", "root", "whoami", ok=False).exit_code == 1
    for bad in ("0", "8d", "soon", "-5m"):
        line = liaison.refused("-p", "root", "unlock", "--idle-timeout", bad)
        assert "not a duration" in line


def test_the_real_console_script_uses_the_agent(liaison: Liaison, runtime: Path) -> None:
    name = uid("usa")
    liaison.principal(name, "USA", "SECRET")
    env = {k: v for k, v in os.environ.items() if k != "LIAISON_PASSPHRASE"}
    env.update(LIAISON_HOME=str(liaison.home), XDG_RUNTIME_DIR=str(runtime))
    unlock = subprocess.run(
        [str(BIN / "liaison"), "-p", name, "unlock"],
        capture_output=True,
        env={**env, "LIAISON_PASSPHRASE": liaison.passphrase},
        timeout=120,
        check=False,
    )
    assert unlock.returncode == 0, unlock.stderr
    assert b"Unlocked profile" in unlock.stdout
    pid = json.loads(
        subprocess.run(
            [str(BIN / "liaison"), "--json", "unlock", "--list"],
            capture_output=True,
            env=env,
            timeout=60,
            check=True,
        ).stdout
    )["pid"]
    environ = Path(f"/proc/{pid}/environ")
    if environ.exists() and os.geteuid() != 0:
        with pytest.raises(PermissionError):  # not dumpable: not even its owner reads it
            environ.read_bytes()
    r = subprocess.run(
        [str(BIN / "liaison"), "-p", name, "--json", "whoami"],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["principal"] == name


def _frame(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj).encode()
    return struct.pack(">I", len(data)) + data


def test_a_malformed_or_huge_request_is_answered_or_dropped(liaison: Liaison, runtime: Path) -> None:
    liaison("-p", "root", "unlock")
    sock_path = _agent.socket_path(liaison.home)
    for payload in (
        b"\x00\x00\x00\x05nojso",
        struct.pack(">I", _agent.MAX_FRAME + 1),
        _frame({"op": "sign", "profile": "root", "domain": "%%%", "message": 3}),
        b"\x00\x00",
    ):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(sock_path))
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            answer = s.recv(1000)
        assert answer == b"" or b'"ok":false' in answer
    assert _agent.AgentClient(sock_path).call("hello")["profiles"][0]["profile"] == "root"


def test_a_directory_change_while_unlocked_asks_for_the_passphrase(liaison: Liaison, runtime: Path) -> None:
    """Found by the demo once it unlocked its admins: a directory change (here a new principal,
    a statement the admin's device signs) read the private key fields of the agent's keys,
    which are empty, and the CLI died with a traceback. The agent signs envelopes only: the
    statement is signed with the profile's own keys, opened with the passphrase, as without
    the agent; with no passphrase to be had, a one-line refusal."""
    liaison("-p", "root", "unlock", "--idle-timeout", "10m")
    pid = uid("via-agent")
    create = ["-p", "root", "--json", "admin", "principal", "create", pid, "--name", "Made while unlocked",
              "--nation", "USA", "--clearance", "SECRET"]  # fmt: skip
    r = _no_passphrase(liaison, *create, ok=False)
    assert isinstance(r.exception, SystemExit) and r.exit_code == 1, repr(r.exception)
    assert "LIAISON_PASSPHRASE" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr

    made = liaison(*create).json()  # the passphrase at hand: signed with the profile's keys
    assert made["id"] == pid
    listed = _no_passphrase(liaison, "-p", "root", "--json", "admin", "principal", "list", "--search", pid)
    assert [p["id"] for p in json.loads(listed.stdout)] == [pid]  # reads still need no passphrase
