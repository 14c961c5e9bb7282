"""Who may sign which directory statement (the table of protocol 9.4), and the client's decision
on a reader (9.9): pure functions over proven facts, no I/O, no default allow.

The caller proves the facts first (map proofs, disclosures opened against commitments) and
passes what it proved: a `SignerView` of the signer device (its bundle, its principal's public
nation, whether its device statement is active, the predicates its principal statement
opened, whether the current `roots` statement lists it). The server checks the same table on
write (with every true predicate relied on) as a client does before it relies on a statement.

    statement          may be signed by
    roots seq 1        a device it lists (the anchor, 9.7)
    roots seq n > 1    a device listed by seq n - 1
    policy             a root device (its version above the previous one's)
    principal          a root device; or an admin of its nation holding, as true, every
                       level>=, holds: and role:auditor predicate relied on; role:admin: root only
    invitation         a root device, or an admin of its nation
    device seq 1       the device itself and the invitation key of an invitation for the same
                       principal and nation signed with authority; a root device needs none
    device seq > 1     (revoked) the device, another device of its principal, a root device,
                       or an admin of its nation
    channel            a root device, or an admin whose nation is in the ceiling's release list,
                       holding level>= the ceiling's level and holds: each of its compartments
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from . import _primitives as p
from .errors import AuthorityError, BadSignature
from .keys import PublicBundle
from .labels import Label
from .policy import Policy
from .statements import ANY_NATION, SignedStatement, Statement, check_successor, label_needs

__all__ = ["SignerView", "check_authority", "check_roots_chain", "excluded_ok", "reader_ok"]

#: Predicates a nation admin must hold itself to vouch for them as true (9.4). `role:admin` is
#: the root's alone; `active`, `person` and `role:analyst` carry no privilege to grant.
_GRANTED_PREFIXES = ("level>=", "holds:")
_GRANTED_ROLES = ("role:auditor",)
_ROOT_ONLY = "role:admin"


@dataclass(frozen=True)
class SignerView:
    """What the relying party proved about a signer device.

    `device_active`: its newest device statement is proven current and active. A root device
    that has no device statement yet (at genesis it signs `roots`, its principal and the policy
    before its own enrolment statement) counts as active until one revokes it; a device whose
    newest statement is revoked never does. `facts`: the predicates its principal's statement
    opened (only those disclosed: an unopened one is false). `is_root_device`: the current
    `roots` statement lists it.
    """

    device: str
    bundle: PublicBundle
    principal: str
    nation: str
    device_active: bool
    facts: Mapping[str, bool]
    is_root_device: bool

    def holds(self, predicate: str) -> bool:
        return self.facts.get(predicate) is True


def _deny(reason: str, detail: str) -> AuthorityError:
    return AuthorityError(reason, detail)


def _root_device(signer: SignerView) -> bool:
    """A device listed in the current roots statement and not revoked."""
    return signer.is_root_device and signer.device_active


def _check_admin_of(signer: SignerView, nation: str, what: str) -> None:
    """An admin of `nation`: an active device of a principal that opens `active` and
    `role:admin` as true, whose public nation is `nation` ("*" is no nation's)."""
    if not signer.device_active:
        raise _deny("signer-revoked", f"the signer device of {what} is not active")
    if not (signer.holds("active") and signer.holds(_ROOT_ONLY)):
        raise _deny("not-admin", f"{what} needs a root device or an active admin")
    if signer.nation != nation or nation == ANY_NATION:
        raise _deny("other-nation", f"a {signer.nation} admin cannot sign {what} of {nation}")


def check_authority(
    signed: SignedStatement,
    signer: SignerView,
    *,
    relied: Collection[str],
    previous: Statement | None = None,
    target_devices_principal: str | None = None,
    invitation_signer: SignerView | None = None,
) -> None:
    """AuthorityError (a StatementInvalid) unless the 9.4 table lets `signer` make `signed`.

    Verifies the signer's signatures (reason `signature`) and, with `previous`, the chain rule
    (`check_successor`: StatementInvalid). `relied`: the target principal's predicates the
    relying party relies on as true (the server passes every true one). A device's first
    statement with an invitation needs `invitation_signer` (the invitation's signer, whose own
    authority is checked as here) and the invitation key's signature; without an invitation it
    passes only for a root device signing its own statement. `target_devices_principal`: when
    given, a device statement must be of that principal (reason `principal`).
    """
    statement = signed.statement
    what = f"{statement.record} seq {statement.seq}"
    if signer.device != statement.signer or signer.bundle.device_id != signer.device:
        raise _deny("signer", f"{what} is signed by {statement.signer}, not by the device given")
    try:
        signed.verify(signer.bundle)
    except BadSignature as e:
        raise _deny("signature", f"{what}: {e}") from None
    if previous is not None:
        check_successor(previous, statement)
    if (
        statement.type == "device"
        and target_devices_principal is not None
        and statement.public["principal"] != target_devices_principal
    ):
        raise _deny("principal", f"{what} is a device of another principal")
    _CHECKS[statement.type](signed, signer, what, relied, previous, invitation_signer)


def _roots(
    signed: SignedStatement,
    signer: SignerView,
    what: str,
    relied: Collection[str],
    previous: Statement | None,
    invitation_signer: SignerView | None,
) -> None:
    statement = signed.statement
    if statement.seq == 1:  # the anchor: trusted by its digest (9.7), signed by a device it lists
        if signer.device not in statement.devices:
            raise _deny("not-root", f"{what} must be signed by a device it lists")
        return
    if previous is None:
        raise _deny("chain", f"{what} is checked against the roots statement before it")
    if signer.device not in previous.devices:
        raise _deny("not-root", f"{what} must be signed by a device listed by seq {previous.seq}")
    if not signer.device_active:
        raise _deny("signer-revoked", f"the signer device of {what} is not active")


def _policy(
    signed: SignedStatement,
    signer: SignerView,
    what: str,
    relied: Collection[str],
    previous: Statement | None,
    invitation_signer: SignerView | None,
) -> None:
    _check_root(signer, what)


def _check_root(signer: SignerView, what: str) -> None:
    if not signer.is_root_device:
        raise _deny("not-root", f"{what} needs a root device")
    if not signer.device_active:
        raise _deny("signer-revoked", f"the signer device of {what} is not active")


def _principal(
    signed: SignedStatement,
    signer: SignerView,
    what: str,
    relied: Collection[str],
    previous: Statement | None,
    invitation_signer: SignerView | None,
) -> None:
    if _root_device(signer):
        return
    _check_admin_of(signer, signed.statement.nation, what)
    if _ROOT_ONLY in relied:
        raise _deny("grant-above-own", f"{what} makes an admin: only a root device may")
    above = sorted(
        fact
        for fact in relied
        if (fact.startswith(_GRANTED_PREFIXES) or fact in _GRANTED_ROLES) and not signer.holds(fact)
    )
    if above:
        raise _deny(
            "grant-above-own", f"{what} vouches for {', '.join(above)}, which its signer does not hold"
        )


def _invitation(
    signed: SignedStatement,
    signer: SignerView,
    what: str,
    relied: Collection[str],
    previous: Statement | None,
    invitation_signer: SignerView | None,
) -> None:
    if _root_device(signer):
        return
    if signed.statement.public.get("principal") == "root":
        # A device of the root principal is a root device (9.4): only a root device invites one.
        raise _deny("not-root", f"{what}: only a root device invites a device of the root principal")
    _check_admin_of(signer, signed.statement.nation, what)


def _device(
    signed: SignedStatement,
    signer: SignerView,
    what: str,
    relied: Collection[str],
    previous: Statement | None,
    invitation_signer: SignerView | None,
) -> None:
    statement = signed.statement
    device, principal = statement.public["device"], statement.public["principal"]
    if statement.seq > 1:
        if statement.public["status"] != "revoked":
            raise _deny("status", f"{what}: a device's later statement can only revoke it")
        if not signer.device_active:
            raise _deny("signer-revoked", f"the signer device of {what} is not active")
        if signer.device == device or signer.principal == principal or _root_device(signer):
            return
        _check_admin_of(signer, statement.nation, what)
        return
    if statement.public["status"] != "active":
        raise _deny("status", f"{what}: a device's first statement enrols it (active)")
    if signer.device != device:
        raise _deny("signer", f"{what} must be signed by the device itself")
    invitation = statement.invitation
    if invitation is None:
        # A device of the anchored roots (genesis): its statement is signed by the operator's
        # root code's key, which the server checks against the code's row; no statement
        # names that key, so a relying party has nothing to check it against.
        if not signer.is_root_device:
            raise _deny("no-invitation", f"{what} has no invitation, and the device is not a root device")
        return
    _check_invitation(signed, invitation, what, invitation_signer)


def _check_invitation(
    signed: SignedStatement, invitation: SignedStatement, what: str, invitation_signer: SignerView | None
) -> None:
    statement, inv = signed.statement, invitation.statement
    if inv.origin != statement.origin:
        raise _deny("invitation", f"the invitation of {what} is for another log")
    if inv.public["principal"] != statement.public["principal"] or inv.nation != statement.nation:
        raise _deny("invitation", f"the invitation of {what} is for another principal or nation")
    if invitation_signer is None:
        raise _deny("invitation", f"the signer of the invitation of {what} is not given")
    try:
        check_authority(invitation, invitation_signer, relied=())
    except AuthorityError as e:
        raise _deny(e.reason, f"the invitation of {what}: {e.detail}") from None
    try:
        signed.verify_invitation(inv.key)
    except BadSignature as e:
        raise _deny("invitation-signature", f"{what}: {e}") from None


def _channel(
    signed: SignedStatement,
    signer: SignerView,
    what: str,
    relied: Collection[str],
    previous: Statement | None,
    invitation_signer: SignerView | None,
) -> None:
    if _root_device(signer):
        return
    if not signer.device_active:
        raise _deny("signer-revoked", f"the signer device of {what} is not active")
    if not (signer.holds("active") and signer.holds(_ROOT_ONLY)):
        raise _deny("not-admin", f"{what} needs a root device or an active admin")
    ceiling = signed.statement.ceiling
    if signer.nation not in ceiling.rel:
        raise _deny("other-nation", f"{signer.nation} is not in the release list of {what}'s ceiling")
    needed = [f"level>={ceiling.classification}", *(f"holds:{c}" for c in ceiling.compartments)]
    missing = [fact for fact in needed if not signer.holds(fact)]
    if missing:
        raise _deny("grant-above-own", f"the ceiling of {what} is above its signer: {', '.join(missing)}")


_CHECKS = {
    "roots": _roots,
    "policy": _policy,
    "principal": _principal,
    "invitation": _invitation,
    "device": _device,
    "channel": _channel,
}


def check_roots_chain(
    anchor_digest: bytes,
    anchor_seq: int,
    chain: Sequence[SignedStatement],
    bundles: Mapping[str, PublicBundle],
) -> Statement:
    """The newest `roots` statement, from the anchored one (`chain[0]`, whose digest and seq
    the anchors name, 9.7) through each successor, each the next of its predecessor and signed
    by a device its predecessor lists (`bundles`: device id -> bundle of every signer).
    AuthorityError (`anchor`, `not-root`, `signer`, `signature`) or StatementInvalid (the
    chain rule) otherwise."""
    if not chain:
        raise _deny("anchor", "the roots chain is empty")
    anchored = chain[0].statement
    if anchored.type != "roots" or anchored.seq != anchor_seq:
        raise _deny("anchor", f"the roots chain must start at the anchored roots seq {anchor_seq}")
    if not p.bytes_eq(anchored.digest(), anchor_digest):
        raise _deny("anchor", "the roots chain does not start at the anchored statement")
    previous = anchored
    for signed in chain[1:]:
        statement = signed.statement
        check_successor(previous, statement)
        what = f"roots seq {statement.seq}"
        if statement.signer not in previous.devices:
            raise _deny("not-root", f"{what} is signed by a device that seq {previous.seq} does not list")
        bundle = bundles.get(statement.signer)
        if bundle is None or bundle.device_id != statement.signer:
            raise _deny("signer", f"the bundle of the signer of {what} is not given")
        try:
            signed.verify(bundle)
        except BadSignature as e:
            raise _deny("signature", f"{what}: {e}") from None
        previous = statement
    return previous


# --- the client's decision on a reader (9.9) ------------------------------------------------

_REASONS = (
    ("active", "inactive"),
    ("level>=", "clearance"),
    ("holds:", "compartment"),
    ("person", "system-not-allowed"),
)


def _reason(predicate: str) -> str:
    return next(reason for prefix, reason in _REASONS if predicate.startswith(prefix))


def reader_ok(policy: Policy, label: Label, *, nation: str, facts: Mapping[str, bool]) -> str | None:
    """None if the opened `facts` and public `nation` prove that the principal may read `label`
    (every `label_needs` predicate opened true, its nation in REL TO); else why not: the first
    refusal in the order of `policy.check_dominates` (`inactive`, `clearance`,
    `releasability`, `compartment`, `system-not-allowed`), or `not-disclosed` when nothing
    refuses but a needed predicate was not opened (unproven is not allowed)."""
    needs = label_needs(policy, label)
    false = [n for n in needs if facts.get(n) is False]
    order = ("inactive", "clearance", "releasability", "compartment", "system-not-allowed")
    refusals = {_reason(n) for n in false}
    if nation not in label.rel:
        refusals.add("releasability")
    for reason in order:
        if reason in refusals:
            return reason
    if any(facts.get(n) is not True for n in needs):
        return "not-disclosed"
    return None


def excluded_ok(policy: Policy, label: Label, *, nation: str, facts: Mapping[str, bool]) -> bool:
    """Whether the opened `facts` and public `nation` prove the principal may NOT read `label`:
    its nation is not in REL TO, or a needed predicate was opened false (monotone predicates:
    a false one cannot be outweighed). Unopened proves nothing."""
    if nation not in label.rel:
        return True
    return any(facts.get(n) is False for n in label_needs(policy, label))
