"""A coalition-sized deployment, simulated from figures measured here (docs/scaling.md).

Run: .venv/bin/python bench/coalition.py [--per-process 300] [--writer 12000] [--processes 1,2,4,8,16]
                                         [--sustained 50] [--burst 2000] [--burst-seconds 60]

No server runs: this is arithmetic on measured rates, so that the sizing in docs/scaling.md
can be redone with another machine's figures. Its inputs:

* `--per-process`: accepted messages/s one worker process sustains at 32 senders on
  PostgreSQL (`bench/service.py --workers 1` on the target machine, one core per process);
* `--writer`: appends/s the single log writer sustains with many concurrent writers
  (`bench/audit_log.py`, "64 concurrent writers", on PostgreSQL);
* the load: messages/s sustained and in bursts, each message one `message.accepted` entry at
  submit and one `message.delivered` entry per recipient device at its first fetch
  (`--recipients`, fetched later, spread over `--fetch-spread` seconds), plus one `map.head`
  per write batch (`--batch`, requests per batch).

For each count of worker processes it simulates, second by second, a burst of `--burst`
messages/s for `--burst-seconds` on top of the sustained rate: the processes accept what their
capacity and the log writer's allow, the rest waits (senders retry), and it prints the
backlog's peak, how long it takes to drain, and the extra wait a message sees at the peak.
Then the storage 10^8 entries take, from `--bytes-per-entry` (measured: the SQLite file of
`bench/audit_log.py` after growing, divided by its entries).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Load:
    sustained: float
    burst: float
    burst_seconds: int
    recipients: int
    fetch_spread: int
    batch: int


@dataclass(frozen=True)
class Outcome:
    processes: int
    capacity: float  # messages/s the processes and the writer together accept
    bound_by: str
    peak_backlog: float
    drain_seconds: int | None
    peak_wait: float


def entries_per_second(accepted: float, fetched: float, batch: int) -> float:
    """Log entries/s for `accepted` submits/s and `fetched` first fetches/s (one map.head per
    batch of requests)."""
    requests = accepted + fetched
    return requests + requests / max(batch, 1)


def simulate(processes: int, per_process: float, writer: float, load: Load, horizon: int = 3600) -> Outcome:
    """Second by second: arrivals, what is accepted, the backlog (see the module doc)."""
    backlog, peak, peak_wait = 0.0, 0.0, 0.0
    drained: int | None = None
    fetch_queue: list[float] = [0.0] * (horizon + load.fetch_spread + 1)
    app = processes * per_process
    for t in range(horizon):
        arriving = load.sustained + (load.burst if t < load.burst_seconds else 0.0)
        fetching = fetch_queue[t]
        # The writer's entries/s bound how many submits it can take this second, after the
        # first fetches due now (they come first: they are what recipients are waiting for).
        room = max(0.0, writer - entries_per_second(0.0, fetching, load.batch))
        by_writer = room / (1 + 1 / max(load.batch, 1))
        accepted = min(backlog + arriving, app, by_writer)
        backlog = backlog + arriving - accepted
        for k in range(1, load.fetch_spread + 1):  # its recipients fetch it over the next seconds
            fetch_queue[t + k] += accepted * load.recipients / load.fetch_spread
        if backlog > peak:
            peak = backlog
            peak_wait = backlog / max(accepted, 1e-9)
        if t >= load.burst_seconds and backlog < 1 and drained is None:
            drained = t - load.burst_seconds
    writer_msgs = writer / ((1 + load.recipients) * (1 + 1 / max(load.batch, 1)))
    capacity = min(app, writer_msgs)
    bound = "processes" if app <= writer_msgs else "log writer"
    return Outcome(processes, capacity, bound, peak, drained, peak_wait)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-process", type=float, default=300.0, help="messages/s per worker process")
    ap.add_argument("--writer", type=float, default=12_000.0, help="log appends/s, many writers")
    ap.add_argument("--processes", default="1,2,4,8,16", help="worker process counts to simulate")
    ap.add_argument("--sustained", type=float, default=50.0)
    ap.add_argument("--burst", type=float, default=2000.0)
    ap.add_argument("--burst-seconds", type=int, default=60)
    ap.add_argument("--recipients", type=int, default=5, help="recipient devices per message")
    ap.add_argument("--fetch-spread", type=int, default=300, help="seconds over which recipients fetch")
    ap.add_argument("--batch", type=int, default=16, help="requests per write batch")
    ap.add_argument("--bytes-per-entry", type=float, default=1000.0, help="database bytes per log entry")
    ap.add_argument("--entries", type=float, default=1e8, help="log size to store")
    args = ap.parse_args()
    load = Load(
        args.sustained, args.burst, args.burst_seconds, args.recipients, args.fetch_spread, args.batch
    )
    print(
        f"load: {load.sustained:g} messages/s sustained, bursts of +{load.burst:g}/s for "
        f"{load.burst_seconds} s; {load.recipients} recipients each, fetched over {load.fetch_spread} s"
    )
    print(
        f"measured: {args.per_process:g} messages/s per worker process, log writer {args.writer:g} appends/s"
    )
    print(
        f"{'processes':>9} {'capacity msg/s':>14} {'bound by':>11} {'peak backlog':>12} "
        f"{'drained after':>13} {'peak wait':>9}"
    )
    for n in (int(x) for x in args.processes.split(",")):
        o = simulate(n, args.per_process, args.writer, load)
        drain = f"{o.drain_seconds} s" if o.drain_seconds is not None else "never"
        print(
            f"{o.processes:>9} {o.capacity:>14,.0f} {o.bound_by:>11} {o.peak_backlog:>12,.0f} "
            f"{drain:>13} {o.peak_wait:>8.1f}s"
        )
    size = args.entries * args.bytes_per_entry
    print(
        f"storage: {args.entries:.0e} entries x {args.bytes_per_entry:,.0f} B = {size / 1e9:,.0f} GB "
        f"in the database (before indexes' growth and WAL)"
    )


if __name__ == "__main__":
    main()
