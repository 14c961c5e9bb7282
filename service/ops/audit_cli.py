"""`liaison-server audit ...`: operator commands on the transparency log.

    verify     recompute the whole tree from the stored entries and compare it with every
               stored tree hash, every signed checkpoint and every stored cosignature
    pg-roles   print the PostgreSQL role set-up that makes the log tables append-only for
               the service's own role (scripts/pg-roles.sql is its default output)

`verify` is `tlog.verify.verify_log` with a progress bar; `pg-roles` prints
`storage.pg_roles.pg_roles_sql`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from liaison.crypto import note
from liaison.crypto.errors import CryptoError

from ..config import Settings, SettingsError, StartupError, describe_db_error, load_log_signer, load_settings
from .errors import OperatorGroup

__all__ = ["app"]

app = typer.Typer(
    cls=OperatorGroup, help="Operator commands on the audit log.", no_args_is_help=True, rich_markup_mode=None
)


# --- commands --------------------------------------------------------------------------------

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", envvar="LIAISON_DATA_DIR", help="Server data directory")
]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"liaison-server audit: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


def _log_key(data_dir: Path, origin: str, given: str | None) -> note.Verifier:
    """The log verifier key: --log-key, else the data dir's public key, else its signer."""
    if given:
        try:
            return note.parse_verifier_key(given)
        except CryptoError as e:
            raise SettingsError(f"--log-key is not a verifier key (name+hash+base64): {e}") from None
    public = data_dir / "log-verifier.key"
    if public.exists():
        try:
            return note.parse_verifier_key(public.read_text("ascii").strip())
        except (OSError, UnicodeDecodeError, CryptoError) as e:
            raise SettingsError(
                f"{public} is unreadable ({' '.join(str(e).split())}): restore it "
                "(`liaison-server log-key` prints it from the signing key), or pass --log-key"
            ) from None
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
    import asyncio

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from ..app import open_database
    from ..tlog.verify import VerifyReport, verify_log

    try:
        overrides = {"database_url": database_url} if database_url else {}
        settings = load_settings(data_dir, **overrides)
        verifier = _log_key(settings.data_dir, settings.origin, log_key)
        witnesses = [note.parse_verifier_key(k) for k in settings.witness_keys]
    except (SettingsError, CryptoError) as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"the log key is unreadable: {e}")
    console = Console(stderr=True)

    async def run() -> VerifyReport:
        db, schema = await open_database(settings)
        try:
            if schema.current is None:
                raise StartupError(
                    f"the database {settings.db_display}{settings.database_hint()} is empty: it holds "
                    "no audit log (give the server's database with --database-url or "
                    "LIAISON_DATABASE_URL)"
                )
            if not schema.known:
                raise StartupError(schema.problem() or "newer schema")
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
        except StartupError:
            raise
        except Exception as e:
            raise StartupError(
                f"reading the audit log from {settings.db_display} failed: {describe_db_error(e)}"
            ) from None
        finally:
            await db.dispose()

    try:
        report = asyncio.run(run())
    except StartupError as e:
        _fail(str(e))
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
            + f"; directory: {report.statements} statements replayed into {report.map_heads} map heads"
            + f", the authority of {report.authority_checked} checked"
            + (f"; {report.shredded} entries shredded (named by audit.shredded)" if report.shredded else "")
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
    apply: Annotated[
        bool,
        typer.Option(
            "--apply",
            help="Run it in the database (as the tables' owner or a superuser) instead of printing it",
        ),
    ] = False,
    data_dir: DataDir = None,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="With --apply: the database (default: the data directory's)"),
    ] = None,
) -> None:
    """Print the PostgreSQL role set-up (SQL for psql; see docs/audit.md), or --apply it.

    The service's role gets no UPDATE, DELETE or TRUNCATE on the log tables. Apply it after
    every migration (docker/compose.yaml's migrate service does)."""
    import asyncio

    from ..storage.pg_roles import pg_roles_sql

    try:
        sql = pg_roles_sql(app_role, owner_role, schema)
    except ValueError as e:
        _fail(str(e))
    if not apply:
        if data_dir is not None or database_url is not None:
            _fail("--data-dir and --database-url name the database of --apply: add --apply, or drop them")
        typer.echo(sql, nl=False)
        return
    overrides = {"database_url": database_url} if database_url else {}
    settings = load_settings(data_dir, **overrides)
    if not settings.is_postgres:
        _fail(f"--apply needs a PostgreSQL database; {settings.db_display} is {settings.db_kind}")
    typer.echo(asyncio.run(_apply(settings, sql, app_role)))


async def _apply(settings: Settings, sql: str, app_role: str) -> str:
    from ..app import open_database

    db, schema = await open_database(settings)
    try:
        if schema.current is None:
            raise StartupError(
                f"the database {settings.db_display} is not migrated: run 'liaison-server migrate' first"
            )
        async with db.engine.begin() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            # The script is one transaction of its own (BEGIN ... COMMIT), DO blocks included.
            await driver.execute(sql)
    except StartupError:
        raise
    except Exception as e:
        raise StartupError(
            f"applying the roles to {settings.db_display} failed: {describe_db_error(e)}"
        ) from None
    finally:
        await db.dispose()
    return f"roles applied: {app_role} may append to the audit log, never rewrite it"
