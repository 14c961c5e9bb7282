"""The `liaison` command line (analysts, systems, auditors): typer + rich, --json for scripts.

Exit status: 0 on success, 1 when the server, the client's verification or the input refuses
(one line on stderr says why), 2 for usage errors.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from liaison.crypto.labels import Label
from liaison.crypto.names import DEFAULT_ROLES, ROLES

from . import _models as m
from .audit import Progress as Progress_
from .audit import WitnessKey, verify_log, witness
from .client import DEFAULT_CONTENT_TYPE, AsyncClient
from .enrol import enrol as do_enrol
from .errors import ClientError, InputError, KeyStoreError, VerificationFailed
from .keystore import KeyStore, default_home, passphrase_from_env_or_prompt

__all__ = ["app", "main"]

T = TypeVar("T")
PROFILE_ENV = "LIAISON_PROFILE"
#: Argon2id cost for newly sealed profiles: None means the key store's default (moderate).
#: Tests lower it in-process; there is deliberately no environment switch for it.
KDF_LIMITS: tuple[int | None, int | None] = (None, None)

app = typer.Typer(
    help="Liaison client: enrol, send, read and audit end-to-end encrypted, "
    "classification-labelled messages.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
admin_app = typer.Typer(
    help="Administer principals, enrolment codes, devices and channels.", no_args_is_help=True
)
principal_app = typer.Typer(help="Create and change principals.", no_args_is_help=True)
device_app = typer.Typer(help="List and revoke devices.", no_args_is_help=True)
channel_app = typer.Typer(help="Create channels and set their members.", no_args_is_help=True)
audit_app = typer.Typer(
    help="Verify the audit log, prove messages, witness checkpoints.", no_args_is_help=True
)
app.add_typer(admin_app, name="admin")
app.add_typer(audit_app, name="audit")
admin_app.add_typer(principal_app, name="principal")
admin_app.add_typer(device_app, name="device")
admin_app.add_typer(channel_app, name="channel")

ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", "-p", help="Profile to use (default: $LIAISON_PROFILE, else the only one)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]

_REASONS = {
    "clearance": "clearance is below the label",
    "releasability": "nation is not in REL TO",
    "compartment": "lacks a compartment of the label",
    "system-level": "systems may not handle this level",
    "principal-suspended": "principal is suspended",
    "no-device": "has no active device",
    "not-addressed": "not named with --to",
    "wrong-policy": "label is for another policy",
}


#: What an RFC 3339 time from the server may look like before it is printed.
_TIME_TEXT = re.compile(r"[0-9][0-9T:.+\-Z]{0,39}")


@dataclass
class Options:
    profile: str | None = None
    json: bool = False


def _out() -> Console:
    # Scripts read our tables too: never wrap identifiers at 80 columns when not on a terminal.
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


_PASSPHRASE: list[str] = []


def _passphrase(confirm: bool = False) -> str:
    """Ask once per process ($LIAISON_PASSPHRASE or the terminal)."""
    if not _PASSPHRASE:
        _PASSPHRASE.append(passphrase_from_env_or_prompt(confirm=confirm))
    return _PASSPHRASE[0]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"liaison: {message}", err=True)
    raise typer.Exit(code)


def _opts(ctx: typer.Context, profile: str | None, as_json: bool) -> Options:
    base = ctx.find_root().obj if isinstance(ctx.find_root().obj, Options) else Options()
    return Options(profile or base.profile, as_json or base.json)


def _store() -> KeyStore:
    ops, mem = KDF_LIMITS
    return KeyStore(default_home(), opslimit=ops, memlimit=mem)


def _profile_name(store: KeyStore, explicit: str | None) -> str:
    """--profile, else $LIAISON_PROFILE, else the only profile, else "default"."""
    if explicit:
        return explicit
    if os.environ.get(PROFILE_ENV):
        return os.environ[PROFILE_ENV]
    names = store.list()
    if len(names) == 1:
        return names[0]
    if "default" in names or not names:
        return "default"
    raise KeyStoreError(f"several profiles ({', '.join(names)}): choose one with --profile")


def _emit(opts: Options, obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=None if not sys.stdout.isatty() else 2, default=str))


def _run(opts: Options, fn: Callable[[AsyncClient], Awaitable[T]]) -> T:
    """Open the profile, run `fn` with a client, and turn every ClientError into exit 1."""

    async def go() -> T:
        store = _store()
        name = _profile_name(store, opts.profile)
        store.load_public(name)  # "no such profile" before asking for a passphrase
        client = AsyncClient.from_profile(name, _passphrase(), store=store)
        async with client:
            return await fn(client)

    return _guard(lambda: asyncio.run(go()))


def _guard(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except VerificationFailed as e:
        _fail(f"refused ({e.reason}): {e}")
    except ClientError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted", 130)


@app.callback()
def _root(ctx: typer.Context, profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Liaison client. Profiles live under $LIAISON_HOME (default ~/.config/liaison); the
    passphrase comes from $LIAISON_PASSPHRASE or a prompt."""
    ctx.obj = Options(profile, as_json)


# --- enrolment and identity --------------------------------------------------------------


@app.command()
def enrol(
    ctx: typer.Context,
    server: Annotated[str, typer.Option(help="Server URL, e.g. https://liaison.example:8443")],
    code: Annotated[
        str,
        typer.Option(
            "--code",
            "--invitation",
            help="The invitation an admin gave you (LIAISON1-...), or a plain one-time code with --log-key",
        ),
    ],
    ca_cert: Annotated[
        Path | None,
        typer.Option("--ca-cert", help="PEM file of the server's CA (or its self-signed certificate)"),
    ] = None,
    principal: Annotated[
        str | None, typer.Option(help="Principal the code is for (default: the profile name)")
    ] = None,
    log_key: Annotated[
        str | None,
        typer.Option(
            "--log-key",
            help="The log verifier key to pin (needed with a plain code; checked against an invitation)",
        ),
    ] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make device keys, enrol them with an invitation and save them as a profile.

    The server's log key is pinned only if the invitation names it (or it is --log-key):
    never on first use."""
    opts = _opts(ctx, profile, as_json)
    name = opts.profile or principal
    if not name:
        _fail("say which principal the code is for: --principal ID (or --profile ID)", 2)
    who = principal or name

    def go() -> m.Enrolled:
        if ca_cert is not None and not ca_cert.is_file():
            raise InputError(f"--ca-cert {ca_cert} is not a file")
        passphrase = _passphrase(confirm=True)
        return asyncio.run(
            do_enrol(
                server,
                code,
                principal=who,
                passphrase=passphrase,
                profile=name,
                store=_store(),
                ca_cert=str(ca_cert) if ca_cert else None,
                log_key=log_key,
            )
        )

    result = _guard(go)
    if opts.json:
        _emit(opts, result.to_json())
        return
    out = _out()
    out.print(
        f"Enrolled [bold]{result.principal}[/] device [bold]{result.device}[/] "
        f"as profile [bold]{result.profile}[/] (log index {result.log_index})."
    )
    out.print(f"Pinned log key: {escape(result.log_key)}")


@app.command()
def whoami(ctx: typer.Context, profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Show this profile's principal, device and clearance (as the server sees them)."""
    opts = _opts(ctx, profile, as_json)
    me = _run(opts, lambda c: c.whoami())
    if opts.json:
        _emit(opts, me.to_json())
        return
    comps = "/".join(me.compartments) or "none"
    _out().print(
        f"{me.principal} ({me.display_name}, {me.nation}, {me.kind}) on device "
        f"{me.device}\n  clearance {me.clearance}, compartments {comps}, roles "
        f"{', '.join(me.roles)}, {me.status}"
    )


@app.command()
def profiles(as_json: JsonOpt = False) -> None:
    """List the profiles in $LIAISON_HOME."""
    store = _store()
    names = _guard(store.list)
    rows = [store.load_public(n) for n in names]
    if as_json:
        typer.echo(json.dumps([p.to_json() for p in rows]))
        return
    table = Table("profile", "principal", "device", "server")
    for p in rows:
        table.add_row(p.name, p.principal, p.device_id, p.server)
    _out().print(table)


@app.command()
def channels(ctx: typer.Context, profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Channels this principal belongs to (admins see all)."""
    opts = _opts(ctx, profile, as_json)
    found = _run(opts, lambda c: c.channels())
    if opts.json:
        _emit(opts, [c.to_json() for c in found])
        return
    table = Table("channel", "name", "ceiling", "members")
    for c in found:
        table.add_row(c.id, c.name, c.ceiling_text, ", ".join(c.members))
    _out().print(table)


# --- messages ---------------------------------------------------------------------------


def _read_input(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {source}: {e.strerror}") from None


def _print_plan(plan: m.Plan) -> None:
    out = _out()
    out.print(f"[bold]{plan.label_text}[/] on channel [bold]{plan.channel}[/]")
    table = Table("principal", "device", "key in log at", title="Would be encrypted to")
    for r in plan.recipients:
        table.add_row(r.principal, r.device, str(r.enrol_index))
    out.print(table)
    if plan.excluded:
        table = Table("principal", "reason", title="Channel members who would NOT receive it")
        for e in plan.excluded:
            table.add_row(e.principal, f"{e.reason}: {_REASONS.get(e.reason, e.reason)}")
        out.print(table)
    else:
        out.print("Every channel member would receive it.")


@app.command()
def send(
    ctx: typer.Context,
    channel: Annotated[str, typer.Option("--channel", "-c", help="Channel id")],
    label: Annotated[
        str, typer.Option("--label", "-l", help='Label, e.g. "SECRET//AIRDEF//REL TO UKR, USA"')
    ],
    source: Annotated[str, typer.Argument(metavar="[FILE|-]", help="Content (default: stdin)")] = "-",
    to: Annotated[list[str] | None, typer.Option("--to", help="Only these principals (repeatable)")] = None,
    content_type: Annotated[
        str, typer.Option("--content-type", help="e.g. application/stix+json;version=2.1 (validated)")
    ] = DEFAULT_CONTENT_TYPE,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show who would and would not receive it; send nothing")
    ] = False,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Seal a message to every eligible device of a channel (verified keys only) and send it."""
    opts = _opts(ctx, profile, as_json)
    if dry_run:
        plan = _run(opts, lambda c: c.plan(channel, label, to=to))
        if opts.json:
            _emit(opts, plan.to_json())
        else:
            _print_plan(plan)
        return
    data = _guard(lambda: _read_input(source))
    sent = _run(opts, lambda c: c.send(channel, label, data, to=to, content_type=content_type))
    if opts.json:
        _emit(opts, sent.to_json())
        return
    _out().print(
        f"Sent {sent.id} [bold]{sent.label_text}[/] to {sent.recipients} device(s); "
        f"logged at index {sent.log_index}."
    )


@app.command()
def inbox(
    ctx: typer.Context,
    unread: Annotated[bool, typer.Option("--unread", help="Only messages not yet acked")] = False,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """This device's messages: id, time, sender, label banner, size, read?"""
    opts = _opts(ctx, profile, as_json)
    items = [i for i in _run(opts, lambda c: c.inbox()) if not (unread and i.read)]
    if opts.json:
        _emit(
            opts,
            [
                {
                    "id": i.id,
                    "sender": i.sender,
                    "label": i.label_text,
                    "label_json": i.label.to_json(),
                    "created": i.created,
                    "read": i.read,
                    "channel": i.channel,
                    "size": i.size,
                    "sender_device": i.sender_device,
                    "log_index": i.log_index,
                }
                for i in items
            ],
        )
        return
    table = Table("id", "time", "sender", "label", "size", "read?")
    for i in items:
        table.add_row(i.id, i.created, i.sender, i.label_text, str(i.size), "yes" if i.read else "no")
    _out().print(table)


@app.command()
def read(
    ctx: typer.Context,
    message_id: Annotated[str, typer.Argument(metavar="ID")],
    raw: Annotated[bool, typer.Option("--raw", help="Only the content bytes, no banners")] = False,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify, decrypt and print a message between its label banners; refuse and say why."""
    opts = _opts(ctx, profile, as_json)
    msg = _run(opts, lambda c: c.read(message_id))
    if opts.json:
        _emit(
            opts,
            {
                "id": msg.id,
                "channel": msg.channel,
                "sender": msg.sender,
                "sender_device": msg.sender_device,
                "label": msg.label_text,
                "label_json": msg.label.to_json(),
                "created": msg.created,
                "content_type": msg.content_type,
                "log_index": msg.log_index,
                "log_proven": msg.log_proven,
                "text": msg.text,
            },
        )
        return
    if raw:
        sys.stdout.buffer.write(msg.plaintext)
        sys.stdout.flush()
        return
    banner = f"==== {msg.label_text} ===="
    body = msg.text if msg.text.endswith("\n") else msg.text + "\n"
    proof = (
        f"log entry {msg.log_index} proven" if msg.log_proven else "no log proof offered to this principal"
    )
    sys.stdout.write(
        f"{banner}\nFrom {msg.sender} ({msg.sender_device}) on {msg.channel}, "
        f"{msg.created}, {msg.content_type}; signature and sender key verified, "
        f"{proof}\n\n{body}\n{banner}\n"
    )


@app.command()
def ack(
    ctx: typer.Context,
    message_id: Annotated[str, typer.Argument(metavar="ID")],
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Acknowledge a message (marks it read; logged)."""
    opts = _opts(ctx, profile, as_json)
    when = _run(opts, lambda c: c.ack(message_id))
    if opts.json:
        _emit(opts, {"id": message_id, "acked_at": when})
    else:
        _out().print(f"Acknowledged {message_id} at {when}.")


@app.command()
def watch(
    ctx: typer.Context,
    count: Annotated[int | None, typer.Option("--count", help="Stop after this many events")] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print new messages as they arrive (server-sent events) until interrupted."""
    opts = _opts(ctx, profile, as_json)

    async def go(c: AsyncClient) -> None:
        seen = 0
        if not opts.json:
            _err().print(f"Watching for messages to {c.principal} ({c.device_id}); Ctrl-C stops.")
        async for event in c.watch():
            if opts.json:
                typer.echo(json.dumps(event.to_json()))
            else:
                typer.echo(
                    f"new message {event.id} on {event.channel} (log index "
                    f"{event.log_index}): liaison read {event.id}"
                )
            sys.stdout.flush()
            seen += 1
            if count is not None and seen >= count:
                return

    _run(opts, go)


# --- admin ------------------------------------------------------------------------------


@principal_app.command("create")
def principal_create(
    ctx: typer.Context,
    pid: Annotated[str, typer.Argument(metavar="ID")],
    name: Annotated[str, typer.Option("--name", help="Display name")],
    nation: Annotated[str, typer.Option("--nation", help="ISO 3166-1 alpha-3, e.g. UKR")],
    clearance: Annotated[str, typer.Option("--clearance", help="A level of the policy")],
    compartment: Annotated[list[str] | None, typer.Option("--compartment")] = None,
    role: Annotated[list[str] | None, typer.Option("--role", help="|".join(ROLES))] = None,
    kind: Annotated[str, typer.Option("--kind", help="person|system")] = "person",
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a principal (nation admins: own nation, up to their own clearance)."""
    opts = _opts(ctx, profile, as_json)
    if kind not in ("person", "system"):
        _fail("--kind must be person or system", 2)
    body = _run(
        opts,
        lambda c: c.create_principal(
            pid,
            name=name,
            nation=nation,
            clearance=clearance.upper(),
            compartments=compartment or [],
            roles=role or DEFAULT_ROLES,
            kind=kind,
        ),
    )
    _show_principal(opts, body, "Created")


@principal_app.command("update")
def principal_update(
    ctx: typer.Context,
    pid: Annotated[str, typer.Argument(metavar="ID")],
    clearance: Annotated[str | None, typer.Option("--clearance")] = None,
    status: Annotated[str | None, typer.Option("--status", help="active|suspended")] = None,
    compartment: Annotated[
        list[str] | None, typer.Option("--compartment", help="The new set of compartments (repeatable)")
    ] = None,
    role: Annotated[list[str] | None, typer.Option("--role")] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a principal's clearance, status, compartments, roles or name."""
    opts = _opts(ctx, profile, as_json)
    if status is not None and status not in ("active", "suspended"):
        _fail("--status must be active or suspended", 2)
    body = _run(
        opts,
        lambda c: c.update_principal(
            pid,
            clearance=clearance.upper() if clearance else None,
            status=status,
            compartments=[x.upper() for x in compartment] if compartment is not None else None,
            roles=role,
            display_name=name,
        ),
    )
    _show_principal(opts, body, "Updated")


def _show_principal(opts: Options, body: dict[str, Any], verb: str) -> None:
    if opts.json:
        _emit(opts, body)
        return
    comps = "/".join(body.get("compartments", [])) or "none"
    _out().print(
        f"{verb} {body.get('id')} ({body.get('nation')}, {body.get('kind')}): "
        f"{body.get('clearance')}, compartments {comps}, roles "
        f"{', '.join(body.get('roles', []))}, {body.get('status')}"
    )


@admin_app.command("enrol-code")
def enrol_code(
    ctx: typer.Context,
    pid: Annotated[str, typer.Argument(metavar="PRINCIPAL")],
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue a one-time enrolment invitation for a principal (give it over a trusted channel).

    The invitation is the code and the digest of the log key this profile has pinned; the new
    device pins the server's log key only if it matches. --json also gives the plain code."""
    opts = _opts(ctx, profile, as_json)
    body = _run(opts, lambda c: c.enrolment_code(pid))
    if opts.json:
        _emit(opts, body)
    else:
        # The expiry is the server's text: shown only if it looks like a time, never raw.
        until = body.get("expires_at")
        until = until if isinstance(until, str) and _TIME_TEXT.fullmatch(until) else "unknown"
        _out().print(
            f"Enrolment invitation for {escape(pid)} (one use, until {until}):\n"
            f"  {body['invitation']}\n"
            "Its owner runs: liaison enrol --code INVITATION --server URL --ca-cert CERT --profile NAME",
            soft_wrap=True,
        )


@device_app.command("list")
def device_list(
    ctx: typer.Context,
    principal: Annotated[str | None, typer.Option("--principal")] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The device inventory (scoped to the admin's nation)."""
    opts = _opts(ctx, profile, as_json)
    devices = _run(opts, lambda c: c.list_devices(principal))
    if opts.json:
        _emit(opts, [d.to_json() for d in devices])
        return
    table = Table("device", "principal", "enrolled", "revoked", "last seen")
    for d in devices:
        table.add_row(d.device, d.principal, d.enrolled_at or "", d.revoked_at or "no", d.last_seen_at or "")
    _out().print(table)


@device_app.command("revoke")
def device_revoke(
    ctx: typer.Context,
    device_id: Annotated[str, typer.Argument(metavar="DEVICE_ID")],
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a device: it can no longer send, fetch or be encrypted to."""
    opts = _opts(ctx, profile, as_json)
    body = _run(opts, lambda c: c.revoke_device(device_id))
    if opts.json:
        _emit(opts, body)
    else:
        _out().print(f"Revoked {device_id} at {body.get('revoked_at')} (log index {body.get('log_index')}).")


@channel_app.command("create")
def channel_create(
    ctx: typer.Context,
    cid: Annotated[str, typer.Argument(metavar="ID")],
    ceiling: Annotated[str, typer.Option("--ceiling", help="Highest label the channel carries")],
    name: Annotated[str | None, typer.Option("--name")] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a channel with a ceiling label."""
    opts = _opts(ctx, profile, as_json)
    body = _run(opts, lambda c: c.create_channel(cid, ceiling, name))
    if opts.json:
        _emit(opts, body)
    else:
        _out().print(f"Created channel {cid} ({body.get('name')}).")


@channel_app.command("members")
def channel_members(
    ctx: typer.Context,
    cid: Annotated[str, typer.Argument(metavar="ID")],
    principals: Annotated[list[str], typer.Argument(metavar="PRINCIPAL...")],
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set a channel's members (the full list)."""
    opts = _opts(ctx, profile, as_json)
    body = _run(opts, lambda c: c.set_members(cid, principals))
    if opts.json:
        _emit(opts, body)
    else:
        _out().print(f"Channel {cid} members: {', '.join(body.get('members', []))}.")


# --- audit ------------------------------------------------------------------------------


@audit_app.command("checkpoint")
def audit_checkpoint(
    ctx: typer.Context,
    cosigned: Annotated[
        int,
        typer.Option("--cosigned", help="The newest checkpoint with at least this many witness cosignatures"),
    ] = 0,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch the latest checkpoint: signature and consistency with the saved one checked."""
    opts = _opts(ctx, profile, as_json)
    cp = _run(opts, lambda c: c.checkpoint(cosigned=cosigned))
    if opts.json:
        _emit(opts, cp.to_json())
        return
    since = f" (consistent with size {cp.previous_size} seen before)" if cp.previous_size else ""
    _out().print(
        f"{cp.origin}: {cp.size} entries, root {cp.root_hash}{since}\n"
        f"cosigned by: {', '.join(cp.cosigners) or 'no witness yet'}"
    )


def _progress(opts: Options) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=_err(),
        transient=True,
        disable=opts.json,
    )


def _with_progress(opts: Options, fn: Callable[[AsyncClient, Progress_], Awaitable[T]]) -> T:
    """Run `fn` with a progress bar on stderr (none in --json mode)."""

    async def go(c: AsyncClient) -> T:
        with _progress(opts) as bar:
            task = bar.add_task("fetching and checking tiles", total=None)

            def tick(done: int, total: int, what: str) -> None:
                bar.update(task, completed=done, total=total)

            return await fn(c, tick)

    return _run(opts, go)


def _print_verification(opts: Options, v: m.LogVerification, extra: dict[str, Any]) -> None:
    if opts.json:
        _emit(opts, {**v.to_json(), **extra})
        return
    out = _out()
    out.print(f"[green]Verified[/] {v.origin}: {v.size} entries, root {v.root_hash}")
    out.print(f"  {v.tiles} hash tiles authenticated, root recomputed from the level-0 tiles")
    if v.entries:
        out.print(
            f"  {v.entries} entries checked against their leaf hashes: "
            + ", ".join(f"{k} {n}" for k, n in v.counts.items())
        )
    out.print(
        f"  consistent with the checkpoint of size {v.previous_size} seen before"
        if v.previous_size is not None
        else "  (first checkpoint this profile has kept)"
    )


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    entries: Annotated[
        bool, typer.Option("--entries/--no-entries", help="Also check every entry bundle (auditors)")
    ] = True,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch every tile, recompute the root, check the signature and consistency."""
    opts = _opts(ctx, profile, as_json)

    async def go(c: AsyncClient, tick: Progress_) -> m.LogVerification:
        return (await verify_log(c, entries=entries, progress=tick))[0]

    _print_verification(opts, _with_progress(opts, go), {})


@audit_app.command("prove")
def audit_prove(
    ctx: typer.Context,
    message_id: Annotated[str, typer.Argument(metavar="MESSAGE_ID")],
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Prove a message's acceptance is in the log (and its envelope, if you are a recipient)."""
    opts = _opts(ctx, profile, as_json)
    proof = _run(opts, lambda c: c.prove(message_id))
    if opts.json:
        _emit(opts, proof.to_json())
        return
    e = proof.entry
    _out().print(
        f"[green]Proven[/]: message {proof.id} accepted at log index {proof.log_index} "
        f"(tree size {proof.tree_size}), channel {e.get('channel')}, sender "
        f"{e.get('sender')}, {len(e.get('recipients', []))} recipient device(s), "
        f"digest {e.get('envelope_digest')}" + ("; the envelope matches it" if proof.envelope_checked else "")
    )


@audit_app.command("entries")
def audit_entries(
    ctx: typer.Context,
    type_: Annotated[str | None, typer.Option("--type", help="e.g. message.accepted")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="device id or system")] = None,
    since: Annotated[str | None, typer.Option("--since", help="RFC 3339 time")] = None,
    start: Annotated[int, typer.Option("--start", help="First log index")] = 0,
    limit: Annotated[int, typer.Option("--limit")] = 1000,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Log entries as a table (auditors and admins)."""
    opts = _opts(ctx, profile, as_json)
    found = _run(
        opts, lambda c: c.audit_entries(start=start, type=type_, actor=actor, since=since, limit=limit)
    )
    if opts.json:
        _emit(opts, [e.to_json() for e in found])
        return
    table = Table("index", "time", "type", "actor", "details")
    for e in found:
        details = ", ".join(f"{k}={_short(v)}" for k, v in e.fields.items())
        table.add_row(str(e.index), e.time, e.type, e.actor, details)
    _out().print(table)


def _short(value: Any) -> str:
    if isinstance(value, dict) and {"classification", "rel"} <= set(value):
        try:
            return Label.from_json(value).text()
        except ValueError:
            pass
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= 60 else text[:57] + "..."


@audit_app.command("witness-key")
def audit_witness_key(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Option("--name", help="Witness key name (default: <principal>.witness)")
    ] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create (once) this auditor's witness key; print the verifier key for the operator."""
    opts = _opts(ctx, profile, as_json)

    def go() -> str:
        store = _store()
        pname = _profile_name(store, opts.profile)
        prof = store.load_public(pname)
        key = WitnessKey(store.state_dir(pname) / "witness.json")
        if key.exists:
            return key.verifier_key
        passphrase = _passphrase()
        store.load(pname, passphrase)  # the witness key is sealed under the profile's passphrase
        return key.create(name or f"{prof.principal}.witness", passphrase)

    verifier = _guard(go)
    if opts.json:
        _emit(opts, {"verifier_key": verifier})
    else:
        _out().print(f"Witness verifier key (add it to the server's LIAISON_WITNESS_KEYS):\n  {verifier}")


@audit_app.command("witness")
def audit_witness(ctx: typer.Context, profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Verify the log (as `audit verify`), then cosign the checkpoint and submit it."""
    opts = _opts(ctx, profile, as_json)

    async def go(c: AsyncClient, tick: Progress_) -> tuple[m.LogVerification, str]:
        assert c.profile is not None
        signer = WitnessKey(_store().state_dir(c.profile) / "witness.json").open(_passphrase())
        return await witness(c, signer, progress=tick)

    result, line = _with_progress(opts, go)
    _print_verification(opts, result, {"cosignature": line})
    if not opts.json:
        _out().print(f"[green]Cosigned[/] and submitted: {line.strip()}")


def main() -> None:
    app()
