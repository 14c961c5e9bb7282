"""`liaison-server audit ...`: operator commands on the transparency log.

    verify     recompute the whole tree from the stored entries and compare it with every
               stored tree hash, every signed checkpoint and every stored cosignature
    pg-roles   print the PostgreSQL role set-up that makes the log tables append-only for
               the service's own role (scripts/pg-roles.sql is its default output)

`verify` is `tlog.verify.verify_log` with a progress bar; `pg-roles` prints
`storage.pg_roles.pg_roles_sql`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from liaison.crypto import note
from liaison.crypto.errors import CryptoError

from ..app import load_log_signer
from ..config import SettingsError, load_settings
from ..storage.db import Database
from ..storage.pg_roles import pg_roles_sql
from ..tlog.verify import VerifyReport, verify_log

__all__ = ["app"]

app = typer.Typer(help="Operator commands on the audit log.", no_args_is_help=True)


# --- commands --------------------------------------------------------------------------------

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", envvar="LIAISON_DATA_DIR", help="Server data directory")
]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"liaison-server audit: {message}", err=True)
    raise typer.Exit(code)


def _log_key(data_dir: Path, origin: str, given: str | None) -> note.Verifier:
    """The log verifier key: --log-key, else the data dir's public key, else its signer."""
    if given:
        return note.parse_verifier_key(given)
    public = data_dir / "log-verifier.key"
    if public.exists():
        return note.parse_verifier_key(public.read_text("ascii").strip())
    return load_log_signer(data_dir / "log-signer.key", origin).verifier


@app.command()
def verify(
    data_dir: DataDir = None,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="Database URL (default: the data directory's settings)"),
    ] = None,
    log_key: Annotated[
        str | None,
        typer.Option("--log-key", help="Log verifier key to trust (default: the data directory's)"),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False,
) -> None:
    """Recompute the tree from every stored entry; compare it with every stored checkpoint.

    Exits 0 if the log is intact, 1 naming the first bad index if not, 2 on a usage error.
    """
    try:
        overrides = {"database_url": database_url} if database_url else {}
        settings = load_settings(data_dir, **overrides)
        verifier = _log_key(settings.data_dir, settings.origin, log_key)
        witnesses = [note.parse_verifier_key(k) for k in settings.witness_keys]
    except (SettingsError, CryptoError, OSError) as e:
        _fail(str(e))
        return
    console = Console(stderr=True)

    async def run() -> VerifyReport:
        db = Database(settings.db_url)
        try:
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
                disable=quiet,
            ) as bar:
                task = bar.add_task("verifying entries", total=None)

                def tick(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                return await verify_log(db, verifier, witnesses=witnesses, progress=tick)
        finally:
            await db.dispose()

    try:
        report = asyncio.run(run())
    except OSError as e:
        _fail(f"cannot reach the database: {e}")
        return
    if report.ok:
        typer.echo(
            f"OK: {report.size} entries, {report.checkpoints} checkpoints and "
            f"{report.cosignatures} cosignatures verified against log key "
            f"{verifier.name}+{verifier.key_id.hex()}"
            + (
                f" ({report.cosignatures_unchecked} cosignatures from witnesses not "
                "configured here were not checked)"
                if report.cosignatures_unchecked
                else ""
            )
        )
        return
    where = f" first bad index: {report.first_bad_index}" if report.first_bad_index is not None else ""
    typer.echo(f"FAILED: the audit log does not verify;{where}", err=True)
    for f in report.failures:
        typer.echo(f"  - {f}", err=True)
    raise typer.Exit(1)


@app.command("pg-roles")
def pg_roles(
    app_role: Annotated[str, typer.Option("--app-role", help="Role the service logs in as")] = "liaison_app",
    owner_role: Annotated[
        str, typer.Option("--owner-role", help="Role that owns the tables")
    ] = "liaison_owner",
    schema: Annotated[str, typer.Option(help="Schema of the Liaison tables")] = "public",
) -> None:
    """Print the PostgreSQL role set-up (SQL for psql; see docs/audit.md).

    The service's role gets no UPDATE, DELETE or TRUNCATE on the log tables.
    """
    try:
        typer.echo(pg_roles_sql(app_role, owner_role, schema), nl=False)
    except ValueError as e:
        _fail(str(e))
