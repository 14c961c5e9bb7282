"""Shared fixtures: the default policy and device keys."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from liaison.crypto.policy import Policy, parse_policy
from liaison.service.ops.collector import collect_less

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = ROOT / "service" / "default_policy.toml"


@pytest.fixture(scope="session")
def policy() -> Policy:
    return parse_policy(DEFAULT_POLICY.read_bytes())


def pytest_collection_finish(session: pytest.Session) -> None:
    """The server's garbage-collector settings (`service.ops.collector.collect_less`) in each
    test process once its tests are collected, after one collection of what collecting left.
    Measured (farm-bench, 3 alternated pairs, 4 service test files at 3 workers, 2026-12-02):
    CPU -10% (A/B 0.90), wall -9%, peak memory +5%."""
    gc.collect()
    collect_less()
