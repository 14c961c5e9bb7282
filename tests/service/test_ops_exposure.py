"""What the API port shows besides the API (issue 10, item 17): Prometheus metrics only on their
own listener (`metrics_port`, loopback by default, off when unset), and the OpenAPI document
and its viewers only when the operator serves them (`api_docs`, off by default)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.service.conn_tools import running
from tests.service.harness import assert_problem, free_port, world_on

DOC_PATHS = ("/openapi.json", "/docs", "/redoc")


async def test_the_api_serves_no_metrics_and_no_docs_by_default(tmp_path: Path) -> None:
    async with world_on("sqlite", tmp_path, api_docs=False) as world:
        for path in ("/metrics", *DOC_PATHS):
            assert_problem(await world.http.get(path), "not-found")
        assert (await world.http.get("/healthz")).status_code == 200


async def test_docs_are_served_when_asked(tmp_path: Path) -> None:
    async with world_on("sqlite", tmp_path, api_docs=True) as world:
        r = await world.http.get("/openapi.json")
        assert r.status_code == 200 and "/v1/messages" in r.json()["paths"]
        assert "/metrics" not in r.json()["paths"]
        for path in ("/docs", "/redoc"):
            assert (await world.http.get(path)).status_code == 200
        assert_problem(await world.http.get("/metrics"), "not-found")


@pytest.mark.slow
def test_run_serves_metrics_on_their_own_loopback_listener(tmp_path: Path) -> None:
    port = free_port()
    with running(tmp_path, metrics_port=str(port)) as srv:
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert "liaison_write_batches_total" in r.text and "liaison_audit_log_size" in r.text
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 404
        # Not on the API port, nor the docs (a production `run` does not serve them).
        for path in ("/metrics", *DOC_PATHS):
            r = httpx.get(srv.base + path, verify=srv.ctx(), timeout=5)
            assert_problem(r, "not-found")
    listening = [line for line in srv.stderr.splitlines() if '"event": "listening"' in line]
    assert any(f'"address": "127.0.0.1:{port}"' in line and '"metrics"' in line for line in listening)


@pytest.mark.slow
def test_run_serves_no_metrics_listener_unless_asked_and_docs_when_asked(tmp_path: Path) -> None:
    with running(tmp_path, api_docs="true") as srv:
        r = httpx.get(srv.base + "/openapi.json", verify=srv.ctx(), timeout=5)
        assert r.status_code == 200 and r.json()["info"]["title"] == "Liaison"
        assert httpx.get(srv.base + "/docs", verify=srv.ctx(), timeout=5).status_code == 200
        assert_problem(httpx.get(srv.base + "/metrics", verify=srv.ctx(), timeout=5), "not-found")
    listening = [line for line in srv.stderr.splitlines() if '"event": "listening"' in line]
    assert len(listening) == 1 and '"api"' in listening[0]
