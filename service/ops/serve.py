"""`liaison-server run`: serve the API over TLS 1.3 (uvicorn), in one process or several.

The checks before binding (settings, secrets' permissions, policy, keys, schema, TLS files),
the supervisor of `--workers`, each worker's server and metrics listener, and the collector's
settings for a long-running server. Imported by the `run` command only: the other commands
(the container's health check above all) load none of the server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import socket
import ssl
import sys
from collections.abc import Callable
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import typer
import uvicorn
from uvicorn.config import STARTUP_FAILURE

from ..api.balance import Load, WorkerLoad
from ..api.server import LiaisonServer, Limits, Listen, bind
from ..app import LiaisonApp, close_state, create_app, create_metrics_app, open_state
from ..config import Settings, StartupError, load_settings
from ..jsonlog import configure_logging
from .bootstrap import make_private, private_umask
from .collector import collect_less
from .errors import fail, one_line
from .supervisor import Supervisor

log = logging.getLogger("liaison")


def serve(
    data_dir: Path | None, host: str | None, port: int | None, dev_plain_http: bool, workers: int | None
) -> None:
    """The `run` command: checked, then served until a signal ends it."""
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
