"""Refusals to start, in one line: `StartupError`, the log signing key it names, and a
database failure described without SQLAlchemy's wrapping. Here, not in the app, so that the
operator commands that need them (`log-key`, `export-trust`, `audit`) load no part of it."""

from __future__ import annotations

from pathlib import Path

from liaison.crypto import note
from liaison.crypto.errors import CryptoError

from ._base import SettingsError


class StartupError(SettingsError):
    """The service cannot start; the message says why and what fixes it."""


def load_log_signer(path: Path, origin: str) -> note.Signer:
    try:
        signer = note.parse_signer_key(path.read_text("ascii").strip())
    except FileNotFoundError:
        raise StartupError(f"log signing key {path} is missing: run 'liaison-server init'") from None
    except (OSError, UnicodeDecodeError, CryptoError) as e:
        raise StartupError(f"log signing key {path} is unreadable: {e}") from None
    if signer.name != origin:
        raise StartupError(f"log signing key is for {signer.name!r} but origin is {origin!r}")
    return signer


def describe_db_error(e: BaseException) -> str:
    """A database failure in one line: the driver's own error when SQLAlchemy wraps one."""
    orig = getattr(e, "orig", None) or e
    text = " ".join(str(orig).split()) or "no detail"
    return f"{type(orig).__name__}: {text}"[:400]
