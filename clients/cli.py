"""The `liaison` command line (analysts, systems, auditors): typer, --json for scripts.

Exit status: 0 on success, 1 when the server, the client's verification or the input refuses
(one line on stderr says why; with --json, one JSON object `{"type", "detail", "exit", ...}`),
2 for usage errors, 130 when interrupted (`liaison help exit-codes`).

Nothing here prints directly: every line goes through `_terminal` (`term.say`, `term.fail`,
`term.table`, `term.show_message`, `term.emit_json`, `term.document`), whose templates are this
module's own text and whose values, whatever the server or a sender put in them, are escaped
there. `tests/clients/test_terminal.py` holds this module and every `_cli_*.py` to that.

Lazy imports, the rule for this module and every command module (`_cli_*.py`): `liaison
--help`, `--version` and shell completion must not import httpx, rich, cryptography, nacl,
pydantic or the client library (`tests/clients/test_cli_startup.py` runs them and checks what
was loaded). At module level import only the standard library, typer, `_cli_common` (options,
profile, client, the error guard) and `_terminal` (which imports rich where it draws). Import
anything else inside the command function that uses it (`from .client import AsyncClient`),
type-only names under `if TYPE_CHECKING:`, and keep option defaults and help texts literals.
Make sub-apps with `_cli_common.sub_app` (plain help: rich's help formatting alone costs
more than the whole budget).

Commands from another module: define them on a sub-app of its own (or on the apps passed to
a `register` function) and add its line under "Commands from other modules" at the end of
this file, as `_cli_agent` does.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from . import _cli_admin, _cli_audit
from . import _terminal as term
from ._cli_common import (
    PASSPHRASE,
    Explained,
    JsonOpt,
    Options,
    ProfileOpt,
    guard,
    opts,
    passphrase,
    profile_name,
    run,
    since_time,
    store,
    sub_app,
)
from .errors import APIError, ClientError, InputError, KeyStoreError

if TYPE_CHECKING:
    from . import _models as m
    from ._trust import LogMemory, WitnessPolicy, WitnessPolicyFile
    from ._watch import Reconnecting
    from .audit import Progress as Progress_
    from .client import AsyncClient

__all__ = ["app", "main"]

T = TypeVar("T")

# The names command modules written against the first version of this file import from it.
_opts, _run, _guard, _store, _profile_name, _passphrase, _PASSPHRASE = (
    opts,
    run,
    guard,
    store,
    profile_name,
    passphrase,
    PASSPHRASE,
)

#: click's error classes, found through typer's public ones (typer vendors click in 0.2x).
_CLICK_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _wants_json(args: list[str]) -> bool:
    """`--json` anywhere among the options (before a `--`): errors are then JSON too, even a
    usage error found before any option was parsed."""
    return "--json" in (args[: args.index("--")] if "--" in args else args)


class _Liaison(TyperGroup):
    """The root command: every error, usage errors included, as one line (or one JSON object)
    on stderr, never a traceback or a multi-line panel."""

    def main(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        # `--json` is this command's choice: whatever runs in this process after it (an
        # embedding program, another command in a test runner) writes plain errors again.
        term.set_json_errors(_wants_json(argv))
        try:
            code = self._command(argv, prog_name, complete_var, **extra)
        finally:
            term.set_json_errors(False)
        if standalone_mode:
            sys.exit(code)
        return code

    def _command(self, argv: list[str], prog_name: str | None, complete_var: str | None, **extra: Any) -> int:
        """Run one command line; its exit code."""
        if argv == ["--version"]:
            # Answered before click parses anything: typer 0.29+ coerces every option value
            # through pydantic, an import that alone would double the time of `--version`.
            return _exit_code(lambda: _version(True))
        try:
            try:
                code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
            except _CLICK_ERROR as e:
                _usage_error(e)
            except typer.Abort:
                term.fail("aborted", code=1, problem="interrupted")
        except typer.Exit as e:
            code = e.exit_code
        return code if isinstance(code, int) else 0


def _exit_code(fn: Callable[[], object]) -> int:
    try:
        fn()
    except typer.Exit as e:
        return e.exit_code
    return 0


def _usage_error(e: Exception) -> None:
    ctx = getattr(e, "ctx", None)
    where = ctx.command_path if ctx is not None else "liaison"
    usage = ctx.get_usage() if ctx is not None else ""
    if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
        if not term.json_errors():
            term.document(ctx.get_help())
            raise typer.Exit(2)
        term.fail(
            "{where}: a command is needed", where=where, code=2, problem="usage", extra={"usage": usage}
        )
    message = e.format_message() if hasattr(e, "format_message") else str(e)
    term.fail(
        "{message} (see '{where} --help')",
        message=message,
        where=where,
        code=int(getattr(e, "exit_code", 2)),
        problem="usage",
        extra={"usage": usage},
    )


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("liaison")
        except PackageNotFoundError:
            found = "unknown (not installed)"
        term.say("liaison {version}", version=found)
        raise typer.Exit()


app = typer.Typer(
    cls=_Liaison,
    help="Liaison client: enrol, send, read and audit end-to-end encrypted, "
    "classification-labelled messages. 'liaison help' lists the help topics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
admin_app = sub_app("Administer principals, enrolment codes, devices and channels.")
principal_app = sub_app("Create and change principals.")
device_app = sub_app("List and revoke devices.")
channel_app = sub_app("Create channels and set their members.")
audit_app = sub_app("Verify the audit log, prove messages, witness checkpoints.")
witnesses_app = sub_app("The profile's witness policy: which witnesses' cosignatures it trusts (k of n).")
app.add_typer(admin_app, name="admin")
app.add_typer(audit_app, name="audit")
audit_app.add_typer(witnesses_app, name="witnesses")
admin_app.add_typer(principal_app, name="principal")
admin_app.add_typer(device_app, name="device")
admin_app.add_typer(channel_app, name="channel")

#: The roles of `liaison.crypto.names.ROLES`, for help texts (a literal: the help imports
#: nothing; tests/clients/test_cli_startup.py holds it equal).
ROLES_HELP = "analyst|admin|auditor"
ID_HELP = "The message id, or its first 8 or more characters"

#: Why a channel member would not receive a message (the plan's exclusion reasons).
_REASONS = {
    "clearance": "clearance is below the label",
    "releasability": "nation is not in REL TO",
    "compartment": "lacks a compartment of the label",
    "system-level": "systems may not handle this level",
    "principal-suspended": "principal is suspended",
    "no-device": "has no active device",
    "no-device-for-suite": "no device with the KEM suite this label needs",
    "not-addressed": "not named with --to",
    "wrong-policy": "label is for another policy",
}


@app.callback()
def _root(
    ctx: typer.Context,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit", is_eager=True, callback=_version),
    ] = False,
) -> None:
    """Liaison client. Profiles live under $LIAISON_HOME (default ~/.config/liaison); the
    passphrase comes from the unlock agent ('liaison unlock'), $LIAISON_PASSPHRASE or a prompt.
    'liaison help TOPIC' explains labels, profiles, the agent, JSON output and exit codes."""
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
            help="The invitation an admin gave you (LIAISON2-...), or a plain one-time code with --log-key",
        ),
    ],
    ca_cert: Annotated[
        Path | None,
        typer.Option("--ca-cert", help="PEM file of the server's CA (or its self-signed certificate)"),
    ] = None,
    principal: Annotated[
        str | None,
        typer.Option(help="Principal the code is for (default: the profile name, and it says so)"),
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

    The server's log key, the directory's roots and the policy floor are pinned only if the
    invitation names them (or the key is --log-key): never on first use. The code itself
    never goes to the server. The code does not say whose it is: without --principal, the profile's
    name is taken as the principal, and the command says so."""
    o = opts(ctx, profile, as_json)
    name = o.profile or principal
    if not name:
        term.fail(
            "say which principal the code is for: --principal ID (or --profile ID)", code=2, problem="usage"
        )
    who = principal or name

    def go() -> m.Enrolled:
        import asyncio

        from .enrol import enrol as do_enrol
        from .errors import EnrolmentRefused

        if ca_cert is not None and not ca_cert.is_file():
            raise InputError(f"--ca-cert {ca_cert} is not a file")
        secret = passphrase(confirm=True)
        try:
            return asyncio.run(
                do_enrol(
                    server,
                    code,
                    principal=who,
                    passphrase=secret,
                    profile=name,
                    store=store(),
                    ca_cert=str(ca_cert) if ca_cert else None,
                    log_key=log_key,
                )
            )
        except EnrolmentRefused as e:
            if principal is None and e.slug in ("bad-bundle", "enrolment-code"):
                e.args = (f"{e} (as principal {who}, the profile's name: --principal names another)",)
            raise
        except InputError as e:
            if principal is None and str(e).startswith("this invitation is for principal"):
                e.args = (f"{e} (as principal {who}, the profile's name: --principal names another)",)
            raise

    result = guard(go)
    source = "option" if principal is not None else "profile"
    if o.json:
        term.emit_json({**result.to_json(), "principal_from": source})
        return
    term.say(
        "Enrolled {principal:bold} device {device:bold} as profile {profile:bold} (log index {index}).",
        principal=result.principal,
        device=result.device,
        profile=result.profile,
        index=result.log_index,
    )
    if principal is None:
        term.say("The principal is the profile's name ({who}): no --principal was given.", who=who)
    term.say("Pinned log key: {key}", key=result.log_key)


@app.command()
def whoami(ctx: typer.Context, profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Show this profile's principal, device and clearance (as the server sees them)."""
    o = opts(ctx, profile, as_json)
    me = run(o, lambda c: c.whoami())
    if o.json:
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
def profiles(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the profiles in $LIAISON_HOME."""
    o = opts(ctx, None, as_json)
    keystore = store()
    names = guard(keystore.list)
    rows = guard(lambda: [keystore.load_public(n) for n in names])
    if o.json:
        term.emit_json([p.to_json() for p in rows], one_line=True)
        return
    term.table(
        ("profile", "principal", "device", "server"),
        [(p.name, p.principal, p.device_id, p.server) for p in rows],
    )


@app.command()
def channels(ctx: typer.Context, profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Channels this principal belongs to (admins see all)."""
    o = opts(ctx, profile, as_json)
    found = run(o, lambda c: c.channels())
    if o.json:
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
    _warn(plan.warnings)


#: The rule a refused send broke, by the server's reason: (its name in --json, in words).
_RULES = {
    "above-ceiling": ("channel-ceiling", "the label is above the channel's ceiling"),
    "clearance": ("own-clearance", "your own clearance is below the label"),
    "releasability": ("releasability", "your nation is not in the label's REL TO"),
    "compartment": ("compartment", "you lack a compartment of the label"),
    "system-level": ("system-level", "systems may not handle this level"),
    "principal-suspended": ("suspended", "your principal is suspended"),
    "not-member": ("membership", "you are not a member of the channel"),
    "not-found": ("no-channel", "there is no such channel"),
    "wrong-policy": ("wrong-policy", "the label is for another policy"),
    "suite-not-allowed": ("suite", "this device's KEM suite is not allowed at this level"),
    "signature-required": ("signatures", "this device lacks a signature algorithm the level requires"),
}


def _explaining(o: Options, fn: Callable[[AsyncClient], Awaitable[T]], channel: str, label: str) -> T:
    """Run a plan or a send; a policy refusal is said as the rule that refuses it (the
    channel's ceiling, your own clearance, releasability, a compartment, membership)."""

    async def go(c: AsyncClient) -> T:
        try:
            return await fn(c)
        except APIError as e:
            if e.slug not in _RULES:
                raise
            rule, words = _RULES[e.slug]
            if e.slug == "above-ceiling":
                ceiling = await _ceiling(c, channel)
                words += f" {ceiling}" if ceiling else ""
            raise Explained(
                f"cannot send {label} on {channel}: {words} ({e.slug}: {e.detail})",
                problem=f"urn:liaison:problem:{e.slug}",
                status=e.status,
                extra={"rule": rule},
            ) from None

    return run(o, go)


async def _ceiling(c: AsyncClient, channel: str) -> str | None:
    try:
        return next((x.ceiling_text for x in await c.channels() if x.id == channel), None)
    except APIError:
        return None


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
    ] = "text/plain; charset=utf-8",
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Show who would and would not receive it; send nothing (exit 1 if nobody)"
        ),
    ] = False,
    attach: Annotated[
        list[Path] | None,
        typer.Option(
            "--attach",
            metavar="FILE",
            help="A file to send with it, encrypted and uploaded as it is read (repeatable)",
        ),
    ] = None,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="With --attach: discard an interrupted send of the same message and files, start afresh",
        ),
    ] = False,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Seal a message to every eligible device of a channel (verified keys only) and send it.

    A refusal names the rule that refuses it: the channel's ceiling, your own clearance,
    releasability (REL TO), a compartment, or membership. With --attach and no FILE, the
    content is stdin's, or empty when stdin is a terminal. A send with --attach that is
    interrupted (Ctrl-C, the connection lost) resumes when the same command is run again:
    only the parts the server lacks are uploaded (--restart starts afresh)."""
    o = opts(ctx, profile, as_json)
    if dry_run:
        plan = _explaining(o, lambda c: c.plan(channel, label, to=to), channel, label)
        if o.json:
            term.emit_json(plan.to_json())
        else:
            _print_plan(plan)
        if not plan.recipients:
            why = "; ".join(f"{e.principal}: {_REASONS.get(e.reason, e.reason)}" for e in plan.excluded)
            term.fail(
                "nobody on {channel} can receive {label}: {why}",
                channel=channel,
                label=plan.label_text,
                why=why or "no other member",
                problem="no-recipients",
                extra={"rule": "recipients"},
            )
        return
    files = attach or []
    data = b"" if files and source == "-" and sys.stdin.isatty() else guard(lambda: _read_input(source))
    sent = _send_with(o, channel, label, data, to=to, content_type=content_type, files=files, restart=restart)
    if o.json:
        term.emit_json(sent.to_json())
        return
    term.say(
        "Sent {id} {label:bold} to {n} device(s); logged at index {index}.",
        id=sent.id,
        label=sent.label_text,
        n=sent.recipients,
        index=sent.log_index,
    )
    for a in sent.attachments:
        term.say(
            "  attachment {index}: {name} ({size}, {type}), sha256 {sha256}",
            index=a.index,
            name=a.name,
            size=term.human_size(a.length),
            type=a.media_type,
            sha256=a.sha256,
        )
    if sent.witness is not None and sent.witness.status != "no-policy":
        term.say("Receipt's checkpoint: {summary}.", summary=sent.witness.summary)
    _warn(sent.warnings)


class _Interrupted(Exception):
    """Ctrl-C during a send whose journal keeps it for a rerun (not a ClientError: the guard
    lets it through, and `_send_with` says how to resume)."""


#: What an interrupted send with attachments tells the user.
_RESUME_HINT = "rerun the same command to resume the upload"


def _send_with(
    o: Options,
    channel: str,
    label: str,
    data: bytes,
    *,
    to: list[str] | None,
    content_type: str,
    files: list[Path],
    restart: bool = False,
) -> m.Sent:
    """`send`, its attachments opened first (a missing or unreadable file is refused before
    anything is asked of the server) and uploaded under progress bars on stderr. With files,
    the send is journaled under the profile's state directory (`pending/`): Ctrl-C (exit 130)
    or a lost connection keeps it, and the same command resumes it (each resumed file said
    on stderr)."""
    import asyncio

    from ._attachments import Attachment, open_source
    from ._resume import curable

    attachments = [Attachment(f) for f in files]

    def check() -> None:  # each opened and closed again, to refuse a bad one before any request
        for a in attachments:
            open_source(a).close()

    guard(check)

    def notice(line: str) -> None:
        term.say("{line}", err=True, line=line)

    async def go(c: AsyncClient) -> m.Sent:
        journal = store().state_dir(c.profile) / "pending" if files and c.profile else None
        # The bars start once the profile is open: a passphrase prompt is never drawn over.
        with term.transfer_progress(disabled=o.json or not files) as bars:
            try:
                return await c.send(
                    channel,
                    label,
                    data,
                    to=to,
                    content_type=content_type,
                    attachments=attachments,
                    progress=bars.tick,
                    journal=journal,
                    restart=restart,
                    notice=notice,
                )
            except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels this task
                if journal is None:
                    raise
                raise _Interrupted from None
            except ClientError as e:
                if journal is not None and curable(e):
                    e.args = (f"{e}; {_RESUME_HINT}",)
                raise

    try:
        return _explaining(o, go, channel, label)
    except _Interrupted:
        term.fail("interrupted: {hint}", hint=_RESUME_HINT, code=130, problem="interrupted")


def _warn(warnings: tuple[str, ...]) -> None:
    """What the directory did not prove (members left out without proof), on stderr."""
    for line in warnings:
        term.say("warning: {line}", err=True, line=line)


@app.command()
def inbox(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many (0: all)", min=0)] = 50,
    channel: Annotated[str | None, typer.Option("--channel", "-c", help="Only this channel")] = None,
    unread: Annotated[bool, typer.Option("--unread", help="Only messages not yet read (acked)")] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Accepted at or after: an RFC 3339 time, a date, or 30m / 2h / 7d ago"),
    ] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """This device's messages, newest first: id, time, channel, sender, label banner, size, read?

    Nothing here is verified yet: 'liaison read ID' verifies, decrypts and marks a message
    read. Messages this principal may no longer read (its clearance, compartments or nation
    changed since they were delivered) are withheld, and counted."""
    o = opts(ctx, profile, as_json)
    after = guard(lambda: since_time(since)) if since is not None else None

    async def go(c: AsyncClient) -> tuple[list[m.InboxItem], m.InboxPage]:
        items: list[m.InboxItem] = []
        first: m.InboxPage | None = None
        before = None
        while True:
            want = 100 if limit == 0 else max(1, min(100, limit - len(items)))
            page = await c.inbox_page(
                before=before,
                limit=want,
                newest_first=True,
                channel=channel,
                unread=unread,
                since=after,
                totals=first is None,
            )
            first = first or page
            items += page.items
            if not page.more or (limit and len(items) >= limit):
                break
            before = page.next
        return (items[:limit] if limit else items), first

    items, first = run(o, go)
    if o.json:
        term.emit_json([_inbox_json(i) for i in items])
        return
    term.table(
        ("id", "time", "channel", "sender", "label", "size", "read?"),
        [
            (i.id, i.created, i.channel, i.sender, i.label_text, i.size, "yes" if i.read else "no")
            for i in items
        ],
    )
    total = first.total if first.total is not None else len(items)
    if len(items) < total:
        term.say(
            "{shown} of {total} shown, newest first (--limit 0 shows all).", shown=len(items), total=total
        )
    if first.withheld_total:
        term.say(
            "{n} more withheld: this principal may no longer read them (its clearance, compartments "
            "or nation changed since they were delivered).",
            n=first.withheld_total,
        )


def _inbox_json(i: m.InboxItem) -> dict[str, Any]:
    return {
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
        "cursor": i.cursor,
    }


async def _resolve(c: AsyncClient, given: str) -> str:
    """The one message of this device's inbox whose id starts with `given` (8+ characters),
    found by the client before anything is fetched: a mistyped id is refused here, not by the
    server (where asking for a message one was not sent is logged as access.denied)."""
    text = given.strip().lower()
    if not re.fullmatch(r"[0-9a-f-]{8,36}", text):
        raise InputError(f"{given!r} is not a message id or its first 8 or more characters")
    page = await c.inbox_page(prefix=text, limit=10, totals=True)
    ids = [i.id for i in page.items]
    if len(ids) == 1:
        return ids[0]
    if len(ids) > 1:
        shown = ", ".join(f"{i.id} ({i.created}, {i.sender})" for i in page.items[:5])
        more = f" and {page.total - 5} more" if page.total and page.total > 5 else ""
        raise Explained(
            f"{given} starts {page.total or len(ids)} message ids: {shown}{more}; give more characters",
            problem="ambiguous-id",
        )
    if page.withheld_total:
        raise Explained(
            f"message {given} was delivered to this device, but this principal may no longer read it "
            "(its clearance, compartments or nation changed since)",
            problem="withheld",
        )
    raise Explained(
        f"no message {given} in the inbox of this device ({c.device_id}): mistyped, or not sent to "
        "this device; nothing was asked of the server",
        problem="not-in-inbox",
    )


@app.command()
def read(
    ctx: typer.Context,
    message_id: Annotated[str, typer.Argument(metavar="ID", help=ID_HELP)],
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
    keep_unread: Annotated[
        bool, typer.Option("--keep-unread", help="Do not mark it read (no ack is sent or logged)")
    ] = False,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify, decrypt and show a message between its label banners; refuse and say why.
    Then mark it read (an ack, logged), unless --keep-unread.

    Control characters in anything the sender or server wrote are shown escaped (e.g. \\x1b);
    content that is not text is not shown: save it with --output FILE.
    """
    o = opts(ctx, profile, as_json)
    if raw and output is not None:
        term.fail("use --raw or --output, not both", code=2, problem="usage")
    if force and output is None:
        term.fail("--force goes with --output FILE", code=2, problem="usage")
    to_pipe = raw or str(output) == "-"
    if to_pipe and not o.json and term.stdout_is_terminal():
        # Checked before anything is fetched: the content's raw bytes never reach a terminal.
        term.fail(
            "--raw writes the content's bytes as they are, so not to a terminal: "
            "pipe it or use --output FILE",
            problem="input",
        )

    async def go(c: AsyncClient) -> tuple[m.Message, str | None, str | None]:
        mid = await _resolve(c, message_id)
        msg = await c.read(mid)
        if keep_unread:
            return msg, None, None
        try:
            return msg, await c.ack(mid), None
        except APIError as e:
            return msg, None, str(e)

    msg, acked, ack_failed = run(o, go)
    saved = None
    if output is not None and not to_pipe:
        saved = guard(lambda: term.save_content(output, msg.plaintext, force=force))
    if ack_failed is not None:
        term.say("[yellow]Not marked read[/]: {error}", err=True, error=ack_failed)
    if o.json:
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
                "acked_at": acked,
                "attachments": [a.to_json() for a in msg.attachments],
                **({"output": str(saved)} if saved is not None else {}),
            }
        )
        return
    if to_pipe:
        guard(lambda: term.write_raw(msg.plaintext))
        return
    term.show_message(msg, saved=saved)
    if msg.witness is not None and msg.witness.status != "no-policy":
        term.say("The message's checkpoint: {summary}.", summary=msg.witness.summary)
    _list_attachments(msg)


def _list_attachments(msg: m.Message) -> None:
    """A message's attachments (never their content): number, name, type, size, SHA-256."""
    if not msg.attachments:
        return
    term.table(
        ("#", "name", "type", "size", "sha256"),
        [
            (a.index, a.name, a.media_type, term.human_size(a.length), a.sha256[:16] + "…")
            for a in msg.attachments
        ],
        title="Attachments (not fetched)",
    )
    term.say("Save them with: liaison save {id} [--attachment N] [--output DIR]", id=msg.id)


@app.command()
def save(
    ctx: typer.Context,
    message_id: Annotated[str, typer.Argument(metavar="ID", help=ID_HELP)],
    attachment: Annotated[
        str | None,
        typer.Option(
            "--attachment", "-a", metavar="N", help="Only this attachment: its number (from 1), or its id"
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="DIR", help="The directory to write into (default: the current one)"
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace files that exist")] = False,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Save a message's attachments (all, or --attachment N) into a directory, each checked.

    The message is verified as 'read' verifies it; each file is decrypted as it downloads and
    named only once its chunk tree root (signed by the sender), every chunk, its length and
    its SHA-256 are verified; a failure leaves no file behind. Files are named as the sender
    named them (a leading '.' saved as '_.'), never over an existing file unless --force."""
    o = opts(ctx, profile, as_json)
    folder = (output if output is not None else Path(".")).absolute()
    if not folder.is_dir():
        term.fail("{path} is not a directory", path=folder, problem="input")
    which: int | str | None = None
    if attachment is not None:
        which = int(attachment) if re.fullmatch(r"[0-9]{1,5}", attachment) else attachment.strip()

    async def go(c: AsyncClient) -> tuple[str, list[m.SavedAttachment]]:
        mid = await _resolve(c, message_id)
        with term.transfer_progress(disabled=o.json) as bars:
            if which is not None:
                one = await c.save_attachment(mid, which, folder, overwrite=force, progress=bars.tick)
                return mid, [one]
            return mid, await c.save_attachments(mid, folder, overwrite=force, progress=bars.tick)

    mid, saved = run(o, go)
    if not saved:
        term.fail("message {id} has no attachments: nothing was saved", id=mid, problem="input")
    if o.json:
        term.emit_json({"message": mid, "saved": [s.to_json() for s in saved]})
        return
    for s in saved:
        term.say(
            "Saved {path} ({size}, {type}); sha256 {sha256} verified.",
            path=s.path,
            size=term.human_size(s.length),
            type=s.media_type,
            sha256=s.sha256,
        )


@app.command()
def ack(
    ctx: typer.Context,
    message_id: Annotated[str, typer.Argument(metavar="ID", help=ID_HELP)],
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mark a message read without reading it (an ack, logged; 'read' acks by itself)."""
    o = opts(ctx, profile, as_json)

    async def go(c: AsyncClient) -> tuple[str, str]:
        mid = await _resolve(c, message_id)
        return mid, await c.ack(mid)

    mid, when = run(o, go)
    if o.json:
        term.emit_json({"id": mid, "acked_at": when})
    else:
        term.say("Acknowledged {id} at {when}.", id=mid, when=when)


@app.command()
def watch(
    ctx: typer.Context,
    count: Annotated[int | None, typer.Option("--count", help="Stop after this many messages", min=1)] = None,
    after: Annotated[
        int | None,
        typer.Option("--after", help="Resume from this inbox cursor, catching up first", min=0),
    ] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print messages as they arrive, until interrupted: time, channel, sender, label.

    A lost connection or a server restart is retried with backoff (0.5 s doubling to 30 s),
    resuming from the last message's cursor: nothing is missed or shown twice. Only the end of
    this device's right (revoked, suspended) or a refusal ends it (exit 1)."""
    o = opts(ctx, profile, as_json)

    async def go(c: AsyncClient) -> None:
        from contextlib import aclosing

        from ._watch import Reconnecting, follow

        seen = 0
        if not o.json:
            term.say(
                "Watching for messages to {principal} ({device}); Ctrl-C stops.",
                err=True,
                principal=c.principal,
                device=c.device_id,
            )
        async with aclosing(follow(c, after=after)) as events:
            async for event in events:
                if isinstance(event, Reconnecting):
                    _reconnecting(o, event)
                    continue
                if o.json:
                    term.emit_json(event.to_json(), one_line=True)
                else:
                    term.say(
                        "{created} {channel} {sender}: {label:bold} ({size} bytes)  liaison read {id}",
                        created=event.created,
                        channel=event.channel,
                        sender=event.sender,
                        label=event.label_text,
                        size=event.size,
                        id=event.id,
                    )
                seen += 1
                if count is not None and seen >= count:
                    return

    run(o, go)


def _reconnecting(o: Options, event: Reconnecting) -> None:
    if o.json:
        term.emit_json(
            {"type": "reconnecting", "why": event.why, "wait": event.wait, "cursor": event.cursor},
            one_line=True,
            err=True,
        )
    else:
        term.say(
            "Stream lost ({why}); reconnecting in {wait} s from cursor {cursor}.",
            err=True,
            why=event.why,
            wait=f"{event.wait:.1f}",
            cursor=event.cursor,
        )


# --- admin ------------------------------------------------------------------------------


@principal_app.command("create")
def principal_create(
    ctx: typer.Context,
    pid: Annotated[str, typer.Argument(metavar="ID")],
    name: Annotated[str, typer.Option("--name", help="Display name")],
    nation: Annotated[str, typer.Option("--nation", help="ISO 3166-1 alpha-3, e.g. UKR")],
    clearance: Annotated[str, typer.Option("--clearance", help="A level of the policy")],
    compartment: Annotated[list[str] | None, typer.Option("--compartment")] = None,
    role: Annotated[list[str] | None, typer.Option("--role", help=ROLES_HELP)] = None,
    kind: Annotated[str, typer.Option("--kind", help="person|system")] = "person",
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a principal (nation admins: own nation, up to their own clearance)."""
    opts = _opts(ctx, profile, as_json)
    if kind not in ("person", "system"):
        term.fail("--kind must be person or system", code=2, problem="usage")
    from liaison.crypto.names import DEFAULT_ROLES

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
        term.fail("--status must be active or suspended", code=2, problem="usage")
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

    This client makes the code (the server never sees it) and signs the invitation; the
    invitation (LIAISON2-...) is the code and the digest of the anchors this profile verified:
    its pinned log key, the directory's roots, the policy version, its witness policy. The new
    device pins them only if they match. --json also gives the plain code."""
    opts = _opts(ctx, profile, as_json)
    body = _run(opts, lambda c: c.enrolment_code(pid))
    if opts.json:
        term.emit_json(body)
    else:
        term.say(
            "Enrolment invitation for {pid} (one use, until {until}):", pid=pid, until=body.get("expires_at")
        )
        term.say("  {invitation}", invitation=body["invitation"])
        term.say(
            "Its owner runs: liaison enrol --code INVITATION --server URL --ca-cert CERT --principal {pid}",
            pid=pid,
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
    if v.statements:
        term.say(
            "  {n} directory statements replayed into the map heads; the authority of {checked} "
            "checked, {sealed} sealed to this profile",
            n=v.statements,
            checked=v.authority_checked,
            sealed=v.authority_sealed,
        )
    if v.fields_opened or v.fields_sealed:
        term.say(
            "  {opened} committed fields opened and recomputed; {sealed} sealed to this profile "
            "in {entries} entries; {shredded} entries shredded (each named by audit.shredded)",
            opened=v.fields_opened,
            sealed=v.fields_sealed,
            entries=v.entries_sealed,
            shredded=v.shredded,
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
            (
                e.index,
                e.time,
                e.type,
                e.actor or "(sealed)",
                ", ".join(
                    [f"{k}={_short(v)}" for k, v in e.fields.items()] + [f"{k}=(sealed)" for k in e.sealed]
                ),
            )
            for e in found
        ],
    )
    sealed = sum(1 for e in found if e.sealed)
    if sealed:
        term.say(
            "{n} of {total} entries have fields sealed to this profile (protocol 10.3)",
            err=True,
            n=sealed,
            total=len(found),
        )


def _short(value: Any) -> str:
    from liaison.crypto.labels import Label

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
        from .audit import WitnessKey

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
        from ._witness import WitnessState
        from .audit import WitnessKey, witness

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
    import logging

    from liaison.crypto import note
    from liaison.crypto.errors import CryptoError

    from ._trust import LogMemory
    from ._witness import Witness, WitnessState
    from ._witness import serve as serve_witness
    from .audit import WitnessKey

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
    from ._trust import LogMemory, WitnessPolicyFile

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
        from ._trust import WitnessPolicy

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


# --- help topics -------------------------------------------------------------------------


@app.command("help")
def help_topic(
    ctx: typer.Context,
    topic: Annotated[str | None, typer.Argument(metavar="[TOPIC|COMMAND]", help="Topic or command")] = None,
) -> None:
    """Explain a topic (labels, profiles, agent, inbox, watch, json, exit-codes, completion) or
    show a command's help ('liaison help send' is 'liaison send --help')."""
    from ._help import TOPICS, index

    if topic is None:
        term.document(index())
        return
    if topic in TOPICS:
        term.document(TOPICS[topic])
        return
    root = ctx.find_root()
    group = root.command
    command = group.get_command(root, topic) if isinstance(group, TyperGroup) else None
    if command is None:
        term.fail(
            "no help topic or command {topic}: topics are {topics}",
            topic=topic,
            topics=", ".join(TOPICS),
            code=2,
            problem="usage",
        )
    with type(ctx)(command, info_name=topic, parent=root) as sub:
        term.document(command.get_help(sub))


# Commands kept in their own modules (the admin surface; audit evidence and trust).
_cli_admin.register(app, admin_app, principal_app, channel_app)
_cli_audit.register(audit_app)


def main() -> None:
    app()


# --- Commands from other modules ---------------------------------------------------------
# Each module follows the lazy-import rule above; one line each, after the apps exist.

from . import _cli_agent  # noqa: E402

_cli_agent.register(app)
