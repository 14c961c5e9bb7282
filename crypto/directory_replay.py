"""Replay the directory from the log: every `map.head` must follow from the statements before it.

Anyone holding the log's entries can check the directory's structure (protocol 9.10): each
`directory.statement` entry carries its signed statement, so a replay rebuilds every record's
chain (`seq`, `prev`), checks each signature with the signer's bundle (learnt from that
device's own statement, which carries it), and applies the batch's leaves to the map; the
batch's `map.head` must then name exactly the version and root the replay computed. A server
that changed a leaf without a statement, dropped or reordered a statement, or signed a map
head it did not compute is caught at that head. Authority (who may sign what) needs the
disclosures and is checked by entitled auditors; this replay checks structure and signatures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .encoding import b64url_decode, b64url_encode
from .errors import CryptoError
from .keys import PublicBundle
from .statements import SignedStatement, Statement, check_successor, leaf_value
from .vmap import PersistentMap, map_key

__all__ = ["DirectoryReplay"]

_MAX_FINDINGS = 20


@dataclass
class DirectoryReplay:
    """Feed every entry in log order (`feed`); then `findings` lists what did not follow."""

    map: PersistentMap = field(default_factory=PersistentMap)
    version: int = 0
    statements: int = 0
    map_heads: int = 0
    findings: list[str] = field(default_factory=list)
    first_bad_index: int | None = None
    _heads: dict[str, Statement] = field(default_factory=dict)
    _bundles: dict[str, PublicBundle] = field(default_factory=dict)
    _pending: dict[bytes, bytes] = field(default_factory=dict)

    def _fail(self, index: int, message: str) -> None:
        if len(self.findings) < _MAX_FINDINGS:
            self.findings.append(f"entry {index}: {message}")
        if self.first_bad_index is None:
            self.first_bad_index = index

    def feed(self, index: int, entry: Mapping[str, Any]) -> None:
        """One parsed log entry, in order."""
        kind = entry.get("type")
        if kind == "directory.statement":
            self._statement(index, entry)
        elif kind == "map.head":
            self._head(index, entry)

    def _statement(self, index: int, entry: Mapping[str, Any]) -> None:
        self.statements += 1
        try:
            signed = SignedStatement.from_json(entry.get("statement"))
        except CryptoError as e:
            self._fail(index, f"malformed directory statement: {e}")
            return
        st = signed.statement
        digest = st.digest()
        if entry.get("digest") != b64url_encode(digest) or entry.get("record") != st.record:
            self._fail(index, f"the entry's record or digest is not its statement's ({st.record})")
        try:
            check_successor(self._heads.get(st.record), st)
        except CryptoError as e:
            self._fail(index, f"{st.record} seq {st.seq} does not follow its chain: {e}")
        if st.type == "device" and st.seq == 1:
            bundle = st.bundle
            self._bundles[st.id] = bundle
        signer = self._bundles.get(st.signer)
        if signer is None:
            self._fail(
                index,
                f"{st.record} seq {st.seq} is signed by {st.signer}, a device with no statement before it",
            )
        else:
            try:
                signed.verify(signer)
            except CryptoError as e:
                self._fail(index, f"{st.record} seq {st.seq}: the signature does not verify ({e})")
        self._heads[st.record] = st
        self._pending[map_key(st.nation, st.record)] = digest

    def _head(self, index: int, entry: Mapping[str, Any]) -> None:
        self.map_heads += 1
        if self._pending:
            # The batch's statements take the next version; each leaf binds it (9.5).
            leaves = {k: leaf_value(d, self.version + 1) for k, d in self._pending.items()}
            self.map = self.map.set_many(leaves)
            self.version += 1
            self._pending = {}
        try:
            root = b64url_decode(str(entry.get("root")), field="root")
        except CryptoError:
            self._fail(index, "map.head: malformed root")
            return
        if entry.get("version") != self.version or root != self.map.root():
            mine = b64url_encode(self.map.root())
            self._fail(
                index,
                f"map.head says version {entry.get('version')} root {entry.get('root')}, but the "
                f"statements logged before it give version {self.version} root {mine}",
            )

    @property
    def ok(self) -> bool:
        return not self.findings
