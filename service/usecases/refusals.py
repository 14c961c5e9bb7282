"""Refusals that leave a trace: the entries they log, and `refuse`, the one way to log and raise.

Every access decision that goes against the caller is written to the audit log with the
refusal, in the same transaction: inside a writer job by raising `Refusal(problem, entry)`,
outside one by awaiting `refuse`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from ..problems import Problem
from ..state import AppState
from ..writer import Entry, Refusal, Tx

__all__ = ["access_denied", "message_rejected", "refuse"]

#: Longest `what` or `detail` an entry carries: they may come from the caller (a path), and an
#: entry must stay under the log's 65,535 bytes.
_BOUND = 200


def access_denied(who: str, what: str, why: str, subject: str | None) -> Entry:
    """`access.denied`: device `who` was refused `what` for reason `why` (a problem slug)."""
    return ("access.denied", who, subject, {"who": who, "what": what[:_BOUND], "why": why})


def message_rejected(device_id: str, reason: str, envelope_id: str | None, detail: str) -> Entry:
    """`message.rejected`: a submitted envelope refused for `reason`."""
    fields: dict[str, Any] = {"reason": reason, "detail": detail[:_BOUND]}
    if envelope_id:
        fields["id"] = envelope_id
    return ("message.rejected", device_id, envelope_id, fields)


async def refuse(
    state: AppState, problem: Problem, entry: Entry | None, *, first: Callable[[Tx], object] | None = None
) -> NoReturn:
    """Log `entry` and raise `problem`, in one writer job.

    `first` runs in that job before the refusal: consuming the request's nonce there means a
    replayed request or a revoked device is refused as such (its own refusal wins), and a
    refused request can never be replayed. The job writes nothing else, so it shares the
    writer's cache and needs no savepoint.
    """

    def job(tx: Tx) -> None:
        if first is not None:
            first(tx)
        raise Refusal(problem, entry)

    await state.writer.run(job, shares_cache=True, savepoint=False)
    raise AssertionError("unreachable: the job always refuses")
