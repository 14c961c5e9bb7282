"""What each `liaison-server` operator command costs as a fresh process: CPU seconds (user +
system, the kernel's own accounting of the finished child), wall seconds and peak memory.

Run: .venv/bin/python bench/server_cli.py [--runs 10] [--vs OTHER/.venv/bin/liaison-server]
                                          [--postgres URL]

It starts this checkout's `liaison-server run` (TLS, a fresh data directory; SQLite, or a
fresh database created on the PostgreSQL server of --postgres and dropped after), then
times, each as a fresh process exactly like the console script:

    healthcheck, healthcheck --live, --help, config, log-key

The image's HEALTHCHECK runs `healthcheck` every 15 s in every replica, so its CPU is paid
all day: the last column is that cost as a share of one core. `--vs BIN` also times another
`liaison-server` (e.g. an older checkout's, `git worktree add /tmp/old REV` and its own venv)
against the same running server, in alternation (A B A B ...), so that both are measured in
the same minutes of a machine whose speed drifts. Python's bytecode is written and used
(PYTHONDONTWRITEBYTECODE unset), as in an installed image. Nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _server import BIN, create_pg, drop_pg, start_server, stop_server

COMMANDS: list[tuple[str, list[str]]] = [
    ("healthcheck", ["healthcheck"]),
    ("healthcheck --live", ["healthcheck", "--live"]),
    ("--help", ["--help"]),
    ("config", ["config"]),
    ("log-key", ["log-key"]),
]


def one_run(exe: str, args: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(CPU s, wall s, peak MiB) of one `exe ARGS`, which must exit 0: the child's own
    resource usage (wait4), not the sum over every child this bench has started."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([exe, *args], env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{exe} {' '.join(args)} exited {proc.returncode}: {err.read().decode()[-500:]}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command (after one warm-up)")
    parser.add_argument("--vs", help="another liaison-server executable, timed in alternation")
    parser.add_argument("--postgres", help="PostgreSQL server URL (postgresql+asyncpg://...)")
    opts = parser.parse_args()
    database = asyncio.run(create_pg(opts.postgres)) if opts.postgres else None
    try:
        run(opts, database)
    finally:
        if database is not None:
            asyncio.run(drop_pg(database))


def run(opts: argparse.Namespace, database: str | None) -> None:
    if database is not None:
        os.environ["LIAISON_DATABASE_URL"] = database  # init's, the server's and the commands'
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    exes = {"this": str(BIN / "liaison-server")}
    if opts.vs:
        exes["vs"] = opts.vs
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, init = start_server(Path(tmp))
        try:
            port = url.rsplit(":", 1)[1]
            env["LIAISON_DATA_DIR"] = init["data_dir"]
            kind = "PostgreSQL" if database else "SQLite"
            print(f"{kind}; load average {os.getloadavg()[0]:.2f}; {opts.runs} runs per command, medians")
            head = ("command", "binary", "cpu s", "wall s", "peak MiB", "core every 15 s")
            print("{:<20} {:<6} {:>7} {:>7} {:>9} {:>16}".format(*head))
            for name, args in COMMANDS:
                if name.startswith("healthcheck"):
                    args = [*args, "--port", port]
                results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in exes}
                for exe in exes.values():
                    one_run(exe, args, env)  # warm-up
                for _ in range(opts.runs):
                    for k, exe in exes.items():
                        results[k].append(one_run(exe, args, env))
                for k, rows in results.items():
                    cpu = statistics.median(r[0] for r in rows)
                    wall = statistics.median(r[1] for r in rows)
                    peak = statistics.median(r[2] for r in rows)
                    share = f"{cpu / 15:16.1%}" if name.startswith("healthcheck") else ""
                    print(f"{name:<20} {k:<6} {cpu:7.3f} {wall:7.3f} {peak:9.1f} {share}")
        finally:
            stop_server(proc)


if __name__ == "__main__":
    main()
