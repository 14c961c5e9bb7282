"""`liaison audit` commands that keep an auditor's evidence: `checkpoint` and `verify` write fork
evidence when the log is not the one the profile saw (`--evidence FILE`, by default under the
profile's state), `evidence verify FILE` checks such a file independently, and `trust` shows
what the profile trusts and, with an explicit confirmation, starts over (`--reset`).

Registered on `cli.py`'s `audit` group by `register`; the command bodies import `cli` when
they run, never at import. Every line goes through `_terminal`.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from . import _terminal as term

if TYPE_CHECKING:
    from ._models import LogVerification
    from .audit import Progress
    from .client import AsyncClient

__all__ = ["register"]

T = TypeVar("T")

ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", "-p", help="Profile to use (default: $LIAISON_PROFILE, else the only one)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
EvidenceOpt = Annotated[
    Path | None,
    typer.Option(
        "--evidence",
        help="Where to write fork evidence if the log is not the one seen before "
        "(default: STATE/<profile>/evidence/fork-<time>.json)",
    ),
]

evidence_app = typer.Typer(
    help="Check fork evidence files (no server, no profile needed).", no_args_is_help=True
)


def register(audit_app: typer.Typer) -> None:
    """Add this module's commands to `liaison audit`."""
    audit_app.command("checkpoint")(audit_checkpoint)
    audit_app.command("verify")(audit_verify)
    audit_app.command("trust")(audit_trust)
    audit_app.add_typer(evidence_app, name="evidence")
    evidence_app.command("verify")(evidence_verify)


async def _keeping_evidence(client: AsyncClient, run: Awaitable[T], where: Path | None, command: str) -> T:
    """Await `run`; on a fork, write its evidence and say where, and how to go on."""
    from . import _evidence

    try:
        return await run
    except _evidence.ForkDetected as e:
        ev = replace(e.evidence, detected_by=f"liaison audit {command}")
        path = _evidence.save(ev, where or _evidence.default_path(client.memory.path.parent))
        raise _evidence.ForkDetected(
            f"{e}; the evidence (both signed checkpoints and the failed proof) is in {path}: check it "
            f"with 'liaison audit evidence verify {path}' and give it to your auditors; this profile "
            "keeps refusing this log. Only once they have dealt with it: 'liaison audit trust --reset'",
            ev,
        ) from None


def audit_checkpoint(
    ctx: typer.Context,
    cosigned: Annotated[
        int,
        typer.Option("--cosigned", help="The newest checkpoint with at least this many witness cosignatures"),
    ] = 0,
    evidence: EvidenceOpt = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch the latest checkpoint: signature and consistency with the saved one checked."""
    from .cli import _opts, _run

    opts = _opts(ctx, profile, as_json)
    cp = _run(opts, lambda c: _keeping_evidence(c, c.checkpoint(cosigned=cosigned), evidence, "checkpoint"))
    if opts.json:
        term.emit_json(cp.to_json())
        return
    since = f" (consistent with size {cp.previous_size} seen before)" if cp.previous_size else ""
    term.say(
        "{origin}: {size} entries, root {root}{since}",
        origin=cp.origin,
        size=cp.size,
        root=cp.root_hash,
        since=since,
    )
    if cp.policy is None:
        term.say("no witness policy: cosignatures not checked (set one with 'liaison audit witnesses set')")
    else:
        names = ", ".join(cp.cosigners) or "no pinned witness"
        if cp.witnessed:
            term.say(
                "cosigned by (verified): {names}; [green]witnessed[/] under the policy {policy}",
                names=names,
                policy=cp.policy,
            )
        else:
            term.say(
                "cosigned by (verified): {names}; [yellow]not witnessed[/] under the policy {policy}",
                names=names,
                policy=cp.policy,
            )
        if cp.stale:
            term.say("older than the policy's max age (not counted): {names}", names=", ".join(cp.stale))
    if cp.ignored:
        term.say("{n} unverifiable signature line{s} ignored", n=cp.ignored, s="s" if cp.ignored != 1 else "")


def audit_verify(
    ctx: typer.Context,
    entries: Annotated[
        bool, typer.Option("--entries/--no-entries", help="Also check every entry bundle (auditors)")
    ] = True,
    evidence: EvidenceOpt = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch every tile, recompute the root, check the signature and consistency."""
    from .audit import verify_log
    from .cli import _opts, _print_verification, _with_progress

    opts = _opts(ctx, profile, as_json)

    async def go(c: AsyncClient, tick: Progress) -> LogVerification:
        run = verify_log(c, entries=entries, progress=tick)
        return (await _keeping_evidence(c, run, evidence, "verify"))[0]

    _print_verification(opts, _with_progress(opts, go), {})


def audit_trust(
    ctx: typer.Context,
    reset: Annotated[
        bool,
        typer.Option("--reset", help="Forget the saved checkpoint and trust the server's current one"),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes-i-understand", help="Confirm --reset without typing the log's origin"),
    ] = False,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What this profile trusts (the pinned log key, the last verified checkpoint); --reset
    starts over after a fork, once your auditors have dealt with the evidence."""
    from .cli import _guard, _opts, _policy_file, _run

    opts = _opts(ctx, profile, as_json)
    name, memory, _ = _guard(lambda: _policy_file(opts))
    key = _guard(lambda: memory.log_key)
    saved = _guard(memory.last)
    if not reset:
        info = {
            "profile": name,
            "log_key": key.key_string,
            "size": saved.checkpoint.size if saved else None,
            "root_hash": _b64(saved.checkpoint.root_hash) if saved else None,
        }
        if opts.json:
            term.emit_json(info)
            return
        term.say("{profile}: log key {key}", profile=name, key=key.key_string)
        if saved is None:
            term.say("  no checkpoint saved yet: the next one signed by this key is taken as the first")
        else:
            term.say(
                "  last verified checkpoint: size {size}, root {root}",
                size=info["size"],
                root=info["root_hash"],
            )
        return
    if not yes:
        if sys.stdin.isatty():  # a script pipes the origin in: no prompt then
            term.say(
                "This forgets the checkpoint this profile verified (size {size}) and trusts whatever "
                "log {origin} serves now. Type the log's origin to confirm:",
                err=True,
                size=saved.checkpoint.size if saved else 0,
                origin=key.name,
            )
        typed = sys.stdin.readline().strip()
        if typed != key.name:
            term.fail("not confirmed (the origin was not typed): nothing changed; or pass --yes-i-understand")
    forgotten = _guard(memory.reset)
    cp = _run(opts, lambda c: c.checkpoint())
    if opts.json:
        term.emit_json(
            {"profile": name, "forgot_size": saved.checkpoint.size if saved else None, **cp.to_json()}
        )
        return
    if forgotten is not None:
        term.say(
            "Forgot the checkpoint of size {size} (kept under 'forgotten' in {path}).",
            size=saved.checkpoint.size if saved else 0,
            path=memory.path,
        )
    term.say(
        "Now trusting {origin} at size {size}, root {root}.",
        origin=cp.origin,
        size=cp.size,
        root=cp.root_hash,
    )


def evidence_verify(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="An evidence file (liaison-fork-evidence)")],
    log_key: Annotated[
        str | None,
        typer.Option("--log-key", help="The log verifier key you trust (default: the key the file names)"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a fork evidence file on its own: both checkpoints signed by the log key, and a
    consistency proof that fails (or two roots for one size). Exit 0 only if it proves a fork."""
    from . import _evidence
    from .cli import _guard

    ev = _guard(lambda: _evidence.load(file))
    try:
        verdict = _evidence.check(ev, log_key)
    except _evidence.EvidenceInvalid as e:
        term.fail("not evidence of a fork: {error}", error=e)
    small, large = verdict.smaller, verdict.larger
    if as_json:
        term.emit_json(
            {
                "proven": True,
                "origin": verdict.origin,
                "log_key": verdict.key,
                "key_given": log_key is not None,
                "smaller": {"size": small.size, "root_hash": _b64(small.root_hash)},
                "larger": {"size": large.size, "root_hash": _b64(large.root_hash)},
                "how": verdict.how,
            }
        )
        return
    term.say("[red]Fork proven[/]: log {origin} signed two inconsistent checkpoints.", origin=verdict.origin)
    term.say("  size {size}, root {root}", size=small.size, root=_b64(small.root_hash))
    term.say("  size {size}, root {root}", size=large.size, root=_b64(large.root_hash))
    term.say("  {how}", how=verdict.how)
    if log_key is None:
        term.say(
            "  signatures checked with the key the file names, {key}: compare it with the log key you "
            "trust, or pass that key with --log-key",
            key=verdict.key,
        )


def _b64(data: bytes) -> str:
    from liaison.crypto.encoding import b64encode

    return b64encode(data)
