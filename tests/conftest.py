"""Shared fixtures: the default policy and device keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from liaison.crypto.policy import Policy, parse_policy

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = ROOT / "service" / "default_policy.toml"


@pytest.fixture(scope="session")
def policy() -> Policy:
    return parse_policy(DEFAULT_POLICY.read_bytes())
