"""Shared fixtures: the default policy and device keys."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from liaison.crypto.policy import Policy, parse_policy

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = ROOT / "service" / "default_policy.toml"


@pytest.fixture(scope="session")
def policy() -> Policy:
    return parse_policy(DEFAULT_POLICY.read_bytes())


def pytest_collection_finish(session: pytest.Session) -> None:
    """The server's garbage-collector settings (`service.ops.cli.tune_gc`) in each test
    process once its tests are collected: what is loaded by then lives as long as the process
    and leaves the collector's scans, and the youngest generation is collected every 10,000
    allocations instead of 700. Measured (farm-bench, 3 alternated pairs, 4 service test
    files at 3 workers, 2026-12-02): CPU -10% (A/B 0.90), wall -9%, peak memory +5%."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 50)
