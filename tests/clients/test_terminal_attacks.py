"""Hostile text against the terminal, through the real CLI and the real server.

A sender (or a nation admin, or the server itself) controls message content, content types,
display names, channel names, principal ids and problem details. None of it may reach a
terminal as control: no escape sequence, no C0/C1 control, no bidi override, no line that
starts like the banner or the "From ..." line the client draws (finding 1 of the hardening
issue: a SECRET message cleared the screen and drew a fake UNCLASSIFIED banner).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import select
import struct
import subprocess
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from liaison.clients import cli
from tests.clients.conftest import BIN, PASSPHRASE, Liaison, Server, uid

FAKE_BANNER = "==== UNCLASSIFIED//REL TO COALITION ===="
FAKE_FROM = (
    "From root (d_aaaaaaaaaaaaaaaaaaaaaaaaaaaa) on ops, 2026-01-01T00:00:00Z, text/plain; "
    "signature and sender key verified, log entry 1 proven"
)
#: The attack of the finding, and its relatives: every way a terminal can be driven by text.
ATTACK = (
    "\x1b[2J\x1b[H"  # clear the screen, cursor home
    f"{FAKE_BANNER}\n"
    f"{FAKE_FROM}\n"
    f"\x1b[7m{FAKE_BANNER}\x1b[0m\n"  # the banner in reverse video, as the real one is drawn
    "\x1b[1A\x1b[2K\x1b[10;1H\x1b[5C"  # cursor up, erase line, cursor position, cursor forward
    "\x1b]0;pwned\x07"  # OSC: window title
    "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\\n"  # OSC 8 hyperlink
    "\u202e==== TERCES ====\u202c\n"  # a bidi override (reads as SECRET reversed)
    "\u2066\u2067\u2068\u2069\u202a\u202b\u202d\n"  # the other bidi controls
    "\x9b2J\x9d0;x\x9c\n"  # C1: CSI and OSC as single characters
    f"\r{FAKE_BANNER}\n"  # carriage return: back over the prefix
    f"\u2028{FAKE_BANNER}\u2029{FAKE_FROM}\n"  # Unicode line and paragraph separators
    f"\x0b\x0c\x85{FAKE_BANNER}\n"  # vertical tab, form feed, NEL
    "\x08\x08\x08\x00\x7f\u200b\u200d\ufeff\n"  # backspaces, NUL, DEL, zero-width, BOM
    "tab\tstays\n"
    "a literal \\x1b[2J is shown as typed"
)
CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
SGR = re.compile(r"\x1b\[[0-9;]*m")


def raw_controls(text: str, *, allowed: str = "\n\t") -> list[str]:
    """Every character a terminal could take as control (none but `allowed` may appear)."""
    return [c for c in text if c not in allowed and unicodedata.category(c) in CONTROL_CATEGORIES]


def check_read_output(out: str, banner: str, *, sender: str) -> list[str]:
    """The structure of `liaison read`: banner, From line, content lines behind the prefix,
    banner. Returns the content lines (prefix removed)."""
    assert raw_controls(out) == [], out
    lines = out.splitlines()
    assert lines[0] == banner and lines[-1] == banner, out
    assert lines[1].startswith(f"From {sender} ("), out
    body = lines[2:-1]
    for line in body:
        # Content never starts a line: the attacker's banner and From line stay behind "│".
        assert line == "│" or line.startswith("│ "), line
    assert sum(line.startswith("====") for line in lines) == 2
    assert sum(line.startswith("From") for line in lines) == 1
    return [line[2:] for line in body]


def exchange(liaison: Liaison, *, sender_name: str = "sender", chan_name: str = "ops") -> dict[str, str]:
    names = {k: uid(k) for k in ("usa", "ukr", "chan")}
    liaison(
        "-p",
        "root",
        "admin",
        "principal",
        "create",
        names["usa"],
        "--name",
        sender_name,
        "--nation",
        "USA",
        "--clearance",
        "SECRET",
    )
    liaison.enrol(
        names["usa"], liaison("-p", "root", "--json", "admin", "enrol-code", names["usa"]).json()["code"]
    )
    liaison.principal(names["ukr"], "UKR", "SECRET")
    liaison(
        "-p",
        "root",
        "admin",
        "channel",
        "create",
        names["chan"],
        "--ceiling",
        "SECRET//REL TO UKR, USA",
        "--name",
        chan_name,
    )
    liaison("-p", "root", "admin", "channel", "members", names["chan"], names["usa"], names["ukr"])
    return names


def send(liaison: Liaison, n: dict[str, str], content: str | bytes, *extra: str) -> str:
    return str(
        liaison(
            "-p",
            n["usa"],
            "--json",
            "send",
            "-c",
            n["chan"],
            "-l",
            "SECRET//REL TO UKR, USA",
            *extra,
            input=content,
        ).json()["id"]
    )


def test_read_neutralises_a_spoofed_banner(liaison: Liaison) -> None:
    n = exchange(liaison)
    mid = send(liaison, n, ATTACK)
    banner = "==== SECRET//REL TO UKR, USA ===="
    out = liaison("-p", n["ukr"], "read", mid).stdout
    content = check_read_output(out, banner, sender=n["usa"])
    shown = "\n".join(content)
    # Visible, not obeyed: each control is shown escaped where it was.
    for escaped in (
        "\\x1b[2J\\x1b[H==== UNCLASSIFIED",
        "\\x1b]0;pwned\\x07",
        "\\u202e==== TERCES ====\\u202c",
        "\\x9b2J\\x9d0;x\\x9c",
        f"\\x0d{FAKE_BANNER}",
        f"\\u2028{FAKE_BANNER}\\u2029From root",
        "\\x08\\x08\\x08\\x00\\x7f\\u200b\\u200d\\ufeff",
        "a literal \\\\x1b[2J is shown as typed",
    ):
        assert escaped in shown, escaped
    assert "tab\tstays" in content
    # --json carries the exact text; JSON's escaping leaves no raw control in the document.
    doc = liaison("-p", n["ukr"], "--json", "read", mid)
    assert raw_controls(doc.stdout, allowed="\n ") == []
    assert doc.json()["text"] == ATTACK


def test_names_and_types_with_escapes_are_escaped(liaison: Liaison, server: Server) -> None:
    """Display names and channel names (admins set them; the server refuses control
    characters in them, but a hostile server serves what it likes), content types (any
    sender)."""
    evil = f"\x1b[2J\x1b[H{FAKE_BANNER}\nFrom root (d_x) verified\x1b]0;t\x07 [/] [reverse]x\u202e"
    n = exchange(liaison)
    refused = liaison.refused("-p", "root", "admin", "principal", "update", n["ukr"], "--name", evil)
    assert raw_controls(refused) == [] and "validation" in refused
    server.sql("UPDATE principal SET display_name = ? WHERE id IN (?, ?)", evil, n["usa"], n["ukr"])
    server.sql("UPDATE channel SET name = ? WHERE id = ?", evil, n["chan"])
    for args in (["whoami"], ["channels"]):
        r = liaison("-p", n["usa"], *args)
        assert raw_controls(r.stdout) == [], r.stdout
        assert "\\x1b[2J" in r.stdout and "[/]" in r.stdout  # shown, escaped; markup not obeyed
        assert not any(line.startswith(("====", "From")) for line in r.stdout.splitlines())
    # Markup in a name (which the server allows) is text, not style.
    out = liaison(
        "-p",
        "root",
        "admin",
        "channel",
        "create",
        uid("c"),
        "--ceiling",
        "SECRET//REL TO USA",
        "--name",
        "[/] [reverse]x",
    )
    assert raw_controls(out.stdout) == [] and "[/] [reverse]x" in out.stdout
    # A content type is the sender's to choose, among printable characters (protocol 5.2: a
    # body whose type has a control character does not parse, so no reader is shown one).
    line = liaison.refused(
        "-p", n["usa"], "send", "-c", n["chan"], "-l", "SECRET//REL TO UKR, USA",
        "--content-type", f"text/plain\x1b[2J\n{FAKE_BANNER}", input="hello",
    )  # fmt: skip
    assert raw_controls(line) == [] and "content type" in line
    # A printable one that imitates the banner or carries markup is shown as text.
    mid = send(liaison, n, "hello", "--content-type", f"text/plain [/] [reverse] {FAKE_BANNER}")
    out = liaison("-p", n["ukr"], "read", mid).stdout
    assert check_read_output(out, "==== SECRET//REL TO UKR, USA ====", sender=n["usa"]) == ["hello"]
    assert f"text/plain [/] [reverse] {FAKE_BANNER}" in out


def test_a_hostile_server_cannot_draw_either(liaison: Liaison, server: Server) -> None:
    """What the server alone controls: its inbox listing (unverified until `read`)."""
    n = exchange(liaison)
    mid = send(liaison, n, "hello")
    server.sql("UPDATE message SET sender_principal = ? WHERE id = ?", f"\x1b[2J\n{FAKE_BANNER}", mid)
    out = liaison("-p", n["ukr"], "inbox").stdout
    assert raw_controls(out) == [] and "\\x1b[2J" in out, out
    assert not any(line.startswith(("====", "From")) for line in out.splitlines())
    # An id no URL can carry: one line and exit 1, not a traceback.
    line = liaison.refused("-p", "root", "read", "\x1b[2J")
    assert raw_controls(line) == [] and "\\x1b" in line


class HostileServer(http.server.BaseHTTPRequestHandler):
    """Answers everything with a problem document whose slug and detail hold escapes."""

    def _answer(self) -> None:
        body = json.dumps(
            {
                "type": "urn:liaison:problem:forbidden\x1b[2J",
                "title": "Forbidden",
                "status": 403,
                "detail": f"\x1b[2J\x1b[H\x9b0m\u202e{FAKE_BANNER}\r{FAKE_FROM}",
            }
        ).encode()
        self.send_response(403)
        self.send_header("content-type", "application/problem+json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def test_problem_details_from_a_hostile_server(liaison: Liaison) -> None:
    """`liaison: <problem detail>`: the detail is the server's text, escaped like any other."""
    hostile = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HostileServer)
    thread = threading.Thread(target=hostile.serve_forever, daemon=True)
    thread.start()
    try:
        doc = json.loads((liaison.home / "profiles" / "root.json").read_text())
        doc["profile"]["name"] = "hostile"
        doc["profile"]["server"] = f"http://127.0.0.1:{hostile.server_address[1]}"
        (liaison.home / "profiles" / "hostile.json").write_text(json.dumps(doc))
        for args in (["whoami"], ["inbox"], ["read", "01a21227-0000-7000-8000-000000000000"]):
            line = liaison.refused("-p", "hostile", *args)
            assert raw_controls(line) == [], line
            assert "\\x1b[2J\\x1b[H\\x9b0m\\u202e====" in line and "\\x0dFrom root" in line
    finally:
        hostile.shutdown()
        hostile.server_close()
        thread.join(timeout=10)


def test_non_text_content_is_never_printed(liaison: Liaison, tmp_path: Path) -> None:
    n = exchange(liaison)
    blob = b"\x1b[2J\x9b2J\xff\xfe" + FAKE_BANNER.encode() + b"\n\x00\x01"
    mid = send(liaison, n, blob)  # declared text/plain, but not UTF-8
    r = liaison("-p", n["ukr"], "read", mid)
    assert raw_controls(r.stdout) == [] and "2J" not in r.stdout and "COALITION" not in r.stdout
    assert f"{len(blob)} bytes" in r.stdout and "--output FILE" in r.stdout
    # Text that declares a non-text type is not printed either.
    typed = send(liaison, n, "looks like text", "--content-type", "application/octet-stream")
    out = liaison("-p", n["ukr"], "read", typed).stdout
    assert "looks like text" not in out and "application/octet-stream" in out
    # --output writes the exact bytes, never over an existing file unless --force.
    target = tmp_path / "content.bin"
    saved = liaison("-p", n["ukr"], "read", mid, "--output", str(target))
    assert target.read_bytes() == blob and raw_controls(saved.stdout) == []
    assert str(target) in saved.stdout and (target.stat().st_mode & 0o777) == 0o600
    assert "exists" in liaison.refused("-p", n["ukr"], "read", typed, "--output", str(target))
    assert target.read_bytes() == blob
    liaison("-p", n["ukr"], "read", typed, "--output", str(target), "--force")
    assert target.read_bytes() == b"looks like text"
    assert (
        liaison("-p", n["ukr"], "--json", "read", mid, "--output", str(tmp_path / "b"), "--force").json()[
            "text"
        ]
        is None
    )
    assert liaison("-p", n["ukr"], "read", mid, "--raw", "--output", str(target), ok=False).code == 2
    assert liaison("-p", n["ukr"], "read", mid, "--force", ok=False).code == 2
    # --raw writes the bytes as they are, to a pipe (never to a terminal: see the pty test).
    cli._PASSPHRASE.clear()
    raw = liaison.runner.invoke(cli.app, ["-p", n["ukr"], "read", mid, "--raw"], catch_exceptions=False)
    assert raw.exit_code == 0 and raw.stdout_bytes == blob


# --- on a real terminal ----------------------------------------------------------------------


def run_in_pty(liaison: Liaison, *args: str, columns: int = 60) -> tuple[int, bytes]:
    """Run the installed `liaison` on a pseudo-terminal of `columns` columns; (exit, output)."""
    import fcntl
    import pty
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {
        **os.environ,
        "LIAISON_HOME": str(liaison.home),
        "LIAISON_PASSPHRASE": PASSPHRASE,
        "TERM": "xterm-256color",
        "COLUMNS": str(columns),
    }
    for k in ("NO_COLOR", "FORCE_COLOR", "LIAISON_PROFILE"):
        env.pop(k, None)
    proc = subprocess.Popen(
        [str(BIN / "liaison"), *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks)


def test_read_on_a_terminal(liaison: Liaison) -> None:
    """On a TTY the banner is in reverse video, which content can no longer produce, and long
    content lines are wrapped by the client so that every row starts with the prefix."""
    n = exchange(liaison)
    long_line = "x" * 57 + " " + FAKE_BANNER + " " + "y" * 70
    mid = send(liaison, n, ATTACK + "\n" + long_line)
    code, out = run_in_pty(liaison, "-p", n["ukr"], "read", mid, columns=60)
    assert code == 0, out
    text = out.decode()
    # The only escape sequences on the screen are the client's own SGR attributes.
    assert raw_controls(SGR.sub("", text), allowed="\n\t\r") == [], text
    banner = "==== SECRET//REL TO UKR, USA ===="
    rows = text.replace("\r\n", "\n").splitlines()
    drawn = [SGR.sub("", row) for row in rows]
    assert rows[0].startswith("\x1b[7m") and drawn[0] == banner
    assert rows[-1].startswith("\x1b[7m") and drawn[-1] == banner
    assert drawn[1].startswith(f"From {n['usa']} (")
    for row, plain in zip(rows[2:-1], drawn[2:-1], strict=True):
        assert plain == "│" or plain.startswith(("│ ", "  ")), plain  # content, or the From line's tail
        assert len(plain) < 60, plain  # wrapped by the client, not by the terminal
        if plain.startswith("│"):
            assert "\x1b" not in row  # no attribute at all on content rows
    assert sum(r.startswith("\x1b[7m") for r in rows) == 2
    # --raw refuses a terminal, and writes nothing.
    code, out = run_in_pty(liaison, "-p", n["ukr"], "read", mid, "--raw")
    assert code == 1 and b"\x1b[2J" not in out and b"terminal" in out


def test_json_outputs_stay_json_with_hostile_names(liaison: Liaison, server: Server) -> None:
    evil = "\x1b[2J\x7f\x9b\u202e\n\"'\\"
    n = exchange(liaison)  # names the server would refuse, served by a hostile one:
    server.sql("UPDATE principal SET display_name = ? WHERE id = ?", evil, n["usa"])
    server.sql("UPDATE channel SET name = ? WHERE id = ?", evil, n["chan"])
    printable = "\"'\\ [/] ====\u00e9"
    mid = send(liaison, n, evil, "--content-type", f"text/plain{printable}")
    docs: dict[str, Any] = {}
    for args in (["whoami"], ["channels"], ["inbox"], ["read", mid]):
        r = liaison("-p", n["usa"], "--json", *args)
        assert raw_controls(r.stdout, allowed="\n ") == [], r.stdout
        docs[args[0]] = json.loads(r.stdout)
    assert docs["whoami"]["display_name"] == evil and docs["channels"][0]["name"] == evil
    assert docs["read"]["text"] == evil and docs["read"]["content_type"] == f"text/plain{printable}"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__]))
