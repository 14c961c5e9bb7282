"""Every fenced code block of README.md and docs/*.md runs as a test, or says why it cannot.

A block's info string is its language, then attributes (`key=value` or `key="value"`):

* ```` ```python ```` runs as a script (its own interpreter, `$LIAISON_HOME` and
  `$LIAISON_PASSPHRASE` of the documents' server, `LIAISON_SERVER`, `LIAISON_CA_CERT`);
* ```` ```bash ```` (or `sh`, `shell`) runs under `bash -euo pipefail` against that server,
  with the placeholders of `SUBSTITUTIONS` replaced (the real server URL, certificate, root
  invitation and a message id), in a fresh directory;
* `tested-by=PATH` names the test that runs the block itself (the file must exist);
* `norun="why"` says why the block is not run (an answer's shape, a file layout, output, a
  command that needs what a test machine does not have), in at least a few words.

Any other block, or a runnable one that fails, fails the test. The documents' server is a
fresh `liaison-server` (its root invitation unused), and the blocks run in document order:
README.md first (its "Use the CLI" block enrols root and two analysts on channel `ops`, which
docs/client.md's Python examples then use), then docs/*.md by name. docs/client.md's partner
example is run with its own set-up by `test_partner_example_runs` below.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clients.conftest import BIN, PASSPHRASE, Liaison, Server, uid

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "client.md"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"python", "bash", "sh", "shell"}
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+)(?P<info>[^`]*)$")
_ATTRIBUTE = re.compile(r'([a-z-]+)=(?:"([^"]*)"|(\S+))')


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, attributes and text."""

    path: Path
    line: int
    lang: str
    attrs: dict[str, str]
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}:{self.line}"


def blocks(path: Path, text: str | None = None) -> Iterator[Block]:
    """The fenced code blocks of a markdown file, in order (indented ones, in lists, too)."""
    lines = (text if text is not None else path.read_text("utf-8")).splitlines()
    i = 0
    while i < len(lines):
        opened = _FENCE.match(lines[i])
        if opened is None:
            i += 1
            continue
        indent, fence = opened["indent"], opened["fence"]
        info = opened["info"].strip()
        lang, _, rest = info.partition(" ")
        attrs = {m[1]: m[2] if m[2] is not None else m[3] for m in _ATTRIBUTE.finditer(rest)}
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j].removeprefix(indent))
            j += 1
        yield Block(path, i + 1, lang, attrs, "\n".join(body) + "\n")
        i = j + 1


def unmarked(block: Block) -> str | None:
    """Why a block breaks the rule of the module doc, or None."""
    if "norun" in block.attrs:
        reason = block.attrs["norun"].strip()
        return None if len(reason.split()) >= 3 else f"{block.where}: norun needs a reason of a few words"
    if "tested-by" in block.attrs:
        target = ROOT / block.attrs["tested-by"]
        return None if target.is_file() else f"{block.where}: tested-by names no file ({target})"
    if block.lang in RUNNABLE:
        return None
    lang = block.lang or "(no language)"
    return f'{block.where}: a ```{lang} block that is not run: run it, or mark it norun="why"'


def runnable(block: Block) -> bool:
    return block.lang in RUNNABLE and "norun" not in block.attrs and "tested-by" not in block.attrs


def run_block(block: Block, env: dict[str, str], cwd: Path, substitutions: dict[str, str]) -> str | None:
    """Run one block; None if it succeeded, else what went wrong."""
    if block.lang == "python":
        command = [sys.executable, "-c", block.text]
    else:
        script = block.text
        for placeholder, value in substitutions.items():
            script = script.replace(placeholder, value)
        command = ["bash", "-euo", "pipefail", "-c", script]
    r = subprocess.run(command, cwd=cwd, env=env, capture_output=True, timeout=600, check=False)
    if r.returncode == 0:
        return None
    err = r.stderr.decode("utf-8", "replace")[-2000:]
    return f"{block.where}: exit {r.returncode}\n{r.stdout.decode('utf-8', 'replace')[-1000:]}\n{err}"


# --- the rule, on every document, and on made-up ones ---------------------------------------


def test_every_block_is_run_or_says_why_not() -> None:
    found = [b for path in DOCUMENTS for b in blocks(path)]
    assert len(found) >= 35, len(found)
    problems = [p for b in found if (p := unmarked(b))]
    assert not problems, "\n".join(problems)
    assert sum(runnable(b) for b in found) >= 4  # not everything marked away


def test_the_rule_catches_unmarked_blocks_and_failing_ones(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    text = "\n".join(
        [
            "```json",
            '{"a": 1}',
            "```",
            '```text norun="too short"',
            "```",
            '```text norun="an answer\'s shape, with elided values"',
            "x",
            "```",
            "   ```",
            "   indented, in a list, unmarked",
            "   ```",
            "```python tested-by=tests/nowhere.py",
            "```",
            "```python",
            "raise SystemExit(3)",
            "```",
        ]
    )
    found = list(blocks(doc, text))
    assert [(b.lang, b.line) for b in found] == [
        ("json", 1),
        ("text", 4),
        ("text", 6),
        ("", 9),
        ("python", 12),
        ("python", 14),
    ]
    assert [bool(unmarked(b)) for b in found] == [True, True, False, True, True, False]
    assert "norun needs a reason" in str(unmarked(found[1]))
    assert "that is not run" in str(unmarked(found[0])) and "no file" in str(unmarked(found[4]))
    failed = run_block(found[5], dict(os.environ), tmp_path, {})
    assert failed is not None and "exit 3" in failed
    ok = Block(doc, 1, "bash", {}, "test PLACE = here\n")
    assert run_block(ok, dict(os.environ), tmp_path, {"PLACE": "here"}) is None


# --- running them against a real server -----------------------------------------------------


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A fresh server whose root invitation the README's commands use."""
    base = tmp_path_factory.mktemp("docs-server")
    r = subprocess.run(
        [str(BIN / "liaison-server"), "init", "--data-dir", str(base / "data"), "--json"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    server = Server(base / "data", json.loads(r.stdout))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def substitutions(server: Server) -> dict[str, str]:
    """The placeholders the documents' commands use, and what they are on the test server."""
    newest = (
        "from liaison.clients import Client; "
        "c = Client.from_profile('ukr-analyst'); print(c.inbox()[-1].id); c.close()"
    )
    return {
        'export PATH="$PWD/.venv/bin:$PATH"': f'export PATH="{BIN}:$PATH"',
        "https://localhost:8443": server.url,
        "./data/tls/cert.pem": server.cert,
        "ROOT-INVITATION": server.init["root_invitation"],
        "MESSAGE_ID": f'"$(python3 -c {shlex.quote(newest)})"',
    }


@pytest.mark.slow
def test_every_runnable_block_runs(docs_server: Server, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "LIAISON_HOME": str(home),
        "LIAISON_PASSPHRASE": "four random words of your own",  # the README's
        "LIAISON_SERVER": docs_server.url,
        "LIAISON_CA_CERT": docs_server.cert,
    }
    env.pop("LIAISON_PROFILE", None)
    ran, failures = 0, []
    for path in DOCUMENTS:
        for block in blocks(path):
            if not runnable(block):
                continue
            cwd = tmp_path / f"run-{ran}"
            cwd.mkdir()
            failed = run_block(block, env, cwd, substitutions(docs_server))
            ran += 1
            if failed:
                failures.append(failed)
    assert not failures, "\n\n".join(failures)
    assert ran >= 4


# --- docs/client.md's partner example, with its own set-up ----------------------------------


def example() -> str:
    found = [b.text for b in blocks(DOC) if b.lang == "python" and "A partner system" in b.text]
    (partner,) = found
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


def test_the_docs_say_what_integrators_tripped_over() -> None:
    """Issue 11, item 15: the drift that was found, fixed and kept fixed."""
    client = DOC.read_text("utf-8")
    assert "analysts get one only once the server includes it" not in client
    assert "`Message.log_proven` is true" in client  # tests/clients/test_bulk_and_retry.py proves it
    audit = (ROOT / "docs" / "audit.md").read_text("utf-8")
    tools = audit[audit.index("### With standard tools") : audit.index("## 4. Witnesses")]
    assert "LIAISON_AUDIT_PUBLIC" in tools and "auditor" in tools and "tile/entries" in tools
    readme = (ROOT / "README.md").read_text("utf-8")
    assert "docs/operations.md" in readme[readme.index("**Settings** come from") :][:400]
