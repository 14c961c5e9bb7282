"""What every `liaison` command module shares: options, the profile, the client, the error guard.

Imports only the standard library, typer and the client's error classes at module level (see
the lazy-import rule at the top of `cli.py`); the client, crypto and httpx are imported by the
functions that use them.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from . import _terminal as term
from .errors import (
    APIError,
    ClientError,
    InputError,
    KeyStoreError,
    ProfileExists,
    ProfileNotFound,
    ServerUnreachable,
    TLSError,
    TransportError,
    VerificationFailed,
    WrongPassphrase,
)

if TYPE_CHECKING:
    from liaison.crypto.keys import DeviceKeys

    from .client import AsyncClient
    from .keystore import KeyStore

__all__ = [
    "KDF_LIMITS",
    "PASSPHRASE",
    "PROFILE_ENV",
    "Explained",
    "JsonOpt",
    "Options",
    "ProfileOpt",
    "guard",
    "open_client",
    "opts",
    "passphrase",
    "problem_type",
    "profile_name",
    "run",
    "since_time",
    "store",
    "sub_app",
]

T = TypeVar("T")
PROFILE_ENV = "LIAISON_PROFILE"
MONITOR_ENV = "LIAISON_MONITOR_INTERVAL"
#: Argon2id cost for newly sealed profiles: None means the key store's default (moderate).
#: Tests lower it in-process; there is deliberately no environment switch for it.
KDF_LIMITS: tuple[int | None, int | None] = (None, None)

ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", "-p", help="Profile to use (default: $LIAISON_PROFILE, else the only one)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts (errors too, on stderr)")]


def sub_app(help: str) -> typer.Typer:
    """A group of commands (`liaison admin ...`) with plain help, like the root's."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)


class Explained(ClientError):
    """A refusal the CLI has put in its own words: `problem` (a problem type), `status` and
    `extra` (e.g. the rule that refused) go into the --json error object."""

    def __init__(
        self, message: str, *, problem: str, status: int | None = None, extra: dict[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.problem = problem
        self.status = status
        self.extra = extra or {}


@dataclass
class Options:
    profile: str | None = None
    json: bool = False


#: The passphrase, once asked in this process.
PASSPHRASE: list[str] = []


def passphrase(confirm: bool = False) -> str:
    """Ask once per process ($LIAISON_PASSPHRASE or the terminal)."""
    if not PASSPHRASE:
        from .keystore import passphrase_from_env_or_prompt

        PASSPHRASE.append(passphrase_from_env_or_prompt(confirm=confirm))
    return PASSPHRASE[0]


_AGO = re.compile(r"^(\d{1,6})([mhdw])$")
_AGO_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def since_time(text: str, now: datetime | None = None) -> str:
    """An RFC 3339 UTC time from `--since`: an RFC 3339 time, a date (its midnight, UTC), or
    an age: 30m, 2h, 7d, 1w ago. InputError otherwise."""
    now = now or datetime.now(UTC)
    value = text.strip()
    if m := _AGO.fullmatch(value.lower()):
        when = now - timedelta(seconds=int(m.group(1)) * _AGO_UNITS[m.group(2)])
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            when = datetime.fromisoformat(value).replace(tzinfo=UTC)
        except ValueError:
            raise InputError(f"--since {text!r}: not a valid date") from None
    else:
        try:
            parsed: datetime | None = datetime.fromisoformat(re.sub(r"[Zz]$", "+00:00", value))
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise InputError(
                f"--since {text!r}: give an RFC 3339 time with its offset (2026-11-30T08:00:00Z), "
                "a date (2026-11-30) or an age (30m, 2h, 7d)"
            )
        when = parsed
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def opts(ctx: typer.Context, profile: str | None, as_json: bool) -> Options:
    """The command's options over the root's (`liaison --json -p X cmd` = `liaison cmd --json -p X`)."""
    root = ctx.find_root().obj
    base = root if isinstance(root, Options) else Options()
    chosen = Options(profile or base.profile, as_json or base.json)
    if chosen.json:
        term.set_json_errors(True)
    return chosen


def store() -> KeyStore:
    from .keystore import KeyStore, default_home

    ops, mem = KDF_LIMITS
    return KeyStore(default_home(), opslimit=ops, memlimit=mem)


def profile_name(keystore: KeyStore, explicit: str | None) -> str:
    """--profile, else $LIAISON_PROFILE, else the only profile, else "default"."""
    if explicit:
        return explicit
    if os.environ.get(PROFILE_ENV):
        return os.environ[PROFILE_ENV]
    names = keystore.list()
    if len(names) == 1:
        return names[0]
    if "default" in names or not names:
        return "default"
    raise KeyStoreError(f"several profiles ({', '.join(names)}): choose one with --profile")


def open_client(options: Options) -> AsyncClient:
    """The profile's client: its keys from the unlock agent when it holds them, else opened
    with the passphrase ("no such profile" comes before the passphrase is asked); a directory
    statement, which the agent does not sign, asks for the passphrase even then."""
    from ._agent import keys_for
    from ._trust import LogMemory
    from .client import AsyncClient

    keystore = store()
    name = profile_name(keystore, options.profile)
    prof = keystore.load_public(name)

    def own() -> DeviceKeys:
        return keystore.load(name, passphrase())[1]

    # What the agent does not sign (directory statements) asks for the passphrase then.
    keys: DeviceKeys = keys_for(keystore.home, name, prof.device_id, opener=own) or own()
    memory = LogMemory(keystore.state_dir(name) / "log.json")
    return AsyncClient(
        prof.server, keys, memory, ca_cert=prof.ca_cert, profile=name, monitor_interval=monitor_interval()
    )


def monitor_interval() -> float | None:
    """$LIAISON_MONITOR_INTERVAL: seconds between automatic checks of the profile's own
    directory records (default 300; 0: at every checkpoint accepted; "off": never)."""
    raw = os.environ.get(MONITOR_ENV, "").strip()
    if not raw:
        return 300.0
    if raw.lower() == "off":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 10**7:
        raise InputError(f"{MONITOR_ENV} must be a number of seconds (0 to 10000000) or off, not {raw!r}")
    return value


def run(options: Options, fn: Callable[[AsyncClient], Awaitable[T]]) -> T:
    """Open the profile, run `fn` with a client, and turn every ClientError into exit 1."""

    import asyncio

    async def go() -> T:
        async with open_client(options) as client:
            try:
                return await fn(client)
            finally:
                for line in client.alarms:  # what the own-records check found, even on failure
                    term.say("alarm: {line}", err=True, line=line)

    return guard(lambda: asyncio.run(go()))


_SLUGS: tuple[tuple[type[ClientError], str], ...] = (
    (WrongPassphrase, "wrong-passphrase"),
    (ProfileNotFound, "profile-not-found"),
    (ProfileExists, "profile-exists"),
    (KeyStoreError, "key-store"),
    (InputError, "input"),
    (TLSError, "tls"),
    (ServerUnreachable, "unreachable"),
    (TransportError, "transport"),
)


def problem_type(e: ClientError) -> str:
    """The problem type of an error, as `--json` reports it: the server's own for a refusal
    (urn:liaison:problem:SLUG), else urn:liaison:client:SLUG."""
    if isinstance(e, APIError):
        return f"urn:liaison:problem:{e.slug}"
    if isinstance(e, VerificationFailed):
        return f"urn:liaison:client:{e.reason}"
    slug = next((s for cls, s in _SLUGS if isinstance(e, cls)), "failed")
    if type(e).__name__ == "WeakPassphrase":
        slug = "weak-passphrase"
    elif type(e).__name__ == "AgentError":
        slug = "agent"
    return f"urn:liaison:client:{slug}"


def _invalid_url(e: BaseException) -> bool:
    httpx = sys.modules.get("httpx")  # only an httpx error can be one: imported if it was raised
    return httpx is not None and isinstance(e, httpx.InvalidURL)


def guard(fn: Callable[[], T]) -> T:
    """Run `fn`; every ClientError becomes one line on stderr (a JSON object with --json) and
    exit 1; Ctrl-C exit 130."""
    try:
        return fn()
    except Explained as e:
        term.fail("{error}", error=e, problem=e.problem, status=e.status, extra=e.extra)
    except VerificationFailed as e:
        term.fail("refused ({reason}): {error}", reason=e.reason, error=e, problem=problem_type(e))
    except APIError as e:
        term.fail("{error}", error=e, problem=problem_type(e), status=e.status, title=e.title)
    except ClientError as e:
        term.fail("{error}", error=e, problem=problem_type(e))
    except KeyboardInterrupt:
        term.fail("interrupted", code=130, problem="interrupted")
    except Exception as e:
        if not _invalid_url(e):
            raise
        # An id or URL with a character no URL can carry (e.g. a control character).
        term.fail("not usable in a URL: {error}", error=e, problem="input")
