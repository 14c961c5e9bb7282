"""Who may read a delivered message, now: the checks a message fetch, an ack and an attachment
download make alike (SPEC 4), and the refusals they log."""

from __future__ import annotations

from sqlalchemy import select

from liaison.crypto.errors import PolicyViolation
from liaison.crypto.policy import check_dominates

from ..problems import Problem
from ..state import AppState
from ..storage.models import Delivery, Message
from ..writer import Refusal, Tx
from .auth import Caller
from .readmodels import PrincipalView, label_of
from .refusals import access_denied

__all__ = ["delivered", "not_recipient", "recheck"]


def not_recipient(caller: Caller, message_id: str) -> Refusal:
    """Asking for a message one was not sent is an access decision too: refuse and log it."""
    mid = message_id[:36]  # the path is the caller's; keep the entry bounded
    return Refusal(
        Problem("not-recipient", "no such message for this device"),
        access_denied(caller.device_id, f"message {mid}", "not-recipient", mid),
    )


#: The detail of every refusal of a message its recipient may no longer read: the reason slug
#: says which attribute fell short (the client and the log need it), the detail says nothing of
#: the label (its level or compartments) that the caller is no longer entitled to know.
_NO_LONGER = "this principal may no longer read this message"


def recheck(state: AppState, caller: Caller, principal: PrincipalView, m: Message) -> None:
    """A read of a delivered message: the principal must dominate its label now (SPEC 4)."""
    try:
        check_dominates(state.policy, principal.subject, label_of(m.label))
    except PolicyViolation as e:
        raise Refusal(
            Problem(e.reason, _NO_LONGER),
            access_denied(caller.device_id, f"message {m.id}", e.reason, m.id),
        ) from None


def delivered(tx: Tx, caller: Caller, message_id: str) -> tuple[Message, Delivery]:
    """Message `message_id` and its delivery to the caller's device, or the logged
    `not-recipient` refusal (the same for a message that does not exist, and for one an
    earlier job of this very batch accepted: it is not accepted until the batch commits, and
    it has no receipt yet)."""
    found = tx.session.execute(
        select(Message, Delivery)
        .join(Delivery, Delivery.message_id == Message.id)
        .where(Message.id == message_id, Delivery.device_id == caller.device_id)
    ).first()
    if found is None or tx.accepted_in_batch(found[0].log_index):
        raise not_recipient(caller, message_id)
    return found[0], found[1]
