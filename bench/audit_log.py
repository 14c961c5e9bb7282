"""Audit-log throughput and latency: appends/s (1 and 64 writers), signing rate, proof latency.

Run: .venv/bin/python bench/audit_log.py [--database-url URL] [--entries 1000000]
                                         [--appends 2000] [--seconds 1]

Uses a throw-away data directory and, by default, its SQLite database; pass a PostgreSQL
URL (postgresql+asyncpg://...) to measure that instead (the database must be empty). Prints:

* appends/s through the batching writer with 1 writer and with 64 concurrent writers, with
  how many batches (transactions, tree updates and checkpoint signatures) they took;
* Ed25519 checkpoint signatures/s (the per-batch signing cost);
* after growing the log to --entries entries (1 million by default, in large batches):
  inclusion-proof and hash-tile read latency (p50 / p99 / max) from the stored hashes;
* entry reads (`GET /v1/audit/entries`' use case, pages of 1,000): entries/s for a reader
  who opens nothing (commitments only) and for root's auditor, who opens every field of
  every entry v2 (each page's openings recomputed by nobody here: the server's side only,
  its `audit.opened` entry included). Before entries v2 (no `caller` parameter) the one
  reader there was saw every field in the clear.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import inspect
import random
import statistics
import tempfile
import time
from pathlib import Path

from liaison.crypto import merkle, note, tiles
from liaison.crypto.keys import generate_device
from liaison.service.app import close_state, open_state
from liaison.service.config import load_settings
from liaison.service.ops.bootstrap import write_files
from liaison.service.state import AppState
from liaison.service.storage.logstore import LogReader
from liaison.service.usecases import audit as audit_read
from liaison.service.writer import Tx


async def _append(state: AppState, i: int) -> None:
    def job(tx: Tx) -> int:
        return tx.audit("bench.append", "system", None, i=i)

    await state.writer.run(job)


async def appends(state: AppState, total: int, writers: int) -> tuple[float, int]:
    """Appends per second with `writers` concurrent callers; and the batches they took."""
    per = max(1, total // writers)
    batches = state.writer.batches

    async def worker(w: int) -> None:
        for k in range(per):
            await _append(state, w * per + k)

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(writers)))
    elapsed = time.perf_counter() - start
    return per * writers / elapsed, state.writer.batches - batches


def signing_rate(seconds: float) -> float:
    signer = note.Signer.from_seed("bench.example/audit", bytes(32))
    cp = note.Checkpoint("bench.example/audit", 1_000_000, bytes(32))
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or n < 10:
        note.sign_checkpoint(cp, signer)
        n += 1
    return n / elapsed


async def grow(state: AppState, target: int, batch: int = 50_000) -> float:
    async with state.db.sessions() as s:
        size = await LogReader(s).size()
    start = time.perf_counter()
    while size < target:
        n = min(batch, target - size)

        def job(tx: Tx, first: int = size, n: int = n) -> None:
            for i in range(n):
                tx.audit("bench.filler", "system", None, seq=first + i)

        await state.writer.run(job)
        size += n
        print(f"  grown to {size} entries", end="\r", flush=True)
    return time.perf_counter() - start


def _ms(samples: list[float]) -> str:
    samples = sorted(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return (
        f"p50 {statistics.median(samples) * 1e3:6.2f} ms  p99 {p99 * 1e3:6.2f} ms  "
        f"max {samples[-1] * 1e3:6.2f} ms"
    )


async def latencies(state: AppState, samples: int) -> None:
    async with state.db.sessions() as s:
        size = await LogReader(s).size()
        cp = await LogReader(s).latest_checkpoint()
    assert cp is not None
    rng = random.Random(1)
    proof_times = []
    for _ in range(samples):
        i = rng.randrange(size)
        t0 = time.perf_counter()
        body = await audit_read.inclusion(state, i, size)
        proof_times.append(time.perf_counter() - t0)
        if len(proof_times) == 1:  # check one, so the numbers are for correct answers
            async with state.db.sessions() as s:
                entry = await LogReader(s).hashes([(0, i)])
            merkle.verify_inclusion(
                entry[(0, i)], i, size, [base64.b64decode(h) for h in body["inclusion_proof"]], cp.root_hash
            )
    print(f"inclusion proof at {size} entries:  {_ms(proof_times)}")
    full = size // tiles.TILE_WIDTH
    tile_times = []
    for _ in range(samples):
        # Distinct full level-0 tiles mostly miss the in-memory tile cache: a database read.
        tile = tiles.Tile(0, rng.randrange(max(1, full)))
        t0 = time.perf_counter()
        await audit_read.hash_tile(state, tile)
        tile_times.append(time.perf_counter() - t0)
    print(f"hash tile read at {size} entries:  {_ms(tile_times)}")


async def entry_reads(state: AppState, pages: int) -> None:
    async with state.db.sessions() as s:
        size = await LogReader(s).size()
    readers: list[tuple[str, dict[str, object]]] = [("any reader (entries v1: all in the clear)", {})]
    if "caller" in inspect.signature(audit_read.entries).parameters:
        from liaison.service.usecases.auth import Caller
        from liaison.service.usecases.readmodels import PrincipalView

        root = PrincipalView(
            "root", "root", "USA", "person", ("admin", "auditor"), "TOP SECRET", frozenset(), "active"
        )
        caller = Caller("bench-root-device", generate_device("root").public, root)
        readers = [
            ("a reader who opens nothing (commitments)", {"caller": None}),
            ("root's auditor (opens every field)", {"caller": caller}),
        ]
    rng = random.Random(2)
    for name, kwargs in readers:
        n, start_time = 0, time.perf_counter()
        for _ in range(pages):
            start = rng.randrange(max(1, size - 1000))
            body = await audit_read.entries(state, start, start + 1000, **kwargs)  # type: ignore[arg-type]
            n += len(body["entries"])
        elapsed = time.perf_counter() - start_time
        print(f"entry reads, {name}: {n / elapsed:8.0f} entries/s ({pages} pages of 1000)")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", help="an empty database (default: SQLite in a temp dir)")
    ap.add_argument("--entries", type=int, default=1_000_000, help="log size for latencies")
    ap.add_argument("--appends", type=int, default=2000, help="appends per throughput run")
    ap.add_argument("--samples", type=int, default=1000, help="latency samples")
    ap.add_argument("--seconds", type=float, default=1.0, help="time for the signing rate")
    ap.add_argument("--pages", type=int, default=20, help="entry pages read per reader")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        write_files(data_dir)
        overrides = {"database_url": args.database_url} if args.database_url else {}
        state = await open_state(load_settings(data_dir, **overrides))
        try:
            db = "PostgreSQL" if state.db.is_postgres else "SQLite"
            print(f"database: {db}")
            for writers in (1, 64):
                rate, batches = await appends(state, args.appends, writers)
                print(
                    f"appends, {writers:>2} concurrent writer(s): {rate:8.0f} appends/s "
                    f"({args.appends // writers * writers} appends in {batches} batches)"
                )
            print(f"checkpoint signing (Ed25519 note): {signing_rate(args.seconds):8.0f} signatures/s")
            took = await grow(state, args.entries)
            print(
                f"grew the log to {args.entries} entries in {took:.1f} s "
                f"({args.entries / max(took, 1e-9):.0f} entries/s in large batches)"
            )
            await latencies(state, args.samples)
            await entry_reads(state, args.pages)
        finally:
            await close_state(state)


if __name__ == "__main__":
    asyncio.run(main())
