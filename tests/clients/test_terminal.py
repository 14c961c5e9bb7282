"""The CLI's one sanitiser (`liaison.clients._terminal.safe`) and the printers built on it.

Properties: whatever a peer or the server sends, the output holds no C0/C1 control (newline and
tab only inside content), no format character (bidi controls, zero-width ones), no line or
paragraph separator; every escape is visible and the escaping is injective (a decoder gets the
original back). And a guard over `clients/cli.py`: it prints only through `_terminal`, with
its own text as templates, so no server text reaches a terminal without `safe`.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import re
import stat
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import example, given, settings
from hypothesis import strategies as st
from rich.cells import cell_len

from liaison.clients import _models as m
from liaison.clients import _terminal as term
from liaison.clients import cli
from liaison.clients.errors import InputError
from liaison.crypto.labels import Label

CLI = Path(term.__file__).with_name("cli.py")
CONTROL = frozenset({"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"})
SGR = re.compile(r"\x1b\[[0-9;]*m")

# Every character, surrogates and unassigned code points included, and the dangerous ones often.
ANY_CHAR = st.one_of(
    st.characters(exclude_categories=()),
    st.sampled_from(
        "\x1b\x9b\x9d\x07\r\n\t\x08\x00\x7f\x85\u202a\u202e\u2066\u2069\u200e\u2028\u2029\ufeff\\xuU"
    ),
)
TEXT = st.text(ANY_CHAR, max_size=200)


def unescape(shown: str) -> str:
    """The inverse of `safe` (what a reader does in their head): proves it injective."""
    out: list[str] = []
    i = 0
    while i < len(shown):
        c = shown[i]
        nxt = shown[i + 1 : i + 2]
        if c == "\\" and nxt == "\\":
            out.append("\\")
            i += 2
        elif c == "\\" and nxt in ("x", "u", "U"):
            digits = {"x": 2, "u": 4, "U": 8}[nxt]
            out.append(chr(int(shown[i + 2 : i + 2 + digits], 16)))
            i += 2 + digits
        else:
            out.append(c)
            i += 1
    return "".join(out)


def controls(text: str, allowed: str = "") -> list[str]:
    return [c for c in text if c not in allowed and unicodedata.category(c) in CONTROL]


# --- safe --------------------------------------------------------------------------------------


@given(TEXT)
@example("\x1b[2J\x1b[H==== UNCLASSIFIED ====")
@example("\\x1b")
@example("\\\x1b")
@example("a\\")
def test_safe_single_line(text: str) -> None:
    shown = term.safe(text)
    assert controls(shown) == []
    assert "\n" not in shown and "\t" not in shown
    assert unescape(shown) == text


@given(TEXT)
def test_safe_multiline_keeps_only_newline_and_tab(text: str) -> None:
    shown = term.safe(text, multiline=True)
    assert controls(shown, allowed="\n\t") == []
    assert shown.count("\n") == text.count("\n") and shown.count("\t") == text.count("\t")
    assert unescape(shown) == text


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E).filter(lambda c: c != "\\")))
def test_plain_ascii_is_unchanged(text: str) -> None:
    assert term.safe(text) == text


def test_what_is_escaped_and_how_it_looks() -> None:
    cases = {
        "\x1b[2J": "\\x1b[2J",
        "\x9b": "\\x9b",
        "\r\n\t": "\\x0d\\x0a\\x09",
        "\u202e": "\\u202e",
        "\u2066x\u2069": "\\u2066x\\u2069",
        "\u200b\u200d\ufeff\u00ad": "\\u200b\\u200d\\ufeff\\xad",  # soft hyphen: below U+0100
        "\u2028": "\\u2028",
        "\U000e0041": "\\U000e0041",  # a tag character (Cf)
        "\ud800": "\\ud800",  # a lone surrogate
        "C:\\path": "C:\\path",  # a backslash stays single unless it could start an escape
        "\\x41": "\\\\x41",
        "\\\\": "\\\\\\",  # the first doubled (a backslash follows), the last not
        "Київ 🇺🇦 ❤️ é": "Київ 🇺🇦 ❤️ é",  # scripts, flags, variation selectors, combining marks
    }
    for raw, shown in cases.items():
        assert term.safe(raw) == shown, raw
    assert term.safe("a\tb\nc", multiline=True) == "a\tb\nc"
    assert term.safe(42) == "42"


# --- the printers -------------------------------------------------------------------------------


def test_say_and_table_escape_every_value(capsys: pytest.CaptureFixture[str]) -> None:
    evil = "\x1b[2J[/] [reverse]x[/reverse] :smile: \u202e\n==== UNCLASSIFIED ===="
    term.say("Hello {name:bold}, [green]ok[/] {{literal}}", name=evil)
    term.table(("a", "b"), [(evil, 1)], title="t")
    term.say("{x}", x=evil, err=True)
    out, err = capsys.readouterr()
    assert controls(out, allowed="\n") == [] and controls(err, allowed="\n") == []
    assert out.startswith("Hello \\x1b[2J[/] [reverse]x[/reverse] :smile: \\u202e\\x0a==== ")
    assert "ok {literal}" in out and "\\x1b[2J" in err
    assert not any(line.startswith("====") for line in out.splitlines())
    with pytest.raises(ValueError, match="no value"):
        term.say("{missing}")
    with pytest.raises(ValueError, match="conversion"):
        term.say("{x!r}", x=1)


def test_json_errors_end_with_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    """`--json` is one command's choice: after `main` returns, in the same process (an
    embedding program, a test runner), errors are one plain line again."""
    command = typer.main.get_command(cli.app)
    assert command.main(["--json", "profiles", "--no-such-option"], standalone_mode=False) == 2
    assert json.loads(capsys.readouterr().err)["type"] == "urn:liaison:client:usage"
    assert not term.json_errors()
    with pytest.raises(typer.Exit):
        term.fail("plain again")
    assert capsys.readouterr().err == "liaison: plain again\n"


def test_fail_is_one_escaped_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as info:
        term.fail("server refused ({slug}): {detail}", slug="x\x1b", detail="a\nb\r\x9b" + "y" * 400)
    assert info.value.exit_code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("liaison: server refused (x\\x1b): a\\x0ab\\x0d\\x9b")
    assert controls(err, allowed="\n") == []


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | TEXT, lambda c: st.lists(c) | st.dictionaries(TEXT, c)
    )
)
@settings(max_examples=50)
def test_json_is_ascii_and_exact(obj: Any) -> None:
    buf = io.StringIO()
    saved, sys.stdout = sys.stdout, buf
    try:
        term.emit_json(obj)
    finally:
        sys.stdout = saved
    text = buf.getvalue()
    assert text.isascii() and controls(text, allowed="\n") == [] and text.count("\n") == 1
    assert json.loads(text) == obj


def test_content_text() -> None:
    assert term.content_text("text/plain; charset=utf-8", "Київ".encode()) == ("Київ", "")
    assert term.content_text("TEXT/Markdown", b"x")[0] == "x"
    assert term.content_text("application/stix+json;version=2.1", b"{}")[0] == "{}"
    assert term.content_text("application/json", b"[]")[0] == "[]"
    assert term.content_text("application/octet-stream", b"text") == (None, "not text")
    assert term.content_text("text/plain; charset=latin-1", b"x") == (None, "not UTF-8 text")
    assert term.content_text('text/plain; charset="UTF-8"', b"x")[0] == "x"
    assert term.content_text("text/plain", b"\xff\xfe") == (None, "not valid UTF-8")
    for odd in ("", ";", ";;;=", "text", "/", "\x1b[2J"):
        assert term.content_text(odd, b"x") == (None, "not text")


def message(content: bytes, *, content_type: str = "text/plain; charset=utf-8", **names: str) -> m.Message:
    label = Label("liaison.example/policy", "SECRET", ("UKR", "USA"))
    return m.Message(
        names.get("id", "01a21227-0000-7000-8000-000000000000"),
        names.get("channel", "ops"),
        names.get("sender", "usa-analyst"),
        names.get("device", "d_aaaaaaaaaaaaaaaaaaaaaaaaaa"),
        label,
        names.get("label", label.text()),
        names.get("created", "2026-01-01T00:00:00Z"),
        content_type,
        content,
        7,
        True,
    )


def shown(msg: m.Message, *, tty: bool, columns: int = 40) -> str:
    """`read`'s view of `msg`, as drawn on a terminal of `columns` columns or off a terminal."""
    buf = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stdout", buf)
        mp.setattr(term, "_attributes", lambda stream: tty)
        mp.setattr(term, "_columns", lambda: columns)
        term.show_message(msg)
    return buf.getvalue()


NAMES = st.fixed_dictionaries({k: TEXT for k in ("channel", "sender", "device", "label", "created", "id")})


@given(content=TEXT, names=NAMES, columns=st.integers(20, 100))
@settings(max_examples=150, deadline=None)
def test_no_content_or_name_can_imitate_the_banner(content: str, names: dict[str, str], columns: int) -> None:
    msg = message(content.encode("utf-8", "surrogatepass"), **names)
    banner = f"==== {term.safe(names['label'])} ===="
    # Off a terminal: banner, one From line, a prefix on every content line, banner.
    lines = shown(msg, tty=False).split("\n")
    assert lines.pop() == "" and controls("\n".join(lines), allowed="\t\n") == []
    assert lines[0] == banner == lines[-1] and lines[1].startswith("From ")
    assert all(line == "│" or line.startswith("│ ") for line in lines[2:-1]) or lines[2].startswith(
        "Content not shown"
    )
    # On a terminal: the banner is the only reverse video; rows fit; content rows carry no
    # attribute and start with the prefix; header rows continue indented.
    rows = shown(msg, tty=True, columns=columns).split("\n")
    assert rows.pop() == ""
    plain = [SGR.sub("", r) for r in rows]
    assert controls("".join(plain), allowed="\t") == [] and "\t" not in "".join(plain)
    reverse = [r for r in rows if term.BANNER_ATTRIBUTE in r]
    assert len(reverse) % 2 == 0 and all(r.startswith(term.BANNER_ATTRIBUTE) for r in reverse)
    assert rows[0].startswith(term.BANNER_ATTRIBUTE) and rows[-1].startswith(term.BANNER_ATTRIBUTE)
    for row, text in zip(rows, plain, strict=True):
        if row.startswith(term.BANNER_ATTRIBUTE) or row.startswith("\x1b[1m"):
            continue
        assert "\x1b" not in row and (text == "│" or text.startswith("│ ")), row
    assert all(cell_len(text) < columns for text in plain), "a row the terminal would wrap"


def test_non_text_content_is_described_not_shown() -> None:
    out = shown(message(b"\x1b[2J\xff", content_type="text/plain"), tty=False)
    assert "2J" not in out and controls(out, allowed="\n") == []
    assert "Content not shown (not valid UTF-8): 5 bytes of text/plain." in out
    assert "liaison read 01a21227-0000-7000-8000-000000000000 --output FILE" in out


# --- where content goes ------------------------------------------------------------------------


def test_save_content(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    assert term.save_content(target, b"\x00\x1b", force=False) == target
    assert target.read_bytes() == b"\x00\x1b" and stat.S_IMODE(target.stat().st_mode) == 0o600
    with pytest.raises(InputError, match="exists: choose another file, or add --force"):
        term.save_content(target, b"new", force=False)
    term.save_content(target, b"new", force=True)
    assert target.read_bytes() == b"new"
    with pytest.raises(InputError, match="is a directory"):
        term.save_content(tmp_path, b"x", force=True)
    with pytest.raises(InputError, match="cannot write"):
        term.save_content(tmp_path / "missing" / "x", b"x", force=False)
    # A symlink is replaced, never followed; a FIFO is replaced, never opened (it would block).
    other = tmp_path / "other"
    other.write_bytes(b"keep")
    link = tmp_path / "link"
    link.symlink_to(other)
    with pytest.raises(InputError, match="exists"):
        term.save_content(link, b"x", force=False)
    term.save_content(link, b"x", force=True)
    assert other.read_bytes() == b"keep" and link.read_bytes() == b"x" and not link.is_symlink()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="exists"):
        term.save_content(fifo, b"x", force=False)
    term.save_content(fifo, b"x", force=True)
    assert fifo.read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link", "other", "out.bin"]


def test_raw_refuses_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(term, "stdout_is_terminal", lambda: True)
    with pytest.raises(InputError, match="not to a terminal"):
        term.write_raw(b"\x1b[2J")


# --- the guard over cli.py -------------------------------------------------------------------

#: Method names that write somewhere: cli.py may call none of them itself.
_WRITERS = frozenset({"echo", "secho", "print", "write", "writelines", "print_json", "log", "rule", "pager"})
#: `_terminal` printers and the position of their template (the CLI's own text).
_TEMPLATED = frozenset({"say", "fail"})


def violations(source: str) -> list[str]:
    """Every way `source` (cli.py) could print without `_terminal`'s escaping."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            if any(n and n.split(".")[0] in ("rich", "click", "builtins") for n in names):
                found.append(f"{where}: imports a printer ({names})")
        elif isinstance(node, ast.Attribute):
            if (
                isinstance(node.value, ast.Name)
                and node.value.id == "sys"
                and node.attr in ("stdout", "stderr")
            ):
                found.append(f"{where}: sys.{node.attr}")
            if isinstance(node.value, ast.Name) and node.value.id == "term" and node.attr.startswith("_"):
                found.append(f"{where}: term.{node.attr} (private)")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("print", "exec", "eval", "__import__"):
                found.append(f"{where}: {func.id}()")
            if isinstance(func, ast.Attribute) and func.attr in _WRITERS:
                found.append(f"{where}: .{func.attr}()")
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "term"
            ):
                found.extend(f"{where}: {p}" for p in _template_problems(func.attr, node))
    return found


def _template_problems(name: str, call: ast.Call) -> list[str]:
    def constant(n: ast.expr) -> bool:
        return isinstance(n, ast.Constant) and isinstance(n.value, str)

    if any(k.arg is None for k in call.keywords) or any(isinstance(a, ast.Starred) for a in call.args):
        return [f"term.{name} with ** or * arguments"]
    if name in _TEMPLATED and not (call.args and constant(call.args[0])):
        return [f"term.{name} whose template is not a string literal"]
    if name == "table":
        cols = call.args[0] if call.args else None
        if not (isinstance(cols, ast.Tuple | ast.List) and all(constant(c) for c in cols.elts)):
            return ["term.table whose columns are not string literals"]
        if any(k.arg == "title" and not constant(k.value) for k in call.keywords):
            return ["term.table whose title is not a string literal"]
    return []


#: cli.py and every command module registered from it (`_cli_*.py`, present and future).
CLI_MODULES = [CLI, *sorted(CLI.parent.glob("_cli_*.py"))]


@pytest.mark.parametrize("module", CLI_MODULES, ids=lambda p: p.name)
def test_cli_prints_only_through_the_sanitiser(module: Path) -> None:
    assert violations(module.read_text()) == []


def test_the_guard_sees_the_command_modules() -> None:
    assert {p.name for p in CLI_MODULES} >= {"cli.py", "_cli_common.py", "_cli_agent.py"}


@pytest.mark.parametrize(
    "snippet",
    [
        "typer.echo(f'{detail}')",
        "print(name)",
        "sys.stdout.write(text)",
        "Console().print(x)",
        "from rich.console import Console",
        "term.say(f'Sent {msg.text}')",
        "term.say('{a}' + detail)",
        "term.fail(str(e))",
        "term.table((name,), rows)",
        "term.table(('a',), rows, title=channel)",
        "term.say('{x}', **fields)",
        "term._write(text)",
        "os.write(1, data)",
    ],
)
def test_the_guard_catches_a_raw_print(snippet: str) -> None:
    """The guard is not vacuous: each way of printing past the sanitiser is reported."""
    assert violations(snippet) != []


def test_log_lines_of_long_running_commands_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    # `audit witness --serve` logs why it refused a checkpoint: text a peer posted.
    logger = logging.getLogger("liaison.test-safe-log")
    handler = term.SafeLogHandler("%(levelname)s %(message)s")
    logger.addHandler(handler)
    try:
        logger.warning("refused: %s", "origin\x1b[2J\u202eevil\nsecond line")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert err == "WARNING refused: origin\\x1b[2J\\u202eevil\\x0asecond line\n"
