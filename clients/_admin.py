"""The admin surface of the client: principals listed and searched, single channel members,
a device's own inventory, enrolment codes listed and cancelled.

Two mixins, written once each: `AdminMethods` (async, mixed into `AsyncClient`) and
`AdminSync` (its blocking twin, mixed into `Client`). Each list follows the server's pages
until `limit` items or the end. What the server answers is checked for shape before it
becomes a model (`MalformedResponse` otherwise); the enrolment codes listed carry their id,
never the code.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from . import _models as m
from .errors import InputError, MalformedResponse

if TYPE_CHECKING:
    from .client import AsyncClient

__all__ = ["AdminMethods", "AdminSync", "EnrolmentCodeInfo", "PrincipalInfo"]

T = TypeVar("T")
#: Items the server puts in one page at most (and what a list asks for per page).
_PAGE = 1000


@dataclass(frozen=True)
class PrincipalInfo(m._JSON):
    id: str
    display_name: str
    nation: str
    kind: str
    roles: tuple[str, ...]
    clearance: str
    compartments: tuple[str, ...]
    status: str
    created_at: str | None
    updated_at: str | None


@dataclass(frozen=True)
class EnrolmentCodeInfo(m._JSON):
    """An enrolment code as listed: its id (never the code), whom it is for, times, status
    (`pending`, `used`, `expired`, `cancelled` or `void`: its issuer was revoked)."""

    id: str
    principal: str
    status: str
    created_at: str
    expires_at: str
    issued_by: str
    used_at: str | None
    cancelled_at: str | None


def _str(obj: dict[str, Any], key: str, *, optional: bool = False) -> Any:
    value = obj.get(key)
    if isinstance(value, str) or (optional and value is None):
        return value
    raise MalformedResponse(f"the server's answer has no valid {key!r}")


def _strs(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key)
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return tuple(value)
    raise MalformedResponse(f"the server's answer has no valid {key!r}")


def _items(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = body.get(key)
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise MalformedResponse(f"the server's answer has no list of {key}")
    return items


def principal_info(p: dict[str, Any]) -> PrincipalInfo:
    return PrincipalInfo(
        _str(p, "id"),
        _str(p, "display_name"),
        _str(p, "nation"),
        _str(p, "kind"),
        _strs(p, "roles"),
        _str(p, "clearance"),
        _strs(p, "compartments"),
        _str(p, "status"),
        _str(p, "created_at", optional=True),
        _str(p, "updated_at", optional=True),
    )


def code_info(c: dict[str, Any]) -> EnrolmentCodeInfo:
    return EnrolmentCodeInfo(
        _str(c, "id"),
        _str(c, "principal"),
        _str(c, "status"),
        _str(c, "created_at"),
        _str(c, "expires_at"),
        _str(c, "issued_by"),
        _str(c, "used_at", optional=True),
        _str(c, "cancelled_at", optional=True),
    )


def _device_info(d: dict[str, Any]) -> m.DeviceInfo:
    if not isinstance(d.get("revoked"), bool):
        raise MalformedResponse("the server's answer has no valid 'revoked'")
    return m.DeviceInfo(
        _str(d, "device"),
        _str(d, "principal"),
        _str(d, "enrolled_at", optional=True),
        d["revoked"],
        _str(d, "revoked_at", optional=True),
        _str(d, "last_seen_at", optional=True),
    )


def _check_limit(limit: int) -> None:
    if not isinstance(limit, int) or limit < 1:
        raise InputError("the limit must be a positive number")


class AdminMethods:
    """Async admin methods; `AsyncClient` supplies `_json`."""

    async def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        raise NotImplementedError

    async def _members_statement(self, cid: str, wanted: Callable[[set[str]], set[str]]) -> dict[str, Any]:
        raise NotImplementedError

    async def list_principals(
        self,
        *,
        nation: str | None = None,
        role: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        search: str | None = None,
        limit: int = 1000,
    ) -> list[PrincipalInfo]:
        """Principals by id (admins; a nation admin sees its own nation). `search` is a
        prefix of the id or the display name, case-insensitive."""
        _check_limit(limit)
        out: list[PrincipalInfo] = []
        after: str | None = None
        while len(out) < limit:
            params = {
                "nation": nation.upper() if nation else None,
                "role": role,
                "status": status,
                "kind": kind,
                "q": search,
                "after": after,
                "limit": min(_PAGE, limit - len(out)),
            }
            body = await self._json("GET", "/v1/admin/principals", params=params)
            out += [principal_info(p) for p in _items(body, "principals")]
            nxt = body.get("next")
            if nxt is None:
                break
            if not isinstance(nxt, str) or (after is not None and nxt <= after):
                raise MalformedResponse("the server's page cursor does not move forward")
            after = nxt
        return out[:limit]

    async def change_members(
        self, cid: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Add and remove single members of a channel; the others stay. Returns the channel.
        The statement signed with it names the resulting member list (protocol 9.3)."""
        added, removed = set(add), set(remove)
        statement = await self._members_statement(cid, lambda current: (current | added) - removed)
        return await self._json(
            "PATCH",
            f"/v1/admin/channels/{cid}/members",
            body={"add": list(add), "remove": list(remove), **statement},
        )

    async def my_devices(self) -> list[m.DeviceInfo]:
        """This principal's own devices (revoked ones too): any principal may list them."""
        body = await self._json("GET", "/v1/me/devices")
        return [_device_info(d) for d in _items(body, "devices")]

    async def enrolment_codes(
        self, *, principal: str | None = None, status: str | None = None, limit: int = 1000
    ) -> list[EnrolmentCodeInfo]:
        """Enrolment codes the caller may manage, newest first (never the codes themselves)."""
        _check_limit(limit)
        out: list[EnrolmentCodeInfo] = []
        offset = 0
        while len(out) < limit:
            params = {
                "principal": principal,
                "status": status,
                "offset": offset,
                "limit": min(_PAGE, limit - len(out)),
            }
            body = await self._json("GET", "/v1/admin/enrolment-codes", params=params)
            out += [code_info(c) for c in _items(body, "codes")]
            nxt = body.get("next")
            if nxt is None:
                break
            if type(nxt) is not int or nxt <= offset:
                raise MalformedResponse("the server's page cursor does not move forward")
            offset = nxt
        return out[:limit]

    async def cancel_enrolment_code(self, code_id: str) -> EnrolmentCodeInfo:
        """Cancel an unused enrolment code by its id (as listed): it enrols nothing from then on."""
        return code_info(await self._json("DELETE", f"/v1/admin/enrolment-codes/{code_id}"))


class AdminSync:
    """The blocking twins of `AdminMethods`; `Client` supplies `aio` and `_run`."""

    if TYPE_CHECKING:
        aio: AsyncClient

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        raise NotImplementedError

    def list_principals(
        self,
        *,
        nation: str | None = None,
        role: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        search: str | None = None,
        limit: int = 1000,
    ) -> list[PrincipalInfo]:
        return self._run(
            self.aio.list_principals(
                nation=nation, role=role, status=status, kind=kind, search=search, limit=limit
            )
        )

    def change_members(
        self, cid: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> dict[str, Any]:
        return self._run(self.aio.change_members(cid, add=add, remove=remove))

    def my_devices(self) -> list[m.DeviceInfo]:
        return self._run(self.aio.my_devices())

    def enrolment_codes(
        self, *, principal: str | None = None, status: str | None = None, limit: int = 1000
    ) -> list[EnrolmentCodeInfo]:
        return self._run(self.aio.enrolment_codes(principal=principal, status=status, limit=limit))

    def cancel_enrolment_code(self, code_id: str) -> EnrolmentCodeInfo:
        return self._run(self.aio.cancel_enrolment_code(code_id))
