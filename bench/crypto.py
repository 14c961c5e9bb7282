"""Envelope seal/open throughput, v2 beside v1, for 1 KiB and 1 MiB payloads.

Run: .venv/bin/python bench/crypto.py [--seconds S] [--recipients 1,5,10,100]
Prints messages/s and MB/s (of content) for seal and for open (one recipient opening), for
envelope v2 (C2SP chunked AES-256-GCM, padded body, key commitment) and v1 (ChaCha20-Poly1305,
read only now), measured alternately in one run, and the ratio v2/v1.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from liaison.crypto.envelope import open_envelope, seal, seal_v1
from liaison.crypto.keys import DeviceKeys, generate_device
from liaison.crypto.labels import Label

LABEL = Label("coalition-2026", "SECRET", ("UKR", "USA"), ("AIRDEF",))


def _rate(fn: Callable[[], object], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n >= 3:
            return n / elapsed


def _measure(
    sealer: Callable[..., dict[str, Any]],
    payload: bytes,
    sender: DeviceKeys,
    pool: list[DeviceKeys],
    seconds: float,
) -> tuple[float, float]:
    recipients = [k.public for k in pool]

    def do_seal() -> dict[str, Any]:
        return sealer(payload, channel="bench", label=LABEL, sender=sender, recipients=recipients)

    env = do_seal()
    return _rate(do_seal, seconds), _rate(lambda: open_envelope(env, pool[0], sender.public), seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    ap.add_argument("--recipients", default="1,5", help="comma-separated recipient counts")
    args = ap.parse_args()
    counts = [int(c) for c in args.recipients.split(",")]
    sender = generate_device("usa-analyst-1")
    pool = [generate_device(f"ukr-analyst-{i}", mldsa65=False) for i in range(max(counts))]
    print(
        f"{'payload':>8} {'rcpts':>5} {'env':>3} | {'seal msg/s':>10} {'seal MB/s':>9} | "
        f"{'open msg/s':>10} {'open MB/s':>9}"
    )
    for size in (1024, 1 << 20):
        payload = os.urandom(size)
        label = "1 KiB" if size == 1024 else "1 MiB"
        for count in counts:
            rates = {}
            for name, sealer in (("v1", seal_v1), ("v2", seal)):
                rates[name] = _measure(sealer, payload, sender, pool[:count], args.seconds)
                s, o = rates[name]
                mb = size / 1e6
                row = f"{s:>10.1f} {s * mb:>9.2f} | {o:>10.1f} {o * mb:>9.2f}"
                print(f"{label:>8} {count:>5} {name:>3} | {row}", flush=True)
            (s1, o1), (s2, o2) = rates["v1"], rates["v2"]
            print(f"{'':>8} {'':>5} {'':>3} | v2/v1 seal {s2 / s1:>5.2f}x, open {o2 / o1:>5.2f}x", flush=True)


if __name__ == "__main__":
    main()
