"""bench/coalition.py's model: the arithmetic docs/scaling.md's sizing rests on."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _model() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "coalition.py"
    spec = importlib.util.spec_from_file_location("coalition_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


coalition = _model()
LOAD = coalition.Load(50.0, 2000.0, 60, 5, 300, 16)


def test_enough_processes_take_a_burst_without_a_backlog() -> None:
    out = coalition.simulate(16, 300.0, 1e9, LOAD)
    assert out.peak_backlog == 0 and out.drain_seconds == 0 and out.bound_by == "processes"


def test_one_process_backlog_is_what_the_burst_brings_beyond_it() -> None:
    out = coalition.simulate(1, 300.0, 1e9, LOAD)
    assert out.peak_backlog == pytest.approx((2050 - 300) * 60)
    # Then it drains at 300 - 50 = 250/s.
    assert out.drain_seconds == pytest.approx(1750 * 60 / 250, abs=1)


def test_the_log_writer_bounds_many_processes() -> None:
    out = coalition.simulate(64, 300.0, 6000.0, LOAD)
    # Each message costs 1 + 5 entries, plus a map.head per 16 requests.
    assert out.bound_by == "log writer"
    assert out.capacity == pytest.approx(6000 / (6 * (1 + 1 / 16)))


def test_entries_per_second_counts_a_map_head_per_batch() -> None:
    assert coalition.entries_per_second(160.0, 0.0, 16) == pytest.approx(170.0)
