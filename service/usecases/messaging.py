"""Message use cases: submit (every check of SPEC 4), fetch, inbox, ack, and retention."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from sqlalchemy import select, update

from liaison.crypto.encoding import format_time, jcs
from liaison.crypto.envelope import (
    ParsedEnvelope,
    parse_envelope,
    verify_envelope,
)
from liaison.crypto.errors import (
    BadSignature,
    LabelSyntaxError,
    MalformedEnvelope,
    PolicyViolation,
    UnsupportedSuite,
)
from liaison.crypto.labels import check_known
from liaison.crypto.policy import check_ceiling, check_dominates, check_suite

from ..problems import Problem
from ..state import AppState
from ..storage import events
from ..storage.models import Channel, Delivery, Message
from ..writer import Refusal, Tx
from .auth import Caller, SignedRequest, verify_signed
from .directory import Eligibility, eligibility
from .readmodels import label_of

__all__ = ["Accepted", "ack", "expire_due", "fetch", "inbox", "submit"]

_NONCE_TAG = 28  # 12-byte nonce + 16-byte tag around the content
# The hot path's statements, on the writer's raw connection (`Tx.raw`).
_INSERT_MESSAGE = (
    "INSERT INTO message (id, channel_id, sender_device, sender_principal, label, "
    "classification, envelope, digest, size, created, accepted_at, expires_at, log_index) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
_INSERT_DELIVERY = "INSERT INTO delivery (message_id, device_id) VALUES (?, ?)"


@dataclass(frozen=True)
class Accepted:
    id: str
    log_index: int
    recipients: int


def _rejected(device_id: str, reason: str, envelope_id: str | None, detail: str
              ) -> tuple[str, str, str | None, dict[str, Any]]:
    fields: dict[str, Any] = {"reason": reason, "detail": detail[:200]}
    if envelope_id:
        fields["id"] = envelope_id
    return ("message.rejected", device_id, envelope_id, fields)


async def _refuse(state: AppState, signed: SignedRequest, slug: str, detail: str,
                  envelope_id: str | None) -> None:
    """Log `message.rejected` and raise the problem (for checks made before the writer).

    The request is consumed first, so a replayed request or a revoked device is refused as
    such, not as a bad envelope.
    """
    entry = _rejected(signed.device_id, slug, envelope_id, detail)
    skew = state.settings.clock_skew_seconds

    def job(tx: Tx) -> None:
        signed.consume(tx, skew)
        state.metrics.rejected.labels(slug).inc()
        raise Refusal(Problem(slug, detail), entry)

    await state.writer.run(job, shares_cache=True, savepoint=False)


class _Early(Exception):
    """A refusal found before the writer (no database needed)."""

    def __init__(self, slug: str, detail: str, envelope_id: str | None) -> None:
        super().__init__(detail)
        self.slug, self.detail, self.envelope_id = slug, detail, envelope_id


def _precheck(state: AppState, caller: SignedRequest, obj: Any) -> ParsedEnvelope:
    """CPU-only checks of SPEC 4 (no database); raises _Early with the refusal.

    Kept out of the writer so that verifying many requests' signatures never holds the write
    transaction.
    """
    policy = state.policy
    raw_id = obj.get("id") if isinstance(obj, dict) else None
    eid = raw_id[:36] if isinstance(raw_id, str) else None
    try:
        parsed = parse_envelope(obj)
    except UnsupportedSuite as e:
        raise _Early("unsupported-suite", str(e), eid) from None
    except MalformedEnvelope as e:
        raise _Early("malformed-envelope", str(e), eid) from None
    try:
        check_known(parsed.label, policy)  # parse_envelope checked its form
    except LabelSyntaxError as e:
        raise _Early("malformed-label", str(e), eid) from None
    if parsed.sender != caller.device_id:
        raise _Early("sender-mismatch", "the envelope's sender is not the signing device", eid)
    rule = policy.rule(parsed.label.classification)
    try:
        check_suite(policy, parsed.label, parsed.suite, parsed.signature_algs)
    except PolicyViolation as e:
        raise _Early(e.reason, e.detail, eid) from None
    try:
        verify_envelope(parsed, caller.bundle, required=rule.signatures)
    except BadSignature as e:
        raise _Early("bad-envelope-signature", str(e), eid) from None
    size = parsed.ciphertext_size - _NONCE_TAG
    if size > rule.max_bytes:
        raise _Early("too-large", f"{size} bytes exceeds {rule.max_bytes} at {rule.name}", eid)
    skew = abs((datetime.now(UTC) - parsed.created).total_seconds())
    if skew > state.settings.clock_skew_seconds:
        raise _Early("stale-envelope", "created is outside the clock-skew window", eid)
    return parsed


async def submit(state: AppState, request: Request, envelope: Any, to: list[str] | None
                 ) -> tuple[Accepted, dict[str, Any]]:
    """Accept an envelope or refuse it with a logged reason. Returns the result and receipt.

    The request's signature first, then the envelope's checks that need no database; then one
    writer job does the rest: consume the request (nonce, device, principal), every check of
    SPEC 4 that needs the database, and the writes.
    """
    signed = await verify_signed(request, state)
    try:
        parsed = _precheck(state, signed, envelope)
    except _Early as e:
        await _refuse(state, signed, e.slug, e.detail, e.envelope_id)
        raise AssertionError("unreachable") from e
    skew = state.settings.clock_skew_seconds
    policy = state.policy
    label = parsed.label
    raw_envelope = parsed.canonical  # the canonical bytes are what we store and serve
    digest_hex = parsed.digest.hex()
    size = parsed.ciphertext_size - _NONCE_TAG
    rule = policy.rule(label.classification)

    label_json = label.to_json()
    label_key = jcs(label_json).decode()

    def job(tx: Tx) -> Accepted:
        s = tx.session
        principal = signed.consume(tx, skew)

        def refuse(reason: str, why: str) -> Refusal:
            state.metrics.rejected.labels(reason).inc()
            return Refusal(Problem(reason, why), _rejected(signed.device_id, reason, parsed.id,
                                                           why))

        try:
            check_dominates(policy, principal.subject, label)
        except PolicyViolation as e:
            raise refuse(e.reason, f"sender: {e.detail}") from None
        # Who may receive what is read once and kept in Tx.cache, which every change to it
        # empties (see Writer.run).
        ceiling = tx.cache.get(("ceiling", parsed.channel))
        if ceiling is None:
            text_ = s.scalar(select(Channel.ceiling).where(Channel.id == parsed.channel))
            if text_ is None:
                raise refuse("not-found", f"no channel {parsed.channel}")
            ceiling = tx.cache[("ceiling", parsed.channel)] = label_of(text_)
        key = ("eligibility", parsed.channel, label_key, parsed.suite)
        elig: Eligibility | None = tx.cache.get(key)
        if elig is None:
            elig = tx.cache[key] = eligibility(s, policy, parsed.channel, label, parsed.suite)
        if principal.id not in elig.members:
            raise refuse("not-member", f"{principal.id} is not a member of {parsed.channel}")
        try:
            check_ceiling(policy, label, ceiling)
        except PolicyViolation as e:
            raise refuse(e.reason, e.detail) from None
        expected = set(elig.devices)
        if to is not None:
            bad = sorted(set(to) - set(elig.devices.values()))
            if bad:
                raise refuse("ineligible-recipient", f"not eligible: {', '.join(bad)} "
                             f"({', '.join(elig.excluded.get(b, 'not-member') for b in bad)})")
            expected = {d for d, pid in elig.devices.items() if pid in to}
        given = set(parsed.recipients)
        extra, missing = sorted(given - set(elig.devices)), sorted(expected - given)
        if extra:
            raise refuse("ineligible-recipient", f"device(s) not eligible: {', '.join(extra)}")
        if missing:
            raise refuse("missing-recipient", f"eligible device(s) missing: {', '.join(missing)}")
        if to is not None and given != expected:
            raise refuse("ineligible-recipient", "recipients must be exactly the devices of 'to'")
        recipients = sorted(given)
        raw = tx.raw
        index = tx.audit("message.accepted", signed.device_id, parsed.id, id=parsed.id,
                         channel=parsed.channel, sender=signed.device_id, label=label_json,
                         envelope_digest=digest_hex, recipients=recipients, size=size)
        inserted = raw.execute(_INSERT_MESSAGE, (
            parsed.id, parsed.channel, signed.device_id, principal.id, label_key,
            label.classification, raw_envelope, digest_hex, size,
            raw.time(parsed.created.replace(tzinfo=None)), raw.time(tx.now),
            raw.time(tx.now + timedelta(days=rule.retention_days)), index)).rowcount
        if inserted != 1:  # nothing was written: the id is taken
            raise refuse("duplicate-envelope", f"envelope {parsed.id} was already accepted")
        raw.executemany(_INSERT_DELIVERY, [(parsed.id, d) for d in recipients])
        event = {"type": "message", "id": parsed.id, "channel": parsed.channel,
                 "devices": recipients, "log_index": index}
        if state.db.is_postgres:
            # NOTIFY is transactional: listeners in every replica hear it only on commit.
            raw.execute("SELECT pg_notify(?, ?)", (events.CHANNEL, json.dumps(event)))
        else:
            tx.after_commit(lambda: state.hub.publish(event))
        return Accepted(parsed.id, index, len(recipients))

    result = await state.writer.run(job, shares_cache=True, savepoint=False)
    state.metrics.accepted.inc()
    accepted = result.value
    return accepted, result.receipt(accepted.log_index).to_json()


#: What an inbox page shows: metadata only, never the (large) envelope itself.
_INBOX_COLUMNS = (Delivery.seq, Message.id, Message.channel_id, Message.sender_principal,
                  Message.sender_device, Message.label, Message.created, Message.size,
                  Delivery.acked_at, Delivery.fetched_at, Message.expired_at, Message.log_index)


async def inbox(state: AppState, caller: Caller, after: int, limit: int) -> dict[str, Any]:
    """The device's deliveries after a cursor, re-checked against the principal's access now."""
    async with state.db.sessions() as s:
        rows = (await s.execute(
            select(*_INBOX_COLUMNS).join(Delivery, Delivery.message_id == Message.id)
            .where(Delivery.device_id == caller.device_id, Delivery.seq > after)
            .order_by(Delivery.seq).limit(limit))).all()
    items, withheld = [], 0
    subject = caller.principal.subject
    for (seq, mid, channel, sender, sender_device, label, created, size, acked_at, fetched_at,
         expired_at, log_index) in rows:
        try:
            check_dominates(state.policy, subject, label_of(label))
        except PolicyViolation:
            withheld += 1  # access was lowered since delivery: not even the metadata is shown
            continue
        items.append({"cursor": seq, "id": mid, "channel": channel, "sender": sender,
                      "sender_device": sender_device, "label": json.loads(label),
                      "created": format_time(created.replace(tzinfo=UTC), millis=False),
                      "size": size, "read": acked_at is not None,
                      "fetched": fetched_at is not None, "expired": expired_at is not None,
                      "log_index": log_index})
    next_cursor = rows[-1][0] if rows else after
    return {"messages": items, "next": next_cursor, "more": len(rows) == limit,
            "withheld": withheld}


def _not_recipient(caller: Caller, message_id: str) -> Refusal:
    """Asking for a message one was not sent is an access decision too: refuse and log it."""
    mid = message_id[:36]  # the path is the caller's; keep the entry bounded
    return Refusal(Problem("not-recipient", "no such message for this device"), (
        "access.denied", caller.device_id, mid,
        {"who": caller.device_id, "what": f"message {mid}", "why": "not-recipient"}))


async def fetch(state: AppState, request: Request, message_id: str) -> dict[str, Any]:
    """One message for a recipient device, re-checking dominance now, logged as delivered.

    One writer job, as for submit: consume the request (nonce, device, principal), then read,
    check and log. It changes nothing the writer's cache holds.
    """
    signed = await verify_signed(request, state)
    skew = state.settings.clock_skew_seconds

    def job(tx: Tx) -> dict[str, Any]:
        caller = Caller(signed.device_id, signed.bundle, signed.consume(tx, skew))
        s = tx.session
        row = (s.execute(select(Message, Delivery).join(
            Delivery, Delivery.message_id == Message.id).where(
            Message.id == message_id, Delivery.device_id == caller.device_id))).first()
        if row is None:
            raise _not_recipient(caller, message_id)
        m, d = row
        try:
            check_dominates(state.policy, caller.principal.subject, label_of(m.label))
        except PolicyViolation as e:
            raise Refusal(Problem(e.reason, e.detail), (
                "access.denied", caller.device_id, m.id,
                {"who": caller.device_id, "what": f"message {m.id}", "why": e.reason})) from None
        if m.envelope is None:
            raise Problem("not-found", "the message expired and its ciphertext was destroyed")
        # Proof that the log holds this message's `message.accepted` entry, against the latest
        # checkpoint: the reader checks it (and that checkpoint's consistency with what it saw).
        # Read before the one write below, so nothing can fail after it (no savepoint).
        receipt = state.log.writer_receipt(s, m.log_index)
        if d.fetched_at is None:
            d.fetched_at = tx.now
            tx.audit("message.delivered", caller.device_id, m.id, id=m.id,
                     device=caller.device_id)
        return {"envelope": json.loads(m.envelope), "log_index": m.log_index,
                "channel": m.channel_id, "sender": m.sender_principal,
                "label": json.loads(m.label), "receipt": receipt.to_json()}

    return (await state.writer.run(job, shares_cache=True, savepoint=False)).value


async def ack(state: AppState, caller: Caller, message_id: str) -> dict[str, Any]:
    def job(tx: Tx) -> dict[str, Any]:
        d = (tx.session.execute(select(Delivery).where(
            Delivery.message_id == message_id, Delivery.device_id == caller.device_id))).scalar()
        if d is None:
            raise _not_recipient(caller, message_id)
        if d.acked_at is None:
            d.acked_at = tx.now
            tx.audit("message.acked", caller.device_id, message_id, id=message_id,
                     device=caller.device_id)
        return {"id": message_id, "acked_at": format_time(d.acked_at.replace(tzinfo=UTC))}

    # It changes only the delivery row: nothing the writer's cache holds.
    return (await state.writer.run(job, shares_cache=True)).value


async def expire_due(state: AppState, limit: int = 500) -> int:
    """Destroy the ciphertext of messages past their level's retention; log each."""

    def job(tx: Tx) -> int:
        s = tx.session
        due = (s.execute(select(Message.id, Message.log_index).where(
            Message.expires_at <= tx.now, Message.expired_at.is_(None)).limit(limit))).all()
        for mid, index in due:
            tx.audit("message.expired", "system", mid, id=mid, accepted_index=index)
        if due:
            s.execute(update(Message).where(Message.id.in_([m for m, _ in due]))
                            .values(envelope=None, expired_at=tx.now))
        return len(due)

    return (await state.writer.run(job)).value
