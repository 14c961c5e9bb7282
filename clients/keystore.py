"""The client key store: one file per profile, private keys sealed under a passphrase.

Layout under ``$LIAISON_HOME`` (default ``~/.config/liaison``), directories 0700, files 0600::

    profiles/<name>.json    public metadata + the passphrase-sealed DeviceKeys
    state/<name>/           what the client remembers per profile (e.g. the last checkpoint)

A profile file is JSON ``{"v": 1, "profile": {...}, "keys": <sealed blob>}`` where the sealed
blob is `liaison.crypto.passphrase`'s canonical JSON (Argon2id, then ChaCha20-Poly1305).
The public half can be read without the passphrase (`load_public`); `load` opens the keys and
checks that they are the device the metadata names.

A passphrase is checked for strength when it is chosen (`save`, and `enrol` before it spends
the one-time code), never when it is used (`load`): see `check_new_passphrase`.
"""

from __future__ import annotations

import builtins
import contextlib
import getpass
import json
import os
import secrets
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from liaison.crypto.encoding import format_time, jcs, parse_time
from liaison.crypto.errors import DecryptionFailed, MalformedError
from liaison.crypto.keys import DEVICE_ID_RE, DeviceKeys
from liaison.crypto.names import SLUG_RE
from liaison.crypto.passphrase import open_with_passphrase, seal_with_passphrase

from .errors import KeyStoreError, ProfileExists, ProfileNotFound, WrongPassphrase


class WeakPassphrase(KeyStoreError):
    """A new passphrase that an offline attacker could guess (see `check_new_passphrase`)."""


def check_new_passphrase(
    passphrase: str, *, profile: str = "", principal: str = "", server: str = ""
) -> None:
    """Refuse a passphrase being chosen for a profile unless zxcvbn estimates at least
    10^`MIN_GUESSES_LOG10` guesses for it; WeakPassphrase says how fast it would fall.

    The profile's name, principal and server host count as words an attacker knows. The
    message never repeats the passphrase.
    """
    if not passphrase:
        raise KeyStoreError("the passphrase must not be empty")
    from zxcvbn import zxcvbn  # imported here: 50 ms that only choosing a passphrase pays

    known = [w for w in (profile, principal, urlsplit(server).hostname or "") if w]
    known += [part for w in known for part in w.replace("-", " ").replace(".", " ").replace("_", " ").split()]
    result = zxcvbn(passphrase[:_ESTIMATE_CHARS], user_inputs=known)
    if result["guesses_log10"] >= MIN_GUESSES_LOG10:
        return
    when = result["crack_times_display"]["offline_slow_hashing_1e4_per_second"]
    warning = result["feedback"]["warning"]
    raise WeakPassphrase(
        f"passphrase too weak: estimated to be guessed in {when} offline (about "
        f"10^{max(int(result['guesses_log10']), 0)} guesses at {_GUESSES_PER_SECOND} a second; "
        f"10^{MIN_GUESSES_LOG10} are required); use at least 4 random words"
        + (f" ({warning.rstrip('.')})" if warning else "")
    )


__all__ = [
    "HOME_ENV",
    "MIN_GUESSES_LOG10",
    "PASSPHRASE_ENV",
    "KeyStore",
    "Profile",
    "WeakPassphrase",
    "check_new_passphrase",
    "default_home",
    "passphrase_from_env_or_prompt",
]

HOME_ENV = "LIAISON_HOME"
PASSPHRASE_ENV = "LIAISON_PASSPHRASE"  # noqa: S105 -- the variable's name, not a secret

#: The floor for a new passphrase: zxcvbn must estimate at least 10^14 guesses to find it.
#: The adversary is whoever copies a profile file (a stolen laptop, a leaked backup) and guesses
#: offline against Argon2id at the store's cost (libsodium "moderate": 3 passes over 256 MiB,
#: roughly 0.5 s of one CPU core per guess; a GPU is bound by memory bandwidth to a few hundred
#: guesses a second). At 10^4 guesses a second, some 25+ such GPUs, 10^14 guesses take about
#: 300 years; a thousand GPUs would still need years. Four random words from a 7,776-word
#: diceware list are 3.7 * 10^15 and pass; three (4.7 * 10^11) do not. zxcvbn is an estimate
#: (English dictionaries, keyboard patterns, dates, repeats, l33t): a floor, not a proof.
MIN_GUESSES_LOG10 = 14
#: The attacker's rate the refusal message's time estimate assumes (zxcvbn's slow-hash case).
_GUESSES_PER_SECOND = "10^4"
#: zxcvbn refuses longer input; a longer passphrase is at least as hard to guess as its prefix.
_ESTIMATE_CHARS = 72

_FILE_VERSION = 1
_PROFILE_FIELDS = frozenset({"name", "server", "ca_cert", "principal", "device_id", "created"})
_MAX_FILE = 1024 * 1024


def _check_name(name: object) -> str:
    # The name becomes a file name: the pattern rules out "/", "..", hidden and empty names.
    if not isinstance(name, str) or not SLUG_RE.fullmatch(name):
        raise KeyStoreError(
            f"invalid profile name {name!r}: use 1-64 of a-z 0-9 . _ -, starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Profile:
    """The public half of a profile: where the server is and which device we are."""

    name: str
    server: str
    ca_cert: str | None
    principal: str
    device_id: str
    created: str

    def __post_init__(self) -> None:
        _check_name(self.name)
        scheme_ok = isinstance(self.server, str) and urlsplit(self.server).scheme in ("https", "http")
        if not scheme_ok or not urlsplit(self.server).netloc:
            raise KeyStoreError(
                f"profile {self.name!r}: server must be an https:// URL (http:// for development)"
            )
        if self.ca_cert is not None and (not isinstance(self.ca_cert, str) or not self.ca_cert):
            raise KeyStoreError(f"profile {self.name!r}: ca_cert must be a path or absent")
        if not isinstance(self.principal, str) or not self.principal:
            raise KeyStoreError(f"profile {self.name!r}: principal is missing")
        if not isinstance(self.device_id, str) or not DEVICE_ID_RE.fullmatch(self.device_id):
            raise KeyStoreError(f"profile {self.name!r}: device_id is not a device id")
        try:
            parse_time(self.created, field="created")
        except MalformedError as e:
            raise KeyStoreError(f"profile {self.name!r}: created is not an RFC 3339 time") from e

    @classmethod
    def for_keys(
        cls,
        name: str,
        server: str,
        keys: DeviceKeys,
        *,
        ca_cert: str | None = None,
        now: datetime | None = None,
    ) -> Profile:
        """A new profile for `keys`: principal and device id are taken from the keys."""
        created = format_time(now or datetime.now(UTC), millis=False)
        return cls(name, server, ca_cert, keys.principal, keys.device_id, created)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> Profile:
        if not isinstance(obj, dict) or set(obj) != _PROFILE_FIELDS:
            raise KeyStoreError(f"profile must have exactly the fields {sorted(_PROFILE_FIELDS)}")
        return cls(**obj)


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """``$LIAISON_HOME`` if set, else ``~/.config/liaison``."""
    env = os.environ if env is None else env
    home = env.get(HOME_ENV)
    return Path(home).expanduser() if home else Path.home() / ".config" / "liaison"


def _ensure_private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode passes through the umask; set it exactly so it is never group-readable.
        os.chmod(path, 0o700)
    except OSError as e:
        raise KeyStoreError(f"cannot create directory {path}: {e.strerror}") from e


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, mode 0600 from the first byte (temp file + replace)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)  # the umask can only clear bits; make the mode exact anyway
            with os.fdopen(fd, "wb") as f:
                fd = -1
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise KeyStoreError(f"cannot write {path}: {e.strerror}") from e


class KeyStore:
    """Profiles and their sealed keys under one home directory.

    `opslimit`/`memlimit` set the Argon2id cost of *new* seals (default: libsodium's moderate
    limits); opening uses whatever cost the file records, within the sealing module's bounds.
    """

    def __init__(self, home: Path, *, opslimit: int | None = None, memlimit: int | None = None) -> None:
        self.home = Path(home)
        self._opslimit = opslimit
        self._memlimit = memlimit

    @classmethod
    def default(cls) -> KeyStore:
        return cls(default_home())

    @property
    def profiles_dir(self) -> Path:
        return self.home / "profiles"

    def profile_path(self, name: str) -> Path:
        return self.profiles_dir / f"{_check_name(name)}.json"

    def state_dir(self, name: str) -> Path:
        """The profile's private state directory (created 0700 if missing)."""
        path = self.home / "state" / _check_name(name)
        _ensure_private_dir(self.home)
        _ensure_private_dir(path.parent)
        _ensure_private_dir(path)
        return path

    def exists(self, name: str) -> bool:
        return self.profile_path(name).is_file()

    def list(self) -> builtins.list[str]:
        """Names of the stored profiles, sorted."""
        try:
            entries = list(self.profiles_dir.iterdir())
        except FileNotFoundError:
            return []
        except OSError as e:
            raise KeyStoreError(f"cannot list {self.profiles_dir}: {e.strerror}") from e
        names = (p.name.removesuffix(".json") for p in entries if p.name.endswith(".json"))
        return sorted(n for n in names if SLUG_RE.fullmatch(n))

    def save(self, profile: Profile, keys: DeviceKeys, passphrase: str, *, overwrite: bool = False) -> Path:
        """Seal `keys` under `passphrase` and write the profile file; returns its path.

        The passphrase is being chosen here, so a weak one is refused (WeakPassphrase).
        """
        if (profile.principal, profile.device_id) != (keys.principal, keys.device_id):
            raise KeyStoreError(f"profile {profile.name!r} does not describe these keys")
        path = self.profile_path(profile.name)
        if not overwrite and path.exists():
            raise ProfileExists(f"profile {profile.name!r} already exists")
        check_new_passphrase(
            passphrase, profile=profile.name, principal=profile.principal, server=profile.server
        )
        try:
            sealed = seal_with_passphrase(
                keys.to_bytes(), passphrase, opslimit=self._opslimit, memlimit=self._memlimit
            )
        except ValueError as e:
            raise KeyStoreError(f"cannot seal the keys: {e}") from e
        doc = {"v": _FILE_VERSION, "profile": profile.to_json(), "keys": json.loads(sealed)}
        _ensure_private_dir(self.home)
        _ensure_private_dir(self.profiles_dir)
        _write_private(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
        return path

    def _read(self, name: str) -> tuple[Profile, dict[str, Any]]:
        path = self.profile_path(name)
        try:
            with path.open("rb") as f:
                raw = f.read(_MAX_FILE + 1)
        except FileNotFoundError as e:
            raise ProfileNotFound(f"no profile named {name!r} in {self.profiles_dir}") from e
        except OSError as e:
            raise KeyStoreError(f"cannot read {path}: {e.strerror}") from e
        try:
            if len(raw) > _MAX_FILE:
                raise ValueError("too large")
            doc = json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise KeyStoreError(f"profile file {path} is damaged (not JSON)") from e
        if not isinstance(doc, dict) or set(doc) != {"v", "profile", "keys"} or doc["v"] != _FILE_VERSION:
            raise KeyStoreError(f"profile file {path} is damaged or of an unknown version")
        profile = Profile.from_json(doc["profile"])
        if profile.name != name:
            raise KeyStoreError(f"profile file {path} names another profile ({profile.name!r})")
        if not isinstance(doc["keys"], dict):
            raise KeyStoreError(f"profile file {path} is damaged (keys)")
        return profile, doc["keys"]

    def load_public(self, name: str) -> Profile:
        """The public metadata of a profile, without opening its keys."""
        return self._read(name)[0]

    def load(self, name: str, passphrase: str) -> tuple[Profile, DeviceKeys]:
        """Open a profile's keys; WrongPassphrase if the passphrase does not open them."""
        profile, sealed = self._read(name)
        try:
            secret = open_with_passphrase(jcs(sealed), passphrase)
            keys = DeviceKeys.from_bytes(secret)
        except DecryptionFailed as e:
            raise WrongPassphrase(f"wrong passphrase for profile {name!r} (or its file was altered)") from e
        except MalformedError as e:  # MalformedKey included
            raise KeyStoreError(f"profile {name!r}: key file is damaged ({e})") from e
        if (keys.principal, keys.device_id) != (profile.principal, profile.device_id):
            raise KeyStoreError(f"profile {name!r}: its keys are not the device it names")
        return profile, keys


def passphrase_from_env_or_prompt(
    confirm: bool = False,
    *,
    env: Mapping[str, str] | None = None,
    prompt: Callable[[str], str] | None = None,
) -> str:
    """``$LIAISON_PASSPHRASE`` if set, else ask on the terminal without echo (twice if `confirm`)."""
    env = os.environ if env is None else env
    from_env = env.get(PASSPHRASE_ENV)
    if from_env:
        return from_env
    ask = prompt or getpass.getpass
    try:
        with warnings.catch_warnings():
            # getpass falls back to reading stdin *with echo* when there is no terminal:
            # refuse instead of showing the passphrase.
            warnings.simplefilter("error", getpass.GetPassWarning)
            first = ask("Passphrase: ")
            if confirm and ask("Repeat passphrase: ") != first:
                raise KeyStoreError("the passphrases do not match")
    except getpass.GetPassWarning as e:
        raise KeyStoreError(f"no terminal to ask for the passphrase: set {PASSPHRASE_ENV}") from e
    except EOFError as e:
        raise KeyStoreError("no passphrase given") from e
    if not first:
        raise KeyStoreError("the passphrase must not be empty")
    return first
