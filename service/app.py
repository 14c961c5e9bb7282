"""The app factory: `create_app(settings)` builds the FastAPI app and its state, nothing at import."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import text
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from liaison.crypto import note
from liaison.crypto.errors import CryptoError, MalformedError
from liaison.crypto.policy import Policy, parse_policy

from .api import admin as admin_api
from .api import attachments as attachments_api
from .api import audit as audit_api
from .api import directory as directory_api
from .api import messages as messages_api
from .api import ops as ops_api
from .api.errors import install_handlers
from .api.hot import HotPaths
from .api.middleware import RequestMiddleware
from .api.openapi import complete, install_viewers
from .api.routing import needs
from .config import Settings, SettingsError, StartupError, describe_db_error, load_log_signer
from .metrics import Metrics
from .problems import Problem
from .state import AppState
from .storage.blobs import BlobError, BlobStore, FileBlobStore
from .storage.buckets import BucketFileError, SharedBuckets
from .storage.db import Database, FileLock
from .storage.events import EventHub, PgListener
from .storage.logstore import LogReader
from .storage.migrate import SchemaState, schema_state, upgrade
from .storage.models import Principal
from .storage.sqlite_events import SqliteListener
from .tlog.log import AuditLog
from .usecases import attachments, messaging, streams, witnesses
from .usecases.auth import BundleCache, purge_nonces, warm_bundles
from .usecases.ratelimit import RateLimiter
from .writer import Tx, Writer

__all__ = [
    "STREAMS_STOPPING",
    "create_app",
    "create_metrics_app",
    "open_database",
    "open_state",
]

log = logging.getLogger("liaison")


#: The reason in the last event of every live stream when the server stops (SIGTERM, SIGINT):
#: the client reconnects, to this server once it is back or to another replica, and catches
#: up from its cursor.
STREAMS_STOPPING = "server-stopping"


def load_policy(path: Path) -> tuple[Policy, bytes]:
    """The policy file, parsed, and its exact bytes (what the root signs: protocol 9.7)."""
    try:
        raw = path.read_bytes()
        return parse_policy(raw), raw
    except FileNotFoundError:
        raise StartupError(f"policy file {path} is missing: run 'liaison-server init'") from None
    except MalformedError as e:
        raise StartupError(f"{path}: {e}") from None


async def open_database(settings: Settings, *, create: bool = False) -> tuple[Database, SchemaState]:
    """Open the settings' database and read its schema. Refuses, in one line with the fix
    (StartupError): a database that cannot be reached; a SQLite file that does not exist,
    unless `create` (it would be created empty); and, when init recorded the database it made
    (`database.toml`), an empty one: that is not the server's database, and migrating it
    would serve an empty service with no root admin. An old or newer schema is the caller's
    to refuse (`SchemaState.problem()`): `migrate` upgrades an old one."""
    record = settings.database_record
    where = settings.db_display + settings.database_hint()
    path = settings.sqlite_path
    if path is not None and not path.exists() and not create:
        if record is not None:
            raise StartupError(
                f"the SQLite database {path} is missing, but init made this server's there: "
                "restore it (with its -wal file) from a backup"
            )
        raise StartupError(
            f"the SQLite database {path} does not exist: set LIAISON_DATABASE_URL to the "
            "server's database, or run 'liaison-server migrate' to create an empty one"
        )
    if path is not None:
        _check_sqlite_opens(path, where, create=create)
    db = Database(settings.db_url)
    try:
        schema = await schema_state(db)
    except Exception as e:
        await db.dispose()
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # Interrupted (Ctrl-C) while connecting: the driver may report the cancellation
            # as its own timeout; it is the interrupt, not the database, that stopped us.
            raise asyncio.CancelledError from None
        raise StartupError(f"cannot reach the database {where}: {describe_db_error(e)}") from None
    if schema.current is None and record is not None:
        await db.dispose()
        raise StartupError(_not_the_database(settings, "is empty (not migrated, no root admin)"))
    return db, schema


def _check_log_key(settings: Settings, signed_note: str, signer: note.Signer) -> None:
    """The database's newest checkpoint is signed by this data directory's log key: another
    server's database (another log) is refused rather than continued under a second key,
    which every client and witness that pinned the first would see as a fork."""
    try:
        note.open_checkpoint(signed_note.encode(), signer.verifier)
    except CryptoError:
        raise StartupError(
            f"the audit log in {settings.db_display} is not signed by this data directory's log key "
            f"({signer.verifier.name}+{signer.verifier.key_id.hex()}): it is another server's database. "
            "Use that server's data directory, or point LIAISON_DATABASE_URL at this one's database"
        ) from None


def _check_sqlite_opens(path: Path, where: str, *, create: bool) -> None:
    """Open the SQLite file once with the standard library first: a file that cannot be opened
    (a directory, a missing parent, no permission) is refused here, in one line, rather than by
    aiosqlite, whose worker thread may report the failure after the command's loop has closed."""
    mode = "rwc" if create else "rw"
    try:
        sqlite3.connect(f"{path.as_uri()}?mode={mode}", uri=True).close()
    except sqlite3.Error as e:
        raise StartupError(f"cannot open the database {where}: {e}") from None


def _not_the_database(settings: Settings, what: str) -> str:
    record = settings.database_record
    assert record is not None
    return (
        f"the database {settings.db_display} {what}, but init made this server's directory and "
        f"audit log in {record.describe()} (recorded in {settings.record_path}): point "
        "LIAISON_DATABASE_URL at that database (or unset it), or restore it from a backup"
    )


def check_verifier_file(path: Path, signer: note.Signer) -> None:
    """The public key file auditors are given (`log-verifier.key`) is the signing key's: a
    spoilt or swapped one is refused rather than handed out."""
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        return  # optional: `liaison-server log-key` prints it from the signing key
    except (OSError, UnicodeDecodeError) as e:
        raise StartupError(
            f"{path} is unreadable ({e}): restore it (`liaison-server log-key` prints it)"
        ) from None
    if text != signer.verifier.key_string:
        raise StartupError(
            f"{path} is not the verifier key of the log's signing key: restore it "
            "(`liaison-server log-key` prints the right one)"
        )


async def open_state(
    settings: Settings, *, metrics: Metrics | None = None, migrate_new: bool = True, log_policy: bool = True
) -> AppState:
    """Load and check everything, open the database (migrating a brand-new one unless init
    recorded the database it made), start the writer and log `policy.loaded` (unless
    `log_policy` is false: a pre-flight check that serves nothing). Raises StartupError with a
    clear message."""
    policy, policy_file = load_policy(settings.policy_path)
    signer = load_log_signer(settings.log_key_path, settings.origin)
    check_verifier_file(settings.data_dir / "log-verifier.key", signer)
    try:
        witnesses.targets(settings)  # the witness settings, checked before anything opens
    except SettingsError as e:
        raise StartupError(str(e)) from None
    blobs = await open_blob_store(settings)
    new_ok = migrate_new and settings.database_record is None
    try:
        db, state_ = await open_database(settings, create=new_ok)
    except BaseException:
        await blobs.close()
        raise
    try:
        if state_.current is None and new_ok:
            await upgrade(db)
            state_ = await schema_state(db)
        problem = state_.problem()
        if problem:
            raise StartupError(problem)
        if settings.database_record is not None:
            async with db.sessions() as s:
                if await s.get(Principal, "root") is None:
                    raise StartupError(_not_the_database(settings, "has no root principal"))
        async with db.sessions() as s:
            newest = await LogReader(s).latest_checkpoint()
        if newest is not None:
            _check_log_key(settings, newest.note, signer)
    except StartupError:
        await _close(db, blobs)
        raise
    except Exception as e:  # migrating or reading failed (a full disk, a lost connection)
        await _close(db, blobs)
        raise StartupError(f"the database {settings.db_display}: {describe_db_error(e)}") from None
    except BaseException:
        await _close(db, blobs)
        raise
    audit_log = AuditLog(signer, settings.origin)
    try:
        limiters = _rate_limiters(settings)
    except OSError as e:  # BucketFileError: a rate-limit file that is not safe to use
        await _close(db, blobs)
        raise StartupError(str(e)) from None
    metrics = metrics or Metrics()
    writer = Writer(
        db,
        audit_log,
        batch_max=settings.batch_max,
        on_batch=metrics.batches.inc,
        lock=_machine_lock(settings) if db.is_postgres else None,  # SQLite's is the database's own
    )
    state = AppState(
        settings=settings,
        policy=policy,
        policy_file=policy_file,
        db=db,
        log=audit_log,
        writer=writer,
        hub=EventHub(),
        metrics=metrics,
        limiter=limiters[0],
        enrol_limiter=limiters[1],
        auth_failure_limiter=limiters[2],
        blobs=blobs,
    )
    writer.start()

    def loaded(tx: Tx) -> None:
        tx.audit(
            "policy.loaded",
            "system",
            policy.id,
            policy=policy.id,
            version=policy.version,
            sha256=policy.sha256,
        )

    if log_policy:
        await writer.run(loaded)
    return state


def _rate_limiters(settings: Settings) -> tuple[RateLimiter, RateLimiter, RateLimiter]:
    """The per-device, enrolment and failed-signature limits, their buckets in tables shared by
    every process serving this data directory (`storage.buckets`): several workers, or
    servers, on one data directory limit a device or an address once, not once each. On a
    read-only (a replica's, docs/operations.md) or full data directory each process keeps its
    own, and says so once."""
    tables = settings.data_dir / "ratelimits"
    limits = (
        ("device", settings.rate_limit_per_second, settings.rate_limit_burst),
        ("enrol", settings.enrol_rate_per_second, settings.enrol_rate_burst),
        ("auth-failure", settings.auth_failure_rate_per_second, settings.auth_failure_burst),
    )
    try:
        tables.mkdir(mode=0o700, exist_ok=True)
        opened: list[SharedBuckets | None] = [
            SharedBuckets.open(tables / f"{name}.buckets") for name, _, _ in limits
        ]
    except BucketFileError:
        raise
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
            raise
        log.warning(
            "ratelimits.local",
            extra={
                "fields": {
                    "event": "ratelimits.local",
                    "message": f"{tables} cannot be written ({e.strerror}): rate limits are kept "
                    "per process, not shared by the processes serving this data directory",
                }
            },
        )
        opened = [None, None, None]
    made = [
        RateLimiter(rate, burst, table=table) for (_, rate, burst), table in zip(limits, opened, strict=True)
    ]
    return made[0], made[1], made[2]


def _machine_lock(settings: Settings) -> FileLock | None:
    """On PostgreSQL, the workers of one machine also take turns through a file lock in the
    data directory before the advisory lock (`Writer`): whoever waits for it gathers the
    requests that arrive meanwhile into its next batch. None on a read-only data directory
    (then the advisory lock alone orders them)."""
    if not os.access(settings.data_dir, os.W_OK):
        return None
    return FileLock(settings.data_dir / "writer.lock")


async def close_state(state: AppState) -> None:
    for limiter in (state.limiter, state.enrol_limiter, state.auth_failure_limiter):
        limiter.close()
    await state.writer.stop()
    await state.db.dispose()
    await state.blobs.close()


async def _close(db: Database, blobs: BlobStore) -> None:
    await db.dispose()
    await blobs.close()


async def open_blob_store(settings: Settings) -> BlobStore:
    """The attachment store the settings choose, its bucket checked reachable (StartupError,
    one line, naming the endpoint and bucket, never the secret)."""
    if settings.blob_store == "file":
        return FileBlobStore(settings.attachments_dir)
    from .storage.s3blobs import S3BlobStore  # boto3 is imported only when it is used

    try:
        secret = settings.s3_secret()
    except OSError as e:
        raise StartupError(f"LIAISON_S3_SECRET_ACCESS_KEY_FILE: {e.strerror or e}") from None
    assert settings.s3_bucket is not None  # the settings' validator
    try:
        store = S3BlobStore(
            settings.s3_endpoint,
            settings.s3_bucket,
            settings.s3_prefix,
            settings.s3_region,
            settings.s3_access_key_id,
            secret,
            None if settings.s3_ca_file is None else str(settings.s3_ca_file),
        )
    except BlobError as e:
        raise StartupError(f"the attachment store: {e}") from None
    try:
        await store.check()
    except (BlobError, OSError) as e:
        await store.close()
        raise StartupError(f"the attachment store: {e}") from None
    return store


async def _retention_loop(state: AppState) -> None:
    while True:
        try:
            while await messaging.expire_due(state) > 0:
                pass
            await attachments.sweep_abandoned(state)  # uploads never named by an accepted message
            await attachments.purge_deleted(state)  # ciphertext of expired or swept attachments
            await purge_nonces(state)  # else the replay table grows with every request
        except asyncio.CancelledError:
            raise
        except Problem as p:  # the database is down or full: the next pass catches up
            log.warning("retention pass failed: %s", p.slug)
        except Exception:
            log.exception("retention pass failed")
        await asyncio.sleep(state.settings.retention_interval_seconds)


async def _stream_loop(state: AppState) -> None:
    """Close the live streams of devices revoked, or principals suspended, since they opened
    (through this process or any other)."""
    while True:
        await asyncio.sleep(state.settings.stream_recheck_seconds)
        try:
            if state.hub.subscribers:
                await streams.close_ended(state)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the database is unreachable: check again next time
            log.warning("stream check failed (%s)", type(e).__name__)


#: Logged at every start with `audit_public` (docs/audit.md says the same).
_AUDIT_PUBLIC_WARNING = (
    "LIAISON_AUDIT_PUBLIC is true: anyone who can reach this server reads the audit log's "
    "entries (/v1/audit/entries and /v1/audit/tile/entries/...) without signing in. Entries v2 "
    "show them commitments only (and the directory's statements), but entries written before "
    "v2 show every field of every entry: labels, channels, principals and their clearances, "
    "devices, reasons and times. Leave it off unless the whole log may be public; witnesses "
    "need only checkpoints, hash tiles and proofs, which are public anyway."
)


async def _warn_of_a_powerful_role(state: AppState) -> None:
    """Warn when the service connects to PostgreSQL as a superuser or as the owner of the log's
    tables: either can drop the append-only triggers and rewrite the log. The service should
    connect as the application role of `liaison-server audit pg-roles` (docs/operations.md)."""
    try:
        async with state.db.sessions() as s:
            row = (
                await s.execute(
                    text(
                        "SELECT current_user, r.rolsuper, "
                        "coalesce((SELECT tableowner = current_user FROM pg_tables "
                        "WHERE schemaname = current_schema() AND tablename = 'audit_entry'), false) "
                        "FROM pg_roles r WHERE r.rolname = current_user"
                    )
                )
            ).one()
    except Exception as e:  # the check is advice: never a reason not to start
        log.warning("database role check failed (%s)", type(e).__name__)
        return
    user, superuser, owner = row
    if superuser or owner:
        what = "a superuser" if superuser else "the owner of the audit log's tables"
        log.warning(
            "database.role",
            extra={
                "fields": {
                    "event": "database.role",
                    "role": user,
                    "message": f"the service connects to PostgreSQL as {what} ({user}), which can "
                    "drop the append-only triggers and rewrite the audit log: connect as the "
                    "application role of `liaison-server audit pg-roles` (docs/operations.md)",
                }
            },
        )


async def _warm_bundles(state: AppState) -> None:
    """Load the devices' bundles before serving (`usecases.auth.warm_bundles`); a failure only
    costs each device a read at its first request, so it is logged, not fatal."""
    started = time.monotonic()
    try:
        loaded = await warm_bundles(state)
    except Exception as e:
        log.warning(
            "bundles.not-warmed",
            extra={"fields": {"event": "bundles.not-warmed", "error": describe_db_error(e)}},
        )
        return
    took = round((time.monotonic() - started) * 1000)
    log.info("bundles.warmed", extra={"fields": {"event": "bundles.warmed", "devices": loaded, "ms": took}})


def create_app(settings: Settings, *, migrate_new: bool = True, primary: bool = True) -> LiaisonApp:
    """Build the app; state is opened in the lifespan (so tests and uvicorn share one path).

    `migrate_new=False` (what `liaison-server run` uses) refuses an unmigrated database
    instead of creating its schema, so that pointing a server at the wrong, empty database
    fails with the fixing command rather than serving an empty, root-less service.

    `primary=False` (every worker of `run --workers` but worker 0) leaves the service's own
    duties to the primary: the start's `policy.loaded` entry, retention passes and witness
    pushes."""
    metrics = Metrics()  # shared by the middleware and the state the lifespan opens

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await open_state(settings, metrics=metrics, migrate_new=migrate_new, log_policy=primary)
        app.state.liaison = state
        await _warm_bundles(state)
        if settings.audit_public:
            log.warning(_AUDIT_PUBLIC_WARNING)
        if state.db.is_postgres:
            await _warn_of_a_powerful_role(state)
        listener: PgListener | SqliteListener
        if state.db.is_postgres:
            dsn = state.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            listener = PgListener(dsn, state.hub, devices=BundleCache(state))
        else:  # other processes on this SQLite file: their deliveries, polled while streams are open
            listener = SqliteListener(state.db, state.hub)
        app.state.listener = listener
        await listener.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listener.ready.wait(), timeout=10)
        loops = [asyncio.create_task(_stream_loop(state), name="liaison-streams")]
        if primary:
            loops.append(asyncio.create_task(_retention_loop(state), name="liaison-retention"))
        # Witness pushes: after commits, on their own, never in the writer; by the primary only.
        pushing = await witnesses.start(state) if primary else None
        app.state.witness_pusher = pushing[0] if pushing else None
        try:
            yield
        finally:
            await witnesses.stop(pushing)
            if isinstance(app, LiaisonApp) and app._ending_streams is not None:
                loops.append(app._ending_streams)
                app._ending_streams = None
            for task in loops:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if listener:
                await listener.stop()
            await close_state(state)

    # No slash redirects: a path is either served or answered with a 404 problem.
    docs = settings.api_docs  # off unless the operator serves them (docs/api.md "Operations")
    app = LiaisonApp(
        title="Liaison",
        version="1.0",
        lifespan=lifespan,
        redirect_slashes=False,
        openapi_url="/openapi.json" if docs else None,
        docs_url=None,  # FastAPI's viewers load their scripts from a CDN: ours are local
        redoc_url=None,
        description=_DESCRIPTION,
    )
    install_handlers(app)
    # The routers' own routes, as they are: FastAPI's `include_router` would wrap each router
    # and build every route's dependencies and models again for this app, on its first
    # request (~60 ms of CPU per app: per worker process, and in tests per app). The routers
    # add nothing of their own (no dependencies, tags or responses; their prefix is already
    # in each path), so the routes built once at import serve every app alike.
    for router in _ROUTERS:
        app.router.routes.extend(router.routes)
    if docs:
        install_viewers(app, "/openapi.json")
    app.outer = (settings.max_body_bytes, metrics)
    app.audit_public = settings.audit_public
    return app


async def _end_streams(state: AppState) -> None:
    """Close the streams open now, then those a request already under way opens until the
    lifespan ends (it cancels this task)."""
    while True:
        for device in state.hub.devices():
            state.hub.close(device, STREAMS_STOPPING)
        await asyncio.sleep(0.05)


def create_metrics_app(app: FastAPI) -> ASGIApp:
    """The metrics of `app` (once its lifespan has opened its state), as an app of their own
    for their own listener: the API never serves them."""
    return ops_api.metrics_app(lambda: app.state.liaison)


_DESCRIPTION = (
    "End-to-end encrypted, classification-aware message exchange. Every path that needs a "
    "device's RFC 9421 request signature carries the `RequestSignature` security requirement "
    "(the profile is in its description); every error is an RFC 9457 problem "
    "(`application/problem+json`, schema `Problem`) whose `type` is `urn:liaison:problem:<slug>`, "
    "and each operation lists the types it can answer, by status. docs/api.md says the same in "
    "words, with the byte formats in docs/protocol.md."
)

#: In the order OpenAPI lists them.
_ROUTERS: tuple[APIRouter, ...] = (
    directory_api.router,
    messages_api.router,
    attachments_api.router,
    admin_api.router,
    audit_api.router,
    ops_api.router,
)


def _api_routes(routes: list[BaseRoute]) -> list[APIRoute]:
    """Every APIRoute, those of included routers too (FastAPI keeps an included router whole,
    as one route that holds it)."""
    found, pending = [], list(routes)
    while pending:
        route = pending.pop()
        included = getattr(route, "original_router", None)
        pending.extend(included.routes if included is not None else ())
        if isinstance(route, APIRoute):
            found.append(route)
    return found


class LiaisonApp(FastAPI):
    """FastAPI with two layers outside its own middleware: the request middleware (request
    ids, body limit, metrics, access log) and `HotPaths`, which serves POST /v1/messages
    without the framework's stack; everything else continues into FastAPI as usual.
    `hot_paths = False` leaves that path to FastAPI's route (the tests compare the two)."""

    outer: tuple[int, Metrics] | None = None
    hot_paths = True
    _ending_streams: asyncio.Task[None] | None = None

    def stop_streams(self) -> None:
        """The server begins to stop: end every live stream now, and any opened until it has
        stopped, each with a last `closed` event (`server-stopping`). Streams never end by
        themselves, so without this the server waited out its graceful timeout and then
        cancelled them, logging each as an error."""
        state: AppState | None = getattr(self.state, "liaison", None)
        if state is None or self._ending_streams is not None:
            return
        self._ending_streams = asyncio.get_running_loop().create_task(
            _end_streams(state), name="liaison-end-streams"
        )

    #: The log's entries are served without a signature (`audit_public`).
    audit_public = False

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, completed by `api.openapi.complete` (once)."""
        if self.openapi_schema is None:
            unsigned = [
                (method, route.path_format)
                for route in _api_routes(self.routes)
                if self.audit_public and needs(route.dependant) == "audit"
                for method in route.methods or ()
            ]
            self.openapi_schema = complete(super().openapi(), unsigned)
        return self.openapi_schema

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        if self.hot_paths:
            submit = next(
                r
                for r in messages_api.router.routes
                if getattr(r, "path", "") == "/v1/messages" and "POST" in getattr(r, "methods", ())
            )
            app = HotPaths(app, fastapi=self, route=submit)
        assert self.outer is not None, "create_app sets the outer layers' settings"
        max_body, metrics = self.outer
        return RequestMiddleware(app, max_body=max_body, metrics=metrics)
