"""Messages per second for one library client: `send` one message at a time, and `send_many`.

Run: .venv/bin/python bench/client.py [--messages 60] [--recipients 3] [--size 1024] [--concurrency 4]

Starts `liaison-server run` as a subprocess (TLS on, its own dev certificate, SQLite) on a fresh
data directory, enrols a root, a sender and `--recipients` recipient analysts through the
library itself, and puts them on one channel. Then one `AsyncClient` (the sender's profile)
sends `--messages` messages of `--size` bytes at SECRET//AIRDEF//REL TO UKR, USA (ML-KEM-768 +
X25519 to every recipient device and the sender's own, Ed25519 + ML-DSA-65 signatures), each
verified as the library verifies it (recipients' keys proven in the log, the receipt against a
checkpoint consistent with the one the profile saw):

* single: `await client.send(...)` in a loop, one message at a time;
* bulk: `await client.send_many(channel, label, payloads, concurrency=N)` (one recipients plan
  for all of them), when the library has it (the release before it does not: then only single
  runs).

It prints messages/s and HTTP requests per message (counted by the client's transport). The
server runs with its defaults except the per-device and enrolment rate limits, raised so that
they do not throttle the load: what is measured is the client. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import ssl
import tempfile
import time
from pathlib import Path

import httpx
from _server import start_server, stop_server

from liaison.clients import AsyncClient, KeyStore, enrol

LABEL = "SECRET//AIRDEF//REL TO UKR, USA"
PASSPHRASE = "correct horse battery staple"


class Counting(httpx.AsyncBaseTransport):
    """HTTPS to the server, counting the requests."""

    def __init__(self, cert: str) -> None:
        self.inner = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=cert))
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def set_up(url: str, init: dict[str, str], store: KeyStore, recipients: int) -> tuple[str, str]:
    """Root, a sender and `recipients` analysts enrolled, all on one channel."""
    cert = init["tls_cert"]
    await enrol(
        url, init["root_invitation"], principal="root", passphrase=PASSPHRASE, profile="root",
        store=store, ca_cert=cert,
    )  # fmt: skip
    sender = "usa-sender"
    names = [sender] + [f"ukr-reader-{i}" for i in range(recipients)]
    async with AsyncClient.from_profile("root", PASSPHRASE, store=store) as root:
        for name in names:
            nation = "USA" if name == sender else "UKR"
            await root.create_principal(
                name, name=name, nation=nation, clearance="SECRET", compartments=["AIRDEF"]
            )
            invitation = (await root.enrolment_code(name))["invitation"]
            await enrol(
                url, invitation, principal=name, passphrase=PASSPHRASE, profile=name, store=store,
                ca_cert=cert,
            )  # fmt: skip
        await root.create_channel("bench", LABEL)
        await root.set_members("bench", names)
    return sender, "bench"


async def measure(store: KeyStore, cert: str, sender: str, channel: str, args: argparse.Namespace) -> None:
    payloads = [os.urandom(args.size // 2).hex().encode()[: args.size] for _ in range(args.messages)]
    counting = Counting(cert)
    async with AsyncClient.from_profile(sender, PASSPHRASE, store=store, transport=counting) as client:
        await client.send(channel, LABEL, b"warm-up")  # policy, first checkpoint, connections
        modes = ["single"] + (["bulk"] if hasattr(client, "send_many") else [])
        for mode in modes:
            counting.requests = 0
            start = time.perf_counter()
            if mode == "single":
                for data in payloads:
                    await client.send(channel, LABEL, data)
            else:
                sent = await client.send_many(channel, LABEL, payloads, concurrency=args.concurrency)
                assert len(sent) == len(payloads)
            elapsed = time.perf_counter() - start
            print(
                f"{mode:>6}: {len(payloads) / elapsed:7.1f} messages/s  "
                f"({len(payloads)} messages in {elapsed:.2f} s, "
                f"{counting.requests / len(payloads):.2f} HTTP requests per message)"
            )
        if len(modes) == 1:
            print("  bulk: this library has no send_many")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=60)
    parser.add_argument("--recipients", type=int, default=3, help="recipient analysts besides the sender")
    parser.add_argument("--size", type=int, default=1024, help="bytes per message")
    parser.add_argument("--concurrency", type=int, default=4, help="send_many's submissions in flight")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="liaison-bench-client-"))
    proc, url, init = start_server(base)
    try:
        # The profiles' passphrase KDF at its floor: unlocking is not what is measured.
        store = KeyStore(base / "home", opslimit=1, memlimit=8192)
        sender, channel = await set_up(url, init, store, args.recipients)
        print(
            f"one AsyncClient, {args.size}-byte messages at {LABEL}, "
            f"{args.recipients + 1} recipient devices (the sender's own included), TLS, SQLite"
        )
        await measure(store, init["tls_cert"], sender, channel, args)
    finally:
        stop_server(proc)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
