"""The client's side of the verifiable directory (clients/_directory.py), without a server: a
small directory built here (real keys, real statements, a real map and log), opened and decided
on, then each proof or signature altered and refused with the reason it names.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from liaison.clients import _directory as d
from liaison.clients.errors import DirectoryInvalid, KeyStoreError
from liaison.crypto import merkle, note
from liaison.crypto._primitives import ed25519_sign
from liaison.crypto.anchors import parse_anchors
from liaison.crypto.encoding import b64encode, b64url_encode, jcs
from liaison.crypto.keys import DeviceKeys, generate_device
from liaison.crypto.labels import parse_label
from liaison.crypto.names import X25519
from liaison.crypto.policy import parse_policy
from liaison.crypto.statements import (
    SignedStatement,
    invitation_public,
    invitation_seed,
    invitation_statement,
    leaf_value,
    policy_statement,
    roots_statement,
    sign_statement,
)
from liaison.crypto.vmap import PersistentMap, map_key

POLICY = parse_policy((Path(__file__).parents[2] / "service" / "default_policy.toml").read_bytes())
ORIGIN = "liaison.example/audit"


def _keys(principal: str) -> DeviceKeys:
    return generate_device(principal, suite=X25519, mldsa65=False)


@dataclasses.dataclass
class World:
    """Root, a USA analyst with AIRDEF, a FRA analyst without; one channel with both."""

    root: DeviceKeys
    usa: DeviceKeys
    fra: DeviceKeys
    signed: dict[str, dict[str, Any]]  # record -> {"statement", "disclosures"}
    roots: SignedStatement
    log_signer: note.Signer
    log_key: note.Verifier

    def state(
        self, pid: str, nation: str, clearance: str, comps: tuple[str, ...], roles: tuple[str, ...]
    ) -> d.PrincipalState:
        return d.PrincipalState(nation, "person", clearance, comps, roles, True)

    def put_principal(self, pid: str, state: d.PrincipalState, current: d.Proven | None = None) -> None:
        self.signed[f"principal:{pid}"] = d.principal_change(self.root, ORIGIN, POLICY, current, pid, state)

    def put_device(self, keys: DeviceKeys, nation: str, *, inviter: DeviceKeys | None = None) -> None:
        code = d.new_code()
        invitation = None
        if inviter is not None:
            st = invitation_statement(
                ORIGIN,
                principal=keys.public.principal,
                nation=nation,
                key=invitation_public(code),
                expires=datetime.now(UTC) + timedelta(hours=1),
                anchors=bytes(32),
                signer=inviter.device_id,
            )
            invitation = sign_statement(inviter, st)
        signed = d.device_enrolment(keys, ORIGIN, nation, invitation, code)
        self.signed[f"device:{keys.device_id}"] = {"statement": signed.to_json()}

    def directory(
        self, *, disclose: dict[str, set[str]] | None = None, extra_log: int = 3
    ) -> tuple[dict[str, Any], note.Checkpoint]:
        """The `directory` member a server would send: every record with its map proof at a
        map head that is the last entry of a signed checkpoint."""
        items = {}
        for record, item in self.signed.items():
            st = SignedStatement.from_json(item["statement"]).statement
            items[map_key(st.nation, record)] = leaf_value(st.digest(), item.get("version", 1))
        tree = PersistentMap.from_items(items)
        head = {
            "v": 1,
            "type": "map.head",
            "time": "2026-12-01T00:00:00.000Z",
            "actor": "system",
            "version": 7,
            "root": b64url_encode(tree.root()),
        }
        entries = [
            jcs({"v": 1, "type": "x", "time": "2026-12-01T00:00:00.000Z", "actor": "system", "i": i})
            for i in range(extra_log)
        ]
        entries.append(jcs(head))
        leaves = [merkle.leaf_hash(e) for e in entries]
        cp = note.Checkpoint(ORIGIN, len(entries), merkle.root_from_leaf_hashes(leaves))
        text = note.sign_checkpoint(cp, self.log_signer).decode()
        records: dict[str, Any] = {}
        for record, item in self.signed.items():
            st = SignedStatement.from_json(item["statement"]).statement
            names = (disclose or {}).get(record, set(item.get("disclosures", {})))
            records[record] = {
                "statement": item["statement"],
                "version": item.get("version", 1),
                "proof": tree.prove(map_key(st.nation, record)).to_json(),
                "disclosures": {k: v for k, v in item.get("disclosures", {}).items() if k in names},
            }
        out = copy.deepcopy(
            {
                "checkpoint": text,
                "tree_size": len(entries),
                "map_head": {
                    "log_index": len(entries) - 1,
                    "entry": b64encode(entries[-1]),
                    "inclusion_proof": [
                        b64encode(h) for h in merkle.inclusion_proof(leaves, len(entries) - 1, len(entries))
                    ],
                },
                "records": records,
                "roots": [self.roots.to_json()],
            }
        )
        return out, cp


@pytest.fixture(scope="module")
def world() -> World:
    root, usa, fra = _keys("root"), _keys("usa"), _keys("fra")
    signer, verifier = note.generate_signer_key(ORIGIN)
    roots = sign_statement(
        root, roots_statement(ORIGIN, devices=[root.device_id], seq=1, prev=None, signer=root.device_id)
    )
    w = World(root, usa, fra, {}, roots, note.parse_signer_key(signer), note.parse_verifier_key(verifier))
    w.signed["roots"] = {"statement": roots.to_json()}
    pol = sign_statement(root, policy_statement(ORIGIN, POLICY, seq=1, prev=None, signer=root.device_id))
    w.signed["policy"] = {"statement": pol.to_json()}
    w.put_principal(
        "root", d.PrincipalState("USA", "person", "TOP SECRET", POLICY.compartments, ("admin",), True)
    )
    w.put_principal("usa", d.PrincipalState("USA", "person", "SECRET", ("AIRDEF",), ("analyst",), True))
    w.put_principal("fra", d.PrincipalState("FRA", "person", "SECRET", (), ("analyst",), True))
    w.put_device(root, "USA")
    w.put_device(usa, "USA", inviter=root)
    w.put_device(fra, "FRA", inviter=root)
    ceiling = parse_label("SECRET//AIRDEF//REL TO FRA, USA", POLICY)
    w.signed["channel:ops"] = d.channel_change(root, ORIGIN, None, "ops", ceiling, ["fra", "usa"])
    return w


def _decide(
    world: World, directory: dict[str, Any], cp: note.Checkpoint, label: str, listed: dict[str, str]
) -> d.Decision:
    opened = d.open_directory(directory, cp)
    roots = d.verify_roots(opened, 1, world.roots.digest())
    auth = d.Authority(opened, roots)
    d.verify_policy(auth, POLICY, 1)
    return d.decide(auth, POLICY, parse_label(label, POLICY), "ops", listed, {})


AIRDEF = "SECRET//AIRDEF//REL TO FRA, USA"
PLAIN = "SECRET//REL TO FRA, USA"


def test_an_honest_directory_proves_the_readers(world: World) -> None:
    directory, cp = world.directory()
    decision = _decide(world, directory, cp, AIRDEF, {world.usa.device_id: "usa"})
    assert set(decision.eligible) == {world.usa.device_id}
    assert decision.eligible[world.usa.device_id][1] == world.usa.public
    assert decision.warnings == ()  # fra is proven out: holds:AIRDEF opened false
    assert decision.seqs["principal:usa"] == 1 and decision.seqs[f"device:{world.root.device_id}"] == 1
    both = _decide(world, directory, cp, PLAIN, {world.usa.device_id: "usa", world.fra.device_id: "fra"})
    assert set(both.eligible) == {world.usa.device_id, world.fra.device_id}


def test_a_listed_reader_the_directory_excludes_is_refused(world: World) -> None:
    directory, cp = world.directory()
    with pytest.raises(DirectoryInvalid, match=r"fra .*compartment") as caught:
        _decide(world, directory, cp, AIRDEF, {world.usa.device_id: "usa", world.fra.device_id: "fra"})
    assert caught.value.why == "ineligible" and caught.value.reason == "directory-invalid"
    # The device said to be another principal's.
    with pytest.raises(DirectoryInvalid, match="shows it is fra's"):
        _decide(world, directory, cp, PLAIN, {world.fra.device_id: "usa"})
    # Above the channel's ceiling.
    with pytest.raises(DirectoryInvalid, match="ceiling"):
        _decide(world, directory, cp, "TOP SECRET//REL TO USA", {world.usa.device_id: "usa"})


def test_an_unopened_predicate_proves_nothing(world: World) -> None:
    directory, cp = world.directory(disclose={"principal:usa": {"active", "person", "level>=SECRET"}})
    with pytest.raises(DirectoryInvalid, match="not-disclosed"):
        _decide(world, directory, cp, AIRDEF, {world.usa.device_id: "usa"})
    # And a member left out without a predicate opened false is a warning, not a proof.
    directory, cp = world.directory(disclose={"principal:fra": {"active", "person", "level>=SECRET"}})
    decision = _decide(world, directory, cp, AIRDEF, {world.usa.device_id: "usa"})
    assert decision.warnings == ("fra is left out (not listed) without proof",)
    # A member proven eligible whose device the server does not list: a warning too.
    directory, cp = world.directory()
    decision = _decide(world, directory, cp, PLAIN, {world.usa.device_id: "usa"})
    assert decision.warnings == ("fra is proven eligible, but the server lists no device of it (not listed)",)


def test_a_disclosure_that_does_not_open_is_refused(world: World) -> None:
    directory, cp = world.directory()
    opening = directory["records"]["principal:fra"]["disclosures"]["holds:AIRDEF"]
    opening["value"] = True
    with pytest.raises(DirectoryInvalid) as caught:
        d.open_directory(directory, cp)
    assert caught.value.why == "disclosure"


def test_map_proofs_are_checked(world: World) -> None:
    directory, cp = world.directory()
    proof = directory["records"]["principal:usa"]["proof"]
    proof["siblings"][0] = b64url_encode(bytes([7]) * 32)
    with pytest.raises(DirectoryInvalid) as caught:
        d.open_directory(directory, cp)
    assert caught.value.why == "map-proof"
    # A statement filed under another record.
    directory, cp = world.directory()
    directory["records"]["principal:usa"] = directory["records"]["principal:fra"]
    with pytest.raises(DirectoryInvalid, match="one of principal:fra"):
        d.open_directory(directory, cp)
    # A statement without its proof.
    directory, cp = world.directory()
    directory["records"]["principal:usa"]["proof"] = None
    with pytest.raises(DirectoryInvalid, match="without its map proof"):
        d.open_directory(directory, cp)


def test_an_older_statement_is_not_the_one_the_map_holds(world: World) -> None:
    w = copy.deepcopy(world)
    old = copy.deepcopy(w.signed["principal:usa"])
    w.put_principal(
        "usa",
        d.PrincipalState("USA", "person", "CONFIDENTIAL", (), ("analyst",), True),
        d.Proven("principal:usa", SignedStatement.from_json(old["statement"])),
    )
    directory, cp = w.directory()
    directory["records"]["principal:usa"].update(
        {"statement": old["statement"], "disclosures": old["disclosures"]}
    )
    with pytest.raises(DirectoryInvalid, match="not the newest statement") as caught:
        d.open_directory(directory, cp)
    assert caught.value.why == "map-proof"


def test_the_map_head_must_be_the_checkpoints_last_entry(world: World) -> None:
    directory, cp = world.directory()
    directory["map_head"]["log_index"] -= 1
    with pytest.raises(DirectoryInvalid, match="not entry") as caught:
        d.open_directory(directory, cp)
    assert caught.value.why == "map-head"
    directory, cp = world.directory()
    head = json.loads(base64.b64decode(directory["map_head"]["entry"]))
    head["type"] = "map.heads"
    directory["map_head"]["entry"] = b64encode(jcs(head))
    with pytest.raises(DirectoryInvalid, match="not proven") as caught:
        d.open_directory(directory, cp)
    directory, cp = world.directory()
    directory["tree_size"] += 1
    with pytest.raises(DirectoryInvalid, match="tree size"):
        d.open_directory(directory, cp)
    with pytest.raises(DirectoryInvalid, match="no directory proofs"):
        d.open_directory(None, cp)


def test_authority_is_checked_up_to_the_roots(world: World) -> None:
    # A forged invitation signature on a device statement (its digest, hence its map leaf, does
    # not cover signatures: the map cannot catch it, the authority check does).
    directory, cp = world.directory()
    rec = directory["records"][f"device:{world.usa.device_id}"]
    st = SignedStatement.from_json(rec["statement"]).statement
    rec["statement"]["invitation_signature"] = b64url_encode(ed25519_sign(bytes(32), st.invitation_message()))
    with pytest.raises(DirectoryInvalid, match="invitation-signature") as caught:
        _decide(world, directory, cp, AIRDEF, {world.usa.device_id: "usa"})
    assert caught.value.why == "authority"
    # A channel signed by a device that is neither a root device nor an admin.
    w = copy.deepcopy(world)
    ceiling = parse_label("SECRET//REL TO FRA, USA", POLICY)
    w.signed["channel:ops"] = d.channel_change(w.usa, ORIGIN, None, "ops", ceiling, ["fra", "usa"])
    directory, cp = w.directory()
    with pytest.raises(DirectoryInvalid, match="not-admin"):
        _decide(w, directory, cp, PLAIN, {w.usa.device_id: "usa"})
    # The signer's own device record is missing: nothing is proven about it.
    directory, cp = world.directory()
    del directory["records"][f"device:{world.root.device_id}"]
    with pytest.raises(DirectoryInvalid, match=f"device:{world.root.device_id}") as caught:
        _decide(world, directory, cp, AIRDEF, {world.usa.device_id: "usa"})
    assert caught.value.why == "unproven"


def test_the_roots_chain_and_the_policy_are_anchored(world: World) -> None:
    directory, cp = world.directory()
    opened = d.open_directory(directory, cp)
    with pytest.raises(DirectoryInvalid) as caught:
        d.verify_roots(opened, 1, bytes(32))  # another anchor
    assert caught.value.why == "roots"
    with pytest.raises(DirectoryInvalid, match="roots"):
        d.verify_roots(opened, 2, world.roots.digest())  # a newer anchor than the chain shown
    roots = d.verify_roots(opened, 1, world.roots.digest())
    auth = d.Authority(opened, roots)
    with pytest.raises(DirectoryInvalid, match="below version 2") as caught:
        d.verify_policy(auth, POLICY, 2)
    other = dataclasses.replace(POLICY, sha256="0" * 64)
    with pytest.raises(DirectoryInvalid, match="not the one the root signed"):
        d.verify_policy(auth, other, 1)


def test_memory_refuses_rollbacks(tmp_path: Path) -> None:
    mem = d.DirectoryMemory(tmp_path / "directory.json", "log+key")
    head = d.MapHead(10, 3, bytes(32))
    mem.check({"principal:a": 1}, head)
    mem.remember({"principal:a": 2, "channel:c": 1}, head)
    assert mem.known_seq("principal:a") == 2 and mem.known_seq("principal:b") == 0
    with pytest.raises(DirectoryInvalid, match="seq 2") as caught:
        mem.check({"principal:a": 1}, head)
    assert caught.value.why == "rollback"
    mem.check({"principal:a": 3}, d.MapHead(12, 4, bytes(32)))
    with pytest.raises(DirectoryInvalid, match="map is at version 2"):
        mem.check({}, d.MapHead(12, 2, bytes(32)))  # a larger log with an older map
    with pytest.raises(DirectoryInvalid, match="map is at version 5"):
        mem.check({}, d.MapHead(9, 5, bytes(32)))  # a smaller log with a newer map
    mem.remember({"principal:a": 1}, d.MapHead(9, 2, bytes(32)))  # never lowers
    assert mem.known_seq("principal:a") == 2
    with pytest.raises(KeyStoreError, match="another log key"):
        d.DirectoryMemory(tmp_path / "directory.json", "other+key").known_seq("x")


def test_memory_anchors_only_move_forward(tmp_path: Path, world: World) -> None:
    mem = d.DirectoryMemory(tmp_path / "directory.json", "log+key")
    assert mem.roots() is None and mem.policy_floor() == 1
    anchors = parse_anchors(
        {
            "v": 1,
            "log_key": world.log_key.key_string,
            "roots": {"seq": 2, "digest": b64url_encode(bytes(32))},
            "policy": {"version": 3},
            "witnesses": {"k": 0, "keys": [], "max_age": None},
        }
    )
    mem.anchor(anchors)
    assert mem.roots() == (2, bytes(32)) and mem.policy_floor() == 3
    mem.advance(world.roots.statement, 1)  # seq 1 < 2: the anchor stays; the floor stays
    assert mem.roots() == (2, bytes(32)) and mem.policy_floor() == 3


def test_principal_state_reads_back_what_was_signed(world: World) -> None:
    rec = world.signed["principal:usa"]
    proven = d.Proven(
        "principal:usa",
        SignedStatement.from_json(rec["statement"]),
        {k: v["value"] for k, v in rec["disclosures"].items()},
    )
    state = d.principal_state(POLICY, proven)
    assert state == d.PrincipalState("USA", "person", "SECRET", ("AIRDEF",), ("analyst",), True)
    partial = dataclasses.replace(proven, facts={"active": True})
    assert d.principal_state(POLICY, partial) is None


def test_new_codes_are_codes() -> None:
    codes = {d.new_code() for _ in range(50)}
    assert len(codes) == 50
    for code in codes:
        assert len(code) == 23 and code.count("-") == 3
        invitation_seed(code)  # a code the invitation key derives from


def test_a_device_newer_than_an_older_map_is_left_out_not_refused(world: World) -> None:
    directory, cp = world.directory()
    newcomer = _keys("usa")
    listed = {world.usa.device_id: "usa", newcomer.device_id: "usa"}
    opened = d.open_directory(directory, cp)
    auth = d.Authority(opened, d.verify_roots(opened, 1, world.roots.digest()))
    label = parse_label(AIRDEF, POLICY)
    with pytest.raises(DirectoryInvalid, match=newcomer.device_id) as caught:
        d.decide(auth, POLICY, label, "ops", listed, {})  # at the newest checkpoint: a lie
    assert caught.value.why == "unproven"
    decision = d.decide(auth, POLICY, label, "ops", listed, {}, older_map=True)  # at a witnessed one
    assert set(decision.eligible) == {world.usa.device_id}
    size = cp.size
    assert decision.warnings == (
        f"device {newcomer.device_id} of usa is not in the map of the witnessed checkpoint of size {size}: "
        "left out",
    )
