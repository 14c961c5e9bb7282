"""`liaison unlock` and `liaison lock`: the unlock agent's commands (see `_agent`).

Registered from `cli.py` (`register(app)`); follows its lazy-import rule.
"""

from __future__ import annotations

from typing import Annotated

import typer

from . import _terminal as term
from ._cli_common import JsonOpt, ProfileOpt, guard, opts, passphrase, profile_name, store

__all__ = ["register"]


def unlock(
    ctx: typer.Context,
    idle_timeout: Annotated[
        str,
        typer.Option(
            "--idle-timeout", help="Forget the keys after this long unused: 900, 30s, 15m, 2h (at most 7d)"
        ),
    ] = "15m",
    show: Annotated[
        bool, typer.Option("--list", help="Only show what the agent holds; unlock nothing")
    ] = False,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Open the profile once and keep its keys in the unlock agent (started if needed), so that
    commands neither ask for the passphrase nor pay for opening the profile; until the idle
    timeout or 'liaison lock'. The agent signs and decrypts for this user's commands only;
    'liaison help agent' says what it protects and what not."""
    o = opts(ctx, profile, as_json)
    if show:
        _show(o.json)
        return

    def go() -> tuple[str, dict[str, object], dict[str, object], int]:
        from ._agent import b64, parse_duration, start

        seconds = parse_duration(idle_timeout)
        keystore = store()
        name = profile_name(keystore, o.profile)
        keystore.load_public(name)  # "no such profile" before the passphrase is asked
        _, keys = keystore.load(name, passphrase())
        agent, hello = start(keystore.home, seconds)
        secret = b64(keys.to_bytes())
        added = agent.call("add", profile=name, device=keys.device_id, keys=secret, idle=seconds)
        return name, hello, added, seconds

    name, hello, added, seconds = guard(go)
    if o.json:
        term.emit_json(
            {
                "profile": name,
                "principal": added.get("principal"),
                "device": added.get("device"),
                "agent_pid": hello.get("pid"),
                "idle_timeout": seconds,
            }
        )
        return
    term.say(
        "Unlocked profile {name} ({principal}, device {device}) in the agent (pid {pid}); its keys are "
        "forgotten after {idle} without use, or by 'liaison lock'.",
        name=name,
        principal=added.get("principal"),
        device=added.get("device"),
        pid=hello.get("pid"),
        idle=_duration(seconds),
    )


def _duration(seconds: float) -> str:
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size and s % size == 0:
            return f"{s // size} {unit}"
    return f"{s} s"


def _show(as_json: bool) -> None:
    def go() -> dict[str, object] | None:
        from ._agent import AgentClient, socket_path

        return AgentClient(socket_path(store().home)).alive()

    hello = guard(go)
    if as_json:
        term.emit_json(hello or {"pid": None, "profiles": []})
        return
    if hello is None:
        term.say("No unlock agent runs for this $LIAISON_HOME.")
        return
    rows = hello.get("profiles")
    term.say(
        "Unlock agent pid {pid}: keys forgotten after {idle} without use ({left} left).",
        pid=hello.get("pid"),
        idle=_duration(float(str(hello.get("idle", 0)))),
        left=_duration(float(str(hello.get("idle_left", 0)))),
    )
    term.table(
        ("profile", "principal", "device"),
        [(p.get("profile"), p.get("principal"), p.get("device")) for p in rows if isinstance(p, dict)]
        if isinstance(rows, list)
        else [],
    )


def lock(ctx: typer.Context, profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Make the unlock agent forget the keys and stop (only --profile's keys, if given)."""
    o = opts(ctx, profile, as_json)

    def go() -> tuple[bool, list[str]]:
        from ._agent import AgentClient, socket_path

        agent = AgentClient(socket_path(store().home))
        if agent.alive() is None:
            return False, []
        answer = agent.call("lock", profile=o.profile)
        left = answer.get("left")
        return True, [str(x) for x in left] if isinstance(left, list) else []

    was, left = guard(go)
    if o.json:
        term.emit_json({"agent": was, "profile": o.profile, "still_unlocked": left})
    elif not was:
        term.say("No unlock agent runs for this $LIAISON_HOME: nothing to lock.")
    elif left:
        term.say("Locked {profile}; still unlocked: {left}.", profile=o.profile, left=", ".join(left))
    else:
        term.say("Locked: the agent forgot the keys and stopped.")


def register(app: typer.Typer) -> None:
    app.command()(unlock)
    app.command()(lock)
