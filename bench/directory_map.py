"""The directory map (liaison.crypto.vmap): build, batch update, prove and verify times, proof size, memory.

Run: .venv/bin/python bench/directory_map.py [--sizes 10,1000,100000] [--batches 20] [--proofs 1000]

Keys are real map keys (protocol 9.5) of records spread over six ranges (five nations and `*`),
so same-nation keys share 16 bits as they do in a deployment. For each size it prints:

* bulk build: `PersistentMap.from_items` of every leaf;
* set_many: mean time of a 50-key batch (25 new records, 25 updated), each batch applied to
  the version the previous one made;
* prove / verify: mean µs per key over present keys (and absent ones), and the mean size of
  the proof's compact JSON;
* memory: tracemalloc's peak while building the map (input dict included), and what the
  built map holds once the input is gone (its keys and values included).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import tracemalloc

from liaison.crypto._primitives import sha256
from liaison.crypto.vmap import PersistentMap, map_key, verify_proof

NATIONS = ("FRA", "UKR", "USA", "POL", "DEU", "*")
KINDS = ("principal", "device", "device", "channel")


def records(n: int, tag: str = "") -> dict[bytes, bytes]:
    return {
        map_key(NATIONS[i % len(NATIONS)], f"{KINDS[i % len(KINDS)]}:{tag}{i}"): sha256(b"statement %d" % i)
        for i in range(n)
    }


def bench(n: int, batches: int, nproofs: int, rnd: random.Random) -> None:
    items = records(n)
    start = time.perf_counter()
    m = PersistentMap.from_items(items)
    build = time.perf_counter() - start

    # Traced from the leaves' creation on, so that what the map holds counts its keys and
    # values; the peak also counts the input dict and the build's temporaries.
    tracemalloc.start()
    fresh = records(n)
    held = PersistentMap.from_items(fresh)
    del fresh
    size, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del held

    keys = list(items)
    times = []
    cur = m
    for b in range(batches):
        batch = records(25, f"new{b}-")
        batch.update({k: sha256(b"update", k, b"%d" % b) for k in rnd.sample(keys, min(25, n))})
        start = time.perf_counter()
        cur = cur.set_many(batch)
        times.append(time.perf_counter() - start)

    root = m.root()
    present = [rnd.choice(keys) for _ in range(nproofs)]
    absent = list(records(nproofs, "absent-"))
    out = {}
    for name, ks in (("present", present), ("absent", absent)):
        start = time.perf_counter()
        proofs = [m.prove(k) for k in ks]
        prove_us = (time.perf_counter() - start) / len(ks) * 1e6
        start = time.perf_counter()
        for k, p in zip(ks, proofs, strict=True):
            verify_proof(root, k, p)
        verify_us = (time.perf_counter() - start) / len(ks) * 1e6
        sizes = [len(json.dumps(p.to_json(), separators=(",", ":"))) for p in proofs]
        depth = statistics.mean(len(p.siblings) for p in proofs)
        out[name] = (prove_us, verify_us, statistics.mean(sizes), depth)

    batch_ms = statistics.mean(times) * 1e3
    print(f"{n:>7} leaves  bulk build {build * 1e3:9.1f} ms   set_many(50) {batch_ms:6.2f} ms")
    for name, (prove_us, verify_us, size_b, depth) in out.items():
        print(
            f"         {name:<8} prove {prove_us:7.1f} µs   verify {verify_us:7.1f} µs   "
            f"proof JSON {size_b:6.0f} B   siblings {depth:5.1f}"
        )
    print(f"         memory   build peak {peak / 2**10:9.0f} KiB   map holds {size / 2**10:9.0f} KiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default="10,1000,100000")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--proofs", type=int, default=1000)
    args = ap.parse_args()
    rnd = random.Random(1)
    for n in (int(s) for s in args.sizes.split(",")):
        bench(n, args.batches, args.proofs, rnd)


if __name__ == "__main__":
    main()
