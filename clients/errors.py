"""The exception tree of liaison.clients: every failure a user can see is a ClientError.

    ClientError                     base; its message is one line, safe to print as is
    └── KeyStoreError               a profile or key file that cannot be read or written
        ├── WrongPassphrase         the passphrase does not open the profile's keys
        ├── ProfileNotFound         no profile of that name
        └── ProfileExists           a profile of that name already exists

Messages never carry private material; the CLI prints `str(error)` and exits non-zero.
Add new branches (API errors, verification failures) as siblings of KeyStoreError.
"""

from __future__ import annotations

__all__ = [
    "ClientError",
    "KeyStoreError",
    "ProfileExists",
    "ProfileNotFound",
    "WrongPassphrase",
]


class ClientError(Exception):
    """Base of every error raised by liaison.clients."""


class KeyStoreError(ClientError):
    """A profile or key file that cannot be read or written, or an unusable passphrase."""


class WrongPassphrase(KeyStoreError):
    """The passphrase does not open the profile's private keys (or the file was altered)."""


class ProfileNotFound(KeyStoreError):
    """No profile of that name exists in the key store."""


class ProfileExists(KeyStoreError):
    """A profile of that name already exists and overwriting was not asked for."""
