"""docs/client.md's partner-system example, run as written against a live server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.clients.conftest import PASSPHRASE, Liaison, uid

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"


def example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), flags=re.S)
    (partner,) = [b for b in blocks if "A partner system" in b]
    return partner


def test_partner_example_runs(liaison: Liaison, tmp_path: Path) -> None:
    system, analyst, channel = uid("ukr-c2"), uid("usa"), uid("ops")
    liaison(
        "-p",
        "root",
        "admin",
        "principal",
        "create",
        system,
        "--name",
        "UKR C2",
        "--nation",
        "UKR",
        "--clearance",
        "SECRET",
        "--kind",
        "system",
    )
    liaison.principal(analyst, "USA", "SECRET")
    liaison("-p", "root", "admin", "channel", "create", channel, "--ceiling", "SECRET//REL TO FRA, UKR, USA")
    liaison("-p", "root", "admin", "channel", "members", channel, system, analyst)
    invitation = liaison("-p", "root", "--json", "admin", "enrol-code", system).json()["invitation"]
    script = tmp_path / "partner.py"
    script.write_text(example())
    env = {
        **os.environ,
        "LIAISON_HOME": str(tmp_path / "system-home"),
        "LIAISON_PASSPHRASE": PASSPHRASE,
        "LIAISON_SERVER": liaison.server.url,
        "LIAISON_CA_CERT": liaison.server.cert,
        "LIAISON_PRINCIPAL": system,
        "LIAISON_CHANNEL": channel,
        "LIAISON_INVITATION": invitation,
    }

    def run() -> str:
        r = subprocess.run(
            [sys.executable, str(script)], capture_output=True, env=env, timeout=120, check=False
        )
        assert r.returncode == 0, r.stderr.decode()
        return r.stdout.decode()

    out = run()
    assert "enrolled device d_" in out
    assert f"recipients: {sorted([analyst, system])}" in out
    assert "sent " in out
    # Something for the system to process, and one message it must refuse.
    liaison(
        "-p",
        analyst,
        "send",
        "-c",
        channel,
        "-l",
        "UNCLASSIFIED//REL TO FRA, UKR, USA",
        input="Track 7 destroyed.",
    )
    out = run()
    assert "enrolled" not in out  # the profile is reused
    assert f"UNCLASSIFIED//REL TO FRA, UKR, USA from {analyst}: Track 7 destroyed." in out
    assert f"UNCLASSIFIED//REL TO FRA, UKR, USA from {system}:" in out  # its own STIX bundle
    device = liaison("-p", analyst, "--json", "whoami").json()["device"]
    liaison(
        "-p",
        analyst,
        "send",
        "-c",
        channel,
        "-l",
        "UNCLASSIFIED//REL TO UKR, USA",
        input="after this my key is revoked",
    )
    liaison("-p", "root", "admin", "device", "revoke", device)
    out = run()
    assert "key-revoked" in out
