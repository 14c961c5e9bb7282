"""The unlock agent process: holds unlocked device keys in memory and performs, for this user
only, the private operations the `liaison` CLI needs. Started by `liaison unlock`
(`_agent.start`); `python -m liaison.clients._agent_server --socket PATH --idle SECONDS`.

What it does for a connection (checked to be this user's, SO_PEERCRED, on a 0600 socket in a
0700 directory):

* `hello`: its pid, idle timeout and the profiles it holds (names, principals, devices);
* `add`: take a profile's keys (sent once by `unlock`, which opened them with the passphrase);
* `public`: a profile's public bundle;
* `sign`: sign an *envelope* (domain `liaison/v2/envelope` only: never a key bundle or an
  enrolment proof, which only enrolment makes, with fresh keys, nor a directory statement,
  which the CLI signs with the profile's own keys, opened with the passphrase);
* `sign-http`: sign an RFC 9421 signature base of a request by this very device;
* `unwrap`: open an envelope's wrapped content key for this device (`info` bound to the
  envelope id and this device; never an enrolment challenge);
* `lock`: forget one profile's keys, or all of them and exit.

Keys are never written anywhere and never sent back. After `idle` seconds without a request
that uses them (or on SIGTERM/SIGINT) it forgets them, removes its socket and exits. It makes
itself non-dumpable (no core file; other processes of the user cannot ptrace it or read its
memory through /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fcntl
import json
import os
import resource
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from liaison.crypto.envelope import ENVELOPE_DOMAIN_V2, WRAP_DOMAIN, WRAP_DOMAIN_V2
from liaison.crypto.errors import CryptoError
from liaison.crypto.keys import DeviceKeys

from ._agent import MAX_FRAME, b64, peer_uid, unb64

__all__ = ["Agent", "main"]

_PR_GET_DUMPABLE, _PR_SET_DUMPABLE = 3, 4
#: Operations that use a profile's keys: each one restarts the idle clock.
_USES = frozenset({"add", "public", "sign", "sign-http", "unwrap"})
_HTTP_BASE_START = b'"@method": '


def _wrap_info_of(info: bytes, keys: DeviceKeys) -> bool:
    """Whether `info` is the HPKE info of an envelope key wrapped to this very device: v2
    (domain, envelope id, device id, this device's KEM key id) or v1 (domain, id, device)."""
    parts = info.split(b"\x00")
    device = keys.device_id.encode()
    if parts[0] == WRAP_DOMAIN_V2:
        return len(parts) == 4 and parts[2] == device and parts[3] == keys.public.kem_key_id.encode()
    return parts[0] == WRAP_DOMAIN and len(parts) == 3 and parts[2] == device


class Refused(Exception):
    """A request the agent will not perform; the message goes back to the client."""


class Agent:
    """The keys by profile name, the idle clock, and what each request does (no I/O)."""

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self.keys: dict[str, DeviceKeys] = {}
        self.last_use = time.monotonic()
        self.done = asyncio.Event()
        self.stopping = False  # set by the last `lock`: exit once its answer is sent

    def _keys(self, req: dict[str, Any]) -> DeviceKeys:
        keys = self.keys.get(str(req.get("profile")))
        if keys is None:
            raise Refused(f"profile {req.get('profile')!r} is not unlocked")
        return keys

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op in _USES:
            self.last_use = time.monotonic()
        try:
            return {"ok": True, **self._do(op, req)}
        except Refused as e:
            return {"ok": False, "detail": str(e)}
        except (ValueError, TypeError, CryptoError) as e:
            return {"ok": False, "detail": f"malformed request ({type(e).__name__})"}

    def _do(self, op: Any, req: dict[str, Any]) -> dict[str, Any]:
        if op == "hello":
            return {
                "pid": os.getpid(),
                "dumpable": _dumpable(),
                "idle": self.idle,
                "idle_left": max(0.0, self.idle - (time.monotonic() - self.last_use)),
                "profiles": [
                    {"profile": name, "principal": k.principal, "device": k.device_id}
                    for name, k in sorted(self.keys.items())
                ],
            }
        if op == "add":
            keys = DeviceKeys.from_bytes(unb64(req.get("keys")))
            name = req.get("profile")
            if not isinstance(name, str) or not name:
                raise Refused("add needs a profile name")
            if keys.device_id != req.get("device"):
                raise Refused("the keys are not the device the profile names")
            if isinstance(req.get("idle"), int | float) and 1 <= req["idle"] <= 7 * 86400:
                self.idle = float(req["idle"])
            self.keys[name] = keys
            return {"principal": keys.principal, "device": keys.device_id}
        if op == "public":
            return {"bundle": self._keys(req).public.to_json()}
        if op == "sign":
            keys = self._keys(req)
            if unb64(req.get("domain")) != ENVELOPE_DOMAIN_V2:
                raise Refused("the agent signs envelopes and requests only")
            return {"signatures": keys.sign(ENVELOPE_DOMAIN_V2, unb64(req.get("message")))}
        if op == "sign-http":
            keys = self._keys(req)
            base = unb64(req.get("base"))
            # A request signature base names its device in its last line's keyid parameter.
            last = base.rsplit(b"\n", 1)[-1]
            if not base.startswith(_HTTP_BASE_START) or f';keyid="{keys.device_id}";'.encode() not in last:
                raise Refused("not a request signature base of this device")
            return {"signature": b64(keys.sign_http_base(base))}
        if op == "unwrap":
            keys = self._keys(req)
            info = unb64(req.get("info"))
            if not _wrap_info_of(info, keys):
                raise Refused("the agent unwraps envelope keys for its own device only")
            try:
                key = keys.unwrap(unb64(req.get("sealed")), info)
            except Exception:  # the HPKE layer's error (it has no public class): it does not open
                return {"opened": False}
            return {"opened": True, "key": b64(key)}
        if op == "lock":
            name = req.get("profile")
            if name is None:
                self.keys.clear()
            else:
                self.keys.pop(str(name), None)
            self.stopping = not self.keys
            return {"left": sorted(self.keys)}
        raise Refused(f"unknown operation {op!r}")


async def _read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    try:
        (n,) = struct.unpack(">I", await reader.readexactly(4))
        if n > MAX_FRAME:
            return None
        obj = json.loads(await reader.readexactly(n))
    except (asyncio.IncompleteReadError, ValueError, ConnectionError):
        return None
    return obj if isinstance(obj, dict) else None


async def _serve_one(agent: Agent, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        sock = writer.get_extra_info("socket")
        # The directory and the socket's mode already keep other users out; this is the check
        # that does not depend on them (root can always connect, as to any user's process).
        if sock is None or peer_uid(sock) != os.getuid():
            return
        req = await _read_frame(reader)
        if req is None:
            return
        answer = agent.handle(req)
        data = json.dumps(answer, separators=(",", ":")).encode()
        writer.write(struct.pack(">I", len(data)) + data)
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
        if agent.stopping:
            agent.done.set()


async def _run(agent: Agent, sock: socket.socket) -> None:
    server = await asyncio.start_unix_server(lambda r, w: _serve_one(agent, r, w), sock=sock)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, agent.done.set)
    try:
        while not agent.done.is_set():
            left = agent.idle - (time.monotonic() - agent.last_use)
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(agent.done.wait(), min(left, 60))
    finally:
        agent.keys.clear()
        server.close()
        await server.wait_closed()


def _dumpable() -> bool | None:
    """Whether this process may be dumped or ptraced by its user (Linux; None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    return bool(ctypes.CDLL(None, use_errno=True).prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))


def _harden() -> None:
    """No core file, and not dumpable: other processes of this user cannot ptrace it or read
    its memory through /proc (Linux; a no-op elsewhere)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def _listen(path: Path) -> tuple[socket.socket, int] | None:
    """Take the agent's lock and listen on `path` (mode 0600); None if another agent holds
    the lock (it serves this home already)."""
    lock = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        return None
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a socket left by an agent that died: we hold the lock now
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # 0600 from the moment it exists
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(64)
    return sock, lock


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="liaison-agent", description="The liaison unlock agent.")
    ap.add_argument("--socket", type=Path, required=True)
    ap.add_argument("--idle", type=float, required=True)
    args = ap.parse_args(argv)
    if not hasattr(socket, "SO_PEERCRED"):
        sys.stderr.write("the unlock agent needs SO_PEERCRED (Linux), to check who connects\n")
        return 1
    _harden()
    try:
        listening = _listen(args.socket)
    except OSError as e:
        sys.stderr.write(f"cannot listen on {args.socket}: {e.strerror}\n")
        return 1
    if listening is None:
        return 0  # another agent serves this home
    sock, _lock = listening
    # Listening: the parent (`liaison unlock`) may connect as soon as this one exits.
    if os.fork() != 0:
        os._exit(0)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        asyncio.run(_run(Agent(args.idle), sock))
    finally:
        # Still holding the lock: no other agent can have taken this path since.
        with contextlib.suppress(FileNotFoundError):
            args.socket.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
