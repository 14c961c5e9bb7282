"""The unlock agent, client side: where its socket is, how to talk to it, keys that sign there.

`liaison unlock` opens a profile once (passphrase, Argon2id) and hands its private keys to a
per-user agent process (`_agent_server`), as `ssh-add` does to ssh-agent. Later commands find
the agent's socket and use `AgentKeys`: the public half here, every private operation (sign
an envelope, sign an HTTP request, unwrap an envelope's content key) performed by the agent,
so the keys never come back out of it. Without an agent, or for a profile it does not hold,
commands open the profile with the passphrase as before.

Where: one agent per `$LIAISON_HOME`, its socket `agent-<hash of the home>.sock` in a 0700
directory of this user: `$XDG_RUNTIME_DIR/liaison`, else `<tmp>/liaison-<uid>` (created 0700
and refused if it is not exactly that: a directory, not a link, owned by this user, no group
or other bits). The socket is 0600 and the agent also checks each connection's peer uid
(SO_PEERCRED); the client checks the agent's uid the same way.

Protocol: each request and answer is a 4-byte big-endian length and a JSON object, one
request per connection. `docs/client.md` ("The unlock agent") says what it protects.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import socket
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from liaison.crypto.envelope import ENVELOPE_DOMAIN_V2
from liaison.crypto.errors import CryptoError, DecryptionFailed
from liaison.crypto.keys import DeviceKeys, PublicBundle

from .errors import KeyStoreError

__all__ = [
    "DEFAULT_IDLE",
    "AgentClient",
    "AgentError",
    "AgentKeys",
    "keys_for",
    "parse_duration",
    "runtime_dir",
    "socket_path",
    "start",
]

#: Forget the keys after this long without use (seconds), unless `unlock --idle-timeout`.
DEFAULT_IDLE = 15 * 60
#: The largest frame either side accepts: an envelope to sign is at most the policy's largest
#: message (10 MiB), base64 twice over, plus its wrapped keys.
MAX_FRAME = 64 * 1024 * 1024
_START_WAIT = 30.0
_TIMEOUT = 60.0
_DURATION = re.compile(r"^(\d{1,7})([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class AgentError(KeyStoreError):
    """The agent is unreachable, refused a request, or its directory is not private."""


def parse_duration(text: str) -> int:
    """Seconds from `900`, `30s`, `15m`, `2h` or `1d` (1 second to 7 days)."""
    m = _DURATION.fullmatch(text.strip().lower())
    seconds = int(m.group(1)) * _UNITS[m.group(2)] if m else 0
    if not 1 <= seconds <= 7 * 86400:
        raise AgentError(f"{text!r} is not a duration of 1s to 7d (e.g. 900, 30s, 15m, 2h)")
    return seconds


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not base64")
    return base64.b64decode(value, validate=True)


# --- where -------------------------------------------------------------------------------


def _private(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def runtime_dir(*, create: bool = True) -> Path:
    """This user's private directory for agent sockets (created 0700 if missing and `create`;
    AgentError if it is not private, or missing and not to be created)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() and _ok(Path(xdg)) else None
    path = base / "liaison" if base else Path(tempfile.gettempdir()) / f"liaison-{os.getuid()}"
    if create:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
    try:
        if not _private(path):
            raise AgentError(f"{path} is not a private directory of this user (0700): not used for the agent")
    except OSError as e:
        raise AgentError(f"cannot use {path}: {e.strerror}") from None
    return path


def _ok(path: Path) -> bool:
    try:
        return _private(path)
    except OSError:
        return False


def socket_path(home: Path, *, create: bool = True) -> Path:
    """The agent socket of the key store at `home` (one agent per home)."""
    tag = hashlib.sha256(str(Path(home).expanduser().resolve()).encode()).hexdigest()[:16]
    return runtime_dir(create=create) / f"agent-{tag}.sock"


# --- frames --------------------------------------------------------------------------------


def send_frame(sock: socket.socket, obj: dict[str, Any]) -> None:
    data = json.dumps(obj, separators=(",", ":")).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise ConnectionError("the agent closed the connection")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket) -> dict[str, Any]:
    (n,) = struct.unpack(">I", _read_exactly(sock, 4))
    if n > MAX_FRAME:
        raise ConnectionError("the agent's answer is too large")
    obj = json.loads(_read_exactly(sock, n))
    if not isinstance(obj, dict):
        raise ConnectionError("the agent's answer is not a JSON object")
    return obj


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (Linux: SO_PEERCRED)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        raise AgentError("the unlock agent needs SO_PEERCRED (Linux): not available here")
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


# --- talking to it -------------------------------------------------------------------------


class AgentClient:
    """Requests to the agent at `path`, one connection each."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """The agent's answer to `op`; AgentError if it cannot be reached or refuses."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(_TIMEOUT)
                sock.connect(str(self.path))
                if peer_uid(sock) != os.getuid():
                    raise AgentError(f"{self.path} is served by another user: not used")
                send_frame(sock, {"op": op, **fields})
                answer = recv_frame(sock)
        except (OSError, ValueError) as e:
            raise AgentError(f"the unlock agent did not answer ({e}): run 'liaison unlock' again") from None
        if answer.get("ok") is not True:
            raise AgentError(f"the unlock agent refused: {answer.get('detail', 'no reason given')}")
        return answer

    def alive(self) -> dict[str, Any] | None:
        """The agent's `hello` answer, or None when none answers at `path`."""
        if not self.path.exists():
            return None
        try:
            return self.call("hello")
        except AgentError:
            return None


class AgentKeys(DeviceKeys):
    """A device's keys held by the agent: the public bundle here, every private operation
    there. A `DeviceKeys` for everything that takes one (`AsyncClient`, `seal`,
    `open_envelope`, `sign_request`); its private key fields are empty.

    The agent signs envelopes only. What else a command signs (a directory statement: a new
    principal, a channel's members, a revoked device, an enrolment code) is signed with the
    profile's own keys, which `opener` opens with the passphrase the first time one is needed,
    as without the agent; with no `opener` such a signature is refused (AgentError)."""

    def __init__(
        self,
        agent: AgentClient,
        profile: str,
        public: PublicBundle,
        opener: Callable[[], DeviceKeys] | None = None,
    ) -> None:
        super().__init__(public.principal, public.created, b"", None, public.kem_suite, b"")
        self.__dict__["public"] = public  # the cached_property's value: no private key to derive it
        self.__dict__["_agent"] = agent
        self.__dict__["_profile"] = profile
        self.__dict__["_opener"] = opener
        self.__dict__["_own"] = None

    def _call(self, op: str, **fields: Any) -> dict[str, Any]:
        agent: AgentClient = self.__dict__["_agent"]
        return agent.call(op, profile=self.__dict__["_profile"], **fields)

    def _own_keys(self) -> DeviceKeys:
        own: DeviceKeys | None = self.__dict__["_own"]
        if own is None:
            opener: Callable[[], DeviceKeys] | None = self.__dict__["_opener"]
            if opener is None:
                raise AgentError("the unlock agent signs envelopes only: this needs the profile's own keys")
            own = opener()
            if own.device_id != self.device_id:
                raise AgentError("the profile's keys are not the device the unlock agent holds")
            self.__dict__["_own"] = own
        return own

    def sign(self, domain: bytes, message: bytes) -> dict[str, str]:
        if domain != ENVELOPE_DOMAIN_V2:
            return self._own_keys().sign(domain, message)
        signatures = self._call("sign", domain=b64(domain), message=b64(message)).get("signatures")
        if not isinstance(signatures, dict) or not all(isinstance(v, str) for v in signatures.values()):
            raise AgentError("the unlock agent's signatures are malformed")
        return {str(k): v for k, v in signatures.items()}

    def sign_http_base(self, base: bytes) -> bytes:
        try:
            return unb64(self._call("sign-http", base=b64(base)).get("signature"))
        except ValueError:
            raise AgentError("the unlock agent's signature is malformed") from None

    def unwrap(self, sealed: bytes, info: bytes) -> bytes:
        answer = self._call("unwrap", sealed=b64(sealed), info=b64(info))
        if answer.get("opened") is not True:
            raise DecryptionFailed("the wrapped key for this device does not unwrap")
        try:
            return unb64(answer.get("key"))
        except ValueError:
            raise AgentError("the unlock agent's answer is malformed") from None

    def answer_kem_challenge(self, sealed: bytes) -> dict[str, Any]:
        raise AgentError("enrolment makes new keys: it never uses the unlock agent")

    def to_bytes(self) -> bytes:
        raise AgentError("the unlock agent's keys never leave it")


def keys_for(
    home: Path, profile: str, device_id: str, opener: Callable[[], DeviceKeys] | None = None
) -> AgentKeys | None:
    """The agent's keys for `profile` if an agent holds them for exactly `device_id`, else
    None (no agent, the profile not unlocked, or unlocked for another device). `opener`
    opens the profile's own keys for what the agent does not sign (`AgentKeys`)."""
    try:
        path = socket_path(home, create=False)  # a command without an agent creates nothing
    except AgentError:
        return None
    if not path.exists():
        return None
    agent = AgentClient(path)
    try:
        answer = agent.call("public", profile=profile)
        public = PublicBundle.from_json(answer.get("bundle"))
    except (AgentError, CryptoError):
        return None
    if public.device_id != device_id:
        return None
    return AgentKeys(agent, profile, public, opener)


def start(home: Path, idle: int) -> tuple[AgentClient, dict[str, Any]]:
    """The agent of `home`, started if none answers; (client, its `hello` answer)."""
    path = socket_path(home)
    agent = AgentClient(path)
    hello = agent.alive()
    if hello is not None:
        return agent, hello
    # The agent gets no passphrase: it is handed keys, never asked to open a profile.
    env = {k: v for k, v in os.environ.items() if k != "LIAISON_PASSPHRASE"}
    cmd = [sys.executable, "-m", "liaison.clients._agent_server", "--socket", str(path), "--idle", str(idle)]
    try:
        # It listens before it answers: exit 0 once it serves (in a child of its own, which
        # outlives this command), or exit 1 with the reason on stderr.
        done = subprocess.run(  # noqa: S603 -- our own interpreter and module, no shell
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            close_fds=True,
            cwd="/",
            env=env,
            timeout=_START_WAIT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AgentError("the unlock agent did not start in time") from None
    hello = agent.alive()
    if hello is None:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise AgentError(f"the unlock agent did not start: {why[0]}")
    return agent, hello
