"""Device bundles on the server: the start's warm-up and a first request's read (issue 17).

Run: .venv/bin/python bench/bundles.py [--devices 5000] [--reads 300] [--database-url URL]

Uses a throw-away data directory and, by default, its SQLite database (a PostgreSQL URL,
postgresql+asyncpg://..., must name an empty database). It enrols `--devices` device rows
(copies of a few real hybrid bundles, Ed25519 + ML-DSA-65 + ML-KEM-768/X25519, under
distinct ids), then prints:

* parsing one stored bundle: `PublicBundle.from_json` (with its trial KEM encapsulation,
  what the server used to do at every bundle read) and `PublicBundle.from_stored`;
* `warm_bundles`: the start's load of every device's bundle, in all and per device, and the
  memory the warmed cache holds (tracemalloc, a second load);
* a bundle read on a cache miss (what a device's first request to a process costs it), on
  an idle event loop: at once on the loop's thread (`storage.quickread`, SQLite only) and
  through the async driver (p50 / p99 / slowest).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime

from _server import latency_ms, throwaway_state
from sqlalchemy import insert

from liaison.crypto.encoding import jcs
from liaison.crypto.keys import PublicBundle, generate_device
from liaison.crypto.names import MLKEM768_X25519
from liaison.service.state import AppState
from liaison.service.storage.models import Device, Principal
from liaison.service.usecases import auth


def _per_call_us(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


async def _enrol_rows(state: AppState, count: int) -> list[str]:
    """`count` device rows of one principal, bundles as the service stores them."""
    stored = [jcs(generate_device("bench").signed_bundle()).decode() for _ in range(8)]
    ids = [f"d_bench{i:020d}" for i in range(count)]
    now = datetime.now(UTC)
    async with state.db.sessions() as s:
        s.add(
            Principal(
                id="bench",
                display_name="bench",
                nation="USA",
                kind="person",
                roles="[]",
                clearance="SECRET",
                compartments="[]",
                status="active",
                created_at=now,
                updated_at=now,
            )
        )
        await s.flush()
        for start in range(0, count, 1000):
            rows = [
                {
                    "id": ids[i],
                    "principal_id": "bench",
                    "signed_bundle": stored[i % len(stored)],
                    "suite": MLKEM768_X25519,
                    "enrolled_at": now,
                }
                for i in range(start, min(count, start + 1000))
            ]
            await s.execute(insert(Device), rows)
        await s.commit()
    return ids


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=5000, help="device rows to warm")
    ap.add_argument("--reads", type=int, default=300, help="cache-miss reads timed per way")
    ap.add_argument("--database-url", help="an empty database (default: SQLite in a temp dir)")
    args = ap.parse_args()
    async with throwaway_state(args.database_url) as state:
        print(f"database: {'PostgreSQL' if state.db.is_postgres else 'SQLite'}")
        print(f"enrolling {args.devices:,} device rows ...", flush=True)
        ids = await _enrol_rows(state, args.devices)
        text = jcs(generate_device("bench").signed_bundle()).decode()
        full = _per_call_us(lambda: PublicBundle.from_json(json.loads(text)["bundle"]), 200)
        stored = _per_call_us(lambda: PublicBundle.from_stored(text), 2000)
        print(f"{'parse a stored bundle, from_json (trial encapsulation):':58s} {full:8.1f} us")
        print(f"{'parse a stored bundle, from_stored:':58s} {stored:8.1f} us")
        state.bundles.clear()
        start = time.perf_counter()
        loaded = await auth.warm_bundles(state)
        took = time.perf_counter() - start
        print(
            f"{'warm_bundles (the start):':58s} {took * 1e3:8.1f} ms for {loaded:,} devices, "
            f"{took / max(loaded, 1) * 1e6:.1f} us each"
        )
        state.bundles.clear()
        gc.collect()
        tracemalloc.start()
        await auth.warm_bundles(state)
        gc.collect()
        held, peak = tracemalloc.get_traced_memory()  # what the cache still holds; the most
        tracemalloc.stop()
        print(
            f"{'the warmed cache in memory:':58s} {held / 2**20:8.1f} MiB, "
            f"{held / max(len(state.bundles), 1) / 1024:.2f} KiB a device (peak while loading "
            f"{peak / 2**20:.1f} MiB)"
        )
        picks = [ids[i * len(ids) // args.reads] for i in range(args.reads)]
        ways: list[tuple[str, bool]] = [("through the async driver", False)]
        if state.db.quick_reader is not None:
            ways.insert(0, ("at once on the loop's thread", True))
        for name, quick in ways:
            reader = state.db.quick_reader
            if not quick:
                state.db.quick_reader = None  # the async way, as on PostgreSQL
            samples = []
            for device_id in picks:
                state.bundles.pop(device_id, None)
                t = time.perf_counter()
                await auth._bundle(state, device_id)
                samples.append(time.perf_counter() - t)
            state.db.quick_reader = reader
            print(f"{'a cache miss, ' + name + ':':58s} {latency_ms(samples, digits=3)}")


if __name__ == "__main__":
    asyncio.run(main())
