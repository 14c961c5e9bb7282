"""The `liaison-server` command line (operators): init, migrate, run, log-key."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import ipaddress
import json
import logging
import socket
import ssl
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from liaison.crypto.invitation import make_invitation

from ..api import proxyv2
from ..api.server import LiaisonServer, Limits, Listen
from ..app import (
    LiaisonApp,
    StartupError,
    close_state,
    create_app,
    create_metrics_app,
    load_log_signer,
    open_state,
)
from ..config import SettingsError, load_settings
from ..jsonlog import configure_logging
from ..problems import Problem
from ..storage.db import Database
from ..storage.migrate import schema_state, upgrade
from ..usecases.admin import issue_root_code
from .audit_cli import app as audit_app
from .bootstrap import initialise, make_private, private_umask

log = logging.getLogger("liaison")

app = typer.Typer(
    help="Liaison server: init, migrate, run.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.add_typer(audit_app, name="audit")

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", envvar="LIAISON_DATA_DIR", help="Server data directory")
]


def _fail(message: str) -> None:
    typer.echo(f"liaison-server: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def init(
    data_dir: DataDir = None,
    origin: Annotated[str, typer.Option(help="Log origin and key name")] = "liaison.example/audit",
    host: Annotated[list[str] | None, typer.Option("--tls-host", help="Extra TLS names")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Create a data directory: settings, policy, TLS, log key, database, root enrolment code."""
    if data_dir is None:
        _fail("no data directory: pass --data-dir or set LIAISON_DATA_DIR")
        return
    try:
        result = initialise(data_dir, origin=origin, tls_hosts=host)
    except SettingsError as e:
        _fail(str(e))
        return
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(f"Initialised {data_dir}")
    typer.echo(f"  TLS certificate (trust it in clients): {result['tls_cert']}")
    typer.echo(f"  Log verifier key: {result['log_verifier_key']}")
    typer.echo("  Root enrolment invitation (shown once, valid 24 h; the code and the log key's digest):")
    typer.echo(f"      {result['root_invitation']}")
    typer.echo(f"Next: liaison-server run --data-dir {data_dir}")
    typer.echo("Then: liaison enrol --code INVITATION --principal root --server URL --ca-cert CERT")


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Upgrade the database schema to this version."""

    async def go() -> str:
        settings = load_settings(data_dir)
        db = Database(settings.db_url)
        try:
            before = await schema_state(db)
            if before.current is not None and not before.known:
                raise SettingsError(before.problem() or "newer schema")
            await upgrade(db)
            after = await schema_state(db)
            return f"schema {before.current or 'empty'} -> {after.current}"
        finally:
            await db.dispose()

    try:
        typer.echo(asyncio.run(go()))
    except SettingsError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot reach the database: {e}")


@app.command("root-code")
def root_code(
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Issue a one-time root enrolment invitation, at genesis only: until the first root device
    enrols (e.g. init's code expired, or `migrate` created the database). Refused once any
    root device was ever enrolled, revoked ones included: then a root device issues root codes
    (`liaison admin enrol-code root`; docs/audit.md, "Losing a root device"). Logged."""

    async def go() -> tuple[str, str]:
        state = await open_state(load_settings(data_dir), migrate_new=False, log_policy=False)
        try:
            return await issue_root_code(state), state.log.verifier_key
        finally:
            await close_state(state)

    try:
        code, verifier_key = asyncio.run(go())
    except (SettingsError, StartupError) as e:
        _fail(str(e))
        return
    except Problem as e:
        _fail(e.detail)
        return
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
    try:
        settings = load_settings(data_dir)
        typer.echo(load_log_signer(settings.log_key_path, settings.origin).verifier.key_string)
    except (SettingsError, StartupError) as e:
        _fail(str(e))


@app.command()
def healthcheck(
    data_dir: DataDir = None,
    port: Annotated[int | None, typer.Option(help="Port of the local server (default: its setting)")] = None,
) -> None:
    """Exit 0 when the server on this machine answers GET /healthz (for container health checks).

    Connects to 127.0.0.1 the way the server expects: a PROXY v2 LOCAL header first when
    `proxy_protocol` is on (127.0.0.1 must then be in `proxy_trusted`), then TLS unless
    `dev_plain_http`. The certificate is not verified: this asks only "is the process answering
    on its port"; nothing is sent or trusted."""
    try:
        settings = load_settings(data_dir)
    except SettingsError as e:
        _fail(str(e))
        return
    target = port or settings.port
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
            conn.sendall(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            status = conn.recv(64).split(b" ", 2)[1:2]
    except OSError as e:
        typer.echo(f"liaison-server: unhealthy: 127.0.0.1:{target}: {e}", err=True)
        raise typer.Exit(1) from None
    if status != [b"200"]:
        answer = b"".join(status).decode("ascii", "replace") or "nothing"
        typer.echo(f"liaison-server: unhealthy: /healthz answered {answer}", err=True)
        raise typer.Exit(1)
    typer.echo("healthy")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def run(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    dev_plain_http: Annotated[
        bool, typer.Option("--dev-plain-http", help="Development only: plain HTTP, loopback only")
    ] = False,
) -> None:
    """Serve the API over TLS 1.3 (uvicorn)."""
    # Whatever the server creates (SQLite's -wal and -shm files) is private to its owner.
    with private_umask():
        _run(data_dir, host, port, dev_plain_http)


def _run(data_dir: Path | None, host: str | None, port: int | None, dev_plain_http: bool) -> None:
    try:
        overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
        settings = load_settings(data_dir, **overrides)
        # Secrets readable by others are made private (or refused) before anything opens them;
        # said once the checks pass, so that a refusal stays the one line the operator reads.
        fixed = make_private(settings.data_dir)
        plain = dev_plain_http or settings.dev_plain_http
        if plain and not _is_loopback(settings.host):
            raise StartupError("--dev-plain-http is only allowed on a loopback address")

        # Check everything (policy, keys, schema) before binding, for a clear message.
        async def check() -> None:
            await close_state(await open_state(settings, migrate_new=False, log_policy=False))

        asyncio.run(check())
        for path in (settings.tls_cert, settings.tls_key):
            if not plain and not path.exists():
                raise StartupError(f"TLS file {path} is missing")
        api_app = create_app(settings, migrate_new=False)
        config = uvicorn.Config(
            api_app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
            # TLS ends here (a proxy passes it through): forwarded headers cannot come from a
            # trusted proxy, so none are read; the client's address comes from the socket, or
            # from a trusted proxy's PROXY v2 header (api/server.py).
            proxy_headers=False,
            ws="none",  # no WebSocket paths: an Upgrade header is just a header
            server_header=False,
            ssl_certfile=None if plain else str(settings.tls_cert),
            ssl_keyfile=None if plain else str(settings.tls_key),
            ssl_version=ssl.PROTOCOL_TLS_SERVER,
        )
        if not plain:
            try:
                config.load()  # builds the SSL context now, so a bad key is refused clearly
            except (ssl.SSLError, OSError) as e:
                raise StartupError(
                    f"TLS certificate or key in {settings.tls_cert.parent} is unreadable: {e}"
                ) from None
            assert config.ssl is not None
            # SPEC 5: TLS 1.3 only. uvicorn has no option for the minimum version, and
            # PROTOCOL_TLS_SERVER alone still accepts TLS 1.2.
            config.ssl.minimum_version = ssl.TLSVersion.TLSv1_3
    except (SettingsError, StartupError) as e:
        _fail(str(e))
        return
    except ValueError as e:
        _fail(str(e))
        return
    configure_logging(settings.log_level)
    if fixed:
        log.warning(
            "permissions.fixed",
            extra={
                "fields": {
                    "event": "permissions.fixed",
                    "message": "the data directory's secrets were readable by others: made private",
                    "fixed": fixed,
                }
            },
        )
    _tune_gc()
    typer.echo(
        f"liaison-server: serving {'http' if plain else 'https'}://{settings.host}:{settings.port}", err=True
    )
    limits = Limits.from_settings(settings)
    listens = [Listen(config, settings.host, settings.port, config.ssl, limits)]
    if settings.metrics_port is not None:
        # Prometheus on its own plain-HTTP listener (loopback by default): the API port never
        # serves metrics. Same head limits and deadlines; scrapers connect directly, no proxy.
        metrics = uvicorn.Config(
            create_metrics_app(api_app),
            log_config=None,
            access_log=False,
            lifespan="off",
            proxy_headers=False,
            server_header=False,
            ws="none",
        )
        metrics_limits = dataclasses.replace(limits, proxy_protocol=False, trusted=())
        listens.append(
            Listen(
                metrics, settings.metrics_host, settings.metrics_port, None, metrics_limits, name="metrics"
            )
        )
    _Server(config, listens, api_app).run()


class _Server(LiaisonServer):
    """The server of `run`: on SIGTERM or SIGINT it ends the live streams first, so that
    their connections close by themselves instead of being cancelled past the graceful
    timeout (which uvicorn logs as errors)."""

    def __init__(self, config: uvicorn.Config, listens: list[Listen], api_app: LiaisonApp) -> None:
        super().__init__(config, listens)
        self.api_app = api_app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.api_app.stop_streams()
        await super().shutdown(sockets)


def _tune_gc() -> None:
    """Garbage-collector settings for the long-running server.

    Everything loaded so far (modules, the app's routes and schemas: most of the heap) lives
    as long as the process, so it is frozen out of the collector's scans; and the youngest
    generation is collected every 10,000 allocations instead of 700, since a request's
    objects are almost all freed by reference counting when it ends. Measured with
    bench/service.py: the full collections that re-scanned the startup heap were the slowest
    1% of requests (p99 at 32 senders from about 85 to 45 ms), and throughput rose about 8%.
    """
    gc.freeze()
    gc.set_threshold(10_000, 20, 50)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
