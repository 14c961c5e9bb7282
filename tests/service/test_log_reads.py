"""The log's fast read and write paths give what the plain ones gave, on both databases: proofs
carry their checkpoint with every stored cosignature (one query now reads both), hashes come
back from the shape-named query exactly as stored, and rows written by binary COPY on
PostgreSQL read back as written."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from liaison.crypto import merkle, note
from liaison.service.problems import Problem
from liaison.service.storage.db import utcnow
from liaison.service.storage.logstore import LogReader
from liaison.service.storage.models import Cosignature
from liaison.service.tlog import entries
from liaison.service.usecases import audit
from liaison.service.writer import Tx
from tests.service.harness import World, world_on


async def _grow(world: World, n: int) -> None:
    def job(tx: Tx) -> None:
        for i in range(n):
            tx.audit("test.filler", "system", f"s{i % 3}" if i % 2 else None, seq=i, note='\u00e9"\\')

    await world.state.writer.run(job, shares_cache=True, savepoint=False)


async def test_proofs_and_checkpoints_agree(backend: str, tmp_path: Path) -> None:
    async with world_on(backend, tmp_path) as world:
        state = world.state
        await _grow(world, 1300)
        async with state.db.sessions() as s:
            cp = await LogReader(s).latest_checkpoint()
            oldest = (await LogReader(s).all_checkpoints())[0].size
        assert cp is not None and oldest < cp.size
        # Two witnesses cosign the newest checkpoint, stored out of name order.
        checkpoint = note.Checkpoint(state.settings.origin, cp.size, cp.root_hash)
        lines = {}
        async with state.db.sessions() as s:
            for name in ("witness.zulu.example", "witness.alpha.example"):
                skey, _ = note.generate_signer_key(name, sig_type=note.SIG_COSIGNATURE_V1)
                cosigned = note.cosign_checkpoint(checkpoint, note.parse_signer_key(skey), int(time.time()))
                lines[name] = cosigned
                s.add(Cosignature(size=cp.size, witness=name, line=cosigned, created_at=utcnow()))
            await s.commit()

        for size in (cp.size, oldest):  # with two cosignatures, and a checkpoint with none
            want = await audit.signed_checkpoint(state, size)
            for index in (0, size // 2, size - 1):
                body = await audit.inclusion(state, index, size)
                assert body["checkpoint"] == want and body["size"] == size
                async with state.db.sessions() as s:
                    leaf = (await LogReader(s).hashes([(0, index)]))[(0, index)]
                    row = await LogReader(s).checkpoint_at(size)
                assert row is not None
                root = row.root_hash
                proof = [base64.b64decode(h) for h in body["inclusion_proof"]]
                merkle.verify_inclusion(leaf, index, size, proof, root)
            assert (await audit.consistency(state, min(3, size), size))["checkpoint"] == want
        text = await audit.signed_checkpoint(state, cp.size)
        assert text.index(lines["witness.alpha.example"].strip()) < text.index(
            lines["witness.zulu.example"].strip()
        )

        # A size without a checkpoint, and one beyond the log: the same problems as before.
        for size, detail in ((cp.size - 1, "no checkpoint was signed"), (cp.size + 5, "is beyond the log")):
            with pytest.raises(Problem) as e:
                await audit.inclusion(state, 0, size)
            assert detail in e.value.detail
        with pytest.raises(Problem):
            await audit.consistency(state, 1, cp.size + 5)


async def test_hashes_and_rows_read_back(backend: str, tmp_path: Path) -> None:
    async with world_on(backend, tmp_path) as world:
        state = world.state
        start = await world.log_size()
        await _grow(world, 2100)
        size = await world.log_size()
        async with state.db.sessions() as s:
            reader = LogReader(s)
            spans = {lv: (0, (size >> lv) - 1) for lv in range(12) if size >> lv}
            stored = await reader.hash_spans(spans)
            # Every stored hash, asked for in groups of many shapes (several levels, > 500 nodes).
            assert await reader.hashes(list(stored)) == stored
            assert await reader.hashes([(3, 7), (0, 5), (3, 7), (1, 0)]) == {
                n: stored[n] for n in [(3, 7), (0, 5), (1, 0)]
            }
            with pytest.raises(LookupError):
                await reader.hashes([(0, 0), (0, size)])
            # The tree is the entries' tree.
            rows = await reader.entry_rows(0, size, size)
            assert [i for i, *_ in rows] == list(range(size))
            leaves = [merkle.leaf_hash(d) for _, d, _, _ in rows]
            assert all(stored[(0, i)] == h for i, h in enumerate(leaves))
            cp = await reader.latest_checkpoint()
            assert cp is not None and cp.root_hash == merkle.root_from_leaf_hashes(leaves)
            # Columns and openings as written.
            mine = [r for r in rows if r[2] == "test.filler"]
            assert len(mine) == 2100 and all(r[3] == "system" for r in mine)
            first = mine[0][0]
            assert first >= start
            subjects = await reader.entry_range(first, size, actor="system", type_="test.filler")
            assert len(subjects) == 2100
            openings = await reader.openings(range(first, first + 2100))
            assert len(openings) == 2100
            for k, (idx, data, _, _) in enumerate(mine[:50]):
                seed, fields = openings[idx]
                view = entries.view(data, entries.Opening.from_row(seed, fields))
                assert view["seq"] == k and view["note"] == '\u00e9"\\' and view["actor"] == "system"
