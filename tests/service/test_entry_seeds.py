"""Entry seeds (protocol 10.1) come from one CSPRNG read per 128 entries: each is used once,
and a forked process never reuses the seeds its parent had drawn but not used (else two
entries, one per process, would share every salt and so every equal value's commitment)."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from liaison.crypto.entry_v2 import SEED_LEN
from liaison.service.tlog import entries


def test_seeds_are_never_reused_within_a_process() -> None:
    seeds = [entries._SEEDS.take() for _ in range(1000)]
    assert len(set(seeds)) == 1000 and {len(s) for s in seeds} == {SEED_LEN}


def _child_seed(queue: multiprocessing.Queue[bytes]) -> None:
    queue.put(entries._SEEDS.take())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_draws_its_own_seeds() -> None:
    entries._SEEDS.take()  # the parent's pool now holds unused seeds
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[bytes] = ctx.Queue()
    child = ctx.Process(target=_child_seed, args=(queue,))
    child.start()
    theirs = queue.get(timeout=30)
    child.join(timeout=30)
    ours = entries._SEEDS.take()  # the next unused seed the child inherited
    assert theirs != ours
