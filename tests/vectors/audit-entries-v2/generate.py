"""Write the audit entry v2 vectors (protocol 10) of this directory.

    python tests/vectors/audit-entries-v2/generate.py            # (re)write entries.json here
    python tests/vectors/audit-entries-v2/generate.py --out DIR  # write it elsewhere
    python tests/vectors/audit-entries-v2/generate.py --check    # compare with the file here

Deterministic: seeds are fixed bytes, times fixed. `entries.json` holds:

* `valid`: entries of several types, each with its `seed` (hex), the `time`, the `clear` and
  `committed` fields given to the builder, the exact entry bytes (`entry`, as text), every
  field's `salt` (base64url) and commitment, and the disclosures an auditor would receive.
* `invalid`: entry texts `parse_entry_v2` must refuse, each with the words its error carries;
  and `mismatched` openings (a valid entry, a disclosure) `open_entry` must refuse.

tests/test_entry_v2_vectors.py recomputes every salt and commitment with hmac, hashlib and
rfc8785 (not with liaison.crypto), checks the library against every case, and re-runs this
script with --check.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

from liaison.crypto.encoding import b64url_encode, jcs  # noqa: E402
from liaison.crypto.entry_v2 import build_entry_v2, entry_salt  # noqa: E402

WHEN = datetime(2026, 12, 1, 5, 42, 17, 123000, tzinfo=UTC)
ACTOR = "d_" + "a" * 26
OTHER = "d_" + "b" * 26

CASES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    (
        "a message accepted: only its envelope digest in the clear",
        "message.accepted",
        {"envelope_digest": "5e" * 32},
        {
            "actor": ACTOR,
            "time": "2026-12-01T05:42:17.123Z",
            "id": "m_" + "c" * 26,
            "channel": "nightjar",
            "label": {"classification": "TOP SECRET", "compartments": ["HUMINT"], "rel_to": ["USA"]},
            "recipients": [ACTOR, OTHER],
            "size": 4096,
        },
    ),
    (
        "an access denied: nothing but its type and hour",
        "access.denied",
        {},
        {"actor": OTHER, "time": "2026-12-01T05:59:59.999Z", "what": "recipients ops", "why": "clearance"},
    ),
    (
        "a map head: wholly clear",
        "map.head",
        {"version": 7, "root": b64url_encode(bytes(32)), "time": "2026-12-01T05:42:17.123Z"},
        {},
    ),
    (
        "unicode and nesting in committed values",
        "principal.updated",
        {},
        {
            "actor": ACTOR,
            "time": "2026-12-01T05:00:00.000Z",
            "display_name": "Maj. J. Smith \u00e9\u20ac\U0001f600",
        },
    ),
]


def _seed(n: int) -> bytes:
    return bytes((n * 37 + i) % 256 for i in range(32))


def build() -> dict[str, Any]:
    valid = []
    first: tuple[bytes, dict[str, Any]] | None = None
    for n, (about, type_, clear, committed) in enumerate(CASES):
        seed = _seed(n)
        data, disclosures = build_entry_v2(type_, WHEN, clear, committed, seed)
        obj = json.loads(data)
        valid.append(
            {
                "about": about,
                "type": type_,
                "seed": seed.hex(),
                "time": "2026-12-01T05:42:17.123Z",
                "clear": clear,
                "committed": committed,
                "salts": {k: b64url_encode(entry_salt(seed, k)) for k in sorted(committed)},
                "commitments": obj["c"],
                "disclosures": {k: d.to_json() for k, d in sorted(disclosures.items())},
                "entry": data.decode("utf-8"),
            }
        )
        if first is None:
            first = (data, {k: d.to_json() for k, d in disclosures.items()})
    assert first is not None
    base = json.loads(first[0])

    def edited(**changes: Any) -> str:
        obj = json.loads(first[0])
        for k, v in changes.items():
            obj[k] = v
        return jcs(obj).decode("utf-8")

    invalid = [
        {"about": "version 1", "entry": edited(v=1), "error": "exactly v"},
        {"about": "an extra member", "entry": edited(x=1), "error": "exactly v"},
        {"about": "an hour not on the hour", "entry": edited(hour="2026-12-01T05:42:00Z"), "error": "hour"},
        {"about": "an empty type", "entry": edited(type=""), "error": "type"},
        {
            "about": "a sensitive field in the clear",
            "entry": edited(clear={**base["clear"], "label": "TOP SECRET"}),
            "error": "in the clear",
        },
        {
            "about": "a short commitment",
            "entry": edited(c={**base["c"], "channel": "AAAA"}),
            "error": "32 bytes",
        },
        {
            "about": "a field both clear and committed",
            "entry": edited(c={**base["c"], "envelope_digest": base["c"]["actor"]}),
            "error": "both",
        },
        {
            "about": "not canonical (spaces)",
            "entry": json.dumps(base, indent=1),
            "error": "canonical",
        },
    ]
    d = first[1]
    mismatched = [
        {"about": "another field's opening", "name": "channel", "disclosure": d["actor"]},
        {
            "about": "the right salt, another value",
            "name": "channel",
            "disclosure": {"salt": d["channel"]["salt"], "value": "another"},
        },
        {"about": "a name with no commitment", "name": "nobody", "disclosure": d["channel"]},
    ]
    return {
        "salt_domain": "liaison/v1/entry-salt",
        "valid": valid,
        "invalid": invalid,
        "mismatched": {"entry": first[0].decode("utf-8"), "cases": mismatched},
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--check", action="store_true", help="compare with the file here, byte for byte")
    args = ap.parse_args(argv)
    text = json.dumps(build(), indent=1, ensure_ascii=False) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "entries.json").write_text(text, "utf-8")
    if args.check and (HERE / "entries.json").read_text("utf-8") != text:
        print("entries.json differs from what the generator writes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
