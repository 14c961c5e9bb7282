"""Clean shutdown (issue 11, item 7): SIGTERM or SIGINT to a real `liaison-server run` with live
inbox streams open ends the streams and the process without an error or a traceback logged."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from liaison.crypto.keys import generate_device
from liaison.service.ops.cli import app
from tests.service.harness import (
    create_pg_database,
    drop_pg_database,
    enrol_device_sync,
    free_port,
    server_env,
    signed,
    start_server,
    tls_context,
    wait_ready,
)


def _stream_lines(base: str, cert: str, keys: object, lines: list[str], opened: threading.Event) -> None:
    with httpx.Client(verify=tls_context(cert), timeout=30) as http:
        request = signed(http, keys, "GET", base + "/v1/inbox/stream")  # type: ignore[arg-type]
        try:
            r = http.send(request, stream=True)
            try:
                lines.append(f"status {r.status_code}")
                for line in r.iter_lines():
                    lines.append(line)
                    opened.set()
            finally:
                r.close()
        except httpx.HTTPError as e:
            lines.append(f"error {type(e).__name__}")
        finally:
            opened.set()


@pytest.fixture
def database(backend: str) -> Iterator[str | None]:
    if backend == "sqlite":
        yield None
        return
    url = asyncio.run(create_pg_database())
    try:
        yield url
    finally:
        asyncio.run(drop_pg_database(url))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_with_live_streams_logs_no_error(
    tmp_path: Path, sig: signal.Signals, database: str | None
) -> None:
    data = tmp_path / "data"
    env = {k: None for k in os.environ if k.startswith("LIAISON_")}
    result = CliRunner().invoke(
        app, ["init", "--data-dir", str(data), "--json"], env={**env, "LIAISON_DATABASE_URL": database}
    )
    assert result.exit_code == 0, result.output
    init = json.loads(result.stdout)
    cert = init["tls_cert"]
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    proc = start_server(data, port, server_env())  # the database init recorded (PostgreSQL: LISTEN too)
    try:
        wait_ready(proc, base, cert)
        keys = generate_device("root")
        r = enrol_device_sync(base, init["root_enrolment_code"], keys, cert)
        assert r.status_code == 201, r.text
        streams = []
        for _ in range(3):
            lines: list[str] = []
            opened = threading.Event()
            t = threading.Thread(target=_stream_lines, args=(base, cert, keys, lines, opened), daemon=True)
            t.start()
            assert opened.wait(15), "the stream did not open"
            assert lines[:2] == ["status 200", ": connected"], lines
            streams.append((t, lines))
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise AssertionError("the server did not stop with streams open") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = err.decode(errors="replace")
    # uvicorn re-raises the signal it handled; SIGINT then ends `main` as Ctrl-C does (130).
    assert proc.returncode in (0, -sig, 128 + sig), (proc.returncode, text[-3000:])
    assert "Traceback" not in text, text[-3000:]
    assert '"level": "error"' not in text and '"level": "critical"' not in text, text[-3000:]
    for t, lines in streams:
        t.join(10)
        assert not t.is_alive()
        # Each stream ended with its last event saying why (the client reconnects later).
        assert lines[-3:] == ["event: closed", 'data: {"reason": "server-stopping"}', ""], lines
