"""Attachment throughput (MiB/s) and peak memory, against a plain HTTPS PUT/GET as the ceiling.

Run: .venv/bin/python bench/attachments.py [--sizes 1M,100M,2G] [--runs 1] [--keep] [--tmp DIR]
         [--stores file,s3] [--s3-url http://KEY:SECRET@127.0.0.1:18333] [--resume-size 2G]

With an S3 server (`--s3-url`, default $LIAISON_TEST_S3_URL, as `eval "$(bash
scripts/s3.sh start)"` sets it: a SeaweedFS on loopback), every size is measured on each store:
the filesystem store and the S3-compatible one (a bucket of the run's own), each with its own
liaison-server, the same ceiling beside both.

Starts `liaison-server run` as a subprocess (TLS on, its own dev certificate, SQLite, default
part size and body limit) on a fresh data directory, enrols a root, a USA sender and a UKR
reader through the library, and puts them on one channel at RESTRICTED//REL TO UKR, USA (the
default policy takes attachments of up to 4 GiB of ciphertext there). Beside it, as the
ceiling, a minimal FastAPI app on uvicorn (httptools, the same certificate and key, TLS 1.3
only, one process, the same gc settings) with `PUT /blob/{name}` streaming the request body to
a file (each piece written in a thread, fsync at the end, as the liaison store does) and
`GET /blob/{name}` streaming it back in 1 MiB pieces read in a thread (as the store does).

For each size, a random file is made once; then, each operation in a fresh child process
(this script with `--child`, which prints {seconds, max_rss_bytes}):

* upload: `await client.send(channel, label, b"...", attachments=[Attachment(path)])`:
  sealing, every part PUT, completion, the envelope submitted and its receipt verified;
* download: `await client.save_attachment(message_id, 1, directory)`: the message read and
  verified, the attachment downloaded, decrypted, checked and written (fsync'd);
* ceiling PUT / GET: httpx.AsyncClient (the library's version, HTTP/1.1, the same TLS
  verification) streaming the file up in 1 MiB pieces / down to a file (fsync'd).

Then, per store, a **resumed upload** of `--resume-size` (default: the largest size): the send
(with a journal, as `liaison send --attach` keeps one) is killed with SIGKILL once half the
file is stored, and the same send run again: it re-reads and re-seals the file and sends only
the parts the server lacks. Shown: when it was killed, how many parts the rerun found stored,
its MiB/s over the whole file and its peak memory; the message is then downloaded and checked.

The clock runs inside the child around the operation only: interpreter start, imports, the
profile's unlock (a passphrase KDF) and the TLS connection (one warm-up request each: `whoami`,
or GET /healthz for the ceiling) are before it. MiB/s is plaintext MiB over those seconds.
Client memory is the child's VmHWM from /proc/self/status (its whole life, the interpreter and
imports included; not ru_maxrss, which on Linux inherits the parent's peak through fork and
exec), with its VmRSS just before the clock shown as the baseline; server
memory is VmHWM of the liaison-server process from /proc (peak so far; reset with clear_refs
before each size, when the kernel allows it, to give that size's peak too) and its VmRSS after
each size. Nothing is asserted: figures from one run compare only with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import _server

LABEL = "RESTRICTED//REL TO UKR, USA"
PASSPHRASE = "correct horse battery staple"
SENDER, READER, CHANNEL = "usa-sender", "ukr-reader", "bench"
PIECE = 1024 * 1024
MiB = 1024 * 1024
_UNITS = {"": 1, "K": 1024, "M": MiB, "G": 1024 * MiB}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1M, 100M, 2G)")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def show_size(n: int) -> str:
    for unit, factor in (("G", 1024 * MiB), ("M", MiB), ("K", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}iB"
    return f"{n} B"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_status(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of a process, in bytes."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux clear_refs 5); False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _wait_ready(proc: subprocess.Popen[bytes], url: str, cert: str, log: Path, what: str) -> None:
    ctx = ssl.create_default_context(cafile=cert)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited:\n" + log.read_text()[-2000:])
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not become ready")


def start_server(
    base: Path, store_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    # Several runs of 2 GiB stay stored until the messages expire: no quota in the way.
    quota = {"LIAISON_ATTACHMENT_QUOTA_BYTES": str(1 << 40)}
    return _server.start_server(base, {**quota, **(store_env or {})})


def start_ceiling(base: Path, cert: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    key = str(Path(cert).parent / "key.pem")
    blobs = base / "ceiling-blobs"
    blobs.mkdir()
    log = base / "ceiling.log"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--ceiling-server", json.dumps([port, cert, key, str(blobs)])],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"https://localhost:{port}"
    _wait_ready(proc, f"{url}/healthz", cert, log, "the ceiling server")
    return proc, url


stop = _server.stop_server


async def set_up(url: str, init: dict[str, str], home: Path) -> None:
    """Root, the USA sender and the UKR reader enrolled, both on one channel."""
    from liaison.clients import AsyncClient, KeyStore, enrol

    # The profiles' passphrase KDF at its floor: unlocking is not what is measured.
    store = KeyStore(home, opslimit=1, memlimit=8192)
    cert = init["tls_cert"]
    await enrol(
        url, init["root_invitation"], principal="root", passphrase=PASSPHRASE, profile="root",
        store=store, ca_cert=cert,
    )  # fmt: skip
    async with AsyncClient.from_profile("root", PASSPHRASE, store=store) as root:
        for name, nation in ((SENDER, "USA"), (READER, "UKR")):
            await root.create_principal(name, name=name, nation=nation, clearance="RESTRICTED")
            invitation = (await root.enrolment_code(name))["invitation"]
            await enrol(
                url, invitation, principal=name, passphrase=PASSPHRASE, profile=name, store=store,
                ca_cert=cert,
            )  # fmt: skip
        await root.create_channel(CHANNEL, LABEL)
        await root.set_members(CHANNEL, [SENDER, READER])


def make_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(8 * MiB, left)
            f.write(os.urandom(n))
            left -= n


# --- the child: one operation, timed, in its own process ------------------------------------


def _read_pieces(path: str) -> tuple[int, Iterator[bytes]]:
    """A file's size and its content in 1 MiB pieces (the file opened now, closed at the end)."""
    f = open(path, "rb")  # noqa: SIM115 - closed by the generator
    size = os.fstat(f.fileno()).st_size

    def pieces() -> Iterator[bytes]:
        with f:
            while piece := f.read(PIECE):
                yield piece

    return size, pieces()


def _create(path: str) -> BinaryIO:
    return open(path, "wb")


async def _child(spec: dict[str, Any]) -> dict[str, Any]:
    op = spec["op"]
    out: dict[str, Any] = {}
    if op in ("upload", "download"):
        from liaison.clients import AsyncClient, Attachment, KeyStore

        store = KeyStore(Path(spec["home"]), opslimit=1, memlimit=8192)
        profile = SENDER if op == "upload" else READER
        async with AsyncClient.from_profile(profile, PASSPHRASE, store=store) as client:
            await client.whoami()  # the TLS connection, before the clock
            out["rss_before_bytes"] = _proc_status(os.getpid())["VmRSS"]
            start = time.perf_counter()
            if op == "upload":
                notices: list[str] = []

                def progress(name: str, done: int, total: int) -> None:
                    if spec.get("report"):  # the parent kills this child once it has seen enough
                        print(json.dumps({"done": done, "total": total}), flush=True)

                sent = await client.send(
                    CHANNEL,
                    LABEL,
                    b"bench attachment",
                    attachments=[Attachment(spec["path"])],
                    progress=progress,
                    journal=spec.get("journal"),
                    notice=notices.append,
                )
                out["message_id"] = sent.id
                out["notices"] = notices
            else:
                saved = await client.save_attachment(spec["message_id"], 1, spec["dir"])
                out["length"] = saved.length
            out["seconds"] = time.perf_counter() - start
    else:
        import httpx

        verify = ssl.create_default_context(cafile=spec["cert"])
        async with httpx.AsyncClient(
            base_url=spec["url"], verify=verify, timeout=httpx.Timeout(30.0, connect=10.0)
        ) as http:
            (await http.get("/healthz")).raise_for_status()  # the TLS connection, before the clock
            out["rss_before_bytes"] = _proc_status(os.getpid())["VmRSS"]
            # The file is read and written in the event loop, as the library's client does.
            start = time.perf_counter()
            if op == "put":
                size, file_pieces = _read_pieces(spec["path"])

                async def pieces() -> Any:
                    for piece in file_pieces:
                        yield piece

                r = await http.put(
                    f"/blob/{spec['name']}", content=pieces(), headers={"content-length": str(size)}
                )
                r.raise_for_status()
                out["length"] = r.json()["size"]
            else:
                length = 0
                with _create(spec["path"]) as f:
                    async with http.stream("GET", f"/blob/{spec['name']}") as r:
                        r.raise_for_status()
                        async for piece in r.aiter_bytes():
                            f.write(piece)
                            length += len(piece)
                    f.flush()
                    os.fsync(f.fileno())
                out["length"] = length
            out["seconds"] = time.perf_counter() - start
    # The peak of this process's own memory. Not ru_maxrss: on Linux it carries over the
    # parent's peak through fork and exec (the bench's own process, the library loaded).
    out["max_rss_bytes"] = _proc_status(os.getpid())["VmHWM"]
    out["ru_maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"{spec['op']} failed (exit {done.returncode}):\n{done.stderr.strip()}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --- the ceiling server ---------------------------------------------------------------------


def ceiling_server(port: int, cert: str, key: str, blobs: str) -> None:
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

    folder = Path(blobs)
    # Plain Starlette endpoints on a FastAPI app (they take the Request as it is: this module's
    # postponed annotations would hide a local `Request` from FastAPI's parameter parsing).
    app = FastAPI()

    def blob(request: Request) -> Path | None:
        name = request.path_params["name"]
        ok = re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}", name)
        return folder / name if ok else None

    async def healthz(request: Request) -> Response:
        return JSONResponse({})

    async def put(request: Request) -> Response:
        path = blob(request)
        if path is None:
            return PlainTextResponse("bad name", 400)
        f = await asyncio.to_thread(open, path, "wb")
        size = 0
        try:
            async for piece in request.stream():
                size += len(piece)
                await asyncio.to_thread(f.write, piece)
            await asyncio.to_thread(f.flush)
            await asyncio.to_thread(os.fsync, f.fileno())
        finally:
            await asyncio.to_thread(f.close)
        return JSONResponse({"size": size})

    async def get(request: Request) -> Response:
        path = blob(request)
        if path is None:
            return PlainTextResponse("bad name", 400)
        size = (await asyncio.to_thread(path.stat)).st_size

        async def pieces() -> Any:
            f = await asyncio.to_thread(open, path, "rb")
            try:
                while piece := await asyncio.to_thread(f.read, PIECE):
                    yield piece
            finally:
                await asyncio.to_thread(f.close)

        return StreamingResponse(
            pieces(), media_type="application/octet-stream", headers={"content-length": str(size)}
        )

    app.add_route("/healthz", healthz, methods=["GET"])
    app.add_route("/blob/{name}", put, methods=["PUT"])
    app.add_route("/blob/{name}", get, methods=["GET"])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http="httptools",
        log_config=None,
        access_log=False,
        lifespan="off",
        proxy_headers=False,
        ws="none",
        server_header=False,
        ssl_certfile=cert,
        ssl_keyfile=key,
        ssl_version=ssl.PROTOCOL_TLS_SERVER,
    )
    config.load()
    assert config.ssl is not None
    config.ssl.minimum_version = ssl.TLSVersion.TLSv1_3  # as liaison-server run
    from liaison.service.ops.collector import collect_less

    collect_less()  # as liaison-server run (tune_gc)
    uvicorn.Server(config).run()


# --- the measurement ------------------------------------------------------------------------


def mibps(size: int, seconds: float) -> float:
    return size / MiB / seconds


def measure_size(
    base: Path, size: int, run: int, server_pid: int, url: str, ceiling: tuple[str, str], cert: str
) -> dict[str, Any]:
    ceiling_url, ceiling_cert = ceiling
    path = base / "files" / f"random-{size}.bin"
    down = base / "downloads" / f"{size}-{run}"
    down.mkdir(parents=True)
    before = _proc_status(server_pid)["VmHWM"]  # the peak since the last reset (or start)
    reset = _reset_peak(server_pid)
    common = {"home": str(base / "home"), "cert": cert}
    up = run_child({**common, "op": "upload", "path": str(path)})
    dl = run_child({**common, "op": "download", "message_id": up["message_id"], "dir": str(down)})
    server = _proc_status(server_pid)
    if dl["length"] != size or (down / path.name).stat().st_size != size:
        raise RuntimeError(f"download of {show_size(size)}: {dl['length']} bytes")
    name = f"blob-{size}-{run}"
    put = run_child({"op": "put", "url": ceiling_url, "cert": ceiling_cert, "path": str(path), "name": name})
    get = run_child(
        {
            "op": "get",
            "url": ceiling_url,
            "cert": ceiling_cert,
            "path": str(down / "ceiling.bin"),
            "name": name,
        }
    )
    if put["length"] != size or get["length"] != size:
        raise RuntimeError(f"ceiling of {show_size(size)}: {put['length']} / {get['length']} bytes")
    # The big files go at once; the server's stored copy stays (the message is not expired).
    shutil.rmtree(down, ignore_errors=True)
    with contextlib.suppress(OSError):
        (base / "ceiling-blobs" / name).unlink()
    return {
        "size": size,
        "run": run,
        "up": mibps(size, up["seconds"]),
        "put": mibps(size, put["seconds"]),
        "down": mibps(size, dl["seconds"]),
        "get": mibps(size, get["seconds"]),
        "up_rss": up["max_rss_bytes"],
        "up_base": up["rss_before_bytes"],
        "down_base": dl["rss_before_bytes"],
        "down_rss": dl["max_rss_bytes"],
        "put_rss": put["max_rss_bytes"],
        "get_rss": get["max_rss_bytes"],
        "server_hwm_before": before,
        "server_hwm_size": server["VmHWM"] if reset else None,
        "server_rss": server["VmRSS"],
    }


def run_killed(spec: dict[str, Any], fraction: float) -> dict[str, Any]:
    """Run an upload child and SIGKILL it once it reports `fraction` of the file stored."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps({**spec, "report": True})],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    start = time.perf_counter()
    assert proc.stdout is not None
    at = 0.0
    for line in proc.stdout:
        with contextlib.suppress(ValueError, KeyError):
            got = json.loads(line)
            at = got["done"] / got["total"] if got["total"] else 1.0
        if at >= fraction:
            proc.kill()
            break
    proc.wait()
    if proc.returncode != -signal.SIGKILL:
        raise RuntimeError(f"the upload ended before it was killed (exit {proc.returncode})")
    return {"killed_at": at, "killed_after": time.perf_counter() - start}


def measure_resume(base: Path, size: int, cert: str) -> dict[str, Any]:
    """The send killed at half the file, then run again with its journal; then read back."""
    path = base / "files" / f"random-{size}.bin"
    common = {"home": str(base / "home"), "cert": cert, "path": str(path)}
    journal = base / "journal"
    killed = run_killed({**common, "op": "upload", "journal": str(journal)}, 0.5)
    resumed = run_child({**common, "op": "upload", "journal": str(journal)})
    stored = [re.search(r"(\d+) of (\d+) parts", n) for n in resumed["notices"]]
    found = next((m for m in stored if m), None)
    down = base / "downloads" / f"resumed-{size}"
    down.mkdir(parents=True)
    dl = run_child({**common, "op": "download", "message_id": resumed["message_id"], "dir": str(down)})
    if dl["length"] != size:
        raise RuntimeError(f"the resumed upload of {show_size(size)} read back {dl['length']} bytes")
    shutil.rmtree(down, ignore_errors=True)
    return {
        "size": size,
        "killed_at": killed["killed_at"],
        "killed_after": killed["killed_after"],
        "parts_stored": f"{found[1]} of {found[2]}" if found else "none found",
        "resume": mibps(size, resumed["seconds"]),
        "resume_seconds": resumed["seconds"],
        "resume_rss": resumed["max_rss_bytes"],
        "journal_left": sorted(p.name for p in journal.glob("*")) if journal.exists() else [],
    }


def s3_env(url: str, bucket: str) -> dict[str, str]:
    """The server's settings for the S3 store that `url` (http://KEY:SECRET@HOST:PORT) names."""
    from urllib.parse import unquote, urlsplit

    u = urlsplit(url)
    if not (u.username and u.password and u.hostname):
        raise SystemExit("--s3-url is http://KEY:SECRET@HOST:PORT")
    return {
        "LIAISON_BLOB_STORE": "s3",
        "LIAISON_S3_ENDPOINT": f"{u.scheme}://{u.hostname}:{u.port or 80}",
        "LIAISON_S3_BUCKET": bucket,
        "LIAISON_S3_ACCESS_KEY_ID": unquote(u.username),
        "LIAISON_S3_SECRET_ACCESS_KEY": unquote(u.password),
    }


@contextlib.contextmanager
def s3_bucket(env: dict[str, str]) -> Iterator[None]:
    """The run's own bucket, made now, emptied and removed at the end."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=env["LIAISON_S3_ENDPOINT"],
        aws_access_key_id=env["LIAISON_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=env["LIAISON_S3_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    bucket = env["LIAISON_S3_BUCKET"]
    client.create_bucket(Bucket=bucket)
    try:
        yield
    finally:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for up in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        for listed in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in listed.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=obj["Key"])
        client.delete_bucket(Bucket=bucket)


def table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'store':>5} {'size':>8} {'run':>6} | {'upload':>8} {'ceil PUT':>8} {'%':>4} | "
        f"{'download':>8} {'ceil GET':>8} {'%':>4} | {'client peak RSS up/down':>23} "
        f"{'(ceiling PUT/GET)':>17} | {'server HWM: size':>16} {'so far':>7} {'RSS after':>9}"
    )
    print(head)
    print("-" * len(head))

    def mb(n: float | None) -> str:
        return "n/a" if n is None else f"{n / MiB:.0f}M"

    for r in rows:
        print(
            f"{r['store']:>5} {show_size(r['size']):>8} {r['run']!s:>6} | {r['up']:8.1f} {r['put']:8.1f} "
            f"{100 * r['up'] / r['put']:3.0f}% | {r['down']:8.1f} {r['get']:8.1f} "
            f"{100 * r['down'] / r['get']:3.0f}% | {mb(r['up_rss']) + ' / ' + mb(r['down_rss']):>23} "
            f"{mb(r['put_rss']) + ' / ' + mb(r['get_rss']):>17} | {mb(r['server_hwm_size']):>16} "
            f"{mb(r['server_so_far']):>7} {mb(r['server_rss']):>9}"
        )


def median_rows(rows: list[dict[str, Any]], sizes: list[int], store: str) -> list[dict[str, Any]]:
    out = []
    for size in sizes:
        mine = [r for r in rows if r["size"] == size and r["store"] == store]
        med: dict[str, Any] = {"store": store, "size": size, "run": "median"}
        for key in mine[0]:
            if key in ("store", "size", "run"):
                continue
            values = [r[key] for r in mine if r[key] is not None]
            med[key] = statistics.median(values) if values else None
        out.append(med)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="1M,100M,2G",
        type=lambda s: [parse_size(x) for x in s.split(",") if x.strip()],
        help="file sizes, comma-separated (K, M, G: binary units)",
    )
    parser.add_argument("--runs", type=int, default=1, help="runs of every size (each shown, and the median)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--tmp", type=Path, default=None, help="where to make the temporary directory")
    parser.add_argument(
        "--stores",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip() in ("file", "s3")],
        default=None,
        help="file, s3 or both (default: both when an S3 URL is known)",
    )
    parser.add_argument(
        "--s3-url",
        default=os.environ.get("LIAISON_TEST_S3_URL"),
        help="the S3 server, http://KEY:SECRET@HOST:PORT (default: $LIAISON_TEST_S3_URL)",
    )
    parser.add_argument(
        "--resume-size", type=parse_size, default=None, help="the killed-and-resumed upload's size"
    )
    parser.add_argument(
        "--no-resume", dest="resume", action="store_false", help="skip the killed-and-resumed upload"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--ceiling-server", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(json.loads(args.child)))))
        return
    if args.ceiling_server:
        ceiling_server(*json.loads(args.ceiling_server))
        return

    stores: list[str] = args.stores or (["file", "s3"] if args.s3_url else ["file"])
    if "s3" in stores and not args.s3_url:
        raise SystemExit('--stores s3 needs --s3-url (or eval "$(bash scripts/s3.sh start)")')
    resume_size = args.resume_size or max(args.sizes)
    base = Path(tempfile.mkdtemp(prefix="liaison-bench-attachments-", dir=args.tmp))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        (base / "files").mkdir()
        for size in sorted({*args.sizes, resume_size}):
            make_file(base / "files" / f"random-{size}.bin", size)
        rows: list[dict[str, Any]] = []
        resumes: list[dict[str, Any]] = []
        ceiling_at = ("", "")
        ceiling: subprocess.Popen[bytes] | None = None
        for store in stores:
            where = base / store
            where.mkdir()
            (where / "files").symlink_to(base / "files")
            env = s3_env(args.s3_url, f"liaison-bench-{os.getpid()}") if store == "s3" else {}
            with s3_bucket(env) if env else contextlib.nullcontext():
                proc, url, init = start_server(where, env)
                procs.append(proc)
                cert = init["tls_cert"]
                asyncio.run(set_up(url, init, where / "home"))
                if ceiling is None:
                    ceiling, ceiling_url = start_ceiling(base, cert)
                    ceiling_at = (ceiling_url, cert)
                    procs.append(ceiling)
                    print(
                        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
                        f"Python {platform.python_version()} on {platform.machine()}, "
                        f"{platform.release()}; {LABEL}, 1 sender + 1 reader device, TLS 1.3, "
                        f"SQLite; stores: {', '.join(stores)} (s3: SeaweedFS on loopback)"
                    )
                    print(
                        "MiB/s of plaintext, in-child timing; % = liaison / ceiling (a plain HTTPS "
                        "PUT/GET through uvicorn+httptools+FastAPI to a file). Figures compare only "
                        "within this run.\n"
                    )
                (where / "ceiling-blobs").symlink_to(base / "ceiling-blobs")
                peak = 0
                for run in range(1, args.runs + 1):
                    for size in args.sizes:
                        row = measure_size(where, size, run, proc.pid, url, ceiling_at, cert)
                        row["store"] = store
                        rows.append(row)
                        peak = max(peak, row["server_hwm_before"], row["server_hwm_size"] or 0)
                        row["server_so_far"] = peak
                        print(
                            f"  {store}, run {run}, {show_size(size)}: upload {row['up']:.1f}, "
                            f"PUT {row['put']:.1f}, download {row['down']:.1f}, "
                            f"GET {row['get']:.1f} MiB/s",
                            flush=True,
                        )
                if args.resume:
                    _reset_peak(proc.pid)
                    res = measure_resume(where, resume_size, cert)
                    res["store"] = store
                    res["server_hwm"] = _proc_status(proc.pid)["VmHWM"]
                    resumes.append(res)
                    print(
                        f"  {store}, {show_size(resume_size)} killed at {100 * res['killed_at']:.0f}% "
                        f"then resumed: {res['resume']:.1f} MiB/s",
                        flush=True,
                    )
                stop(proc)
        print()
        medians = [m for st in stores for m in median_rows(rows, args.sizes, st)] if args.runs > 1 else []
        table(rows + medians)
        if resumes:
            print(
                f"\nResumed upload ({show_size(resume_size)}): the send killed (SIGKILL) once half "
                "the file was stored, then run again with its journal:"
            )
            print(
                f"{'store':>5} | {'killed at':>9} {'after':>7} | {'parts stored':>12} | "
                f"{'resume MiB/s':>12} {'seconds':>7} | {'client peak':>11} {'server HWM':>10}"
            )
            for r in resumes:
                print(
                    f"{r['store']:>5} | {100 * r['killed_at']:8.0f}% {r['killed_after']:6.1f}s | "
                    f"{r['parts_stored']:>12} | {r['resume']:12.1f} {r['resume_seconds']:7.1f} | "
                    f"{r['resume_rss'] / MiB:10.0f}M {r['server_hwm'] / MiB:9.0f}M"
                )
            print(
                "(resume MiB/s: the whole file over the rerun's time: it reads and seals every byte "
                "again, for the chunk tree and the SHA-256, and sends only the parts missing; "
                f"journal left behind after the rerun: {[r['journal_left'] for r in resumes]})"
            )
        base_up, base_down = max(r["up_base"] for r in rows), max(r["down_base"] for r in rows)
        assert ceiling is not None
        print(
            "\nserver HWM: 'size' = the liaison-server's peak RSS during that size's upload and "
            "download (VmHWM, reset by clear_refs before it), 'so far' = its peak since it started "
            f"(set-up included); ceiling server's VmHWM {_proc_status(ceiling.pid)['VmHWM'] / MiB:.0f}M "
            "(peak since start). Client peak RSS: the child process's VmHWM; before the clock "
            f"(imports, profile unlocked, connected) it held about {base_up / MiB:.0f}M "
            f"(sender) / {base_down / MiB:.0f}M (reader). The S3 server's own memory is not counted."
        )
    finally:
        for p in procs:
            stop(p)
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
