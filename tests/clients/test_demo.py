"""The README's demo command runs end to end and its final verification passes.

It runs `scripts/demo.sh` itself, with LIAISON_DEMO_SKIP_SETUP=1: the suite has just brought
.venv up to date, and reinstalling the package took a quarter of this test's time.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_runs_to_a_verified_cosigned_log() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIAISON_")}
    env["LIAISON_DEMO_SKIP_SETUP"] = "1"
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        capture_output=True,
        env=env,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 0, f"{out[-4000:]}\n{err[-4000:]}"
    for expected in (
        "releasability: nation is not in REL TO",
        "system-level: systems may not handle this level",
        "mistyped, or not sent to this device",
        "refused (key-revoked)",
        "server refused (device-revoked)",
        "Verified liaison.example/audit",
        "Cosigned and submitted",
        "Demo complete: every check passed",
    ):
        assert expected in out, expected
    # The server it started is gone: nothing listens on its port any more.
    port = out.split("server ready at https://localhost:")[1].split(" ")[0]
    assert (
        subprocess.run(
            ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], capture_output=True, check=False
        ).returncode
        != 0
    )
