"""`liaison-server audit ...`: operator commands on the transparency log.

    verify     recompute the whole tree from the stored entries and compare it with every
               stored tree hash, every signed checkpoint and every stored cosignature
    pg-roles   print the PostgreSQL role set-up that makes the log tables append-only for
               the service's own role (scripts/pg-roles.sql is its default output)

`verify` streams the log in chunks (memory stays flat at a million entries and beyond) and
trusts nothing in the database: entries are re-hashed, the tree is rebuilt with the RFC 6962
right-edge (compact range) method, and each checkpoint's signature is checked with the log's
verifier key. The first failure is named by log index where one can be.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import and_, func, or_, select

from liaison.crypto import merkle, note
from liaison.crypto.errors import CryptoError

from ..config import SettingsError, load_settings
from ..storage.db import Database
from ..storage.models import AuditEntry, Checkpoint, Cosignature, TreeHash

__all__ = ["LOG_TABLES", "VerifyReport", "app", "pg_roles_sql", "verify_log"]

app = typer.Typer(help="Operator commands on the audit log.", no_args_is_help=True)

#: The tables of the transparency log (the migration's append-only triggers guard the same).
LOG_TABLES = ("audit_entry", "tree_hash", "checkpoint", "cosignature")

_CHUNK = 10_000
_MAX_FAILURES = 20


# --- verification ----------------------------------------------------------------------------


@dataclass
class VerifyReport:
    """What `verify_log` found; `ok` only if nothing failed."""

    size: int = 0
    checkpoints: int = 0
    cosignatures: int = 0
    cosignatures_unchecked: int = 0
    failures: list[str] = field(default_factory=list)
    first_bad_index: int | None = None
    #: Entries whose bytes no longer match their stored leaf hash, in order.
    bad_leaves: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def explained(self, start: int, end: int) -> bool:
        """Whether a changed entry in [start, end) already accounts for a mismatch there."""
        i = bisect.bisect_left(self.bad_leaves, start)
        return i < len(self.bad_leaves) and self.bad_leaves[i] < end

    def fail(self, message: str, index: int | None = None) -> None:
        if len(self.failures) < _MAX_FAILURES:
            self.failures.append(message)
        if index is not None and (self.first_bad_index is None or index < self.first_bad_index):
            self.first_bad_index = index


class _Edge:
    """The right edge of the tree being rebuilt: complete subtrees, largest (leftmost) first."""

    def __init__(self) -> None:
        self.nodes: list[tuple[int, int, bytes]] = []  # (level, index, hash)
        self.size = 0

    def push(self, leaf: bytes, created: dict[merkle.Node, bytes]) -> None:
        node = (0, self.size, leaf)
        created[(0, self.size)] = leaf
        self.size += 1
        while self.nodes and self.nodes[-1][0] == node[0]:
            left = self.nodes.pop()
            node = (node[0] + 1, left[1] >> 1, merkle.node_hash(left[2], node[2]))
            created[(node[0], node[1])] = node[2]
        self.nodes.append(node)

    def root(self) -> bytes:
        if not self.nodes:
            return merkle.EMPTY_ROOT
        acc = self.nodes[-1][2]
        for _, _, h in reversed(self.nodes[:-1]):
            acc = merkle.node_hash(h, acc)
        return acc


def _bytes(value: bytes | str) -> bytes:
    # SQLite keeps what was written: a tampered BLOB may come back as TEXT.
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _stored_node_count(size: int) -> int:
    total, n = 0, size
    while n:
        total += n
        n >>= 1
    return total


async def _compare_stored(db: Database, created: dict[merkle.Node, bytes],
                          report: VerifyReport) -> None:
    """Compare recomputed subtree hashes with the rows of `tree_hash`.

    A changed entry shows as a leaf mismatch (naming its index) and, above it, as mismatches
    of every subtree over it; those are consequences and are not reported again.
    """
    by_level: dict[int, list[int]] = {}
    for level, idx in created:
        by_level.setdefault(level, []).append(idx)
    async with db.sessions() as s:
        conds = [and_(TreeHash.level == lv, TreeHash.idx >= min(ix), TreeHash.idx <= max(ix))
                 for lv, ix in by_level.items()]
        rows = await s.execute(select(TreeHash.level, TreeHash.idx, TreeHash.hash)
                               .where(or_(*conds)))
        stored = {(lv, ix): _bytes(h) for lv, ix, h in rows}
    for (level, idx), h in sorted(created.items()):  # leaves first, then each level up
        got = stored.get((level, idx))
        if got == h:
            continue
        first, last = idx << level, (idx + 1) << level
        what = "is missing" if got is None else "differs"
        if level == 0:
            report.bad_leaves.append(idx)
            report.fail(f"entry {idx}: {what} from its stored leaf hash (the entry or its hash "
                        "was changed)", idx)
        elif not report.explained(first, last):
            report.fail(f"stored tree hash ({level}, {idx}) over entries [{first}, {last}) "
                        f"{what} from the one recomputed from the entries", first)


def _check_entry(idx: int, data: bytes, type_: str, actor: str, report: VerifyReport) -> None:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        report.fail(f"entry {idx}: not JSON", idx)
        return
    if not isinstance(obj, dict) or obj.get("type") != type_ or obj.get("actor") != actor:
        report.fail(f"entry {idx}: its type/actor columns do not match its bytes", idx)


async def verify_log(db: Database, log_key: note.Verifier, *,
                     witnesses: Sequence[note.Verifier] = (),
                     progress: Callable[[int, int], None] | None = None,
                     chunk: int = _CHUNK) -> VerifyReport:
    """Rebuild the tree from every stored entry and check everything stored against it."""
    report = VerifyReport()
    async with db.sessions() as s:
        size = int(await s.scalar(select(func.max(Checkpoint.size))) or 0)
        count = int(await s.scalar(select(func.count()).select_from(AuditEntry)) or 0)
        hashes = int(await s.scalar(select(func.count()).select_from(TreeHash)) or 0)
        cps = (await s.execute(select(Checkpoint.size, Checkpoint.root_hash, Checkpoint.note)
                               .order_by(Checkpoint.size))).all()
        cosigs = (await s.execute(select(Cosignature.size, Cosignature.witness,
                                         Cosignature.line))).all()
    report.size, report.checkpoints = size, len(cps)
    if count != size:
        report.fail(f"{count} entries are stored but the latest checkpoint has size {size}",
                    min(count, size))
    if hashes != _stored_node_count(size):
        report.fail(f"{hashes} tree hashes are stored; a tree of {size} has "
                    f"{_stored_node_count(size)}")

    edge, pending = _Edge(), list(reversed(cps))
    root_mismatch: list[tuple[int, int]] = []  # (checkpoint size, last good size before it)
    last_good = 0

    def reach_checkpoints() -> None:
        nonlocal last_good
        while pending and pending[-1][0] == edge.size:
            cp_size, root, text = pending.pop()
            if _check_checkpoint(cp_size, _bytes(root), text, edge.root(), log_key, report):
                last_good = cp_size
            else:
                root_mismatch.append((cp_size, last_good))

    reach_checkpoints()
    nxt = 0
    while nxt < size:
        async with db.sessions() as s:
            rows = (await s.execute(
                select(AuditEntry.idx, AuditEntry.data, AuditEntry.type, AuditEntry.actor)
                .where(AuditEntry.idx >= nxt, AuditEntry.idx < size)
                .order_by(AuditEntry.idx).limit(chunk))).all()
        if not rows:
            report.fail(f"entries from index {nxt} on are missing", nxt)
            break
        created: dict[merkle.Node, bytes] = {}
        for idx, data, type_, actor in rows:
            if idx != edge.size:
                report.fail(f"entry {edge.size} is missing (next stored index is {idx})",
                            edge.size)
                return report
            data = _bytes(data)
            _check_entry(idx, data, type_, actor, report)
            edge.push(merkle.leaf_hash(data), created)
            reach_checkpoints()
        await _compare_stored(db, created, report)
        nxt = edge.size
        if progress:
            progress(edge.size, size)
    for cp_size, _, _ in pending:
        report.fail(f"checkpoint of size {cp_size} is beyond the stored entries", cp_size)
    for cp_size, good in root_mismatch:
        if not report.explained(0, cp_size):
            # The entries below this size no longer hash to what the log signed, and every
            # stored hash agrees with them: the change is in [good, cp_size).
            report.fail(f"checkpoint of size {cp_size}: the stored entries do not hash to its "
                        f"signed root; an entry in [{good}, {cp_size}) was changed", good)
    _check_cosignatures(cosigs, cps, witnesses, report)
    return report


def _check_checkpoint(size: int, root: bytes, text: str, computed: bytes,
                      log_key: note.Verifier, report: VerifyReport) -> bool:
    """Check one stored checkpoint; False if its signed root differs from the entries'."""
    try:
        cp = note.open_checkpoint(text.encode("utf-8"), log_key)
    except CryptoError as e:
        report.fail(f"checkpoint of size {size}: not validly signed by the log key: {e}")
        return True
    if cp.size != size or cp.root_hash != root:
        report.fail(f"checkpoint of size {size}: its note and its columns disagree")
    return cp.root_hash == computed


def _check_cosignatures(cosigs: Sequence[tuple[int, str, str]],
                        cps: Sequence[tuple[int, bytes, str]],
                        witnesses: Sequence[note.Verifier], report: VerifyReport) -> None:
    texts = {size: text for size, _, text in cps}
    for size, witness, line in cosigs:
        report.cosignatures += 1
        known = [w for w in witnesses if w.name == witness]
        if size not in texts:
            report.fail(f"cosignature by {witness} for size {size}: no such checkpoint")
            continue
        if not known:
            report.cosignatures_unchecked += 1
            continue
        try:
            cp = note.parse_checkpoint(texts[size][:texts[size].rindex("\n\n") + 1])
            note.verify_cosignature_line(line, cp, known)
        except (CryptoError, ValueError) as e:
            report.fail(f"cosignature by {witness} for size {size} does not verify: {e}")


# --- commands --------------------------------------------------------------------------------

DataDir = Annotated[Path | None, typer.Option("--data-dir", envvar="LIAISON_DATA_DIR",
                                              help="Server data directory")]


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
    from ..app import load_log_signer

    return load_log_signer(data_dir / "log-signer.key", origin).verifier


@app.command()
def verify(
    data_dir: DataDir = None,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="Database URL (default: the data directory's settings)")] = None,
    log_key: Annotated[str | None, typer.Option(
        "--log-key", help="Log verifier key to trust (default: the data directory's)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False,
) -> None:
    """Recompute the tree from every stored entry; compare it with every stored checkpoint.

    Exits 0 if the log is intact, 1 naming the first bad index if not, 2 on a usage error.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

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
            with Progress("[progress.description]{task.description}", BarColumn(),
                          MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                          transient=True, disable=quiet) as bar:
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
        typer.echo(f"OK: {report.size} entries, {report.checkpoints} checkpoints and "
                   f"{report.cosignatures} cosignatures verified against log key "
                   f"{verifier.name}+{verifier.key_id.hex()}"
                   + (f" ({report.cosignatures_unchecked} cosignatures from witnesses not "
                      "configured here were not checked)" if report.cosignatures_unchecked else ""))
        return
    where = f" first bad index: {report.first_bad_index}" if report.first_bad_index is not None \
        else ""
    typer.echo(f"FAILED: the audit log does not verify;{where}", err=True)
    for f in report.failures:
        typer.echo(f"  - {f}", err=True)
    raise typer.Exit(1)


_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def pg_roles_sql(app_role: str = "liaison_app", owner_role: str = "liaison_owner",
                 schema: str = "public") -> str:
    """The SQL that makes the log tables append-only for the service's role (see docs/audit.md)."""
    for name in (app_role, owner_role, schema):
        if not _ROLE.fullmatch(name):
            raise ValueError(f"{name!r} is not a plain lowercase SQL identifier")
    if app_role == owner_role:
        raise ValueError("the service role must not be the owner role")
    log_tables = ", ".join(f"{schema}.{t}" for t in LOG_TABLES)
    # Identifiers are checked against _ROLE above, so formatting them in is safe.
    return f"""\
-- Liaison: PostgreSQL roles for an append-only audit log, in depth (docs/audit.md).
--
-- {owner_role} owns the schema's tables and runs migrations; {app_role} is what the service
-- logs in as. {app_role} owns nothing, so it cannot drop or disable the append-only triggers,
-- and it has no UPDATE, DELETE or TRUNCATE on the log tables: even with the triggers gone
-- (an attacker with the owner's or a superuser's access) the service's own credentials
-- cannot rewrite the log.
--
-- Run as a superuser (or a role with CREATEROLE that owns the tables) in the Liaison
-- database, after `liaison-server migrate`, and again after every migration:
--     psql -v ON_ERROR_STOP=1 -d liaison -f scripts/pg-roles.sql
-- Then give {app_role} a password (\\password {app_role}) and start the service with
--     LIAISON_DATABASE_URL=postgresql+asyncpg://{app_role}:...@host/liaison
-- Generated by `liaison-server audit pg-roles`; idempotent.

BEGIN;

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner_role}') THEN
    CREATE ROLE {owner_role} NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{app_role}') THEN
    CREATE ROLE {app_role} LOGIN;
  END IF;
END
$$;

-- Ownership: every table (and with it its sequences) and the trigger function.
DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = '{schema}' LOOP
    EXECUTE format('ALTER TABLE {schema}.%I OWNER TO {owner_role}', t.tablename);
  END LOOP;
END
$$;
ALTER FUNCTION {schema}.liaison_append_only() OWNER TO {owner_role};

-- Nobody but the owner creates objects in the schema.
REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC;
GRANT USAGE ON SCHEMA {schema} TO {app_role};

-- The service reads and writes its working tables...
REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM PUBLIC, {app_role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {app_role};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {app_role};
-- ...only reads the schema version (it refuses to start on an unknown one)...
REVOKE INSERT, UPDATE, DELETE ON {schema}.alembic_version FROM {app_role};
-- ...and only appends to the log.
REVOKE ALL ON {log_tables} FROM {app_role};
GRANT SELECT, INSERT ON {log_tables} TO {app_role};

COMMIT;
"""  # noqa: S608


@app.command("pg-roles")
def pg_roles(
    app_role: Annotated[str, typer.Option("--app-role", help="Role the service logs in as")
                        ] = "liaison_app",
    owner_role: Annotated[str, typer.Option("--owner-role", help="Role that owns the tables")
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
