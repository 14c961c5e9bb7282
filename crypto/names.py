"""The protocol's words, each spelled once: id patterns, algorithm and suite names, roles."""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

__all__ = [
    "COMPARTMENT_PATTERN",
    "COMPARTMENT_RE",
    "DEFAULT_ROLES",
    "ED25519",
    "KEM_SUITES",
    "MLDSA65",
    "MLKEM768_X25519",
    "NATION_PATTERN",
    "NATION_RE",
    "ROLES",
    "SIGNATURE_ALGS",
    "SLUG_PATTERN",
    "SLUG_RE",
    "X25519",
    "Role",
]

#: Principal, channel, policy and profile ids: 1-64 of a-z 0-9 . _ -, starting with a letter or
#: digit. A profile name becomes a file name, so this also rules out "/", "..", hidden and empty
#: names. Match with `fullmatch`: "$" alone would let a trailing newline through.
SLUG_PATTERN: Final = r"^[a-z0-9][a-z0-9._-]{0,63}$"
SLUG_RE: Final = re.compile(SLUG_PATTERN)

#: A nation: ISO 3166-1 alpha-3, upper case.
NATION_PATTERN: Final = r"^[A-Z]{3}$"
NATION_RE: Final = re.compile(NATION_PATTERN)

#: A compartment of a classification label.
COMPARTMENT_PATTERN: Final = r"^[A-Z][A-Z0-9-]{0,31}$"
COMPARTMENT_RE: Final = re.compile(COMPARTMENT_PATTERN)

#: Signature algorithms (SPEC 2): every device signs with Ed25519; ML-DSA-65 is added by
#: hybrid devices. Ed25519's name is also its RFC 9421 `alg` value.
ED25519: Final = "ed25519"
MLDSA65: Final = "mldsa65"
SIGNATURE_ALGS: Final = (ED25519, MLDSA65)

#: KEM suites of SPEC 4, each RFC 9180 base mode with HKDF-SHA256 and ChaCha20-Poly1305.
X25519: Final = "X25519"
MLKEM768_X25519: Final = "MLKEM768-X25519"
KEM_SUITES: Final = (X25519, MLKEM768_X25519)

#: A principal's roles, and those of a new principal when none are given.
Role = Literal["analyst", "admin", "auditor"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)
DEFAULT_ROLES: Final[tuple[Role, ...]] = ("analyst",)
