"""The `liaison` command line (analysts, systems, auditors): typer + rich, --json for scripts.

Exit status: 0 on success, 1 when the server, the client's verification or the input refuses
(one line on stderr says why), 2 for usage errors.

Nothing here prints directly: every line goes through `_terminal` (`term.say`, `term.fail`,
`term.table`, `term.show_message`, `term.emit_json`), whose templates are this module's own
text and whose values, whatever the server or a sender put in them, are escaped there.
`tests/clients/test_terminal.py` holds this module to that.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer

from liaison.crypto import note
from liaison.crypto.errors import CryptoError
from liaison.crypto.labels import Label
from liaison.crypto.names import DEFAULT_ROLES, ROLES

from . import _cli_admin, _cli_audit
from . import _models as m
from . import _terminal as term
from ._trust import LogMemory, WitnessPolicy, WitnessPolicyFile
from ._witness import Witness, WitnessState
from ._witness import serve as serve_witness
from .audit import Progress as Progress_
from .audit import WitnessKey, witness
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
witnesses_app = typer.Typer(
    help="The profile's witness policy: which witnesses' cosignatures it trusts (k of n).",
    no_args_is_help=True,
)
app.add_typer(admin_app, name="admin")
app.add_typer(audit_app, name="audit")
audit_app.add_typer(witnesses_app, name="witnesses")
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


@dataclass
class Options:
    profile: str | None = None
    json: bool = False


_PASSPHRASE: list[str] = []


def _passphrase(confirm: bool = False) -> str:
    """Ask once per process ($LIAISON_PASSPHRASE or the terminal)."""
    if not _PASSPHRASE:
        _PASSPHRASE.append(passphrase_from_env_or_prompt(confirm=confirm))
    return _PASSPHRASE[0]


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
        term.fail("refused ({reason}): {error}", reason=e.reason, error=e)
    except ClientError as e:
        term.fail("{error}", error=e)
    except httpx.InvalidURL as e:
        # An id or URL with a character no URL can carry (e.g. a control character).
        term.fail("not usable in a URL: {error}", error=e)
    except KeyboardInterrupt:
        term.fail("interrupted", code=130)


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
        term.fail("say which principal the code is for: --principal ID (or --profile ID)", code=2)
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
        term.emit_json(result.to_json())
        return
    term.say(
        "Enrolled {principal:bold} device {device:bold} as profile {profile:bold} (log index {index}).",
        principal=result.principal,
        device=result.device,
        profile=result.profile,
        index=result.log_index,
    )
    term.say("Pinned log key: {key}", key=result.log_key)


@app.command()
def whoami(ctx: typer.Context, profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Show this profile's principal, device and clearance (as the server sees them)."""
    opts = _opts(ctx, profile, as_json)
    me = _run(opts, lambda c: c.whoami())
    if opts.json:
        term.emit_json(me.to_json())
        return
    term.say(
        "{principal} ({name}, {nation}, {kind}) on device {device}",
        principal=me.principal,
        name=me.display_name,
        nation=me.nation,
        kind=me.kind,
        device=me.device,
    )
    term.say(
        "  clearance {clearance}, compartments {comps}, roles {roles}, {status}",
        clearance=me.clearance,
        comps="/".join(me.compartments) or "none",
        roles=", ".join(me.roles),
        status=me.status,
    )


@app.command()
def profiles(as_json: JsonOpt = False) -> None:
    """List the profiles in $LIAISON_HOME."""
    store = _store()
    names = _guard(store.list)
    rows = [store.load_public(n) for n in names]
    if as_json:
        term.emit_json([p.to_json() for p in rows], one_line=True)
        return
    term.table(
        ("profile", "principal", "device", "server"),
        [(p.name, p.principal, p.device_id, p.server) for p in rows],
    )


@app.command()
def channels(ctx: typer.Context, profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Channels this principal belongs to (admins see all)."""
    opts = _opts(ctx, profile, as_json)
    found = _run(opts, lambda c: c.channels())
    if opts.json:
        term.emit_json([c.to_json() for c in found])
        return
    term.table(
        ("channel", "name", "ceiling", "members"),
        [(c.id, c.name, c.ceiling_text, ", ".join(c.members)) for c in found],
    )


# --- messages ---------------------------------------------------------------------------


def _read_input(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {source}: {e.strerror}") from None


def _print_plan(plan: m.Plan) -> None:
    term.say("{label:bold} on channel {channel:bold}", label=plan.label_text, channel=plan.channel)
    term.table(
        ("principal", "device", "key in log at"),
        [(r.principal, r.device, r.enrol_index) for r in plan.recipients],
        title="Would be encrypted to",
    )
    if plan.excluded:
        term.table(
            ("principal", "reason"),
            [(e.principal, f"{e.reason}: {_REASONS.get(e.reason, e.reason)}") for e in plan.excluded],
            title="Channel members who would NOT receive it",
        )
    else:
        term.say("Every channel member would receive it.")


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
            term.emit_json(plan.to_json())
        else:
            _print_plan(plan)
        return
    data = _guard(lambda: _read_input(source))
    sent = _run(opts, lambda c: c.send(channel, label, data, to=to, content_type=content_type))
    if opts.json:
        term.emit_json(sent.to_json())
        return
    term.say(
        "Sent {id} {label:bold} to {n} device(s); logged at index {index}.",
        id=sent.id,
        label=sent.label_text,
        n=sent.recipients,
        index=sent.log_index,
    )
    if sent.witness is not None and sent.witness.status != "no-policy":
        term.say("Receipt's checkpoint: {summary}.", summary=sent.witness.summary)


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
        term.emit_json(
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
    term.table(
        ("id", "time", "sender", "label", "size", "read?"),
        [(i.id, i.created, i.sender, i.label_text, i.size, "yes" if i.read else "no") for i in items],
    )


@app.command()
def read(
    ctx: typer.Context,
    message_id: Annotated[str, typer.Argument(metavar="ID")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the content's exact bytes to this file (mode 0600; - for a pipe), not to the screen",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="With --output: replace an existing file")] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="Only the content's bytes, to a pipe (never to a terminal)")
    ] = False,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify, decrypt and show a message between its label banners; refuse and say why.

    Control characters in anything the sender or server wrote are shown escaped (e.g. \\x1b);
    content that is not text is not shown: save it with --output FILE.
    """
    opts = _opts(ctx, profile, as_json)
    if raw and output is not None:
        term.fail("use --raw or --output, not both", code=2)
    if force and output is None:
        term.fail("--force goes with --output FILE", code=2)
    to_pipe = raw or str(output) == "-"
    if to_pipe and not opts.json and term.stdout_is_terminal():
        # Checked before anything is fetched: the content's raw bytes never reach a terminal.
        term.fail(
            "--raw writes the content's bytes as they are, so not to a terminal: pipe it or use --output FILE"
        )
    msg = _run(opts, lambda c: c.read(message_id))
    saved = None
    if output is not None and not to_pipe:
        saved = _guard(lambda: term.save_content(output, msg.plaintext, force=force))
    if opts.json:
        text, _ = term.content_text(msg.content_type, msg.plaintext)
        term.emit_json(
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
                "size": len(msg.plaintext),
                "text": text,
                **({"output": str(saved)} if saved is not None else {}),
            }
        )
        return
    if to_pipe:
        _guard(lambda: term.write_raw(msg.plaintext))
        return
    term.show_message(msg, saved=saved)
    if msg.witness is not None and msg.witness.status != "no-policy":
        term.say("The message's checkpoint: {summary}.", summary=msg.witness.summary)


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
        term.emit_json({"id": message_id, "acked_at": when})
    else:
        term.say("Acknowledged {id} at {when}.", id=message_id, when=when)


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
            term.say(
                "Watching for messages to {principal} ({device}); Ctrl-C stops.",
                err=True,
                principal=c.principal,
                device=c.device_id,
            )
        async for event in c.watch():
            if opts.json:
                term.emit_json(event.to_json(), one_line=True)
            else:
                term.say(
                    "new message {id} on {channel} (log index {index}): liaison read {id}",
                    id=event.id,
                    channel=event.channel,
                    index=event.log_index,
                )
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
        term.fail("--kind must be person or system", code=2)
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
        term.fail("--status must be active or suspended", code=2)
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
        term.emit_json(body)
        return
    term.say(
        "{verb} {id} ({nation}, {kind}): {clearance}, compartments {comps}, roles {roles}, {status}",
        verb=verb,
        id=body.get("id"),
        nation=body.get("nation"),
        kind=body.get("kind"),
        clearance=body.get("clearance"),
        comps="/".join(map(str, body.get("compartments", []))) or "none",
        roles=", ".join(map(str, body.get("roles", []))),
        status=body.get("status"),
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
        term.emit_json(body)
    else:
        term.say(
            "Enrolment invitation for {pid} (one use, until {until}):", pid=pid, until=body.get("expires_at")
        )
        term.say("  {invitation}", invitation=body["invitation"])
        term.say("Its owner runs: liaison enrol --code INVITATION --server URL --ca-cert CERT --profile NAME")


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
        term.emit_json([d.to_json() for d in devices])
        return
    term.table(
        ("device", "principal", "enrolled", "revoked", "last seen"),
        [
            (d.device, d.principal, d.enrolled_at or "", d.revoked_at or "no", d.last_seen_at or "")
            for d in devices
        ],
    )


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
        term.emit_json(body)
    else:
        term.say(
            "Revoked {device} at {when} (log index {index}).",
            device=device_id,
            when=body.get("revoked_at"),
            index=body.get("log_index"),
        )


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
        term.emit_json(body)
    else:
        term.say("Created channel {id} ({name}).", id=cid, name=body.get("name"))


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
        term.emit_json(body)
    else:
        term.say(
            "Channel {id} members: {members}.", id=cid, members=", ".join(map(str, body.get("members", [])))
        )


# --- audit ------------------------------------------------------------------------------


def _with_progress(opts: Options, fn: Callable[[AsyncClient, Progress_], Awaitable[T]]) -> T:
    """Run `fn` with a progress bar on stderr (none in --json mode)."""

    async def go(c: AsyncClient) -> T:
        with term.progress(disabled=opts.json) as bar:
            task = bar.add_task("fetching and checking tiles", total=None)

            def tick(done: int, total: int, what: str) -> None:
                bar.update(task, completed=done, total=total)

            return await fn(c, tick)

    return _run(opts, go)


def _print_verification(opts: Options, v: m.LogVerification, extra: dict[str, Any]) -> None:
    if opts.json:
        term.emit_json({**v.to_json(), **extra})
        return
    term.say(
        "[green]Verified[/] {origin}: {size} entries, root {root}",
        origin=v.origin,
        size=v.size,
        root=v.root_hash,
    )
    term.say("  {n} hash tiles authenticated, root recomputed from the level-0 tiles", n=v.tiles)
    if v.entries:
        term.say(
            "  {n} entries checked against their leaf hashes: {counts}",
            n=v.entries,
            counts=", ".join(f"{k} {n}" for k, n in v.counts.items()),
        )
    if v.previous_size is not None:
        term.say("  consistent with the checkpoint of size {size} seen before", size=v.previous_size)
    else:
        term.say("  (first checkpoint this profile has kept)")


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
        term.emit_json(proof.to_json())
        return
    e = proof.entry
    term.say(
        "[green]Proven[/]: message {id} accepted at log index {index} (tree size {size}), channel "
        "{channel}, sender {sender}, {n} recipient device(s), digest {digest}{matches}",
        id=proof.id,
        index=proof.log_index,
        size=proof.tree_size,
        channel=e.get("channel"),
        sender=e.get("sender"),
        n=len(e.get("recipients", [])),
        digest=e.get("envelope_digest"),
        matches="; the envelope matches it" if proof.envelope_checked else "",
    )
    if proof.witness is not None and proof.witness.status != "no-policy":
        term.say("The proof's checkpoint: {summary}.", summary=proof.witness.summary)


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
        term.emit_json([e.to_json() for e in found])
        return
    term.table(
        ("index", "time", "type", "actor", "details"),
        [
            (e.index, e.time, e.type, e.actor, ", ".join(f"{k}={_short(v)}" for k, v in e.fields.items()))
            for e in found
        ],
    )


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
        term.emit_json({"verifier_key": verifier})
    else:
        term.say("Witness verifier key (add it to the server's LIAISON_WITNESS_KEYS):")
        term.say("  {key}", key=verifier)


@audit_app.command("witness")
def audit_witness(
    ctx: typer.Context,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Run an always-on C2SP tlog-witness (POST /add-checkpoint) until stopped"
        ),
    ] = False,
    host: Annotated[str, typer.Option("--host", help="--serve: address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="--serve: port to listen on")] = 8444,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="--serve: PEM certificate (HTTPS, TLS 1.3); else HTTP")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="--serve: PEM private key")] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="--serve: URL path prefix, e.g. /witness")] = "",
    log_key: Annotated[
        list[str] | None,
        typer.Option(
            "--log-key", help="--serve: a log verifier key to witness (repeatable; default: pinned)"
        ),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="The witness's record (default: the profile's witness-state.json)"),
    ] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify the log (as `audit verify`), then cosign the checkpoint and submit it; or, with
    --serve, answer the log's pushes (c2sp.org/tlog-witness) for as long as it runs."""
    opts = _opts(ctx, profile, as_json)
    if serve:
        _guard(lambda: _serve_witness(opts, host, port, tls_cert, tls_key, prefix, log_key or [], state))
        return

    async def go(c: AsyncClient, tick: Progress_) -> tuple[m.LogVerification, str]:
        assert c.profile is not None
        here = _store().state_dir(c.profile)
        signer = WitnessKey(here / "witness.json").open(_passphrase())
        return await witness(c, signer, progress=tick, state=WitnessState(state or here / _WITNESS_STATE))

    result, line = _with_progress(opts, go)
    _print_verification(opts, result, {"cosignature": line})
    if not opts.json:
        term.say("[green]Cosigned[/] and submitted: {line}", line=line.strip())


_WITNESS_STATE = "witness-state.json"


def _serve_witness(
    opts: Options,
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    prefix: str,
    log_keys: list[str],
    state: Path | None,
) -> None:
    if (tls_cert is None) != (tls_key is None):
        raise InputError("--tls-cert and --tls-key go together")
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            raise InputError(f"{path} is not a file")
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise InputError("--prefix must start with '/' and not end with one, e.g. /witness")
    if not 0 < port < 65536:
        raise InputError("--port must be 1 to 65535")
    store = _store()
    name = _profile_name(store, opts.profile)
    store.load_public(name)
    here = store.state_dir(name)
    keys = []
    for text in log_keys:
        try:
            keys.append(note.parse_verifier_key(text))
        except CryptoError as e:
            raise InputError(f"--log-key is not a log verifier key: {e}") from None
    if not keys:
        keys = [LogMemory(here / "log.json").log_key]
    record = WitnessState(state or here / _WITNESS_STATE)
    for key in keys:
        record.get(key.name)  # a damaged record refuses to start, before the passphrase
    signer = WitnessKey(here / "witness.json").open(_passphrase())
    server = Witness(signer, keys, record)
    handler = term.SafeLogHandler("%(asctime)s liaison-witness %(levelname)s %(message)s")
    logging.getLogger("liaison.witness").addHandler(handler)
    logging.getLogger("liaison.witness").setLevel(logging.INFO)
    scheme = "https" if tls_cert else "http"
    where = f"[{host}]" if ":" in host else host
    term.say(
        "Witness {name} ({key}) for {logs}: POST {scheme}://{where}:{port}{prefix}/add-checkpoint",
        err=True,
        name=signer.name,
        key=signer.verifier.key_string,
        logs=", ".join(server.logs),
        scheme=scheme,
        where=where,
        port=port,
        prefix=prefix,
    )
    serve_witness(server, host, port, tls_cert=tls_cert, tls_key=tls_key, prefix=prefix)


# --- the witness policy -------------------------------------------------------------------


def _policy_file(opts: Options) -> tuple[str, LogMemory, WitnessPolicyFile]:
    """The profile's log memory and witness policy file (no passphrase: nothing secret)."""
    store = _store()
    name = _profile_name(store, opts.profile)
    store.load_public(name)
    memory = LogMemory(store.state_dir(name) / "log.json")
    return name, memory, WitnessPolicyFile.beside(memory)


def _emit_policy(opts: Options, profile: str, policy: WitnessPolicy | None, verb: str) -> None:
    if opts.json:
        term.emit_json({"profile": profile, "policy": policy.to_json() if policy else None, "change": verb})


@witnesses_app.command("set")
def witnesses_set(
    ctx: typer.Context,
    key: Annotated[
        list[str],
        typer.Option("--key", help="A witness verifier key <name>+<id>+<key> (type 0x04; repeatable)"),
    ],
    k: Annotated[int, typer.Option("--k", help="How many of the pinned witnesses must cosign")],
    max_age: Annotated[
        int | None,
        typer.Option("--max-age", help="Seconds after which a cosignature no longer counts (default: none)"),
    ] = None,
    wait: Annotated[
        float,
        typer.Option("--wait", help="Seconds a receipt check waits for the witnesses before it reports"),
    ] = 5.0,
    require: Annotated[
        bool,
        typer.Option("--require/--no-require", help="Refuse (exit 1) what is not witnessed within the wait"),
    ] = False,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pin witness keys and a quorum (k of n): only their cosignatures count, from now on."""
    opts = _opts(ctx, profile, as_json)

    def go() -> tuple[str, WitnessPolicy | None, WitnessPolicy]:
        name, memory, pfile = _policy_file(opts)
        log_key = memory.log_key
        try:
            old = pfile.load(log_key)
        except KeyStoreError:
            old = None  # set for another log key: replaced by this explicit choice
        new = WitnessPolicy.from_keys(key, k, max_age=max_age, wait=wait, require=require)
        pfile.save(new, log_key)
        return name, old, new

    name, old, new = _guard(go)
    verb = "set" if old is None else ("unchanged" if old == new else "changed")
    if opts.json:
        _emit_policy(opts, name, new, verb)
        return
    if verb == "changed":
        assert old is not None
        term.say("Witness policy of profile {name} [bold]changed[/]:", name=name)
        term.say("  was: {policy}", policy=old.describe())
        term.say("  now: {policy}", policy=new.describe())
    else:
        term.say(
            "Witness policy of profile {name} {verb}: {policy}", name=name, verb=verb, policy=new.describe()
        )
    for w in new.witnesses:
        term.say("  pinned {key}", key=w.key_string)


@witnesses_app.command("show")
def witnesses_show(ctx: typer.Context, profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Print the profile's witness policy."""
    opts = _opts(ctx, profile, as_json)

    def go() -> tuple[str, WitnessPolicy | None]:
        name, memory, pfile = _policy_file(opts)
        return name, pfile.load(memory.log_key)

    name, policy = _guard(go)
    if opts.json:
        _emit_policy(opts, name, policy, "none")
    elif policy is None:
        term.say("Profile {name} has no witness policy: cosignatures are not checked.", name=name)
    else:
        term.say("Witness policy of profile {name}: {policy}", name=name, policy=policy.describe())
        for w in policy.witnesses:
            term.say("  pinned {key}", key=w.key_string)


@witnesses_app.command("clear")
def witnesses_clear(ctx: typer.Context, profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Remove the profile's witness policy (cosignatures are then no longer checked)."""
    opts = _opts(ctx, profile, as_json)

    def go() -> tuple[str, bool]:
        name, _, pfile = _policy_file(opts)
        return name, pfile.clear()

    name, had = _guard(go)
    if opts.json:
        term.emit_json({"profile": name, "policy": None, "change": "cleared" if had else "none"})
    else:
        if had:
            term.say(
                "Witness policy of profile {name} removed: cosignatures are no longer checked.", name=name
            )
        else:
            term.say("Profile {name} had no witness policy.", name=name)


# Commands kept in their own modules (the admin surface; audit evidence and trust).
_cli_admin.register(app, admin_app, principal_app, channel_app)
_cli_audit.register(audit_app)


def main() -> None:
    app()
