"""The verifiable directory's costs: proof size and client verification per recipient, map updates.

Run: .venv/bin/python bench/directory.py [--sizes 10,1000,100000] [--repeat 20]

For each map size it builds a real chain of signed statements (hybrid Ed25519 + ML-DSA-65
devices, the default policy): the roots, an admin of USA signed by the root device, a
channel the admin signed, and five recipients (principal and device statements, the devices
enrolled by the admin's invitations), in a map filled to the size with other leaves. Then it
times what a client does before it encrypts (protocol 9.9), with the library's own functions:

* per recipient: parse its principal and device statements, verify both map proofs against
  the root, open the disclosures a SECRET//AIRDEF label needs, check the signatures and the
  authority of both statements (the device's embedded invitation too) and decide `reader_ok`;
* per send, once: the roots chain, the admin's (signer's) records, the channel's record;
* a send to 5 recipients: both together;

and prints the JSON size of what the answer carries per recipient, and the time of a map
update of one write batch (`PersistentMap.set_many`, 10 and 100 leaves).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from liaison.crypto.anchors import anchors_digest
from liaison.crypto.authority import SignerView, check_authority, check_roots_chain, reader_ok
from liaison.crypto.commitments import Disclosure, parse_disclosures
from liaison.crypto.keys import DeviceKeys, generate_device
from liaison.crypto.labels import Label
from liaison.crypto.policy import parse_policy
from liaison.crypto.statements import (
    SignedStatement,
    channel_statement,
    device_statement,
    invitation_public,
    invitation_seed,
    invitation_statement,
    label_needs,
    leaf_value,
    open_predicates,
    principal_statement,
    roots_statement,
    sign_statement,
)
from liaison.crypto.vmap import MapProof, PersistentMap, map_key, verify_proof

ORIGIN = "liaison.example/audit"
LABEL_TEXT = ("SECRET", ("UKR", "USA"), ("AIRDEF",))
CODE = "FZNR2-U4DC5-FHO6N-ROPP7"


def _policy() -> Any:
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "service", "default_policy.toml"), "rb") as f:
        return parse_policy(f.read())


class World:
    """One coalition's statements: root, one admin, a channel, five recipients."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.root = generate_device("root")
        self.admin = generate_device("usa-admin")
        self.label = Label(policy.id, *LABEL_TEXT)
        r = self.root
        self.roots = sign_statement(
            r, roots_statement(ORIGIN, devices=[r.device_id], seq=1, prev=None, signer=r.device_id)
        )
        self.records: dict[str, tuple[SignedStatement, dict[str, Disclosure]]] = {}
        self._add(sign_statement(r, self._dev(r, "root", "USA", None)), {}, seed=invitation_seed(CODE))
        st, disc = principal_statement(
            ORIGIN,
            policy,
            principal="usa-admin",
            nation="USA",
            kind="person",
            clearance="TOP SECRET",
            compartments=policy.compartments,
            roles=["admin"],
            active=True,
            seq=1,
            prev=None,
            signer=r.device_id,
        )
        self._add(sign_statement(r, st), disc)
        self._device(self.admin, "usa-admin", "USA", r)
        self.recipients: list[DeviceKeys] = []
        for i in range(5):
            pid = f"usa-analyst-{i}"
            keys = generate_device(pid)
            st, disc = principal_statement(
                ORIGIN,
                policy,
                principal=pid,
                nation="USA",
                kind="person",
                clearance="SECRET",
                compartments=["AIRDEF"],
                roles=["analyst"],
                active=True,
                seq=1,
                prev=None,
                signer=self.admin.device_id,
            )
            self._add(sign_statement(self.admin, st), disc)
            self._device(keys, pid, "USA", self.admin)
            self.recipients.append(keys)
        members = sorted(["usa-admin", *(k.public.principal for k in self.recipients)])
        ch = channel_statement(
            ORIGIN,
            channel="ops",
            ceiling=Label(policy.id, "SECRET", ("UKR", "USA"), ("AIRDEF",)),
            members=members,
            seq=1,
            prev=None,
            signer=self.admin.device_id,
        )
        self._add(sign_statement(self.admin, ch), {})

    def _dev(self, keys: DeviceKeys, pid: str, nation: str, invitation: SignedStatement | None) -> Any:
        return device_statement(
            ORIGIN,
            bundle=keys.public,
            principal=pid,
            nation=nation,
            status="active",
            seq=1,
            prev=None,
            signer=keys.device_id,
            invitation=invitation,
        )

    def _device(self, keys: DeviceKeys, pid: str, nation: str, issuer: DeviceKeys) -> None:
        inv = invitation_statement(
            ORIGIN,
            principal=pid,
            nation=nation,
            key=invitation_public(CODE),
            expires=datetime.now(UTC) + timedelta(hours=1),
            anchors=anchors_digest({"v": 1}),
            signer=issuer.device_id,
        )
        self._add(
            sign_statement(
                keys, self._dev(keys, pid, nation, sign_statement(issuer, inv)), invitation_seed(CODE)
            ),
            {},
        )

    def _add(self, signed: SignedStatement, disc: dict[str, Disclosure], seed: bytes | None = None) -> None:
        if seed is not None:
            signed = sign_statement(self.root, signed.statement, seed)
        self.records[signed.statement.record] = (signed, disc)

    def leaves(self) -> dict[bytes, bytes]:
        out = {
            map_key(s.statement.nation, rec): leaf_value(s.statement.digest(), 1)
            for rec, (s, _) in self.records.items()
        }
        out[map_key("*", "roots")] = leaf_value(self.roots.statement.digest(), 1)
        return out


def answer_for(world: World, tree: PersistentMap, record: str, needs: tuple[str, ...]) -> dict[str, Any]:
    """A record as a lookup answer carries it: statement, disclosures asked for, map proof."""
    signed, disc = world.records[record]
    st = signed.statement
    out: dict[str, Any] = {
        "statement": signed.to_json(),
        "proof": tree.prove(map_key(st.nation, record)).to_json(),
    }
    if disc:
        out["disclosures"] = {k: disc[k].to_json() for k in needs if k in disc}
    return out


def verify_record(root: bytes, record: str, item: dict[str, Any]) -> tuple[SignedStatement, dict[str, bool]]:
    signed = SignedStatement.from_json(item["statement"])
    st = signed.statement
    value = verify_proof(root, map_key(st.nation, record), MapProof.from_json(item["proof"]))
    if value != leaf_value(st.digest(), 1):
        raise AssertionError("not the current statement")
    facts = open_predicates(st, parse_disclosures(item["disclosures"])) if "disclosures" in item else {}
    return signed, facts


def _time(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs) * 1000


def measure(world: World, size: int, repeat: int) -> None:
    leaves = world.leaves()
    filler = {os.urandom(32): os.urandom(32) for _ in range(max(0, size - len(leaves)))}
    tree = PersistentMap.from_items({**filler, **leaves})
    root = tree.root()
    needs = label_needs(world.policy, world.label)
    signer_needs = ("active", "role:admin", *needs)
    admin_dev = f"device:{world.admin.device_id}"
    answers = {
        r: answer_for(world, tree, r, signer_needs if r == "principal:usa-admin" else needs)
        for r in world.records
    }

    def fixed() -> SignerView:
        check_roots_chain(
            world.roots.statement.digest(), 1, [world.roots], {world.root.device_id: world.root.public}
        )
        verify_record(root, f"device:{world.root.device_id}", answers[f"device:{world.root.device_id}"])
        dev, _ = verify_record(root, admin_dev, answers[admin_dev])
        prin, facts = verify_record(root, "principal:usa-admin", answers["principal:usa-admin"])
        root_view = SignerView(world.root.device_id, world.root.public, "root", "USA", True, {}, True)
        check_authority(prin, root_view, relied=needs)
        check_authority(
            dev,
            SignerView(world.admin.device_id, world.admin.public, "usa-admin", "USA", True, {}, False),
            relied=(),
            invitation_signer=root_view,
        )
        admin = SignerView(world.admin.device_id, world.admin.public, "usa-admin", "USA", True, facts, False)
        ch, _ = verify_record(root, "channel:ops", answers["channel:ops"])
        check_authority(ch, admin, relied=())
        return admin

    admin = fixed()

    def one(keys: DeviceKeys) -> None:
        pid = keys.public.principal
        p, facts = verify_record(root, f"principal:{pid}", answers[f"principal:{pid}"])
        d, _ = verify_record(root, f"device:{keys.device_id}", answers[f"device:{keys.device_id}"])
        check_authority(p, admin, relied=needs)
        own = SignerView(keys.device_id, keys.public, pid, "USA", True, {}, False)
        check_authority(d, own, relied=(), invitation_signer=admin)
        if reader_ok(world.policy, world.label, nation="USA", facts=facts) is not None:
            raise AssertionError("not eligible")

    first = world.recipients[0]
    per_recipient = _time(lambda: one(first), repeat)
    per_send = _time(fixed, repeat)
    five = _time(lambda: (fixed(), [one(k) for k in world.recipients]), repeat)
    size_p = len(json.dumps(answers[f"principal:{first.public.principal}"]))
    size_d = len(json.dumps(answers[f"device:{first.device_id}"]))
    proof_p = len(json.dumps(answers[f"principal:{first.public.principal}"]["proof"]))
    upd10 = _time(lambda: tree.set_many({os.urandom(32): os.urandom(32) for _ in range(10)}), repeat)
    upd100 = _time(lambda: tree.set_many({os.urandom(32): os.urandom(32) for _ in range(100)}), repeat)
    print(
        f"{size:>7} leaves  per recipient: {per_recipient:6.2f} ms CPU, {size_p + size_d:>6} B "
        f"(principal {size_p} B of which map proof {proof_p} B; device {size_d} B)\n"
        f"                per send (roots, signer, channel): {per_send:6.2f} ms; "
        f"send to 5: {five:6.2f} ms CPU\n"
        f"                map update per batch: 10 leaves {upd10:6.2f} ms, 100 leaves {upd100:6.2f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,1000,100000")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    world = World(_policy())
    print("directory: client verification before a SECRET//AIRDEF send (hybrid keys, default policy)")
    for size in (int(x) for x in args.sizes.split(",")):
        measure(world, size, args.repeat)


if __name__ == "__main__":
    main()
