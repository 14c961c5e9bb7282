"""Message use cases: submit (every check of SPEC 4), fetch, ack, and retention (the inbox: `inbox`).

A submit runs in two stages. `precheck` makes every check that needs no database (the
envelope's form, label, suite, signatures, size and time) on the event loop, so verifying many
requests never holds the write transaction. Then one writer job consumes the request, checks
the sender and the recipients against the channel (`check_recipients`, a pure function) and
stores the message, its deliveries and its `message.accepted` entry.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import delete, select, update

from liaison.crypto.encoding import format_time, jcs
from liaison.crypto.entry_v2 import SHREDDABLE
from liaison.crypto.envelope import ParsedEnvelope, parse_envelope, verify_envelope
from liaison.crypto.errors import (
    BadSignature,
    LabelSyntaxError,
    MalformedEnvelope,
    PolicyViolation,
    UnsupportedSuite,
)
from liaison.crypto.labels import Label, check_known
from liaison.crypto.policy import Policy, check_ceiling, check_dominates, check_suite

from ..problems import Problem
from ..state import AppState
from ..storage import events
from ..storage.models import AuditEntry, AuditOpening, Channel, Message, Principal
from ..writer import CacheSlot, Refusal, Tx
from . import attachments
from .access import delivered, recheck
from .auth import Caller, SignedRequest
from .directory import Eligibility, eligibility
from .readmodels import PrincipalView, label_of
from .refusals import message_rejected, refuse

__all__ = ["Accepted", "ack", "check_recipients", "expire_due", "fetch", "precheck", "submit"]

# The hot path's statements, on the writer's raw connection (`Tx.raw`).
#: An accepted message (its id looked up free for the batch), inserted with the batch's
#: others before their deliveries, which name it (`Tx.insert_later` writes tables in the
#: order first deferred into).
_MESSAGE_COLUMNS = (
    "message (id, channel_id, sender_device, sender_principal, label, classification, "
    "envelope, digest, size, created, accepted_at, expires_at, log_index)",
    ("text",) * 6 + ("bytea", "text", "int4") + ("timestamp",) * 3 + ("int8",),
)
#: A message's deliveries, inserted with the batch's others (`Tx.insert_later`; the column
#: types are PostgreSQL's, for its binary COPY); `seq` follows the batch's order.
_DELIVERY_COLUMNS = ("delivery (message_id, device_id)", ("text", "text"))

#: Who may receive what, kept in the writer's cache (which every change to it empties).
CEILING: CacheSlot[Label] = CacheSlot("ceiling")
ELIGIBILITY: CacheSlot[Eligibility] = CacheSlot("eligibility")


#: The envelope versions a submit may use (protocol 5.4): v1 envelopes stored before v2 stay
#: readable until they expire, but no new one is accepted.
ACCEPTED_VERSIONS: frozenset[int] = frozenset({2})


@dataclass(frozen=True)
class Accepted:
    id: str
    log_index: int
    recipients: int


class _Early(Exception):
    """A refusal found before the writer (no database needed)."""

    def __init__(self, slug: str, detail: str, envelope_id: str | None) -> None:
        super().__init__(detail)
        self.slug, self.detail, self.envelope_id = slug, detail, envelope_id


def _size(parsed: ParsedEnvelope) -> int:
    """What the log and the inbox record: the padded size, never the exact length (v2)."""
    return parsed.padded_size


@dataclass(frozen=True)
class _Submission:
    """A prechecked envelope and the values the writer job needs of it, computed once."""

    parsed: ParsedEnvelope
    label_json: dict[str, Any]
    label_key: str  # the label's JCS text: how it is stored, and a cache key
    size: int

    @classmethod
    def of(cls, parsed: ParsedEnvelope) -> _Submission:
        label_json = parsed.label.to_json()
        return cls(parsed, label_json, jcs(label_json).decode(), _size(parsed))


def precheck(
    policy: Policy, skew_seconds: int, signed: SignedRequest, obj: Any, now: datetime
) -> ParsedEnvelope:
    """The CPU-only checks of SPEC 4 (no database), in their order; raises _Early."""
    raw_id = obj.get("id") if isinstance(obj, dict) else None
    eid = raw_id[:36] if isinstance(raw_id, str) else None
    try:
        parsed = parse_envelope(obj)
    except UnsupportedSuite as e:
        raise _Early("unsupported-suite", str(e), eid) from None
    except MalformedEnvelope as e:
        raise _Early("malformed-envelope", str(e), eid) from None
    if parsed.version not in ACCEPTED_VERSIONS:
        raise _Early(
            "malformed-envelope", f"envelope v{parsed.version} is no longer accepted: clients write v2", eid
        )
    try:
        check_known(parsed.label, policy)  # parse_envelope checked its form
    except LabelSyntaxError as e:
        raise _Early("malformed-label", str(e), eid) from None
    if parsed.sender != signed.device_id:
        raise _Early("sender-mismatch", "the envelope's sender is not the signing device", eid)
    rule = policy.rule(parsed.label.classification)
    try:
        check_suite(policy, parsed.label, parsed.suite, parsed.signature_algs)
    except PolicyViolation as e:
        raise _Early(e.reason, e.detail, eid) from None
    try:
        verify_envelope(parsed, signed.bundle, required=rule.signatures)
    except BadSignature as e:
        raise _Early("bad-envelope-signature", str(e), eid) from None
    if _size(parsed) > rule.max_bytes:
        raise _Early("too-large", f"{_size(parsed)} bytes exceeds {rule.max_bytes} at {rule.name}", eid)
    if parsed.attachments:
        try:
            attachments.check_sizes(rule, parsed)
        except PolicyViolation as e:
            raise _Early(e.reason, e.detail, eid) from None
    if abs((now - parsed.created).total_seconds()) > skew_seconds:
        raise _Early("stale-envelope", "created is outside the clock-skew window", eid)
    return parsed


def check_recipients(elig: Eligibility, given: Collection[str], to: Sequence[str] | None) -> list[str]:
    """The recipient devices of an envelope, checked against who may receive it (pure).

    Without `to`, every eligible device must be a recipient; with `to`, exactly the eligible
    devices of the principals it names. Returns the recipients sorted; raises PolicyViolation
    (`ineligible-recipient` or `missing-recipient`) naming the devices or principals at fault.
    """
    expected = set(elig.devices)
    if to is not None:
        bad = sorted(set(to) - set(elig.devices.values()))
        if bad:
            raise PolicyViolation(
                "ineligible-recipient",
                f"not eligible: {', '.join(bad)} "
                f"({', '.join(elig.excluded.get(b, 'not-member') for b in bad)})",
            )
        expected = {d for d, pid in elig.devices.items() if pid in to}
    given_set = set(given)
    extra, missing = sorted(given_set - set(elig.devices)), sorted(expected - given_set)
    if extra:
        raise PolicyViolation("ineligible-recipient", f"device(s) not eligible: {', '.join(extra)}")
    if missing:
        raise PolicyViolation("missing-recipient", f"eligible device(s) missing: {', '.join(missing)}")
    if to is not None and given_set != expected:
        raise PolicyViolation("ineligible-recipient", "recipients must be exactly the devices of 'to'")
    return sorted(given_set)


def check_key_ids(elig: Eligibility, key_ids: Mapping[str, str]) -> None:
    """Each recipient entry names the key id of that device's enrolled KEM key (pure; the
    recipients are already checked to be eligible). Raises PolicyViolation `wrong-key-id`."""
    wrong = sorted(dev for dev, key_id in key_ids.items() if elig.key_ids.get(dev) != key_id)
    if wrong:
        raise PolicyViolation("wrong-key-id", f"key id is not the device's KEM key: {', '.join(wrong)}")


async def submit(
    state: AppState, signed: SignedRequest, envelope: Any, to: list[str] | None
) -> tuple[Accepted, dict[str, Any]]:
    """Accept an envelope or refuse it with a logged reason. Returns the result and receipt."""
    try:
        parsed = precheck(
            state.policy, state.settings.clock_skew_seconds, signed, envelope, datetime.now(UTC)
        )
    except _Early as e:
        await _reject_early(state, signed, e)
    sub = _Submission.of(parsed)
    result = await state.writer.run(
        lambda tx: _accept(state, tx, signed, sub, to),
        shares_cache=True,
        savepoint=False,
        sees_deferred=False,  # it reads no other message's deliveries
        nonce=signed.claim,
        message_id=parsed.id,
    )
    state.metrics.accepted.inc()
    accepted = result.value
    return accepted, result.receipt(accepted.log_index).to_json()


async def _reject_early(state: AppState, signed: SignedRequest, e: _Early) -> NoReturn:
    """Log `message.rejected` for a precheck refusal and raise it. The request is consumed
    first, so a replayed request or a revoked device is refused as such, not as a bad
    envelope."""

    def consume(tx: Tx) -> None:
        signed.consume(tx)
        state.metrics.rejected.labels(e.slug).inc()

    await refuse(
        state,
        Problem(e.slug, e.detail),
        message_rejected(signed.device_id, e.slug, e.envelope_id, e.detail),
        first=consume,
    )


def _accept(
    state: AppState, tx: Tx, signed: SignedRequest, sub: _Submission, to: list[str] | None
) -> Accepted:
    """The writer job of a submit: consume, check against the channel, store, log."""
    principal = signed.consume(tx)
    parsed = sub.parsed

    def refused(reason: str, why: str) -> Refusal:
        state.metrics.rejected.labels(reason).inc()
        return Refusal(Problem(reason, why), message_rejected(signed.device_id, reason, parsed.id, why))

    try:
        elig = _check_channel(state.policy, tx, principal, sub)
        recipients = check_recipients(elig, parsed.recipients, to)
        check_key_ids(elig, parsed.key_ids)
        if parsed.attachments:
            attachments.check_named(tx, signed.device_id, parsed)
    except PolicyViolation as e:
        raise refused(e.reason, e.detail) from None
    accepted = _store(state, tx, signed, principal, sub, recipients)
    if accepted is None:  # nothing was written: the id is taken
        raise refused("duplicate-envelope", f"envelope {parsed.id} was already accepted")
    if parsed.attachments:
        attachments.mark_attached(tx, parsed)
    return accepted


def _ceiling(tx: Tx, channel: str) -> Label:
    ceiling = tx.cache.get(CEILING, channel)
    if ceiling is None:
        text_ = tx.session.scalar(select(Channel.ceiling).where(Channel.id == channel))
        if text_ is None:
            raise PolicyViolation("not-found", f"no channel {channel}")
        ceiling = tx.cache.put(CEILING, channel, label_of(text_))
    return ceiling


def _eligibility(policy: Policy, tx: Tx, sub: _Submission) -> Eligibility:
    parsed = sub.parsed
    key = (parsed.channel, sub.label_key, parsed.suite)
    elig = tx.cache.get(ELIGIBILITY, key)
    if elig is None:
        elig = tx.cache.put(
            ELIGIBILITY, key, eligibility(tx.session, policy, parsed.channel, parsed.label, parsed.suite)
        )
    return elig


def _check_channel(policy: Policy, tx: Tx, principal: PrincipalView, sub: _Submission) -> Eligibility:
    """The sender may send this label on this channel: it dominates the label, is a member,
    and the label is under the channel's ceiling. Raises PolicyViolation; returns who may
    receive the label there."""
    parsed = sub.parsed
    try:
        check_dominates(policy, principal.subject, parsed.label)
    except PolicyViolation as e:
        raise PolicyViolation(e.reason, f"sender: {e.detail}") from None
    ceiling = _ceiling(tx, parsed.channel)
    elig = _eligibility(policy, tx, sub)
    if principal.id not in elig.members:
        raise PolicyViolation("not-member", f"{principal.id} is not a member of {parsed.channel}")
    check_ceiling(policy, parsed.label, ceiling)
    return elig


def _store(
    state: AppState,
    tx: Tx,
    signed: SignedRequest,
    principal: PrincipalView,
    sub: _Submission,
    recipients: list[str],
) -> Accepted | None:
    """Log `message.accepted`, insert the message and its deliveries, tell live listeners.
    None when the envelope id is taken (nothing was written)."""
    raw, parsed, label = tx.raw, sub.parsed, sub.parsed.label
    taken = tx.message_id_taken(parsed.id)
    if taken is None:
        raise RuntimeError("a submit's job declares its envelope id (Writer.run's message_id)")
    if taken:
        return None
    rule = state.policy.rule(label.classification)
    digest = parsed.digest.hex()
    index = tx.audit(
        "message.accepted",
        signed.device_id,
        parsed.id,
        id=parsed.id,
        channel=parsed.channel,
        sender=signed.device_id,
        label=sub.label_json,
        envelope_digest=digest,
        recipients=recipients,
        size=sub.size,
    )
    row = (
        parsed.id,
        parsed.channel,
        signed.device_id,
        principal.id,
        sub.label_key,
        label.classification,
        parsed.canonical,
        digest,
        sub.size,
        raw.time(parsed.created),
        raw.time(tx.now),
        raw.time(tx.now + timedelta(days=rule.retention_days)),
        index,
    )
    tx.insert_later(*_MESSAGE_COLUMNS, [row])  # free when the batch began, and no job took it since
    tx.take_message_id(parsed.id)
    tx.insert_later(*_DELIVERY_COLUMNS, [(parsed.id, d) for d in recipients])
    event = {"type": "message", "id": parsed.id, "channel": parsed.channel, "log_index": index}
    # On PostgreSQL NOTIFY is transactional: listeners in every replica hear it on commit. It
    # names the message, never its recipients (a list as long as the sender makes it; NOTIFY
    # takes 8,000 bytes at most): each replica looks up its own streaming recipients.
    # On SQLite this process wakes its own streams after the commit, having marked the message
    # as published here first (the other processes' `SqliteListener` find it by polling; this
    # one's skips it, even when its poll sees the commit before the hook runs).
    if not tx.notify(events.CHANNEL, json.dumps(event)):
        state.hub.mark_local(parsed.id)
        tx.after_commit(lambda: state.hub.publish(event, recipients))
    return Accepted(parsed.id, index, len(recipients))


async def fetch(state: AppState, signed: SignedRequest, message_id: str) -> dict[str, Any]:
    """One message for a recipient device, re-checking dominance now, logged as delivered.

    One writer job, as for submit: consume the request (nonce, device, principal), then read,
    check and log. It changes nothing the writer's cache holds.
    """

    def job(tx: Tx) -> dict[str, Any]:
        caller = signed.caller(tx)
        m, d = delivered(tx, caller, message_id)
        recheck(state, caller, caller.principal, m)
        if m.envelope is None:
            raise Problem("not-found", "the message expired and its ciphertext was destroyed")
        # Proof that the log holds this message's `message.accepted` entry, against the latest
        # checkpoint: the reader checks it (and that checkpoint's consistency with what it saw).
        # Read before the one write below, so nothing can fail after it (no savepoint).
        receipt = state.log.receipt(tx.log, m.log_index)
        if d.fetched_at is None:
            d.fetched_at = tx.now
            tx.audit("message.delivered", caller.device_id, m.id, id=m.id, device=caller.device_id)
        return {
            "envelope": json.loads(m.envelope),
            "log_index": m.log_index,
            "channel": m.channel_id,
            "sender": m.sender_principal,
            "label": json.loads(m.label),
            "receipt": receipt.to_json(),
        }

    return (await state.writer.run(job, shares_cache=True, savepoint=False, nonce=signed.claim)).value


async def ack(state: AppState, caller: Caller, message_id: str) -> dict[str, Any]:
    """Mark a delivered message read, re-checking dominance as fetch does: an ack is logged as
    `message.acked`, so acknowledging what one may no longer read is refused and logged."""

    def job(tx: Tx) -> dict[str, Any]:
        m, d = delivered(tx, caller, message_id)
        # The principal as it is now, in this job: `caller` was read by authentication, in an
        # earlier batch, and a change in between must not be missed.
        now = tx.session.get(Principal, caller.principal.id)
        recheck(state, caller, PrincipalView.of(now) if now is not None else caller.principal, m)
        if d.acked_at is None:
            d.acked_at = tx.now
            tx.audit("message.acked", caller.device_id, message_id, id=message_id, device=caller.device_id)
        return {"id": message_id, "acked_at": format_time(d.acked_at)}

    # It changes only the delivery row: nothing the writer's cache holds.
    return (await state.writer.run(job, shares_cache=True)).value


#: Indexes per `audit.shredded` entry: its clear list stays far below an entry's 64 KiB.
_SHRED_PER_ENTRY = 2000


def _shred(tx: Tx, messages: Sequence[str]) -> None:
    """Delete the openings of `messages`' entries (`SHREDDABLE`) and log which were shredded
    (`audit.shredded {indexes}`, the list in the clear).
    The `message.expired` entry stays openable: it records the expiry, the shredding's cause."""
    s = tx.session
    indexes = sorted(
        int(i)
        for (i,) in s.execute(
            select(AuditOpening.idx)
            .join(AuditEntry, AuditEntry.idx == AuditOpening.idx)
            .where(AuditEntry.subject.in_(messages), AuditEntry.type.in_(sorted(SHREDDABLE)))
        )
    )
    for k in range(0, len(indexes), _SHRED_PER_ENTRY):
        part = indexes[k : k + _SHRED_PER_ENTRY]
        s.execute(delete(AuditOpening).where(AuditOpening.idx.in_(part)))
        tx.audit("audit.shredded", "system", None, indexes=part, reason="message.expired")


async def expire_due(state: AppState, limit: int = 500) -> int:
    """Destroy the ciphertext of messages past their level's retention; log each. Where the
    level's policy says `shred_audit`, destroy their entries' openings too (`_shred`)."""

    def job(tx: Tx) -> int:
        s = tx.session
        due = (
            s.execute(
                select(Message.id, Message.log_index, Message.classification)
                .where(Message.expires_at <= tx.now, Message.expired_at.is_(None))
                .limit(limit)
            )
        ).all()
        for mid, index, _ in due:
            tx.audit("message.expired", "system", mid, id=mid, accepted_index=index)
        if due:
            s.execute(
                update(Message)
                .where(Message.id.in_([m for m, _, _ in due]))
                .values(envelope=None, expired_at=tx.now)
            )
            attachments.expire(tx, [m for m, _, _ in due])
            shred = [m for m, _, level in due if _shreds(state.policy, level)]
            if shred:
                _shred(tx, shred)
        return len(due)

    # Messages and their deliveries only: nothing the writers' caches hold.
    return (await state.writer.run(job, shares_cache=True)).value


def _shreds(policy: Policy, level: str) -> bool:
    # A level the policy no longer has keeps its openings (nothing says to destroy them).
    return policy.has_level(level) and policy.rule(level).shred_audit
