"""What a client remembers about the log: the pinned log key and the last checkpoint it verified.

Kept in ``state/<profile>/log.json`` (0600) under the key store's home::

    {"v": 1, "log_key": "<name>+<id>+<key>", "checkpoint": "<signed note text>",
     "forgotten": ["<signed note text>", ...]}

(`forgotten`: checkpoints dropped by `liaison audit trust --reset`, kept for the record.)

The log key is pinned at enrolment, never on the server's word alone: from an explicit key
(--log-key), or from the server's key when its digest (LIAISON1), or the digest of the anchors
that name it (LIAISON2), is the one the admin's invitation carries (`EnrolmentPin`).
Every later checkpoint must be signed by it and be consistent with the saved one, which only
ever moves forward. A client that loses this file loses its memory
of the log, so it is written atomically, never truncated in place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from liaison.crypto import note
from liaison.crypto.anchors import Anchors, parse_anchors
from liaison.crypto.errors import CryptoError, MalformedError
from liaison.crypto.invitation import CODE_RE, Invitation, looks_like_invitation, parse_invitation

from ._verify import open_checkpoint
from .errors import InputError, KeyStoreError, LogKeyMismatch, MalformedResponse, UntrustedCheckpoint
from .keystore import _write_private

__all__ = ["EnrolmentPin", "LogMemory", "SavedCheckpoint", "WitnessPolicy", "WitnessPolicyFile"]

_NO_ANCHOR = (
    "a plain enrolment code pins no log key, and this client never trusts one on first use: "
    "ask your admin for the invitation (LIAISON2-..., printed by `liaison admin enrol-code`) "
    "or for the log verifier key to pass with --log-key"
)


@dataclass(frozen=True)
class EnrolmentPin:
    """What a new device may trust the log key (and the directory's anchors) from: an explicit
    key, an invitation's digest, or both (then they must agree). Built before anything is
    sent; `check` decides.

    A `LIAISON1` invitation names the log key's digest; a `LIAISON2` invitation names the
    digest of an anchors object (protocol 9.7), which the device fetches from the server and
    pins only if its digest is the invitation's: the log key it names (which must be the
    server's), the roots, the policy floor, the witness policy."""

    code: str
    key: note.Verifier | None
    invitation: Invitation | None

    @classmethod
    def of(cls, code_or_invitation: str, log_key: str | None) -> EnrolmentPin:
        """From what the user gave; InputError when nothing pins the log key."""
        invitation = None
        if looks_like_invitation(code_or_invitation):
            try:
                invitation = parse_invitation(code_or_invitation)
            except CryptoError as e:
                raise InputError(f"the invitation does not parse: {e}") from None
            code = invitation.code
        else:
            code = code_or_invitation.strip().upper()
            if not CODE_RE.fullmatch(code):
                raise InputError(
                    "an enrolment code is four groups of five base32 characters (XXXXX-XXXXX-...)"
                )
        key = None
        if log_key is not None:
            try:
                key = note.parse_verifier_key(log_key.strip())
            except CryptoError as e:
                raise InputError(f"--log-key is not a log verifier key: {e}") from None
            if invitation is not None and invitation.version == 1 and not invitation.names(key.key_string):
                raise InputError("--log-key is not the log key the invitation names")
        elif invitation is None:
            raise InputError(_NO_ANCHOR)
        return cls(code, key, invitation)

    @property
    def names_anchors(self) -> bool:
        """Whether the invitation names anchors (LIAISON2), which must then be fetched."""
        return self.invitation is not None and self.invitation.version == 2

    def check(self, served_key: str, anchors: object = None) -> tuple[note.Verifier, Anchors | None]:
        """The server's log key if it is the pinned one (digests compared in constant time),
        else LogKeyMismatch (invitation) or UntrustedCheckpoint (--log-key); and the anchors,
        parsed, when the invitation names them (LogKeyMismatch if `anchors`, as the server
        served them, are not the ones named) or when they name the key given with --log-key."""
        if self.names_anchors:
            assert self.invitation is not None
            if not isinstance(anchors, dict) or not self.invitation.names_anchors(anchors):
                raise LogKeyMismatch(
                    "the anchors the server shows are not the ones your invitation names: "
                    "do not enrol here; tell the admin who sent the invitation"
                )
            parsed = _anchors(anchors)
            if self.key is not None and self.key.key_string != parsed.log_key:
                raise InputError("--log-key is not the log key the invitation names")
            if parsed.log_key != served_key:
                raise LogKeyMismatch(
                    "the server's log key is not the one your invitation names: "
                    "do not enrol here; tell the admin who sent the invitation"
                )
            if self.key is not None and self.key.key_string != served_key:
                raise UntrustedCheckpoint("the server's log key is not the one given with --log-key")
            return note.parse_verifier_key(served_key), parsed
        if self.key is not None:
            if served_key != self.key.key_string:
                raise UntrustedCheckpoint("the server's log key is not the one given with --log-key")
            # A plain code: the anchors come from the server, but they must name the key
            # the user gave; the directory then verifies everything from them.
            given = _anchors(anchors) if isinstance(anchors, dict) else None
            if given is not None and given.log_key != served_key:
                raise UntrustedCheckpoint("the server's anchors name another log key than --log-key")
            return self.key, given
        assert self.invitation is not None
        if not self.invitation.names(served_key):
            raise LogKeyMismatch(
                "the server's log key is not the one your invitation names: "
                "do not enrol here; tell the admin who sent the invitation"
            )
        return note.parse_verifier_key(served_key), None


def _anchors(obj: object) -> Anchors:
    try:
        return parse_anchors(obj)
    except CryptoError as e:
        raise MalformedResponse(f"the invitation's anchors are malformed: {e}") from None


_VERSION = 1
_MAX_FILE = 256 * 1024
#: Checkpoints forgotten by `LogMemory.reset` that the file keeps (the newest).
_FORGOTTEN = 10


@dataclass(frozen=True)
class SavedCheckpoint:
    """A checkpoint this client verified, with its signed note."""

    checkpoint: note.Checkpoint
    note: str


class LogMemory:
    """The pinned log verifier key and the last verified checkpoint of one profile."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, object]:
        try:
            raw = self.path.read_bytes()[: _MAX_FILE + 1]
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise KeyStoreError(f"cannot read {self.path}: {e.strerror}") from e
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise KeyStoreError(f"{self.path} is damaged (not JSON)") from e
        if not isinstance(doc, dict) or doc.get("v") != _VERSION:
            raise KeyStoreError(f"{self.path} is damaged or of an unknown version")
        return doc

    def _write(self, doc: dict[str, object]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(self.path, (json.dumps({**doc, "v": _VERSION}, indent=2) + "\n").encode())

    @property
    def log_key(self) -> note.Verifier:
        """The pinned log key; KeyStoreError if none was pinned (profile not enrolled here)."""
        key = self._read().get("log_key")
        if not isinstance(key, str):
            raise KeyStoreError(
                f"no pinned log key in {self.path}: enrol this profile again, or pin the key with --log-key"
            )
        try:
            return note.parse_verifier_key(key)
        except CryptoError as e:
            raise KeyStoreError(f"the pinned log key in {self.path} is damaged: {e}") from None

    def pin(self, key: str) -> note.Verifier:
        """Pin the log key (refused if another key is already pinned)."""
        try:
            verifier = note.parse_verifier_key(key)
        except CryptoError as e:
            raise KeyStoreError(f"not a log verifier key: {e}") from None
        if verifier.sig_type != note.SIG_ED25519:
            raise KeyStoreError("the log key must be an Ed25519 note key (type 0x01)")
        doc = self._read()
        old = doc.get("log_key")
        if isinstance(old, str) and old != verifier.key_string:
            raise KeyStoreError(f"another log key is already pinned in {self.path}")
        doc["log_key"] = verifier.key_string
        self._write(doc)
        return verifier

    def last(self) -> SavedCheckpoint | None:
        """The last verified checkpoint (its signature re-checked), or None."""
        doc = self._read()
        text = doc.get("checkpoint")
        if text is None:
            return None
        if not isinstance(text, str):
            raise KeyStoreError(f"{self.path} is damaged (checkpoint)")
        return SavedCheckpoint(open_checkpoint(text, self.log_key), text)

    def reset(self) -> str | None:
        """Forget the saved checkpoint (keeping the pinned key): the next checkpoint signed by
        that key is taken as the first. The forgotten note is kept in `forgotten` (the last
        _FORGOTTEN of them), never deleted. Returns it, or None if none was saved."""
        doc = self._read()
        old = doc.pop("checkpoint", None)
        if not isinstance(old, str):
            return None
        kept = doc.get("forgotten")
        doc["forgotten"] = [*(kept if isinstance(kept, list) else []), old][-_FORGOTTEN:]
        self._write(doc)
        return old

    def save(self, signed_note: str) -> SavedCheckpoint:
        """Remember a checkpoint the caller has verified as consistent with `last()`."""
        cp = open_checkpoint(signed_note, self.log_key)
        doc = self._read()
        current = self.last()
        if current is None or cp.size >= current.checkpoint.size:
            doc["checkpoint"] = signed_note
            self._write(doc)
            return SavedCheckpoint(cp, signed_note)
        return current


# --- the profile's witness policy (item 13) ------------------------------------------------
#
# Kept apart from the log memory, in ``state/<profile>/witnesses.json`` (0600)::
#
#     {"v": 1, "log_key": "<the pinned log key it was set for>",
#      "policy": {"witnesses": ["<name>+<id>+<key>", ...], "k": 2,
#                 "max_age": 3600 | null, "wait": 5.0, "require": false}}
#
# Only the user changes it (`liaison audit witnesses set|clear`); nothing a server sends does.

_WITNESS_VERSION = 1
#: Longest a client waits for a fresh receipt's checkpoint to be witnessed (seconds).
MAX_WAIT = 120.0


@dataclass(frozen=True)
class WitnessPolicy:
    """Pinned witness verifier keys (C2SP cosignature/v1, type 0x04), k of them required.

    `max_age`: a cosignature older than this many seconds does not count. `wait`: how long a
    receipt check waits for the service's push to the witnesses before it reports "not yet
    witnessed". `require`: refuse (UntrustedCheckpoint) instead of reporting it.
    """

    witnesses: tuple[note.Verifier, ...]
    k: int
    max_age: int | None = None
    wait: float = 5.0
    require: bool = False
    _quorum: note.WitnessPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            # note.WitnessPolicy refuses an empty list, k outside [1, n], a key that is not a
            # cosignature key, and two names or two entries for one public key (a single
            # signature must never count twice).
            quorum = note.WitnessPolicy(tuple(self.witnesses), self.k)
        except (CryptoError, TypeError) as e:
            raise KeyStoreError(f"invalid witness policy: {e}") from None
        if self.max_age is not None and not 0 < self.max_age <= 10 * 365 * 86400:
            raise KeyStoreError("invalid witness policy: the maximum age must be 1 s to 10 years")
        if not 0 <= self.wait <= MAX_WAIT:
            raise KeyStoreError(f"invalid witness policy: the wait must be 0 to {MAX_WAIT:g} seconds")
        object.__setattr__(self, "witnesses", quorum.witnesses)
        object.__setattr__(self, "_quorum", quorum)

    @classmethod
    def from_keys(
        cls,
        keys: list[str],
        k: int,
        *,
        max_age: int | None = None,
        wait: float = 5.0,
        require: bool = False,
    ) -> WitnessPolicy:
        verifiers = []
        for key in keys:
            try:
                verifiers.append(note.parse_verifier_key(key.strip()))
            except CryptoError as e:
                raise KeyStoreError(f"not a witness verifier key: {e}") from None
        return cls(tuple(verifiers), k, max_age, wait, require)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(w.name for w in self.witnesses)

    def describe(self) -> str:
        """One line, e.g. `2 of 2 (w1.example, w2.example), max age 3600 s, wait 5 s`."""
        parts = [f"{self.k} of {len(self.witnesses)} ({', '.join(self.names)})"]
        if self.max_age is not None:
            parts.append(f"max age {self.max_age} s")
        parts.append(f"wait {self.wait:g} s")
        if self.require:
            parts.append("required")
        return ", ".join(parts)

    def to_json(self) -> dict[str, object]:
        return {
            "witnesses": [w.key_string for w in self.witnesses],
            "k": self.k,
            "max_age": self.max_age,
            "wait": self.wait,
            "require": self.require,
        }

    @classmethod
    def from_json(cls, doc: object) -> WitnessPolicy:
        if not isinstance(doc, dict):
            raise KeyStoreError("invalid witness policy: not an object")
        keys, k, max_age = doc.get("witnesses"), doc.get("k"), doc.get("max_age")
        wait, require = doc.get("wait", 5.0), doc.get("require", False)
        if (
            not isinstance(keys, list)
            or not all(isinstance(x, str) for x in keys)
            or type(k) is not int
            or not (max_age is None or type(max_age) is int)
            or type(wait) not in (int, float)
            or type(require) is not bool
        ):
            raise KeyStoreError("invalid witness policy: a field has the wrong type")
        return cls.from_keys(keys, k, max_age=max_age, wait=float(wait), require=require)


class WitnessPolicyFile:
    """The witness policy of one profile, bound to the log key it was set for."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def beside(cls, memory: LogMemory) -> WitnessPolicyFile:
        return cls(memory.path.with_name("witnesses.json"))

    def _read(self) -> dict[str, object]:
        try:
            raw = self.path.read_bytes()[: _MAX_FILE + 1]
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise KeyStoreError(f"cannot read {self.path}: {e.strerror}") from e
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise KeyStoreError(f"{self.path} is damaged (not JSON)") from e
        if not isinstance(doc, dict) or doc.get("v") != _WITNESS_VERSION:
            raise KeyStoreError(f"{self.path} is damaged or of an unknown version")
        return doc

    def load(self, log_key: note.Verifier) -> WitnessPolicy | None:
        """The policy, or None when none is set. A policy set for another log key (a profile
        deleted and made again under the same name) is refused, not silently applied."""
        doc = self._read()
        if "policy" not in doc:
            return None
        if doc.get("log_key") != log_key.key_string:
            raise KeyStoreError(
                f"the witness policy in {self.path} was set for another log key; "
                "set it again with 'liaison audit witnesses set' (or clear it)"
            )
        try:
            return WitnessPolicy.from_json(doc["policy"])
        except (KeyStoreError, MalformedError) as e:
            raise KeyStoreError(f"{self.path}: {e}") from None

    def save(self, policy: WitnessPolicy, log_key: note.Verifier) -> None:
        doc = {"v": _WITNESS_VERSION, "log_key": log_key.key_string, "policy": policy.to_json()}
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(self.path, (json.dumps(doc, indent=2) + "\n").encode())

    def clear(self) -> bool:
        """Remove the policy; True if there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as e:
            raise KeyStoreError(f"cannot remove {self.path}: {e.strerror}") from e
        return True
