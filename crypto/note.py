"""C2SP signed notes (Ed25519), tlog-checkpoints and tlog-cosignature/v1 witness cosignatures.

Formats, from c2sp.org/signed-note, c2sp.org/tlog-checkpoint and c2sp.org/tlog-cosignature:

    <origin>\\n<decimal size>\\n<base64 root>\\n[<extension line>\\n ...]   the checkpoint text
    \\n                                                              blank separator line
    \u2014 <key name> <base64(4-byte key id || signature)>\\n          one or more signature lines

* key id = SHA-256(key name || 0x0A || signature type || public key)[:4], big-endian;
  type 0x01 signs the note text with Ed25519, type 0x04 is a timestamped witness
  cosignature: Ed25519 over "cosignature/v1\\ntime <unix>\\n" || text, and its signature
  blob is 8-byte big-endian timestamp || 64-byte signature.
* verifier key `<name>+<8 hex key id>+<base64(type || public key)>`; signer key
  `PRIVATE+KEY+<name>+<8 hex key id>+<base64(type || 32-byte seed)>` (Go's sumdb/note form).

A note's text means nothing until a signature from a configured key verifies: `open_note`
ignores signatures from unknown keys, refuses the whole note if a known key's signature
fails, and refuses a note that no known key signed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ._primitives import ed25519_generate, ed25519_public, ed25519_sign, ed25519_verify, sha256
from .encoding import b64decode, b64encode
from .errors import BadSignature, MalformedError, MalformedKey, NoteSyntaxError, UnsupportedSuite

__all__ = [
    "MAX_SIGNATURES",
    "SIG_COSIGNATURE_V1",
    "SIG_ED25519",
    "Checkpoint",
    "Cosignature",
    "Note",
    "Signature",
    "Signer",
    "Verifier",
    "WitnessPolicy",
    "add_signature_lines",
    "cosign_checkpoint",
    "cosignature_message",
    "format_checkpoint",
    "format_verifier_key",
    "generate_signer_key",
    "is_valid_key_name",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_checkpoint",
    "parse_signature_line",
    "parse_signer_key",
    "parse_verifier_key",
    "sign_checkpoint",
    "sign_note",
    "verify_cosignature_line",
]

#: Signature type 0x01: Ed25519 over the note text (c2sp.org/signed-note).
SIG_ED25519 = 0x01
#: Signature type 0x04: timestamped Ed25519 cosignature (c2sp.org/tlog-cosignature).
SIG_COSIGNATURE_V1 = 0x04

#: More signatures than this make a note malformed: it bounds the work an attacker can
#: demand (Go's sumdb/note uses the same limit; the spec requires at least 16).
MAX_SIGNATURES = 100

_SIG_PREFIX = "\u2014 "  # em dash, space
_ED25519_PUBLIC_LEN = 32
_ED25519_SIG_LEN = 64
_TIMESTAMP_LEN = 8
_MAX_TIMESTAMP = (1 << 63) - 1
_MAX_TREE_SIZE = (1 << 64) - 1
_HASH_LEN = 32
_SUPPORTED_TYPES = (SIG_ED25519, SIG_COSIGNATURE_V1)

_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # ASCII controls other than newline
_HEX8 = re.compile(r"[0-9a-f]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


# --- key names, ids and key strings ------------------------------------------------------


def is_valid_key_name(name: str) -> bool:
    """Non-empty UTF-8 with no Unicode space, no plus and no control character."""
    if not isinstance(name, str) or not name:
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot appear in a UTF-8 note
        return False
    return "+" not in name and not any(c.isspace() or c < " " for c in name)


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || type || public key)[:4]: an identifier, not a security check.

    Anyone can find a key whose id collides with a target's; that only earns them a failed
    verification, because the verifier is configured with the real public key.
    """
    return sha256(name.encode("utf-8"), b"\n", bytes([sig_type]), public_key)[:4]


def _check_type(sig_type: int) -> None:
    if sig_type not in _SUPPORTED_TYPES:
        raise UnsupportedSuite(f"signature type 0x{sig_type:02x} is not supported")


@dataclass(frozen=True)
class Verifier:
    """A configured public key: checks signatures from (name, key id) on notes."""

    name: str
    key_id: bytes
    sig_type: int
    public_key: bytes

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes, sig_type: int = SIG_ED25519) -> Verifier:
        if not is_valid_key_name(name):
            raise NoteSyntaxError("key name must be non-empty with no spaces, '+' or controls")
        _check_type(sig_type)
        if len(public_key) != _ED25519_PUBLIC_LEN:
            raise NoteSyntaxError("Ed25519 public key must be 32 bytes")
        return cls(name, key_id(name, sig_type, public_key), sig_type, public_key)

    @property
    def key_string(self) -> str:
        """`<name>+<hex id>+<base64(type || key)>`, the form operators configure."""
        return format_verifier_key(self.name, self.public_key, self.sig_type)

    def verify(self, text: bytes, blob: bytes) -> bool:
        """True iff `blob` (the signature after the key id) is this key's signature on `text`."""
        if self.sig_type == SIG_COSIGNATURE_V1:
            if len(blob) != _TIMESTAMP_LEN + _ED25519_SIG_LEN:
                return False
            timestamp = int.from_bytes(blob[:_TIMESTAMP_LEN], "big")
            if timestamp > _MAX_TIMESTAMP:
                return False
            message = _cosignature_prefix(timestamp) + text
            return ed25519_verify(self.public_key, message, blob[_TIMESTAMP_LEN:])
        return len(blob) == _ED25519_SIG_LEN and ed25519_verify(self.public_key, text, blob)


@dataclass(frozen=True)
class Signer:
    """A private signing key with its name; `seed` never appears in reprs or messages."""

    name: str
    key_id: bytes
    sig_type: int
    seed: bytes = field(repr=False)

    @classmethod
    def from_seed(cls, name: str, seed: bytes, sig_type: int = SIG_ED25519) -> Signer:
        if not is_valid_key_name(name):
            raise MalformedKey("key name must be non-empty with no spaces, '+' or controls")
        _check_type(sig_type)
        if len(seed) != 32:
            raise MalformedKey("Ed25519 seed must be 32 bytes")
        return cls(name, key_id(name, sig_type, ed25519_public(seed)), sig_type, seed)

    @property
    def public_key(self) -> bytes:
        return ed25519_public(self.seed)

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_id, self.sig_type, self.public_key)

    def private_key_string(self) -> str:
        """`PRIVATE+KEY+<name>+<hex id>+<base64(type || seed)>`: a secret, keep it so."""
        blob = b64encode(bytes([self.sig_type]) + self.seed)
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{blob}"


def format_verifier_key(name: str, public_key: bytes, sig_type: int = SIG_ED25519) -> str:
    if not is_valid_key_name(name):
        raise NoteSyntaxError("key name must be non-empty with no spaces, '+' or controls")
    _check_type(sig_type)
    if len(public_key) != _ED25519_PUBLIC_LEN:
        raise NoteSyntaxError("Ed25519 public key must be 32 bytes")
    kid = key_id(name, sig_type, public_key)
    return f"{name}+{kid.hex()}+{b64encode(bytes([sig_type]) + public_key)}"


def _key_parts(
    what: str, error: type[MalformedError], name: str, hex_id: str, blob_text: str
) -> tuple[int, bytes]:
    """The checks verifier and signer key strings share: name, 8-hex id, canonical base64 of
    `type || key material`; returns (type, material). Messages never quote the input."""
    if not is_valid_key_name(name):
        raise error(f"{what} name must be non-empty with no spaces or controls")
    if not _HEX8.fullmatch(hex_id):
        raise error(f"{what} id must be 8 lowercase hex digits")
    try:
        blob = b64decode(blob_text) if blob_text else b""
    except MalformedError:
        raise error(f"{what} material is not canonical base64") from None
    if not blob:
        raise error(f"{what} has no key material")
    _check_type(blob[0])
    return blob[0], blob[1:]


def parse_verifier_key(text: str) -> Verifier:
    """Parse `<name>+<hex id>+<base64(type || key)>`; the id must match the key."""
    if not isinstance(text, str):
        raise NoteSyntaxError("verifier key must be a string")
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise NoteSyntaxError("verifier key must be <name>+<key id>+<key>")
    name, hex_id, blob_text = parts
    sig_type, public_key = _key_parts("verifier key", NoteSyntaxError, name, hex_id, blob_text)
    if len(public_key) != _ED25519_PUBLIC_LEN:
        raise NoteSyntaxError("Ed25519 verifier key must be 32 bytes")
    if key_id(name, sig_type, public_key).hex() != hex_id:
        raise NoteSyntaxError("verifier key id does not match its name and key")
    return Verifier(name, bytes.fromhex(hex_id), sig_type, public_key)


def parse_signer_key(text: str) -> Signer:
    """Parse `PRIVATE+KEY+<name>+<hex id>+<base64(type || seed)>`; the id must match the key.

    Error messages never quote the input, which is a secret.
    """
    if not isinstance(text, str):
        raise MalformedKey("signer key must be a string")
    parts = text.split("+", 4)
    if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
        raise MalformedKey("signer key must be PRIVATE+KEY+<name>+<key id>+<key>")
    _, _, name, hex_id, blob_text = parts
    sig_type, seed = _key_parts("signer key", MalformedKey, name, hex_id, blob_text)
    if len(seed) != 32:
        raise MalformedKey("Ed25519 signer key must be a 32-byte seed")
    signer = Signer.from_seed(name, seed, sig_type)
    if signer.key_id.hex() != hex_id:
        raise MalformedKey("signer key id does not match its name and key")
    return signer


def generate_signer_key(
    name: str, *, sig_type: int = SIG_ED25519, seed: bytes | None = None
) -> tuple[str, str]:
    """A new (signer key, verifier key) pair of strings; pass `seed` for reproducible tests.

    Use `SIG_ED25519` for a log and `SIG_COSIGNATURE_V1` for a witness: one key per role.
    """
    signer = Signer.from_seed(name, ed25519_generate() if seed is None else seed, sig_type)
    return signer.private_key_string(), signer.verifier.key_string


# --- signed notes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """One signature line: key name, key id and the signature bytes that follow the id."""

    name: str
    key_id: bytes
    blob: bytes

    @property
    def line(self) -> str:
        return f"{_SIG_PREFIX}{self.name} {b64encode(self.key_id + self.blob)}\n"


@dataclass(frozen=True)
class Note:
    """An opened note: its text, the signatures that verified and those from unknown keys."""

    text: str
    signatures: tuple[Signature, ...]
    unverified: tuple[Signature, ...] = ()


def _check_text(text: str) -> None:
    if not isinstance(text, str) or not text.endswith("\n"):
        raise NoteSyntaxError("note text must end with a newline")
    if _CONTROL.search(text):
        raise NoteSyntaxError("note text must not contain control characters other than newline")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteSyntaxError("note text must be valid UTF-8") from None


def parse_signature_line(line: str) -> Signature:
    """Parse one signature line, without its newline; nothing is verified."""
    if not line.startswith(_SIG_PREFIX):
        raise NoteSyntaxError("signature line must start with an em dash and a space")
    name, sep, blob_text = line[len(_SIG_PREFIX) :].partition(" ")
    if not sep or not is_valid_key_name(name):
        raise NoteSyntaxError("signature line has no valid key name")
    try:
        blob = b64decode(blob_text, field="signature")
    except MalformedError:
        raise NoteSyntaxError("signature is not canonical base64") from None
    if len(blob) < 5:
        raise NoteSyntaxError("signature must hold a 4-byte key id and a signature")
    return Signature(name, blob[:4], blob[4:])


def _split_note(data: bytes) -> tuple[str, list[Signature]]:
    """Parse a signed note's structure without verifying anything."""
    if not isinstance(data, bytes | bytearray):
        raise NoteSyntaxError("signed note must be bytes")
    try:
        message = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise NoteSyntaxError("signed note is not valid UTF-8") from None
    if _CONTROL.search(message):
        raise NoteSyntaxError("signed note contains control characters other than newline")
    # The text ends at the *last* blank line; it may itself contain blank lines.
    split = message.rfind("\n\n")
    if split < 0:
        raise NoteSyntaxError("signed note has no blank line before its signatures")
    text, block = message[: split + 1], message[split + 2 :]
    if not block or not block.endswith("\n"):
        raise NoteSyntaxError("signed note must end with signature lines and a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteSyntaxError(f"signed note has more than {MAX_SIGNATURES} signatures")
    return text, [parse_signature_line(line) for line in lines]


def _verifier_map(verifiers: Iterable[Verifier]) -> dict[tuple[str, bytes], Verifier]:
    known: dict[tuple[str, bytes], Verifier] = {}
    for v in verifiers:
        if not isinstance(v, Verifier):
            raise TypeError("verifiers must be Verifier objects")
        other = known.setdefault((v.name, v.key_id), v)
        if other != v:
            # Two keys under one (name, id) make the signer ambiguous; refuse the setup.
            raise MalformedKey(f"two verifier keys share name {v.name!r} and id {v.key_id.hex()}")
    return known


def sign_note(text: str, signers: Sequence[Signer]) -> bytes:
    """The signed note: `text`, a blank line, one Ed25519 signature line per signer."""
    _check_text(text)
    if not signers:
        raise MalformedKey("a note needs at least one signer")
    payload = text.encode("utf-8")
    lines: list[str] = []
    for s in signers:
        if s.sig_type != SIG_ED25519:
            # A cosigning key signs "cosignature/v1..." messages only (see cosign_checkpoint):
            # letting it sign arbitrary text would let a note forge a cosignature.
            raise UnsupportedSuite("sign_note needs Ed25519 note keys (type 0x01)")
        lines.append(Signature(s.name, s.key_id, ed25519_sign(s.seed, payload)).line)
    return (text + "\n" + "".join(lines)).encode("utf-8")


def open_note(data: bytes, verifiers: Sequence[Verifier]) -> Note:
    """Parse a signed note and verify every signature from a known (name, key id).

    Unknown keys' signatures are kept in `unverified` and otherwise ignored; a known key's
    failing signature raises `BadSignature` for the whole note, as does a note that no
    known key signed.
    """
    known = _verifier_map(verifiers)
    text, sigs = _split_note(data)
    payload = text.encode("utf-8")
    verified: list[Signature] = []
    unverified: list[Signature] = []
    for sig in sigs:
        v = known.get((sig.name, sig.key_id))
        if v is None:
            if sig not in unverified:
                unverified.append(sig)
            continue
        if not v.verify(payload, sig.blob):
            raise BadSignature(f"invalid signature from key {sig.name}+{sig.key_id.hex()}")
        if sig not in verified:
            verified.append(sig)
    if not verified:
        raise BadSignature("note has no verified signature from a known key")
    return Note(text, tuple(verified), tuple(unverified))


def add_signature_lines(data: bytes, lines: Iterable[str]) -> bytes:
    """Append signature lines (e.g. stored cosignatures) to a signed note, skipping repeats.

    Nothing is verified here; the lines must parse and the total stays within the limit.
    """
    text, sigs = _split_note(data)
    for line in lines:
        body = line[:-1] if line.endswith("\n") else line
        if "\n" in body:
            raise NoteSyntaxError("a signature line must be a single line")
        sig = parse_signature_line(body)
        if sig not in sigs:
            sigs.append(sig)
    if len(sigs) > MAX_SIGNATURES:
        raise NoteSyntaxError(f"signed note would have more than {MAX_SIGNATURES} signatures")
    return (text + "\n" + "".join(s.line for s in sigs)).encode("utf-8")


# --- checkpoints (c2sp.org/tlog-checkpoint) ----------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin line, tree size, RFC 6962 root hash, opaque extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()


def _check_line(what: str, line: str) -> None:
    if not isinstance(line, str) or not line:
        raise NoteSyntaxError(f"checkpoint {what} must be a non-empty line")
    if "\n" in line or _CONTROL.search(line):
        raise NoteSyntaxError(f"checkpoint {what} must not contain newlines or controls")


def format_checkpoint(cp: Checkpoint) -> str:
    """The checkpoint's note text, ending in a newline."""
    _check_line("origin", cp.origin)
    if isinstance(cp.size, bool) or not isinstance(cp.size, int):
        raise NoteSyntaxError("checkpoint size must be an integer")
    if not 0 <= cp.size <= _MAX_TREE_SIZE:
        raise NoteSyntaxError("checkpoint size must be in [0, 2**64)")
    if not isinstance(cp.root_hash, bytes) or len(cp.root_hash) != _HASH_LEN:
        raise NoteSyntaxError("checkpoint root hash must be 32 bytes")
    for ext in cp.extensions:
        _check_line("extension", ext)
    lines = [cp.origin, str(cp.size), b64encode(cp.root_hash), *cp.extensions]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse checkpoint note text strictly: one encoding per checkpoint, no malleability."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise NoteSyntaxError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteSyntaxError("checkpoint needs an origin, a size and a root hash line")
    origin, size_text, root_text, *extensions = lines
    _check_line("origin", origin)
    if not _DECIMAL.fullmatch(size_text):
        raise NoteSyntaxError("checkpoint size must be decimal without leading zeros")
    size = int(size_text)
    if size > _MAX_TREE_SIZE:
        raise NoteSyntaxError("checkpoint size must be below 2**64")
    try:
        root = b64decode(root_text, field="root hash")
    except MalformedError:
        raise NoteSyntaxError("checkpoint root hash is not canonical base64") from None
    if len(root) != _HASH_LEN:
        raise NoteSyntaxError("checkpoint root hash must be 32 bytes")
    for ext in extensions:
        _check_line("extension", ext)
    return Checkpoint(origin, size, root, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, signer: Signer) -> bytes:
    """The checkpoint as a signed note (SPEC 6: the log's key name is the origin)."""
    return sign_note(format_checkpoint(cp), [signer])


def open_checkpoint(
    data: bytes,
    log: Verifier,
    *,
    origin: str | None = None,
    policy: WitnessPolicy | None = None,
    not_after: int | None = None,
) -> Checkpoint:
    """Verify the log's signature (and the witness quorum, if a policy is given), then parse.

    The origin must equal `origin`, by default the log key's name, so a log key cannot
    vouch for another log's tree.
    """
    if log.sig_type != SIG_ED25519:
        raise UnsupportedSuite("a log verifier key must be an Ed25519 note key (type 0x01)")
    note = open_note(data, [log])
    cp = parse_checkpoint(note.text)
    expected = log.name if origin is None else origin
    if cp.origin != expected:
        raise BadSignature(f"checkpoint origin {cp.origin!r} is not the expected {expected!r}")
    if policy is not None:
        policy.check(data, not_after=not_after)
    return cp


# --- cosignatures (c2sp.org/tlog-cosignature, Ed25519 v1) ---------------------------------


@dataclass(frozen=True)
class Cosignature:
    """A verified witness cosignature: who, when (POSIX seconds), and the signature line."""

    name: str
    key_id: bytes
    timestamp: int
    signature: bytes

    @property
    def line(self) -> str:
        blob = self.timestamp.to_bytes(_TIMESTAMP_LEN, "big") + self.signature
        return Signature(self.name, self.key_id, blob).line


def _cosignature_prefix(timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode("ascii")


def cosignature_message(checkpoint_text: str, timestamp: int) -> bytes:
    """The bytes a v1 witness signs: header, time line, then the whole checkpoint text."""
    _check_text(checkpoint_text)
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise MalformedError("cosignature timestamp must be an integer")
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise MalformedError("cosignature timestamp must be in [0, 2**63)")
    return _cosignature_prefix(timestamp) + checkpoint_text.encode("utf-8")


def cosign_checkpoint(cp: Checkpoint, witness: Signer, timestamp: int) -> str:
    """A witness's cosignature line (ending in a newline) on `cp` at `timestamp`.

    Call it only after verifying the log's signature and consistency with the last
    checkpoint the witness cosigned: the cosignature states exactly that.
    """
    if witness.sig_type != SIG_COSIGNATURE_V1:
        raise UnsupportedSuite("a witness key must be a cosignature key (type 0x04)")
    message = cosignature_message(format_checkpoint(cp), timestamp)
    sig = ed25519_sign(witness.seed, message)
    return Cosignature(witness.name, witness.key_id, timestamp, sig).line


def _check_cosignature(
    sig: Signature, witness: Verifier, payload: bytes, not_after: int | None
) -> Cosignature:
    if not witness.verify(payload, sig.blob):
        raise BadSignature(f"invalid cosignature from witness {sig.name}+{sig.key_id.hex()}")
    timestamp = int.from_bytes(sig.blob[:_TIMESTAMP_LEN], "big")
    if not_after is not None and timestamp > not_after:
        raise BadSignature(f"cosignature from witness {sig.name} is dated in the future")
    return Cosignature(sig.name, sig.key_id, timestamp, sig.blob[_TIMESTAMP_LEN:])


def _witness_map(witnesses: Iterable[Verifier]) -> dict[tuple[str, bytes], Verifier]:
    known = _verifier_map(witnesses)
    for v in known.values():
        if v.sig_type != SIG_COSIGNATURE_V1:
            raise UnsupportedSuite(f"witness key {v.name} is not a cosignature key (type 0x04)")
    return known


def verify_cosignature_line(
    line: str,
    checkpoint: Checkpoint,
    witnesses: Sequence[Verifier],
    *,
    not_after: int | None = None,
) -> Cosignature:
    """Verify one submitted cosignature line on `checkpoint` from one of `witnesses`."""
    known = _witness_map(witnesses)
    if not isinstance(line, str):
        raise NoteSyntaxError("cosignature line must be a string")
    body = line[:-1] if line.endswith("\n") else line
    if "\n" in body:
        raise NoteSyntaxError("a cosignature must be a single signature line")
    sig = parse_signature_line(body)
    witness = known.get((sig.name, sig.key_id))
    if witness is None:
        raise BadSignature(f"cosignature is not from a known witness ({sig.name})")
    payload = format_checkpoint(checkpoint).encode("utf-8")
    return _check_cosignature(sig, witness, payload, not_after)


@dataclass(frozen=True)
class WitnessPolicy:
    """Trust a checkpoint only with valid cosignatures from at least `threshold` witnesses.

    Fails closed: an empty witness list or a threshold outside [1, len(witnesses)] is
    refused at construction, and a configured witness's bad cosignature fails the check.
    """

    witnesses: tuple[Verifier, ...]
    threshold: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "witnesses", tuple(self.witnesses))
        if not self.witnesses:
            raise MalformedError("a witness policy needs at least one witness")
        _witness_map(self.witnesses)
        if len({w.name for w in self.witnesses}) != len(self.witnesses):
            raise MalformedError("witness names in a policy must be distinct")
        # The Ed25519 v1 message does not commit to the witness name, so one key listed
        # under two names would let a single signature count twice towards the quorum.
        if len({w.public_key for w in self.witnesses}) != len(self.witnesses):
            raise MalformedError("witness public keys in a policy must be distinct")
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= len(self.witnesses):
            raise MalformedError("witness threshold must be between 1 and the number of witnesses")

    def check(self, data: bytes, *, not_after: int | None = None) -> tuple[Cosignature, ...]:
        """Verify the signed checkpoint's cosignatures; raise `BadSignature` below the quorum.

        `not_after` (POSIX seconds, e.g. now plus allowed clock skew) refuses cosignatures
        dated later. Returns one verified cosignature per witness that signed.
        """
        known = _witness_map(self.witnesses)
        text, sigs = _split_note(data)
        parse_checkpoint(text)  # a cosignature vouches for a checkpoint, never other text
        payload = text.encode("utf-8")
        found: dict[str, Cosignature] = {}
        for sig in sigs:
            witness = known.get((sig.name, sig.key_id))
            if witness is None:
                continue  # the log's own signature, or a witness this policy does not count
            cosig = _check_cosignature(sig, witness, payload, not_after)
            found.setdefault(witness.name, cosig)
        if len(found) < self.threshold:
            raise BadSignature(
                f"witness quorum not met: {len(found)} of {self.threshold} required cosignatures"
            )
        return tuple(found.values())
