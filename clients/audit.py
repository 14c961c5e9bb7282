"""Auditors and witnesses: verify the whole log from its tiles, then cosign what verified.

`verify_log` fetches every hash tile of the latest checkpoint (and, for auditors, every entry
bundle), authenticates each tile against the signed checkpoint, recomputes the root from the
level-0 tiles, checks each entry against its leaf hash and checks consistency with the
checkpoint this profile saw last. `witness` does all that, then cosigns (c2sp.org/
tlog-cosignature) with the auditor's witness key and submits the cosignature. It shares the
witness's record (`_witness.WitnessState`) with `liaison audit witness --serve`, so one key
never cosigns two inconsistent checkpoints, whichever way it is used.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from liaison.crypto import merkle, note, tiles
from liaison.crypto.commitments import Disclosure, parse_disclosures
from liaison.crypto.directory_replay import DirectoryReplay
from liaison.crypto.encoding import b64decode, b64encode
from liaison.crypto.entry_v2 import SHREDDABLE
from liaison.crypto.errors import CryptoError, DecryptionFailed, MalformedError
from liaison.crypto.passphrase import open_with_passphrase, seal_with_passphrase

from . import _evidence
from . import _models as m
from ._verify import open_checkpoint, parse_entry
from ._witness import Observed, WitnessState, cosigned_note
from .client import AsyncClient
from .errors import (
    InconsistentLog,
    KeyStoreError,
    MalformedResponse,
    PermissionDenied,
    ProofInvalid,
    WrongPassphrase,
)
from .keystore import _write_private

__all__ = ["Progress", "WitnessKey", "verify_log", "witness"]

#: Called as progress(done, total, what) while tiles are fetched.
Progress = Callable[[int, int, str], None]


def _quiet(done: int, total: int, what: str) -> None:
    return None


async def verify_log(
    client: AsyncClient, *, entries: bool = True, progress: Progress = _quiet
) -> tuple[m.LogVerification, note.Checkpoint, str]:
    """Verify the latest checkpoint against every tile; returns the result, checkpoint and note."""
    text = (await client._request("GET", "/v1/audit/checkpoint", signed=False)).text
    cp = open_checkpoint(text, client.memory.log_key)
    saved = client.memory.last()
    hash_tiles = tiles.tiles_for_size(cp.size)
    level0 = [t for t in hash_tiles if t.level == 0]
    bundles = [tiles.Tile(0, t.n, t.width, entries=True) for t in level0] if entries else []
    total, done = len(hash_tiles) + len(bundles), 0
    fetched: dict[tiles.Tile, bytes] = {}
    for t in hash_tiles:
        data = await client.fetch_tile(t)
        fetched[t] = data[: t.width * merkle.HASH_SIZE] if len(data) > t.width * 32 else data
        done += 1
        progress(done, total, t.path)
    try:
        reader = tiles.verify_tiles(cp.size, cp.root_hash, fetched)
        if cp.size and tiles.root_from_level0_tiles(cp.size, [fetched[t] for t in level0]) != cp.root_hash:
            raise ProofInvalid("the level-0 tiles do not hash to the checkpoint's root")
    except CryptoError as e:
        raise ProofInvalid(f"the tiles do not verify against checkpoint {cp.size}: {e}") from None
    counts: Counter[str] = Counter()
    # Every map head must follow from the statements logged before it, and every statement's
    # signer must have had authority as far as this auditor may open them (protocol 9.10).
    replay, index = DirectoryReplay(authority=True), 0
    opener = _Disclosures(client)
    shredded: set[int] = set()  # entries an audit.shredded entry names (protocol 10.7)
    types: list[str] = []  # every entry's type, by index: what a shredding may name
    for b in bundles:
        try:
            data = await client.fetch_tile(b)
        except PermissionDenied as e:
            raise PermissionDenied(
                e.slug,
                e.status,
                f"{e.detail} (entry bundles need the auditor role; --no-entries checks the hash tiles only)",
            ) from None
        try:
            level0_tile = fetched[tiles.Tile(0, b.n, b.width)]
            items = tiles.verify_entry_bundle(_cut_bundle(data, b.width), level0_tile)
        except CryptoError as e:
            raise ProofInvalid(f"entry bundle {b.path} does not match its tile: {e}") from None
        parsed_items = [parse_entry(entry) for entry in items]
        wanted = [index + i for i, p in enumerate(parsed_items) if p["type"] == "directory.statement"]
        opened = await opener.between(wanted[0], wanted[-1] + 1) if wanted else {}
        for parsed in parsed_items:
            counts[parsed["type"]] += 1
            types.append(parsed["type"])
            if parsed["type"] == "audit.shredded":
                shredded.update(_shredding(index, parsed.get("indexes"), types))
            replay.feed(index, parsed, opened.get(index))
            index += 1
        done += 1
        progress(done, total, b.path)
    if replay.findings:
        raise ProofInvalid("the directory does not replay: " + "; ".join(replay.findings[:3]))
    openings = _OpeningCount()
    if bundles:
        await openings.run(client, cp.size, {t.n: fetched[t] for t in level0}, shredded, progress)
    previous = None
    if saved is not None:
        old = saved.checkpoint
        previous = old.size
        if old.size > cp.size:
            # Smaller than the saved one (a replica behind, or a rollback): it must be proven a
            # prefix of the saved tree, from tiles authenticated against that tree.
            await client.trusted_checkpoint(text)
        elif merkle.root_from(reader, old.size) != old.root_hash:
            rewritten = InconsistentLog(
                f"the log of size {cp.size} does not extend the checkpoint of "
                f"size {old.size} this profile saw: the log was rewritten"
            )
            raise await _evidence.detected(client, rewritten, saved.note, text)
    client.memory.save(text)
    result = m.LogVerification(
        cp.origin,
        cp.size,
        b64encode(cp.root_hash),
        len(hash_tiles),
        sum(counts.values()),
        previous,
        dict(sorted(counts.items())),
        replay.statements,
        replay.authority_checked,
        replay.authority_sealed,
        openings.opened,
        openings.sealed,
        openings.entries_sealed,
        len(shredded),
    )
    return result, cp, text


def _shredding(index: int, indexes: object, types: list[str]) -> list[int]:
    """The entries an `audit.shredded` entry at `index` names, each an earlier message entry
    of a shreddable type (protocol 10.7); anything else is refused: a server must not explain
    away a withheld opening (a principal's record, a directory statement) as shredded."""
    if not isinstance(indexes, list) or not all(type(i) is int for i in indexes):
        raise ProofInvalid(f"entry {index}: audit.shredded without a list of indexes")
    for i in indexes:
        if not 0 <= i < index:
            raise ProofInvalid(f"entry {index}: audit.shredded names entry {i}, which is not before it")
        if types[i] not in SHREDDABLE:
            raise ProofInvalid(
                f"entry {index}: audit.shredded names entry {i}, a {types[i]!r}, which is never shredded"
            )
    return list(indexes)


class _OpeningCount:
    """What this auditor may open of every entry v2 (protocol 10.6), from
    `GET /v1/audit/entries`: each entry's bytes must be the leaf the tiles proved, every
    opening is recomputed against its commitment (a mismatch is refused, never skipped), and
    the fields left sealed are counted. Root's auditors are entitled to every field, so for
    them a sealed field of an entry no `audit.shredded` entry names is a withheld opening:
    refused as a finding. Others cannot tell withholding from need-to-know (docs/audit.md)."""

    def __init__(self) -> None:
        self.opened = self.sealed = self.entries_sealed = 0

    async def run(
        self,
        client: AsyncClient,
        size: int,
        level0: dict[int, bytes],
        shredded: set[int],
        progress: Progress,
    ) -> None:
        root = client.principal == "root"
        withheld: list[int] = []
        cursor = 0
        while cursor < size:
            body = await client._json("GET", "/v1/audit/entries", params={"start": cursor, "end": size})
            entries, following = body.get("entries"), body.get("next")
            if not isinstance(entries, list) or type(following) is not int or not cursor < following <= size:
                raise MalformedResponse("the entries answer does not have the documented shape")
            for expected, e in enumerate(entries, start=cursor):
                if not isinstance(e, dict) or e.get("index") != expected or not _entry_ok(e):
                    raise MalformedResponse(f"the entries answer does not hold entry {expected} in order")
                data = _entry_bytes(e["entry"], expected)
                n, at = divmod(expected, tiles.TILE_WIDTH)
                leaf = level0[n][at * merkle.HASH_SIZE : (at + 1) * merkle.HASH_SIZE]
                if merkle.leaf_hash(data) != leaf:
                    raise ProofInvalid(f"entry {expected} served with its openings is not the logged entry")
                view = parse_entry(data, e.get("opening"))
                committed = _committed(data)
                sealed = committed - set(view)
                self.opened += len(committed) - len(sealed)
                self.sealed += len(sealed)
                self.entries_sealed += bool(sealed)
                if sealed and root and expected not in shredded:
                    withheld.append(expected)
            if cursor + len(entries) != following:
                raise MalformedResponse("the entries answer skipped entries")
            cursor = following
            progress(cursor, size, "openings")
        if withheld:
            shown = ", ".join(map(str, withheld[:5])) + (" ..." if len(withheld) > 5 else "")
            raise ProofInvalid(
                f"the server withheld the openings of {len(withheld)} entries from root's auditor "
                f"with no audit.shredded entry naming them: {shown}"
            )


def _entry_ok(e: dict[str, object]) -> bool:
    return isinstance(e.get("entry"), str)


def _entry_bytes(text: str, index: int) -> bytes:
    try:
        return b64decode(text, field=f"entry {index}")
    except MalformedError as e:
        raise MalformedResponse(str(e)) from None


def _committed(data: bytes) -> set[str]:
    """The committed field names of an entry v2 (none for v1)."""
    obj = json.loads(data)
    c = obj.get("c") if isinstance(obj, dict) and obj.get("v") == 2 else None
    return set(c) if isinstance(c, dict) else set()


class _Disclosures:
    """The disclosures this auditor may open (`GET /v1/audit/disclosures`), per range of log
    indexes; none at all once the server says it may open none (not an auditor)."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.refused = False

    async def between(self, start: int, end: int) -> dict[int, dict[str, Disclosure]]:
        out: dict[int, dict[str, Disclosure]] = {}
        while start < end and not self.refused:
            try:
                body = await self.client._json(
                    "GET", "/v1/audit/disclosures", params={"start": start, "end": end}
                )
            except PermissionDenied:
                self.refused = True
                break
            following = body.get("next")
            found = body.get("disclosures")
            if type(following) is not int or not start < following <= end or not isinstance(found, dict):
                raise MalformedResponse("the disclosures answer does not have the documented shape")
            for key, value in found.items():
                try:
                    index = int(key)
                    if not start <= index < following:
                        raise ValueError(key)
                    out[index] = parse_disclosures(value)
                except (ValueError, CryptoError) as e:
                    raise MalformedResponse(f"the disclosures of entry {key} are malformed: {e}") from None
            start = following
        return out


def _cut_bundle(data: bytes, width: int) -> bytes:
    """A full entry bundle served for a partial one: keep only the first `width` entries."""
    pos = 0
    for _ in range(width):
        if pos + 2 > len(data):
            raise MalformedResponse("entry bundle is truncated")
        pos += 2 + int.from_bytes(data[pos : pos + 2], "big")
    return data[:pos]


async def witness(
    client: AsyncClient,
    signer: note.Signer,
    *,
    progress: Progress = _quiet,
    now: int | None = None,
    state: WitnessState | None = None,
) -> tuple[m.LogVerification, str]:
    """Verify the log (tiles, root, consistency), cosign the checkpoint and submit it.

    With `state` (the witness's record, shared with `liaison audit witness --serve`), the
    checkpoint must also extend the latest one this witness key cosigned (proven from the
    authenticated tiles), and becomes the new record before the cosignature leaves.
    """
    result, cp, text = await verify_log(client, progress=progress)
    timestamp = max(1, int(time.time()) if now is None else now)
    line = note.cosign_checkpoint(cp, signer, timestamp)
    if state is not None:
        seen = state.get(cp.origin)
        if seen is not None:
            if seen.size > cp.size:
                raise InconsistentLog(
                    f"this witness already cosigned the checkpoint of size {seen.size}, larger than "
                    f"the {cp.size} the server shows now: the log shrank, or this view is stale"
                )
            proof = await client._consistency_proof(seen.size, cp)
            try:
                merkle.verify_consistency(seen.size, cp.size, seen.root_hash, cp.root_hash, proof)
            except CryptoError as e:
                raise InconsistentLog(
                    f"the checkpoint of size {cp.size} does not extend the one of size {seen.size} "
                    f"this witness cosigned ({e}): refusing to cosign a forked log"
                ) from None
        with state.update() as logs:
            if logs.get(cp.origin) != seen:
                raise InconsistentLog(
                    "the witness's record changed while this checkpoint was checked; run again"
                )
            cosigned = cosigned_note(text.encode("utf-8"), client.memory.log_key, line)
            logs[cp.origin] = Observed(cp.size, cp.root_hash, cosigned)
    await client._json("POST", "/v1/audit/cosignatures", body={"size": cp.size, "cosignature": line})
    return result, line


@dataclass(frozen=True)
class WitnessKey:
    """An auditor's cosigning key (type 0x04), sealed under the profile's passphrase."""

    path: Path

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    def _doc(self) -> dict[str, str]:
        try:
            doc = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            raise KeyStoreError(
                "this profile has no witness key: run 'liaison audit witness-key' "
                "and give the verifier key to the server operator"
            ) from None
        except (OSError, ValueError) as e:
            raise KeyStoreError(f"witness key file {self.path} is damaged") from e
        if not isinstance(doc, dict) or doc.get("v") != 1:
            raise KeyStoreError(f"witness key file {self.path} is damaged")
        return doc

    @property
    def verifier_key(self) -> str:
        return str(self._doc()["verifier_key"])

    def create(self, name: str, passphrase: str) -> str:
        """Make the key (once); returns its verifier key string."""
        if self.exists:
            return self.verifier_key
        try:
            signer_key, verifier_key = note.generate_signer_key(name, sig_type=note.SIG_COSIGNATURE_V1)
        except CryptoError as e:
            raise KeyStoreError(f"bad witness name {name!r}: {e}") from None
        sealed = seal_with_passphrase(signer_key.encode(), passphrase)
        doc = {"v": 1, "name": name, "verifier_key": verifier_key, "sealed": json.loads(sealed)}
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(self.path, (json.dumps(doc, indent=2) + "\n").encode())
        return verifier_key

    def open(self, passphrase: str) -> note.Signer:
        from liaison.crypto.encoding import jcs

        doc = self._doc()
        try:
            secret = open_with_passphrase(jcs(doc["sealed"]), passphrase)
            return note.parse_signer_key(secret.decode())
        except DecryptionFailed:
            raise WrongPassphrase("wrong passphrase for the witness key") from None
        except (CryptoError, MalformedError, KeyError, UnicodeDecodeError) as e:
            raise KeyStoreError(f"witness key file {self.path} is damaged ({e})") from None
