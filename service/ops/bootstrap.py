"""`init`: create a data directory (settings, policy, TLS, log key) and the root principal."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import func, select, text

from liaison.crypto import note
from liaison.crypto.invitation import make_invitation

from ..app import close_state, open_database, open_state
from ..config import (
    RECORD_FILE,
    DatabaseRecord,
    Settings,
    SettingsError,
    StartupError,
    describe_db_error,
    load_settings,
)
from ..problems import Problem
from ..storage.db import Database
from ..storage.migrate import SchemaState, downgrade, schema_state
from ..storage.models import AuditEntry, Principal
from ..usecases.admin import issue_root_code

__all__ = ["holds_a_server", "init_database", "initialise", "make_private", "private_umask", "write_files"]

#: Directories of the data dir that hold secrets (mode 0700), relative to it ("" is itself).
_PRIVATE_DIRS = ("", "tls")
#: Files that are secret (mode 0600): the keys; the SQLite database and its -wal, -shm and
#: -journal files are found by name.
_PRIVATE_FILES = ("log-signer.key", "tls/key.pem")
_DATABASE_GLOB = "liaison.db*"


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files and directories created meanwhile are private to the owner (umask 077),
    whatever the operator's umask: SQLite creates its database and sidecar files with
    0666 & ~umask."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def make_private(data_dir: Path) -> list[dict[str, str]]:
    """Take group and other permissions off the data dir, tls/, the keys and the SQLite files.

    Returns what was changed (path, mode before, mode after) for the caller to report; raises
    SettingsError naming the file when a mode cannot be changed (another owner, a read-only
    mount): a secret readable by others is not served. Public files (settings, policy, the
    certificate, the log verifier key) keep their modes: the 0700 directory already hides them
    from other users."""
    paths = [data_dir / d for d in _PRIVATE_DIRS] + [data_dir / f for f in _PRIVATE_FILES]
    paths += sorted(data_dir.glob(_DATABASE_GLOB))
    fixed: list[dict[str, str]] = []
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)  # a symlinked key: its target
        except FileNotFoundError:
            continue  # e.g. no SQLite file on PostgreSQL; missing keys are refused later
        if not mode & 0o077:
            continue
        private = mode & ~0o077
        try:
            os.chmod(path, private)
        except OSError as e:
            raise SettingsError(
                f"{path} is readable by others ({mode:04o}) and cannot be made private: {e}"
            ) from None
        fixed.append({"path": str(path), "was": f"{mode:04o}", "now": f"{private:04o}"})
    return fixed


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _dev_certificate(directory: Path, hosts: list[str]) -> None:
    """A self-signed development certificate (ECDSA P-256, a server leaf) for the given hosts."""

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Liaison development server")])
    sans: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        # A server leaf, not a CA: trusting this file (`--ca-cert`) must not let its key vouch
        # for any other name or certificate. OpenSSL takes a self-signed leaf that is in the
        # trust store as its own anchor, so clients need nothing more than the file.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        directory / "key.pem",
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


#: Entries init stages the new data directory in: beside it (`.NAME.liaison-init-XXXX`) or,
#: when the data directory already exists as an empty directory (a volume's mount point),
#: inside it (`.liaison-init-XXXX`). Leftovers of an init that was killed are removed.
_STAGING = ".liaison-init-"


def initialise(
    data_dir: Path,
    *,
    origin: str = "liaison.example/audit",
    tls_hosts: list[str] | None = None,
    database_url: str | None = None,
) -> dict[str, Any]:
    """Create and populate `data_dir`, all or nothing; returns what `init --json` prints (the
    root's invitation is built from the log key just made: the operator's own, not a server's
    answer).

    Everything is written in a staging directory and moved into place last, so a failed init
    (an unreachable or non-empty database, a full or read-only disk, an interrupt) leaves no
    data directory behind to block the next one; and a database that init found empty and
    began to fill is emptied again (migrations undone)."""
    data_dir = data_dir.expanduser().resolve()
    if not note.is_valid_key_name(origin):
        raise SettingsError(f"origin {origin!r} is not a valid log name (no spaces or '+')")
    with private_umask(), _staged(data_dir) as stage:
        try:
            result = write_files(stage, origin=origin, tls_hosts=tls_hosts)
            code = asyncio.run(init_database(stage, database_url))
            overrides = {"database_url": database_url} if database_url else {}
            settings = load_settings(stage, **overrides)
            record = DatabaseRecord.of(settings.database_url, settings.database_password_file)
            (stage / RECORD_FILE).write_text(record.to_toml(), "utf-8")
            make_private(stage)
        except SettingsError as e:  # said of the data directory, not of the staging one
            raise type(e)(str(e).replace(str(stage), str(data_dir))) from None
    result.update(
        data_dir=str(data_dir),
        tls_cert=str(data_dir / "tls" / "cert.pem"),
        database=record.describe(),
        root_enrolment_code=code,
        root_invitation=str(make_invitation(code, result["log_verifier_key"])),
    )
    return result


def holds_a_server(data_dir: Path) -> bool:
    """`data_dir` was made by init: it has the log's signing key (init's leftovers do not count)."""
    return (data_dir / "log-signer.key").exists()


@contextlib.contextmanager
def _staged(data_dir: Path) -> Iterator[Path]:
    """A private staging directory for `data_dir`, moved into place when the block succeeds
    and removed when it fails (also on KeyboardInterrupt)."""
    inside = data_dir.is_dir()
    if inside:
        leftovers = [p for p in data_dir.iterdir() if p.name.startswith(_STAGING)]
        if len(leftovers) != sum(1 for _ in data_dir.iterdir()):
            raise SettingsError(f"{data_dir} is not empty; refusing to overwrite an existing server")
        for old in leftovers:
            shutil.rmtree(old, ignore_errors=True)
        parent, prefix = data_dir, _STAGING
    elif data_dir.exists():
        raise SettingsError(f"{data_dir} exists and is not a directory")
    else:
        parent, prefix = data_dir.parent, f".{data_dir.name}{_STAGING}"
        parent.mkdir(parents=True, exist_ok=True)
        for old in parent.glob(prefix + "*"):
            shutil.rmtree(old, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield stage
        if inside:
            # The data directory stays (a mount point cannot be replaced): its entries move in,
            # each rename atomic, the record last so that a data dir is complete when it has one.
            entries = sorted(stage.iterdir(), key=lambda p: p.name == RECORD_FILE)
            for entry in entries:
                entry.rename(data_dir / entry.name)
            stage.rmdir()
            os.chmod(data_dir, 0o700)
        else:
            stage.rename(data_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def write_files(
    data_dir: Path, *, origin: str = "liaison.example/audit", tls_hosts: list[str] | None = None
) -> dict[str, Any]:
    """The file part of `initialise`: settings, policy, TLS certificate and log keys."""
    data_dir = data_dir.expanduser().resolve()
    if data_dir.exists() and any(data_dir.iterdir()):
        raise SettingsError(f"{data_dir} is not empty; refusing to overwrite an existing server")
    if not note.is_valid_key_name(origin):
        raise SettingsError(f"origin {origin!r} is not a valid log name (no spaces or '+')")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)  # mkdir leaves an existing directory's mode as it was
    (data_dir / "settings.toml").write_text(
        f'# Liaison server settings; LIAISON_* environment variables override them.\norigin = "{origin}"\n',
        "utf-8",
    )
    policy = resources.files("liaison.service").joinpath("default_policy.toml").read_bytes()
    (data_dir / "policy.toml").write_bytes(policy)
    _dev_certificate(data_dir / "tls", ["localhost", "127.0.0.1", "::1", *(tls_hosts or [])])
    signer_key, verifier_key = note.generate_signer_key(origin)
    _write_private(data_dir / "log-signer.key", (signer_key + "\n").encode())
    (data_dir / "log-verifier.key").write_text(verifier_key + "\n", "ascii")
    return {
        "data_dir": str(data_dir),
        "origin": origin,
        "root_principal": "root",
        "tls_cert": str(data_dir / "tls" / "cert.pem"),
        "log_verifier_key": verifier_key,
    }


async def init_database(data_dir: Path, database_url: str | None = None) -> str:
    """Migrate the database, which must be empty, create the root principal, return its
    one-time enrolment code. When this fails after the migration began (or is interrupted),
    the migrations are undone: the database is empty again, ready for the next init."""
    overrides = {"database_url": database_url} if database_url else {}
    settings = load_settings(data_dir, **overrides)
    db, schema = await open_database(settings, create=True)
    try:
        fresh = schema.current is None
        if not fresh and not await _prepared(db, schema):
            raise SettingsError(
                f"the database {settings.db_display} already holds a Liaison server (schema "
                f"{schema.current}): init makes a new server in an empty database. Serve that one "
                "with its own data directory, or point LIAISON_DATABASE_URL at an empty database"
            )
    finally:
        await db.dispose()
    try:
        state = await open_state(settings)
        try:
            return await issue_root_code(state)
        finally:
            await close_state(state)
    except Problem as p:  # the writer's answer to a database failure
        if fresh:
            await _empty_again(settings)
        raise StartupError(
            f"the database {settings.db_display}: {p.detail} (LIAISON_DEBUG=1 shows the database's error)"
        ) from None
    except BaseException:
        if fresh:
            await _empty_again(settings)
        raise


async def _prepared(db: Database, schema: SchemaState) -> bool:
    """A database migrated beforehand (by its owner role, for a service that connects as the
    application role) but holding nothing yet: no log entry, no principal."""
    if not schema.is_current:
        return False
    async with db.sessions() as s:
        entries = await s.scalar(select(func.count()).select_from(AuditEntry))
        principals = await s.scalar(select(func.count()).select_from(Principal))
    return entries == 0 and principals == 0


async def _empty_again(settings: Settings) -> None:
    """Undo init's migrations in a database that was empty (best effort: a database that fails
    again is reported, with what to do)."""
    db = Database(settings.db_url)
    try:
        if (await schema_state(db)).current is not None:
            await downgrade(db)
        async with db.engine.begin() as conn:  # downgrading keeps alembic's (empty) table
            await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    except Exception as e:
        _warn(
            f"init could not empty the database {settings.db_display} again "
            f"({describe_db_error(e)}): drop its tables before the next init"
        )
    finally:
        await db.dispose()


def _warn(message: str) -> None:
    """A warning on stderr (this module does not depend on the CLI library)."""
    print(f"liaison-server: warning: {message}", file=sys.stderr)
