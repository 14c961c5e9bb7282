"""What a client remembers about the log: the pinned log key and the last checkpoint it verified.

Kept in ``state/<profile>/log.json`` (0600) under the key store's home::

    {"v": 1, "log_key": "<name>+<id>+<key>", "checkpoint": "<signed note text>"}

The log key is pinned at enrolment, never on the server's word alone: from an explicit key
(--log-key), or from the server's key when its digest is the one the admin's invitation
carries (`EnrolmentPin`). Every later checkpoint must be signed by it and be consistent with
the saved one, which only ever moves forward. A client that loses this file loses its memory
of the log, so it is written atomically, never truncated in place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from liaison.crypto import note
from liaison.crypto.errors import CryptoError
from liaison.crypto.invitation import Invitation, looks_like_invitation, parse_invitation

from ._verify import open_checkpoint
from .errors import InputError, KeyStoreError, LogKeyMismatch, UntrustedCheckpoint
from .keystore import _write_private

__all__ = ["EnrolmentPin", "LogMemory", "SavedCheckpoint"]

_NO_ANCHOR = (
    "a plain enrolment code pins no log key, and this client never trusts one on first use: "
    "ask your admin for the invitation (LIAISON1-..., printed by `liaison admin enrol-code`) "
    "or for the log verifier key to pass with --log-key"
)


@dataclass(frozen=True)
class EnrolmentPin:
    """What a new device may trust the log key from: an explicit key, an invitation's digest,
    or both (then they must agree). Built before anything is sent; `check` decides."""

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
            code = code_or_invitation.strip()
        key = None
        if log_key is not None:
            try:
                key = note.parse_verifier_key(log_key.strip())
            except CryptoError as e:
                raise InputError(f"--log-key is not a log verifier key: {e}") from None
            if invitation is not None and not invitation.names(key.key_string):
                raise InputError("--log-key is not the log key the invitation names")
        elif invitation is None:
            raise InputError(_NO_ANCHOR)
        return cls(code, key, invitation)

    def check(self, served_key: str) -> note.Verifier:
        """The server's log key if it is the pinned one (digest compared in constant time),
        else LogKeyMismatch (invitation) or UntrustedCheckpoint (--log-key)."""
        if self.key is not None:
            if served_key != self.key.key_string:
                raise UntrustedCheckpoint("the server's log key is not the one given with --log-key")
            return self.key
        assert self.invitation is not None
        if not self.invitation.names(served_key):
            raise LogKeyMismatch(
                "the server's log key is not the one your invitation names: "
                "do not enrol here; tell the admin who sent the invitation"
            )
        return note.parse_verifier_key(served_key)


_VERSION = 1
_MAX_FILE = 256 * 1024


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
