"""The writer keeps who may receive what (devices, principals, channels, members) from batch to
batch. These tests change that state through a *second* service on the same database, as
another replica or process would, and show the first one sees each change at once."""

from __future__ import annotations

import pytest

from liaison.service import writer as writer_module
from liaison.service.writer import CacheSlot, Tx
from tests.service.harness import OPS, World, another_service, assert_problem, coalition

LABEL = "SECRET//AIRDEF//REL TO UKR, USA"


async def test_a_device_revoked_elsewhere_is_refused_at_once(world: World) -> None:
    c = await coalition(world)
    async with another_service(world) as other:
        other_root = other.root
        r = await c.usa.send(OPS, LABEL, to=["ukr-analyst"])
        assert r.status_code == 201, r.text  # this service now holds usa's device state
        env = await c.usa.envelope(OPS, LABEL, to=["ukr-analyst"])
        r = await other_root.post(f"/v1/admin/devices/{c.usa.id}/revoke")
        assert r.status_code == 200, r.text
        assert_problem(await c.usa.submit(env, to=["ukr-analyst"]), "device-revoked")


async def test_a_clearance_lowered_elsewhere_changes_who_may_receive(world: World) -> None:
    c = await coalition(world)
    async with another_service(world) as other:
        other_root = other.root
        envs = [await c.usa.envelope(OPS, LABEL, to=["ukr-analyst"]) for _ in range(2)]
        r = await c.usa.submit(envs[0], to=["ukr-analyst"])
        assert r.status_code == 201, r.text  # ukr is eligible, and this service knows it
        r = await other_root.request(
            "PATCH", "/v1/admin/principals/ukr-analyst", {"clearance": "CONFIDENTIAL"}
        )
        assert r.status_code == 200, r.text
        body = assert_problem(await c.usa.submit(envs[1], to=["ukr-analyst"]), "ineligible-recipient")
        assert "ukr-analyst" in body["detail"]


async def test_a_member_removed_elsewhere_can_no_longer_send(world: World) -> None:
    c = await coalition(world)
    async with another_service(world) as other:
        other_root = other.root
        r = await c.ukr.send(OPS, LABEL, to=["usa-analyst"])
        assert r.status_code == 201, r.text
        env = await c.ukr.envelope(OPS, LABEL, to=["usa-analyst"])
        r = await other_root.request(
            "PUT", f"/v1/admin/channels/{OPS}/members", {"principals": ["usa-analyst", "fra-analyst"]}
        )
        assert r.status_code == 200, r.text
        assert_problem(await c.ukr.submit(env, to=["usa-analyst"]), "not-member")


PROBE: CacheSlot[int] = CacheSlot("probe")


def put(tx: Tx) -> None:
    """A job that leaves a value in the writer's cache."""
    tx.cache.put(PROBE, "key", 1)


def seen(tx: Tx) -> bool:
    """A job that says whether the cache still holds `put`'s value."""
    return tx.cache.get(PROBE, "key") == 1


async def test_the_cache_lasts_across_batches_up_to_its_bound(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = world.state.writer
    await writer.run(put, shares_cache=True)
    assert (await writer.run(seen, shares_cache=True)).value  # kept for the next batch
    monkeypatch.setattr(writer_module, "_CACHE_MAX", 0)
    assert not (await writer.run(seen, shares_cache=True)).value  # over the bound: emptied
    await writer.run(put, shares_cache=True)
    monkeypatch.setattr(writer_module, "_CACHE_MAX", 20_000)
    assert (await writer.run(seen, shares_cache=True)).value
    await writer.run(lambda tx: None)  # a job that may change anything empties it
    assert not (await writer.run(seen, shares_cache=True)).value


async def test_the_cache_outlives_other_processes_batches_that_change_nothing_it_holds(
    world: World,
) -> None:
    """Another process's messages (jobs that share the cache) leave this one's cache as it
    was; its job that may change anything (`shares_cache=False`) empties it here too."""
    writer = world.state.writer

    def entry(tx: Tx) -> int:
        return tx.audit("test.entry", "system")

    async with another_service(world) as other:
        await writer.run(put, shares_cache=True)
        await other.state.writer.run(entry, shares_cache=True)
        assert (await writer.run(seen, shares_cache=True)).value  # the log grew: cache kept
        await other.state.writer.run(entry)  # may have changed anything
        assert not (await writer.run(seen, shares_cache=True)).value
