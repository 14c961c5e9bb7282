"""Replay the directory from the log: every `map.head` must follow from the statements before it.

Anyone holding the log's entries can check the directory's structure (protocol 9.10): each
`directory.statement` entry carries its signed statement, so a replay rebuilds every record's
chain (`seq`, `prev`), checks each signature with the signer's bundle (learnt from that
device's own statement, which carries it), and applies the batch's leaves to the map; the
batch's `map.head` must then name exactly the version and root the replay computed. A server
that changed a leaf without a statement, dropped or reordered a statement, or signed a map
head it did not compute is caught at that head.

Authority (who may sign what, the 9.4 table) needs the predicates the statements commit to:
fed with a statement's disclosures (`feed(..., disclosures=)`: the operator's own replay has
them all, an auditor those it is entitled to), the replay also checks that each statement's
signer had authority as the directory stood when it was logged (every statement before it).
A check that needs a disclosure the replay was not given is counted as sealed, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .authority import SignerView, check_authority
from .commitments import Disclosure
from .encoding import b64url_decode, b64url_encode
from .errors import CryptoError
from .keys import PublicBundle
from .statements import SignedStatement, Statement, check_successor, leaf_value, open_all
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
    #: Check authority too (the caller feeds disclosures); else structure and signatures only.
    authority: bool = False
    #: Statements whose signer's authority was checked, and those a sealed disclosure kept
    #: from being checked.
    authority_checked: int = 0
    authority_sealed: int = 0
    _heads: dict[str, Statement] = field(default_factory=dict)
    _bundles: dict[str, PublicBundle] = field(default_factory=dict)
    _pending: dict[bytes, bytes] = field(default_factory=dict)
    #: The predicates each principal's newest statement opened (None: sealed to this replay).
    _facts: dict[str, dict[str, bool] | None] = field(default_factory=dict)
    _roots: tuple[str, ...] = ()

    def _fail(self, index: int, message: str) -> None:
        if len(self.findings) < _MAX_FINDINGS:
            self.findings.append(f"entry {index}: {message}")
        if self.first_bad_index is None:
            self.first_bad_index = index

    def feed(
        self, index: int, entry: Mapping[str, Any], disclosures: Mapping[str, Disclosure] | None = None
    ) -> None:
        """One parsed log entry, in order; for a statement with committed facts, its
        disclosures when this replay may see them (None: sealed)."""
        kind = entry.get("type")
        if kind == "directory.statement":
            self._statement(index, entry, disclosures)
        elif kind == "map.head":
            self._head(index, entry)

    def _statement(
        self, index: int, entry: Mapping[str, Any], disclosures: Mapping[str, Disclosure] | None
    ) -> None:
        self.statements += 1
        try:
            signed = SignedStatement.from_json(entry.get("statement"))
        except CryptoError as e:
            self._fail(index, f"malformed directory statement: {e}")
            return
        st = signed.statement
        bad = len(self.findings), self.first_bad_index
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
        structure_ok = (len(self.findings), self.first_bad_index) == bad
        if self.authority and structure_ok:
            self._check_authority(index, signed, disclosures)
        self._heads[st.record] = st
        self._pending[map_key(st.nation, st.record)] = digest
        if st.type == "roots":
            self._roots = st.devices

    # --- authority (9.4), as the directory stood when each statement was logged ---------------

    def _check_authority(
        self, index: int, signed: SignedStatement, disclosures: Mapping[str, Disclosure] | None
    ) -> None:
        st = signed.statement
        sealed = False
        own: dict[str, bool] | None = {}
        if st.facts:
            if disclosures is None:
                own, sealed = None, True
            else:
                try:
                    own = open_all(st, disclosures)
                except CryptoError as e:
                    self._fail(index, f"{st.record} seq {st.seq}: its disclosures do not open ({e})")
                    own = None
        if st.type == "principal":
            self._facts[st.record] = own
        if own is None and not sealed:
            return
        view, hidden = self._view(st.signer, st)
        sealed = sealed or hidden
        invitation_signer = None
        if st.type == "device" and st.seq == 1 and st.invitation is not None:
            invitation_signer, hidden = self._view(st.invitation.statement.signer, None)
            sealed = sealed or hidden
        if view is None:
            return  # no device statement for the signer: the structure check named it
        relied = sorted(k for k, v in (own or {}).items() if v is True) if st.type == "principal" else ()
        try:
            check_authority(
                signed,
                view,
                relied=relied,
                previous=self._heads.get(st.record),
                invitation_signer=invitation_signer,
            )
        except CryptoError as e:
            if sealed:  # a disclosure this replay was not given might have allowed it
                self.authority_sealed += 1
                return
            self._fail(index, f"{st.record} seq {st.seq}: its signer {st.signer} had no authority ({e})")
            return
        if own is None and not view.is_root_device:
            # An admin may grant only what it holds: unknown without the grant's disclosures.
            # (A root device may grant anything: its authority is proven without them.)
            self.authority_sealed += 1
            return
        self.authority_checked += 1

    def _view(self, device: str, own: Statement | None) -> tuple[SignerView | None, bool]:
        """What the directory said of a signer device before this statement (`own`: the
        statement being checked, when a device signs its own first statement), and whether
        its principal's predicates were sealed to this replay."""
        st = self._heads.get(f"device:{device}")
        if st is None and own is not None and own.type == "device" and own.id == device:
            st = own
        if st is None:
            return None, False
        principal = str(st.public["principal"])
        facts = self._facts.get(f"principal:{principal}", {})
        active = st.public["status"] == "active"
        root = device in self._roots or principal == "root"
        view = SignerView(device, st.bundle, principal, st.nation, active, facts or {}, root)
        return view, facts is None and not root

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
