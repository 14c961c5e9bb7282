"""The `liaison` CLI's time per command, as an analyst feels it: cold and warm, with and without
the unlock agent.

Run: .venv/bin/python bench/cli.py [--runs 5] [--src DIR] [--no-cold]

It starts `liaison-server run` (this checkout's, TLS, SQLite, a fresh data directory), enrols
the root admin and two analysts through the CLI itself (profiles sealed at the key store's
real Argon2id cost), creates a channel and sends one message, then times, each as a fresh
process exactly like the console script:

    --help, --version, whoami, inbox, read ID, send (stdin, 40 bytes)

without the agent (passphrase from $LIAISON_PASSPHRASE: every command opens the profile) and,
when the CLI has `unlock`, with the agent (no $LIAISON_PASSPHRASE at all, so a command that
did not use the agent would fail rather than be timed).

* cold: the first run after the page cache of every file Python reads for the CLI (the
  standard library, site-packages, the project's sources and their bytecode) was dropped
  with posix_fadvise(DONTNEED): a first command after boot or after other work pushed them
  out. No root needed; other processes' cached pages are not touched.
* warm: the median (and the minimum) of --runs more runs straight after.

--src DIR times another checkout's client (e.g. `git archive 9c90a4f | tar -x -C DIR`): its
`clients/` and `crypto/` are put ahead of this checkout's on the import path; the server, the
Python and the libraries stay this checkout's. Nothing here asserts a target: it prints what
it measures (the machine's load average is printed with it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _server import wait_ready

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
PASSPHRASE = "bench cli correct horse battery staple"
LABEL = "SECRET//REL TO UKR, USA"
#: Exactly what the console script does (`liaison = liaison.clients.cli:main`).
LAUNCH = "import sys; from liaison.clients.cli import main; sys.argv[0] = 'liaison'; sys.exit(main())"


class Server:
    def __init__(self, tmp: Path) -> None:
        self.data = tmp / "data"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LIAISON_")}
        out = subprocess.run(
            [str(BIN / "liaison-server"), "init", "--data-dir", str(self.data), "--json"],
            env=self.env,
            check=True,
            capture_output=True,
        )
        self.init: dict[str, Any] = json.loads(out.stdout)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = tmp / "server.log"
        self.proc = subprocess.Popen(
            [str(BIN / "liaison-server"), "run", "--data-dir", str(self.data), "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )
        wait_ready(self.proc, self.port, self.init["tls_cert"], self.log, server_hostname="localhost")

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Cli:
    """Runs the CLI as a fresh process, with its own LIAISON_HOME."""

    def __init__(self, home: Path, src: Path | None, tmp: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LIAISON_")}
        run = tmp / "run"  # the agent's socket directory, removed with the rest
        run.mkdir(mode=0o700)
        self.env.update(LIAISON_HOME=str(home), LIAISON_PASSPHRASE=PASSPHRASE, XDG_RUNTIME_DIR=str(run))
        if src is not None:
            # liaison.clients and liaison.crypto from SRC: a namespace portion ahead of ours.
            overlay = tmp / "overlay" / "liaison"
            overlay.mkdir(parents=True)
            for pkg in ("clients", "crypto"):
                (overlay / pkg).symlink_to(src.resolve() / pkg)
            self.env["PYTHONPATH"] = str(overlay.parent)

    def __call__(
        self, *args: str, stdin: bytes = b"", agent_only: bool = False, check: bool = True
    ) -> tuple[float, subprocess.CompletedProcess[bytes]]:
        env = dict(self.env)
        if agent_only:
            del env["LIAISON_PASSPHRASE"]
        start = time.perf_counter()
        r = subprocess.run(
            [sys.executable, "-c", LAUNCH, *args],
            input=stdin,
            capture_output=True,
            env=env,
            timeout=300,
            check=False,
        )
        took = time.perf_counter() - start
        if check and r.returncode != 0:
            raise SystemExit(f"liaison {' '.join(args)}: exit {r.returncode}: {r.stderr.decode()[-800:]}")
        return took, r

    def json(self, *args: str) -> Any:
        return json.loads(self(*args)[1].stdout)


def _files(roots: list[Path]) -> Iterator[Path]:
    for root in roots:
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                if name.endswith((".py", ".pyc", ".so", ".pth")):
                    yield Path(dirpath) / name


def drop_page_cache(src: Path | None) -> int:
    """posix_fadvise(DONTNEED) on every file Python reads for the CLI; how many files."""
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"]), ROOT / "clients"]
    roots += [ROOT / "crypto"] + ([src / "clients", src / "crypto"] if src else [])
    n = 0
    for path in _files([r for r in roots if r.is_dir()]):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            n += 1
        finally:
            os.close(fd)
    return n


def setup(cli: Cli, server: Server) -> dict[str, str]:
    """Root, two analysts (USA sends, UKR reads), one channel, one message; all through the CLI."""
    cert = server.init["tls_cert"]
    cli("enrol", "--server", server.url, "--code", server.init["root_invitation"], "--ca-cert", cert,
        "--principal", "root", "--profile", "root")  # fmt: skip
    for pid, nation in (("usa-analyst", "USA"), ("ukr-analyst", "UKR")):
        cli("-p", "root", "admin", "principal", "create", pid, "--name", pid, "--nation", nation,
            "--clearance", "SECRET")  # fmt: skip
        invitation = cli.json("-p", "root", "--json", "admin", "enrol-code", pid)["invitation"]
        cli("enrol", "--server", server.url, "--code", invitation, "--ca-cert", cert, "--profile", pid,
            "--principal", pid)  # fmt: skip
    cli("-p", "root", "admin", "channel", "create", "ops", "--ceiling", LABEL)
    cli("-p", "root", "admin", "channel", "members", "ops", "usa-analyst", "ukr-analyst")
    send = ("-p", "usa-analyst", "--json", "send", "-c", "ops", "-l", LABEL)
    sent = json.loads(cli(*send, stdin=b"Convoy at checkpoint 4\n")[1].stdout)
    return {"message": sent["id"]}


def commands(message: str) -> list[tuple[str, list[str], bytes]]:
    text = b"Twelve tracks inbound, bearing 040.\n"
    return [
        ("help", ["--help"], b""),
        ("version", ["--version"], b""),
        ("whoami", ["-p", "ukr-analyst", "whoami"], b""),
        ("inbox", ["-p", "ukr-analyst", "inbox"], b""),
        ("read", ["-p", "ukr-analyst", "read", message], b""),
        ("send", ["-p", "usa-analyst", "send", "-c", "ops", "-l", LABEL], text),
    ]


def measure(
    cli: Cli, name: str, args: list[str], stdin: bytes, runs: int, cold: bool, src: Path | None, agent: bool
) -> tuple[float | None, list[float]] | None:
    if cold:
        drop_page_cache(src)
    first, r = cli(*args, stdin=stdin, agent_only=agent, check=False)
    if r.returncode != 0:
        if name == "version":
            return None  # a CLI without --version
        raise SystemExit(f"liaison {' '.join(args)}: exit {r.returncode}: {r.stderr.decode()[-800:]}")
    warm = [cli(*args, stdin=stdin, agent_only=agent)[0] for _ in range(runs)]
    return (first if cold else None), warm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="warm runs per command (default 5)")
    ap.add_argument("--src", type=Path, help="time this checkout's clients/ and crypto/ instead")
    ap.add_argument("--no-cold", action="store_true", help="skip dropping the page cache")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="liaison-bench-cli-"))
    server = Server(tmp)
    home = tmp / "home"
    cli = Cli(home, a.src, tmp)
    rows: list[tuple[str, str, float | None, list[float]]] = []
    has_agent = False
    try:
        scene = setup(cli, server)
        has_agent = cli("unlock", "--help", check=False)[1].returncode == 0
        for name, args, stdin in commands(scene["message"]):
            got = measure(cli, name, args, stdin, a.runs, not a.no_cold, a.src, agent=False)
            if got is not None:
                rows.append((name, "passphrase" if name not in ("help", "version") else "-", *got))
        if has_agent:
            for profile in ("usa-analyst", "ukr-analyst"):
                cli("-p", profile, "unlock")
            for name, args, stdin in commands(scene["message"])[2:]:
                got = measure(cli, name, args, stdin, a.runs, not a.no_cold, a.src, agent=True)
                assert got is not None
                rows.append((name, "agent", *got))
    finally:
        if has_agent:
            cli("lock", check=False)  # the agent of this bench's home, and only it
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"liaison CLI ({a.src or 'this checkout'}), load average {load:.2f}, {a.runs} warm runs")
    print(f"{'command':<10} {'keys':<11} {'cold s':>7} {'warm median s':>14} {'warm min s':>11}")
    for name, mode, first, warm in rows:
        cold_text = f"{first:7.3f}" if first is not None else f"{'-':>7}"
        print(f"{name:<10} {mode:<11} {cold_text} {statistics.median(warm):14.3f} {min(warm):11.3f}")


if __name__ == "__main__":
    main()
