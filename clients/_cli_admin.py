"""`liaison` commands of the admin surface: principals listed, single channel members, enrolment
codes listed and cancelled, and `liaison devices` (any principal's own devices).

Registered on `cli.py`'s command groups by `register`; the command bodies import `cli` when
they run (never at import), so this module costs nothing until one of them is used. Like
`cli.py`, every line goes through `_terminal`, whose escaping covers whatever the server sent
(`tests/clients/test_admin_cli.py` holds this module to the same guard).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from . import _terminal as term

if TYPE_CHECKING:
    from ._models import DeviceInfo, NationRange
    from .client import AsyncClient

__all__ = ["register"]

ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", "-p", help="Profile to use (default: $LIAISON_PROFILE, else the only one)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, help="The most to list")]

code_app = typer.Typer(
    help="List and cancel enrolment codes (never shown again once issued: only their ids).",
    no_args_is_help=True,
)


def register(
    app: typer.Typer,
    admin_app: typer.Typer,
    principal_app: typer.Typer,
    channel_app: typer.Typer,
) -> None:
    """Add this module's commands to the CLI's groups."""
    app.command("devices")(devices)
    principal_app.command("list")(principal_list)
    channel_app.command("add")(channel_add)
    channel_app.command("remove")(channel_remove)
    admin_app.add_typer(code_app, name="code")
    code_app.command("list")(code_list)
    code_app.command("cancel")(code_cancel)
    admin_app.command("monitor")(monitor)


def monitor(
    ctx: typer.Context,
    nation: Annotated[str | None, typer.Option("--nation", help="e.g. UKR (default: your own)")] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Prove your nation's whole directory range complete and list devices new since last time."""
    from .cli import _opts, _run

    opts = _opts(ctx, profile, as_json)

    async def go(c: AsyncClient) -> NationRange:
        return await c.monitor_nation(nation)

    found = _run(opts, go)
    if opts.json:
        term.emit_json(found.to_json())
        return
    term.say(
        "{nation}: range proven complete at checkpoint {size} (map version {version}): "
        "{principals} principals, {devices} active devices, {revoked} revoked",
        nation=found.nation,
        size=found.tree_size,
        version=found.map_version,
        principals=found.principals,
        devices=found.devices,
        revoked=found.revoked,
    )
    if not found.new_devices:
        term.say("No device new since the last check.")
        return
    term.say("{n} device(s) new since the last check: check that you expected each", n=len(found.new_devices))
    term.table(
        ("device", "principal", "invited by", "map version"),
        [(x["device"], x["principal"], x["invited_by"], str(x["version"])) for x in found.new_devices],
    )


def devices(ctx: typer.Context, profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """This principal's own devices (revoked ones too); * marks the one in use."""
    from .cli import _opts, _run

    opts = _opts(ctx, profile, as_json)

    async def go(c: AsyncClient) -> tuple[str, list[DeviceInfo]]:
        return c.device_id, await c.my_devices()

    current, rows = _run(opts, go)
    if opts.json:
        term.emit_json([{**d.to_json(), "current": d.device == current} for d in rows])
        return
    term.table(
        ("", "device", "enrolled", "revoked", "last seen"),
        [
            (
                "*" if d.device == current else "",
                d.device,
                d.enrolled_at or "",
                d.revoked_at or "no",
                d.last_seen_at or "",
            )
            for d in rows
        ],
    )
    term.say("To revoke one (a lost or replaced device): liaison admin device revoke DEVICE_ID")


def principal_list(
    ctx: typer.Context,
    nation: Annotated[str | None, typer.Option("--nation", help="e.g. UKR")] = None,
    role: Annotated[str | None, typer.Option("--role", help="analyst|auditor|admin")] = None,
    status: Annotated[str | None, typer.Option("--status", help="active|suspended")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="person|system")] = None,
    search: Annotated[
        str | None, typer.Option("--search", "-q", help="A prefix of the id or display name")
    ] = None,
    limit: LimitOpt = 1000,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List and search principals (admins; a nation admin sees its own nation)."""
    from .cli import _opts, _run

    opts = _opts(ctx, profile, as_json)
    found = _run(
        opts,
        lambda c: c.list_principals(
            nation=nation, role=role, status=status, kind=kind, search=search, limit=limit
        ),
    )
    if opts.json:
        term.emit_json([p.to_json() for p in found])
        return
    term.table(
        ("principal", "name", "nation", "kind", "clearance", "compartments", "roles", "status"),
        [
            (
                p.id,
                p.display_name,
                p.nation,
                p.kind,
                p.clearance,
                "/".join(p.compartments),
                ", ".join(p.roles),
                p.status,
            )
            for p in found
        ],
    )


def _members_changed(
    ctx: typer.Context, cid: str, add: list[str], remove: list[str], profile: str | None, as_json: bool
) -> None:
    from .cli import _opts, _run

    opts = _opts(ctx, profile, as_json)
    body = _run(opts, lambda c: c.change_members(cid, add=add, remove=remove))
    if opts.json:
        term.emit_json(body)
        return
    members = body.get("members", [])
    term.say(
        "Channel {id} members: {members}.",
        id=cid,
        members=", ".join(map(str, members if isinstance(members, list) else [])),
    )


def channel_add(
    ctx: typer.Context,
    cid: Annotated[str, typer.Argument(metavar="CHANNEL")],
    principals: Annotated[list[str], typer.Argument(metavar="PRINCIPAL...")],
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add members to a channel; the others stay."""
    _members_changed(ctx, cid, principals, [], profile, as_json)


def channel_remove(
    ctx: typer.Context,
    cid: Annotated[str, typer.Argument(metavar="CHANNEL")],
    principals: Annotated[list[str], typer.Argument(metavar="PRINCIPAL...")],
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove members from a channel; the others stay."""
    _members_changed(ctx, cid, [], principals, profile, as_json)


def code_list(
    ctx: typer.Context,
    principal: Annotated[str | None, typer.Option("--principal")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="pending|used|expired|cancelled|void")
    ] = None,
    limit: LimitOpt = 1000,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enrolment codes you may manage, newest first: ids and status, never the codes."""
    from .cli import _opts, _run

    opts = _opts(ctx, profile, as_json)
    found = _run(opts, lambda c: c.enrolment_codes(principal=principal, status=status, limit=limit))
    if opts.json:
        term.emit_json([c.to_json() for c in found])
        return
    term.table(
        ("id", "principal", "status", "created", "expires", "issued by"),
        [(c.id, c.principal, c.status, c.created_at, c.expires_at, c.issued_by) for c in found],
    )


def code_cancel(
    ctx: typer.Context,
    code_id: Annotated[str, typer.Argument(metavar="ID", help="The code's id, as listed")],
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel an unused enrolment code: it enrols nothing from then on."""
    from .cli import _opts, _run

    opts = _opts(ctx, profile, as_json)
    info = _run(opts, lambda c: c.cancel_enrolment_code(code_id))
    if opts.json:
        term.emit_json(info.to_json())
        return
    term.say(
        "Cancelled enrolment code {id} for {principal} (at {when}).",
        id=info.id,
        principal=info.principal,
        when=info.cancelled_at,
    )
