"""The `liaison-server` command line (operators): init, migrate, run, config, export-trust, ...

Every command fails in one line naming the reason and the fix (`errors.OperatorGroup`).
Each command imports what it needs when it runs: `healthcheck` and `--help` load none of the
server (no web framework, no database layer; tests/service/test_light_commands.py), so that
the image's health check, run every 15 s, costs half a second of CPU rather than two.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..config import SettingsError, StartupError, describe_db_error, load_log_signer, load_settings
from ..jsonlog import configure_logging
from ..problems import Problem
from .audit_cli import app as audit_app
from .errors import OperatorGroup, fail, one_line
from .settings_cli import config
from .trust_cli import export_trust

log = logging.getLogger("liaison")

app = typer.Typer(
    cls=OperatorGroup,
    help="Liaison server: init, migrate, run; config and export-trust for operators.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help, as the client's: rich's formatter alone costs ~0.1 s
    add_completion=False,
)


@app.callback()
def _quiet_libraries() -> None:
    """Commands print their own one-line messages; the libraries' log records (alembic's,
    the writer's) go nowhere, rather than to stderr through logging's last resort. `run`
    configures JSON logs; LIAISON_DEBUG=1 shows everything."""
    if os.environ.get("LIAISON_DEBUG"):
        configure_logging("debug")
    else:
        logging.getLogger().addHandler(logging.NullHandler())


app.add_typer(audit_app, name="audit")
app.command()(config)
app.command("export-trust")(export_trust)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", envvar="LIAISON_DATA_DIR", help="Server data directory")
]


@app.command()
def init(
    data_dir: DataDir = None,
    origin: Annotated[
        str, typer.Option(envvar="LIAISON_ORIGIN", help="Log origin and key name (fixed from now on)")
    ] = "liaison.example/audit",
    host: Annotated[list[str] | None, typer.Option("--tls-host", help="Extra TLS names")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    exist_ok: Annotated[
        bool,
        typer.Option("--exist-ok", help="Do nothing (exit 0) when the data directory already holds a server"),
    ] = False,
) -> None:
    """Create a data directory: settings, policy, TLS, log key, database, root enrolment code.

    All or nothing: a failed init leaves no data directory (and empties again a database it
    began to fill), so it can simply be run again. The database is LIAISON_DATABASE_URL's
    (recorded in database.toml, without its password), else SQLite in the data directory."""
    from .bootstrap import holds_a_server, initialise

    if data_dir is None:
        fail("no data directory: pass --data-dir or set LIAISON_DATA_DIR")
    if exist_ok and holds_a_server(data_dir):
        if as_json:
            typer.echo(json.dumps({"data_dir": str(data_dir.resolve()), "initialised": False}))
        typer.echo(f"liaison-server: {data_dir} already holds a server: nothing done", err=True)
        return
    try:
        result = initialise(data_dir, origin=origin, tls_hosts=host)
    except KeyboardInterrupt:
        fail(f"init interrupted: nothing was kept; run it again to create {data_dir}", 130)
    except OSError as e:
        fail(
            f"cannot write the data directory {e.filename or data_dir}: {e.strerror or one_line(e)}; "
            "nothing was kept: choose a writable location with free space and run init again"
        )
    except SettingsError as e:  # StartupError too: the database, the settings
        fail(f"{e}; nothing was kept: fix it and run init again")
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(f"Initialised {result['data_dir']}")
    typer.echo(f"  Database: {result['database']}")
    typer.echo(f"  TLS certificate (trust it in clients): {result['tls_cert']}")
    typer.echo(f"  Log verifier key: {result['log_verifier_key']}")
    typer.echo("  Root enrolment invitation (shown once, valid 24 h; the code and the log key's digest):")
    typer.echo(f"      {result['root_invitation']}")
    typer.echo(f"Next: liaison-server run --data-dir {result['data_dir']}")
    typer.echo("Then: liaison enrol --code INVITATION --principal root --server URL --ca-cert CERT")


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Upgrade the database schema to this version.

    Creates the schema in an empty database only for a data directory without init's record of
    its database: where init made one, an empty database is the wrong one and is refused."""
    import asyncio

    from ..app import open_database
    from ..storage.migrate import schema_state, upgrade

    async def go() -> str:
        settings = load_settings(data_dir)
        db, before = await open_database(settings, create=settings.database_record is None)
        try:
            if before.current is not None and not before.known:
                raise SettingsError(before.problem() or "newer schema")
            await upgrade(db)
            after = await schema_state(db)
            return f"schema {before.current or 'empty'} -> {after.current}"
        except SettingsError:
            raise
        except Exception as e:
            raise StartupError(f"migrating {settings.db_display} failed: {describe_db_error(e)}") from None
        finally:
            await db.dispose()

    typer.echo(asyncio.run(go()))


@app.command("root-code")
def root_code(
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Issue a one-time root enrolment invitation (at genesis only).

    Until the first root device enrols (e.g. init's code expired). Refused once any
    root device was ever enrolled, revoked ones included: then a root device issues root codes
    (`liaison admin enrol-code root`; docs/audit.md, "Losing a root device"). Logged."""
    import asyncio

    from liaison.crypto.invitation import make_invitation

    from ..app import close_state, open_state
    from ..usecases.admin import issue_root_code

    async def go() -> tuple[str, str]:
        state = await open_state(load_settings(data_dir), migrate_new=False, log_policy=False)
        try:
            return await issue_root_code(state), state.log.verifier_key
        finally:
            await close_state(state)

    try:
        code, verifier_key = asyncio.run(go())
    except Problem as e:
        fail(e.detail)
    invitation = str(make_invitation(code, verifier_key))
    if as_json:
        typer.echo(
            json.dumps({"root_principal": "root", "root_enrolment_code": code, "root_invitation": invitation})
        )
    else:
        typer.echo(f"Root enrolment invitation (shown once, valid 24 h):\n    {invitation}")


@app.command("log-key")
def log_key(data_dir: DataDir = None) -> None:
    """Print the audit log's verifier key (give it to auditors and clients)."""
    settings = load_settings(data_dir)
    typer.echo(load_log_signer(settings.log_key_path, settings.origin).verifier.key_string)


@app.command()
def healthcheck(
    data_dir: DataDir = None,
    port: Annotated[int | None, typer.Option(help="Port of the local server (default: its setting)")] = None,
    live: Annotated[
        bool, typer.Option("--live", help="Ask only whether the process answers (/healthz), not /readyz")
    ] = False,
) -> None:
    """Exit 0 when the local server is ready (GET /readyz answers 200): for health checks.

    Ready: its database reachable and its schema current. `--live` asks /healthz instead.

    Connects to 127.0.0.1 the way the server expects: a PROXY v2 LOCAL header first when
    `proxy_protocol` is on (127.0.0.1 must then be in `proxy_trusted`), then TLS unless
    `dev_plain_http`. The certificate is not verified: this asks only "is the server on this
    port ready"; nothing is sent or trusted."""
    from ..api import proxyv2

    settings = load_settings(data_dir)
    target = port or settings.port
    path = "/healthz" if live else "/readyz"
    try:
        with socket.create_connection(("127.0.0.1", target), timeout=4) as raw:
            if settings.proxy_protocol:
                raw.sendall(proxyv2.encode(None))
            conn: socket.socket = raw
            if not settings.dev_plain_http:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                conn = ctx.wrap_socket(raw, server_hostname="localhost")
            conn.sendall(f"GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n".encode())
            answer = _read_answer(conn)
    except OSError as e:
        typer.echo(f"liaison-server: unhealthy: 127.0.0.1:{target}: {one_line(e)}", err=True)
        raise typer.Exit(1) from None
    status, detail = _status_and_detail(answer)
    if status != "200":
        typer.echo(f"liaison-server: unhealthy: {path} answered {status or 'nothing'}{detail}", err=True)
        raise typer.Exit(1)
    typer.echo("healthy")


def _read_answer(conn: socket.socket, limit: int = 8192) -> bytes:
    data = b""
    while len(data) < limit:
        chunk = conn.recv(limit - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _status_and_detail(answer: bytes) -> tuple[str, str]:
    """The status code of an HTTP answer and, for a problem document, its detail (sanitised)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    status = parts[1].decode("ascii", "replace") if len(parts) > 1 else ""
    try:
        detail = str(json.loads(body).get("detail", ""))
    except (ValueError, AttributeError):
        detail = ""
    safe = "".join(c if c.isprintable() else "?" for c in detail)[:200]
    return status, f": {safe}" if safe else ""


@app.command()
def run(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    dev_plain_http: Annotated[
        bool, typer.Option("--dev-plain-http", help="Development only: plain HTTP, loopback only")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes serving the port (default: its setting, 1)", min=1, max=64),
    ] = None,
) -> None:
    """Serve the API over TLS 1.3 (uvicorn), in one process or several (`--workers`)."""
    from .serve import serve

    serve(data_dir, host, port, dev_plain_http, workers)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
