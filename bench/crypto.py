"""Envelope seal/open throughput for 1 KiB and 1 MiB payloads to 1, 10 and 100 hybrid recipients.

Run: .venv/bin/python bench/crypto.py [--seconds S]
Prints messages/s and MB/s for seal and for open (one recipient opening).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from liaison.crypto.envelope import open_envelope, seal
from liaison.crypto.keys import generate_device
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = ap.parse_args()
    sender = generate_device("usa-analyst-1")
    pool = [generate_device(f"ukr-analyst-{i}", mldsa65=False) for i in range(100)]
    print(
        f"{'payload':>8} {'rcpts':>5} | {'seal msg/s':>10} {'seal MB/s':>9} | "
        f"{'open msg/s':>10} {'open MB/s':>9}"
    )
    for size in (1024, 1 << 20):
        payload = os.urandom(size)
        for count in (1, 10, 100):
            recipients = [k.public for k in pool[:count]]

            def do_seal(payload: bytes = payload, recipients: list = recipients) -> object:  # type: ignore[type-arg]
                return seal(payload, channel="bench", label=LABEL, sender=sender, recipients=recipients)

            env = do_seal()
            seal_rate = _rate(do_seal, args.seconds)
            open_rate = _rate(lambda env=env: open_envelope(env, pool[0], sender.public), args.seconds)
            mb = size / 1e6
            label = "1 KiB" if size == 1024 else "1 MiB"
            print(
                f"{label:>8} {count:>5} | {seal_rate:>10.1f} {seal_rate * mb:>9.2f} | "
                f"{open_rate:>10.1f} {open_rate * mb:>9.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
