"""Audit-log throughput and latency: appends/s (1 and 64 writers, with and without map
leaves), signing rate, growing in large batches, proof latency.

Run: .venv/bin/python bench/audit_log.py [--database-url URL] [--entries 1000000]
                                         [--appends 2000] [--rounds 3] [--seconds 1] [--quick]

Uses a throw-away data directory and, by default, its SQLite database; pass a PostgreSQL
URL (postgresql+asyncpg://...) to measure that instead (the database must be empty). The
process runs with the server's garbage-collector and GIL settings (`tune_gc`), as the
writer does in `liaison-server run`.
`--quick` is a smoke run of every phase in seconds (20,000 entries, fewer samples). Prints:

* appends/s through the batching writer with 1 writer and with 64 concurrent writers, with
  how many batches (transactions, tree updates and checkpoint signatures) they took. Each
  job appends one entry with the options of the service's hot path (a submit: the writer's
  cache shared, no savepoint: `Writer.run(..., shares_cache=True, savepoint=False)`); one
  more line runs 64 writers with a job's default options (a savepoint each), for comparison;
* the same 64 writers whose jobs also set one directory-map leaf each (`Tx.set_leaf`), as a
  directory statement does: every batch then stages a new map version, writes its leaves
  and carries the new root in its `map.head` entry;
* the three 64-writer phases take about a second each, so one slow moment of a shared
  machine moves a figure by a quarter: they run --rounds times (3 by default), interleaved
  (round 1 of each, then round 2 of each, ...), and each line gives the median with the
  slowest and fastest round;
* Ed25519 checkpoint signatures/s (the per-batch signing cost);
* growing the log to --entries entries (1 million by default) in large batches (jobs of
  50,000 entries): entries/s, with progress while it grows;
* then inclusion-proof, consistency-proof and hash-tile read latency (p50 / p99 / max) from
  the stored hashes;
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
import hashlib
import inspect
import random
import statistics
import time

from _server import latency_ms, throwaway_state

from liaison.crypto import merkle, note, tiles
from liaison.crypto.keys import generate_device
from liaison.service.ops.serve import tune_gc
from liaison.service.state import AppState
from liaison.service.storage.logstore import LogReader
from liaison.service.usecases import audit as audit_read
from liaison.service.writer import Tx


async def _append(state: AppState, i: int, *, leaf: bool, savepoint: bool) -> None:
    def job(tx: Tx) -> int:
        if leaf:  # a directory statement's leaf: its own key, a new value
            tx.set_leaf(hashlib.sha256(b"bench-key %d" % i).digest(), hashlib.sha256(b"v %d" % i).digest())
        return tx.audit("bench.append", "system", None, i=i)

    await state.writer.run(job, shares_cache=not savepoint, savepoint=savepoint)


async def appends(
    state: AppState, total: int, writers: int, *, leaf: bool = False, savepoint: bool = False, first: int = 0
) -> tuple[float, int]:
    """Appends per second with `writers` concurrent callers; and the batches they took."""
    per = max(1, total // writers)
    batches = state.writer.batches

    async def worker(w: int) -> None:
        for k in range(per):
            await _append(state, first + w * per + k, leaf=leaf, savepoint=savepoint)

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


async def grow(state: AppState, target: int, batch: int = 50_000) -> tuple[int, float]:
    """Grow the log to at least `target` entries in jobs of `batch` entries (each batch adds
    its `map.head` too); (entries appended, seconds). Prints progress on one line."""
    async with state.db.sessions() as s:
        size = await LogReader(s).size()
    begin, start, last = size, time.perf_counter(), 0.0
    while size < target:
        n = min(batch, target - size)

        def job(tx: Tx, first: int = size, n: int = n) -> None:
            audit = tx.audit
            for i in range(first, first + n):
                audit("bench.filler", "system", None, seq=i)

        result = await state.writer.run(job, shares_cache=True, savepoint=False)
        size = max(result.receipts) + 2  # the batch's entries and its map head
        now = time.perf_counter()
        if now - last >= 1.0 or size >= target:
            last = now
            rate = (size - begin) / (now - start)
            eta = max(0.0, (target - size) / rate) if rate > 0 else 0.0
            print(
                f"  growing: {size:>11,} / {target:,} entries, {rate:8.0f} entries/s, {eta:5.0f} s to go",
                end="\r",
                flush=True,
            )
    print()
    return size - begin, time.perf_counter() - start


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
    print(f"inclusion proof at {size:,} entries:   {latency_ms(proof_times)}")
    consistency_times = []
    for _ in range(samples):
        old = rng.randrange(1, size)
        t0 = time.perf_counter()
        await audit_read.consistency(state, old, size)
        consistency_times.append(time.perf_counter() - t0)
    print(f"consistency proof at {size:,} entries: {latency_ms(consistency_times)}")
    full = size // tiles.TILE_WIDTH
    tile_times = []
    for _ in range(samples):
        # Distinct full level-0 tiles mostly miss the in-memory tile cache: a database read.
        tile = tiles.Tile(0, rng.randrange(max(1, full)))
        t0 = time.perf_counter()
        await audit_read.hash_tile(state, tile)
        tile_times.append(time.perf_counter() - t0)
    print(f"hash tile read at {size:,} entries:    {latency_ms(tile_times)}")


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
    ap.add_argument(
        "--rounds", type=int, default=3, help="rounds of each 64-writer phase (the median is shown)"
    )
    ap.add_argument("--samples", type=int, default=1000, help="latency samples")
    ap.add_argument("--seconds", type=float, default=1.0, help="time for the signing rate")
    ap.add_argument("--pages", type=int, default=20, help="entry pages read per reader")
    ap.add_argument("--batch", type=int, default=50_000, help="entries per job while growing")
    ap.add_argument("--quick", action="store_true", help="a smoke run: small sizes, every phase")
    args = ap.parse_args()
    if args.quick:
        args.entries, args.appends, args.samples = min(args.entries, 20_000), 640, 200
        args.seconds, args.pages, args.batch = 0.2, 3, min(args.batch, 5_000)
        args.rounds = 1
    if args.appends < 64 or args.rounds < 1:
        ap.error("--appends must be at least 64 and --rounds at least 1")
    tune_gc()  # the collector and GIL settings of `liaison-server run`, whose writer this measures
    async with throwaway_state(args.database_url) as state:
        db = "PostgreSQL" if state.db.is_postgres else "SQLite"
        print(f"database: {db}")
        rate, batches = await appends(state, args.appends, 1)
        print(
            f"{'appends,  1 writer:':58s} {rate:8.0f} appends/s ({args.appends} appends in {batches} batches)"
        )
        phases = [
            ("appends, 64 concurrent writers", False, False),
            ("appends, 64 concurrent writers, jobs with savepoints", False, True),
            ("appends, 64 concurrent writers, each job sets a map leaf", True, False),
        ]
        n = args.appends // 64 * 64
        rounds: list[list[tuple[float, int]]] = [[] for _ in phases]
        for r in range(args.rounds):
            for k, (_, leaf, savepoint) in enumerate(phases):
                first = (1 + r * len(phases) + k) * args.appends  # every job its own leaf key
                rounds[k].append(
                    await appends(state, args.appends, 64, leaf=leaf, savepoint=savepoint, first=first)
                )
        for (name, _, _), measured in zip(phases, rounds, strict=True):
            rates = sorted(rate for rate, _ in measured)
            spread = f"{rates[0]:.0f}-{rates[-1]:.0f} over {len(rates)} rounds, " if len(rates) > 1 else ""
            print(
                f"{name + ':':58s} {statistics.median(rates):8.0f} appends/s "
                f"({spread}{n} appends in {measured[0][1]} batches each)"
            )
        print(f"{'checkpoint signing (Ed25519 note):':58s} {signing_rate(args.seconds):8.0f} signatures/s")
        grown, took = await grow(state, args.entries, args.batch)
        print(
            f"{'grow in large batches (jobs of ' + format(args.batch, ',') + ' entries):':58s} "
            f"{grown / max(took, 1e-9):8.0f} entries/s ({grown:,} entries in {took:.1f} s)"
        )
        await latencies(state, args.samples)
        await entry_reads(state, args.pages)


if __name__ == "__main__":
    asyncio.run(main())
