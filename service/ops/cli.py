"""The `liaison-server` command line (operators): init, migrate, run, config, export-trust, ...

Every command fails in one line naming the reason and the fix (`errors.OperatorGroup`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
import os
import socket
import ssl
import sys
from collections.abc import Callable
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from uvicorn.config import STARTUP_FAILURE

from liaison.crypto.invitation import make_invitation

from ..api import proxyv2
from ..api.balance import Load, WorkerLoad
from ..api.server import LiaisonServer, Limits, Listen, bind
from ..app import (
    LiaisonApp,
    StartupError,
    close_state,
    create_app,
    create_metrics_app,
    describe_db_error,
    load_log_signer,
    open_database,
    open_state,
)
from ..config import Settings, SettingsError, load_settings
from ..jsonlog import configure_logging
from ..problems import Problem
from ..storage.migrate import schema_state, upgrade
from ..usecases.admin import issue_root_code
from .audit_cli import app as audit_app
from .bootstrap import holds_a_server, initialise, make_private, private_umask
from .collector import collect_less
from .errors import OperatorGroup, fail, one_line
from .settings_cli import config
from .supervisor import Supervisor
from .trust_cli import export_trust

log = logging.getLogger("liaison")

app = typer.Typer(
    cls=OperatorGroup,
    help="Liaison server: init, migrate, run; config and export-trust for operators.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
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
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes serving the port (default: its setting, 1)", min=1, max=64),
    ] = None,
) -> None:
    """Serve the API over TLS 1.3 (uvicorn), in one process or several (`--workers`)."""
    # Whatever the server creates (SQLite's -wal and -shm files) is private to its owner.
    with private_umask():
        _run(data_dir, host, port, dev_plain_http, workers)


def _run(
    data_dir: Path | None, host: str | None, port: int | None, dev_plain_http: bool, workers: int | None
) -> None:
    try:
        overrides: dict[str, Any] = {
            k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None
        }
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
        checked = _uvicorn_config(_no_app, settings, plain)  # the TLS files load, or a clear refusal
        if settings.metrics_port is not None and settings.workers > 1:
            last = settings.metrics_port + settings.workers - 1
            if last > 65535 or settings.metrics_port <= settings.port <= last:
                raise StartupError(
                    f"the workers' metrics ports {settings.metrics_port}-{last} must be below 65536 and "
                    f"must not include the API's port {settings.port}"
                )
    except ValueError as e:
        fail(str(e))
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
    if settings.workers > 1:
        # The port is bound once, here: every worker accepts from this one socket, each in
        # its turn (`api.balance`), so that connections spread evenly over the workers.
        try:
            sock = bind(settings.host, settings.port, checked.backlog)
        except OSError as e:
            fail(f"cannot listen on {settings.host}:{settings.port}: {e.strerror or e}", STARTUP_FAILURE)
    many = f" ({settings.workers} worker processes)" if settings.workers > 1 else ""
    typer.echo(
        f"liaison-server: serving {'http' if plain else 'https'}://{settings.host}:{settings.port}{many}",
        err=True,
    )
    if settings.workers > 1:
        overrides["data_dir"] = settings.data_dir
        load = Load(settings.workers)
        args = (overrides, plain, sock, load)
        # The supervisor's copy of the socket closes when the workers begin to stop (they close
        # theirs), so that new connections are refused then rather than left waiting.
        supervisor = Supervisor(settings.workers, _worker, args, before_spawn=load.down, on_stop=sock.close)
        code = supervisor.run()
        if code:
            typer.echo(f"liaison-server: {supervisor.failure}", err=True)
            raise typer.Exit(code)
        return
    tune_gc()
    _serve(settings, plain, worker=None)


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    """The app of the configuration checked before the workers start (never served)."""


def _uvicorn_config(api_app: Any, settings: Settings, plain: bool) -> uvicorn.Config:
    """The API's uvicorn configuration, loaded: a bad TLS certificate or key is a StartupError."""
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
    return config


def _worker(
    index: int, ready: Event, overrides: dict[str, Any], plain: bool, sock: socket.socket, load: Load
) -> None:
    """One worker process of `run --workers` (spawned by `Supervisor`): the settings read again
    (the same environment and files), then served on the supervisor's socket, taking new
    connections in its turn (`load`)."""
    with private_umask():
        try:
            settings = load_settings(**overrides)
        except ValueError as e:  # changed since the supervisor checked them: one line, no trace
            typer.echo(f"liaison-server: worker {index}: {one_line(e)}", err=True)
            sys.exit(STARTUP_FAILURE)
        configure_logging(settings.log_level, worker=index)
        tune_gc()
        try:
            _serve(settings, plain, worker=index, ready=ready.set, shared=(sock, load.of(index)))
        except StartupError as e:
            typer.echo(f"liaison-server: worker {index}: {e}", err=True)
            sys.exit(STARTUP_FAILURE)


def _serve(
    settings: Settings,
    plain: bool,
    *,
    worker: int | None,
    ready: Callable[[], None] | None = None,
    shared: tuple[socket.socket, WorkerLoad] | None = None,
) -> None:
    """Serve the API (and the metrics listener) in this process until a signal ends it.

    `worker` is this process's number among several (None: the only one). Several accept
    from the supervisor's socket (`shared`, with this worker's share of the connections);
    worker 0 alone (or the only process) does the service's own duties: the start's
    `policy.loaded` entry, retention and witness pushes. Each serves its own metrics listener
    (worker N on `metrics_port + N`)."""
    primary = worker in (None, 0)
    api_app = create_app(settings, migrate_new=False, primary=primary)
    config = _uvicorn_config(api_app, settings, plain)
    limits = Limits.from_settings(settings)
    sock, load = shared if shared is not None else (None, None)
    listens = [Listen(config, settings.host, settings.port, config.ssl, limits, sock=sock, load=load)]
    if settings.metrics_port is not None:
        # Prometheus on its own plain-HTTP listener (loopback by default): the API port never
        # serves metrics. Same head limits and deadlines; scrapers connect directly, no proxy.
        # Worker N serves its own on metrics_port + N (a target each: their counters add up).
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
                metrics,
                settings.metrics_host,
                settings.metrics_port + (worker or 0),
                None,
                metrics_limits,
                name="metrics",
            )
        )
    _Server(config, listens, api_app, ready).run()


class _Server(LiaisonServer):
    """The server of `run`: on SIGTERM or SIGINT it ends the live streams first, so that
    their connections close by themselves instead of being cancelled past the graceful
    timeout (which uvicorn logs as errors)."""

    def __init__(
        self,
        config: uvicorn.Config,
        listens: list[Listen],
        api_app: LiaisonApp,
        ready: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config, listens)
        self.api_app = api_app
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.ready is not None and self.started:
            self.ready()  # listening: the supervisor now restarts this worker if it dies

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.api_app.stop_streams()
        await super().shutdown(sockets)


def tune_gc() -> None:
    """Garbage-collector settings for the long-running server.

    `collector.collect_less`: the heap loaded so far frozen out of the collector's scans, and
    the youngest generation collected every 10,000 allocations instead of 700. Measured with
    bench/service.py: the full collections that re-scanned the startup heap were the slowest
    1% of requests (p99 at 32 senders from about 85 to 45 ms), and throughput rose about 8%.

    The interpreter hands the GIL between threads every 1 ms instead of 5: the event loop and
    the writer's thread wait less for each other. Measured (issue 17) with bench/service.py,
    2 workers on SQLite, four alternated pairs: p99 at 32 senders 162 -> 127 ms (medians;
    lower in each pair), throughput unchanged within the machine's noise (660 -> 722/s).
    """
    collect_less()
    sys.setswitchinterval(0.001)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
