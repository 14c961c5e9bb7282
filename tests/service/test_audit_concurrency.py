"""200 concurrent submits: consecutive indexes, batched signatures, receipts and consistency hold."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from sqlalchemy import select

from liaison.crypto import transparency
from liaison.crypto.labels import parse_label
from liaison.service.storage.models import Checkpoint
from tests import tlog_reference as ref
from tests.service.harness import world_on
from tests.service.test_audit_api import pair

N = 200
LABEL = "SECRET//AIRDEF//REL TO UKR, USA"


async def test_concurrent_submits(backend: str, tmp_path: Path) -> None:
    async with world_on(backend, tmp_path, audit_public=True) as world:
        usa, _ = await pair(world)
        key = world.state.log.verifier_key
        recipients = await usa.recipients("airdef", parse_label(LABEL, world.policy))
        envs = [
            await usa.envelope("airdef", LABEL, f"m{i}".encode(), recipients=recipients) for i in range(N)
        ]
        batches_before = world.state.writer.batches
        responses = await asyncio.gather(*(usa.submit(e) for e in envs))
        batches = world.state.writer.batches - batches_before

        assert all(r.status_code == 201 for r in responses), [r.text for r in responses][:3]
        receipts = [r.json() for r in responses]
        indexes = sorted(r["log_index"] for r in receipts)
        assert indexes == list(range(indexes[0], indexes[0] + N)), "gaps or repeats"

        # Each request also consumes its nonce through the writer; batching means far fewer
        # transactions, tree updates and signatures than requests.
        checkpoints: dict[int, bytes] = {}
        for env, r in zip(envs, receipts, strict=True):
            v = transparency.verify_message_receipt(r, env, key)
            cp = ref.open_checkpoint(r["checkpoint"].encode(), key)
            ref.verify_inclusion(
                ref.leaf(v.entry.data),
                v.index,
                cp.size,
                [base64.b64decode(h) for h in r["inclusion_proof"]],
                cp.root,
            )
            assert checkpoints.setdefault(cp.size, cp.root) == cp.root
        assert len(checkpoints) < N // 4, (len(checkpoints), batches)
        assert batches < N, batches

        # Consistency between every pair of checkpoints the log ever issued (these and the
        # set-up's), and from the empty tree.
        async with world.state.db.sessions() as s:
            stored = (await s.execute(select(Checkpoint.size))).scalars().all()
        for size in stored:
            r = await world.http.get(f"/v1/audit/checkpoint?size={size}")
            cp = ref.open_checkpoint(r.content, key)
            assert checkpoints.setdefault(size, cp.root) == cp.root
        sizes = sorted(checkpoints)
        assert len(sizes) > 10
        pairs = [(a, b) for i, a in enumerate([0, *sizes]) for b in sizes[i:] if a < b]

        async def check(a: int, b: int) -> None:
            r = await world.http.get(f"/v1/audit/proof/consistency?old={a}&new={b}")
            assert r.status_code == 200, r.text
            body = r.json()
            assert ref.open_checkpoint(body["checkpoint"].encode(), key).root == checkpoints[b]
            proof = [base64.b64decode(h) for h in body["consistency_proof"]]
            ref.verify_consistency(a, b, checkpoints.get(a, ref.mth([])), checkpoints[b], proof)

        for i in range(0, len(pairs), 50):
            await asyncio.gather(*(check(a, b) for a, b in pairs[i : i + 50]))
