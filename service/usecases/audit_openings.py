"""Openings of entries v2 for auditors (protocol 10.3): the scope of each committed field,
derived from what the entry says and what the database knows, then the pure table of
`liaison.crypto.audit_access` decides what the caller may open.

Derived when the entry is read, not stored with it: a message's label comes from its
`message.accepted` entry's own value or from the message row (gone after retention: its
fields are then root's only); a principal's nation from the entry's value or the principal
row; a device's from its principal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from liaison.crypto.audit_access import Opener, Scope, openable, scope_kind
from liaison.crypto.errors import CryptoError
from liaison.crypto.labels import Label
from liaison.crypto.policy import Policy

from ..storage.models import Channel, Device, Message, Principal
from .auth import Caller

__all__ = ["opener_of", "scopes_for", "visible"]


def opener_of(caller: Caller | None) -> Opener | None:
    if caller is None:
        return None
    me = caller.principal
    return Opener(me.subject, me.has_role("auditor"), me.has_role("admin"), me.is_root)


def _label(policy: Policy, raw: Any) -> Label | None:
    try:
        return Label.from_json(raw, policy) if isinstance(raw, dict) else None
    except CryptoError:
        return None


def _principal_nation(s: Session, value: Any) -> str | None:
    if isinstance(value, dict):
        nation = value.get("nation")
        return nation if isinstance(nation, str) else None
    if isinstance(value, str):
        row = s.get(Principal, value)
        return row.nation if row is not None else None
    return None


def _device_nation(s: Session, device: Any) -> str | None:
    if not isinstance(device, str):
        return None
    row = s.get(Device, device)
    return _principal_nation(s, row.principal_id) if row is not None else None


def _entry_label(s: Session, policy: Policy, type_: str, values: Mapping[str, Any]) -> Label | None:
    if type_ in ("message.accepted", "recipients.queried"):
        return _label(policy, values.get("label"))
    if type_ == "channel.created":
        return _label(policy, values.get("ceiling"))
    if type_ == "channel.members":
        chan = s.get(Channel, values.get("channel")) if isinstance(values.get("channel"), str) else None
        return _label(policy, _json(chan.ceiling)) if chan is not None else None
    if type_.startswith("message."):
        mid = values.get("id")
        row = s.get(Message, mid) if isinstance(mid, str) else None
        return _label(policy, _json(row.label)) if row is not None else None
    return None


def _json(raw: Any) -> Any:
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None


def _entry_nation(s: Session, type_: str, values: Mapping[str, Any]) -> str | None:
    if type_ in ("access.denied",):
        return _device_nation(s, values.get("who"))
    if type_ == "message.rejected":
        return _device_nation(s, values.get("actor"))
    if "principal" in values:
        return _principal_nation(s, values.get("principal"))
    if "device" in values:
        return _device_nation(s, values.get("device"))
    return None


def scopes_for(s: Session, policy: Policy, type_: str, values: Mapping[str, Any]) -> dict[str, Scope]:
    """Each committed field's scope (protocol 10.3) for an entry of `type_` whose committed
    values are `values`."""
    label: Label | None = None
    nation: str | None = None
    kinds = {name: scope_kind(type_, name) for name in values}
    if "label" in kinds.values():
        label = _entry_label(s, policy, type_, values)
    if "nation" in kinds.values():
        nation = _entry_nation(s, type_, values)
    out: dict[str, Scope] = {}
    for name, kind in kinds.items():
        if kind == "label":
            out[name] = ("label", label) if label is not None else ("root",)
        elif kind == "nation":
            out[name] = ("nation", nation) if nation is not None else ("root",)
        elif kind == "auditors":
            out[name] = ("auditors",)
        else:
            out[name] = ("root",)
    return out


def visible(
    s: Session, policy: Policy, who: Opener | None, type_: str, values: Mapping[str, Any]
) -> set[str]:
    """The committed fields of this entry `who` may open (none for an anonymous reader)."""
    if who is None:
        return set()
    return openable(policy, who, scopes_for(s, policy, type_, values), values)
