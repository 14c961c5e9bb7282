"""What the `liaison` CLI shows and writes: server- and sender-supplied text is escaped here.

Everything a peer or the server controls (message content, content types, display names,
channel names, principal and device ids, problem details, witness names, log entries) is
data, never terminal control. `safe` is the one function that makes it so; every way the CLI
prints (`say`, `fail`, `table`, `show_message`, `emit_json`) passes each such value through it,
and `tests/clients/test_terminal.py` checks that `cli.py` prints through nothing else.

What `safe` escapes, visibly and reversibly (a backslash that could be read as the start of an
escape is doubled, so two different strings never look the same):

- C0 controls, DEL and C1 controls (``\\x1b``, ``\\x0d``, ``\\x9b``): escape sequences,
  carriage return, backspace and the single-character CSI/OSC of C1 can move the cursor,
  clear the screen, retitle the window or draw attributes. Newline and tab are kept only in
  message content (``multiline=True``), where the client puts its own prefix on every line;
- every format character (Unicode category Cf, e.g. ``\\u202e``): the bidi embeddings,
  overrides and isolates U+202A-U+202E and U+2066-U+2069, the marks U+200E, U+200F and
  U+061C, zero-width spaces and joiners, the soft hyphen, the BOM and tag characters. They are
  invisible or reorder what is drawn, so text could look like something it is not;
- the line and paragraph separators U+2028 and U+2029 (some renderers break lines there),
  lone surrogates, and code points this Python's Unicode database does not know (they could
  be assigned as any of the above later).

Kept as they are: printable characters of every script, spaces, combining marks (variation
selectors included, so emoji still draw) and private-use characters: none can move the
cursor or start a line.

`read` draws the label banner itself, after escaping: on a terminal the banner lines are in
reverse video and the "From" line in bold, attributes no content can produce any more, and
every content row starts with ``│ `` (content lines are wrapped by the client to the
terminal's width, so the terminal never wraps one onto a row of its own). Off a terminal the
same lines are written without attributes, so no line an attacker controls starts like the
banner or the "From" line there either.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from string import Formatter
from typing import IO, TYPE_CHECKING, Any, NoReturn

import typer

from .errors import InputError

if TYPE_CHECKING:
    # rich is imported where it draws, not with the CLI: `liaison --help` never draws.
    from rich.console import Console
    from rich.progress import Progress
    from rich.text import Text

    from . import _models as m

__all__ = [
    "BANNER_ATTRIBUTE",
    "PREFIX",
    "PROBLEM_PREFIX",
    "SafeLogHandler",
    "content_text",
    "document",
    "emit_json",
    "fail",
    "human_size",
    "json_errors",
    "progress",
    "safe",
    "save_content",
    "say",
    "set_json_errors",
    "show_message",
    "stdout_is_terminal",
    "table",
    "transfer_progress",
    "write_raw",
]

#: Every line of message content starts with this, on a terminal or not.
PREFIX = "│ "
#: SGR reverse video: how the banner is drawn on a terminal (content cannot emit SGR any more).
BANNER_ATTRIBUTE = "\x1b[7m"
_BOLD = "\x1b[1m"
_RESET = "\x1b[0m"

_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"})
#: Printable ASCII other than the backslash never needs a look: the fast path for plain text.
_CANDIDATE = re.compile(r"[^\x20-\x5b\x5d-\x7e]")
_TEXT_TYPES = frozenset({"application/json", "application/xml", "application/javascript"})
_TEXT_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


def _must_escape(c: str, keep: str) -> bool:
    return c not in keep and unicodedata.category(c) in _ESCAPED_CATEGORIES


def _escape(c: str) -> str:
    o = ord(c)
    if o < 0x100:
        return f"\\x{o:02x}"
    return f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def safe(value: object, *, multiline: bool = False) -> str:
    r"""`value` as text that cannot control a terminal: see the module docstring.

    With `multiline`, newline and tab are kept (message content); otherwise they are escaped
    too, so one value is always one line. A backslash is doubled when what follows it would
    otherwise read as an escape (``\x``, ``\u``, ``\U`` or another backslash), so a literal
    ``\x1b`` in the text is shown as ``\\x1b`` and is never confused with an escaped ESC.
    """
    text = value if isinstance(value, str) else str(value)
    keep = "\n\t" if multiline else ""

    def one(match: re.Match[str]) -> str:
        c = match.group()
        if c == "\\":
            after = match.string[match.end() : match.end() + 1]
            doubled = after != "" and (after in "\\xuU" or _must_escape(after, keep))
            return "\\\\" if doubled else "\\"
        return _escape(c) if _must_escape(c, keep) else c

    return _CANDIDATE.sub(one, text)


# --- where output goes -----------------------------------------------------------------------


class SafeLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log records on stderr, each formatted line passed through `safe` (a long-running
    command's log holds what peers sent it: a witness logs why it refused a checkpoint)."""

    def __init__(self, fmt: str) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter(fmt))

    def format(self, record: logging.LogRecord) -> str:
        return safe(super().format(record))


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _attributes(stream: IO[str]) -> bool:
    """Draw attributes (reverse video, bold) on this stream? Terminals other than "dumb"."""
    return stream.isatty() and os.environ.get("TERM", "") != "dumb"


def _write(text: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    try:
        stream.write(text)
    except UnicodeEncodeError:
        # A terminal whose encoding lacks a character: shown as an escape, never dropped.
        enc = stream.encoding or "ascii"
        stream.write(text.encode(enc, "backslashreplace").decode(enc))
    stream.flush()


def _console(*, err: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if err else sys.stdout
    # Scripts read our tables too: never wrap identifiers at 80 columns when not on a terminal.
    return Console(
        stderr=err, highlight=False, emoji=False, width=None if stream.isatty() else 200, markup=False
    )


def _fill(template: str, fields: Mapping[str, object]) -> Text:
    """`template` (the CLI's own text, rich markup allowed) with each ``{field}`` or
    ``{field:style}`` replaced by ``safe(fields[field])``, never parsed as markup."""
    from rich.text import Text

    out = Text()
    for literal, name, spec, conversion in Formatter().parse(template):
        if literal:
            out.append_text(Text.from_markup(literal, emoji=False))
        if name is None:
            continue
        if conversion is not None or name not in fields:
            raise ValueError(f"template field {{{name}}} has no value or a conversion")
        out.append(safe(fields[name]), style=spec or "")
    return out


def _plain(template: str, fields: Mapping[str, object]) -> str | None:
    """`template` filled as plain text when it uses no markup and no style (no rich needed),
    else None."""
    out: list[str] = []
    for literal, name, spec, conversion in Formatter().parse(template):
        if "[" in literal or spec:
            return None
        out.append(literal)
        if name is not None:
            if conversion is not None or name not in fields:
                raise ValueError(f"template field {{{name}}} has no value or a conversion")
            out.append(safe(fields[name]))
    return "".join(out)


def say(template: str, /, *, err: bool = False, **fields: object) -> None:
    """One line of the CLI's own text with escaped values, e.g. ``say("Sent {id}", id=...)``."""
    plain = _plain(template, fields)
    if plain is not None:
        _write(plain + "\n", err=err)  # what rich would print for unstyled text, without rich
        return
    _console(err=err).print(_fill(template, fields), soft_wrap=True)


#: Whether errors are written as JSON (`--json` on the command line): set by the CLI.
_JSON_ERRORS = [False]
PROBLEM_PREFIX = "urn:liaison:client:"


def set_json_errors(on: bool) -> None:
    """Write the errors of this command as one JSON object (True) or one line (False)."""
    _JSON_ERRORS[0] = on


def json_errors() -> bool:
    return _JSON_ERRORS[0]


def fail(
    template: str,
    /,
    *,
    code: int = 1,
    problem: str = "failed",
    status: int | None = None,
    title: str | None = None,
    extra: Mapping[str, object] | None = None,
    **fields: object,
) -> NoReturn:
    """``liaison: <message>`` on stderr, one line whatever the values hold; then exit `code`.

    With JSON errors on, the same message as one JSON object on stderr instead:
    ``{"type", "title"?, "status"?, "detail", "exit", ...extra}``, `type` being `problem` (a
    slug under urn:liaison:client:, or a whole URN such as a server problem's type).
    """
    detail = _fill(template, fields).plain
    if not _JSON_ERRORS[0]:
        _write(f"liaison: {detail}\n", err=True)
        raise typer.Exit(code)
    obj: dict[str, object] = {"type": problem if ":" in problem else PROBLEM_PREFIX + problem}
    if title:
        obj["title"] = title
    if status is not None:
        obj["status"] = status
    obj.update({"detail": detail, "exit": code, **(extra or {})})
    _write(json.dumps(obj, default=str, ensure_ascii=True) + "\n", err=True)
    raise typer.Exit(code)


def document(text: str) -> None:
    """The CLI's own multi-line text (a help topic) on stdout, never read as markup; escaped
    like message content all the same, so it can only ever be text."""
    _write(safe(text, multiline=True).rstrip("\n") + "\n")


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None) -> None:
    """A table on stdout; every cell escaped (and never parsed as markup)."""
    from rich.table import Table
    from rich.text import Text

    t = Table(*columns, title=title)
    for row in rows:
        t.add_row(*(Text(safe(cell)) for cell in row))
    _console().print(t)


def emit_json(obj: Any, *, one_line: bool = False, err: bool = False) -> None:
    """One JSON document on stdout (stderr with `err`). ``ensure_ascii`` escapes every
    character outside printable ASCII (controls, DEL, C1, bidi included) as ``\\uXXXX``, so
    the document is plain ASCII."""
    stream = sys.stderr if err else sys.stdout
    indent = 2 if stream.isatty() and not one_line else None
    _write(json.dumps(obj, indent=indent, default=str, ensure_ascii=True) + "\n", err=err)


def progress(*, disabled: bool) -> Progress:
    """A progress bar on stderr (the CLI's own words only)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=_console(err=True),
        transient=True,
        disable=disabled,
    )


class TransferBars:
    """Byte progress bars on stderr, one per file (`liaison send --attach`, `liaison save`):
    `tick(name, done, total)` is the library's progress callback. Names are escaped."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.tasks: dict[str, Any] = {}

    def tick(self, name: str, done: int, total: int) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(safe(name), total=total)
        self.bar.update(self.tasks[name], completed=done)


@contextlib.contextmanager
def transfer_progress(*, disabled: bool) -> Iterator[TransferBars]:
    """Byte progress bars on stderr while the block runs (none when `disabled`)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=_console(err=True),
        transient=True,
        disable=disabled,
    )
    with bar:
        yield TransferBars(bar)


def human_size(n: int) -> str:
    """Bytes for people: 0 B, 900 B, 1.5 KiB, 20.0 MiB, 2.0 GiB."""
    size, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"


# --- message content ---------------------------------------------------------------------


def content_text(content_type: str, data: bytes) -> tuple[str | None, str]:
    """(the content as text, "") when it is text to show, else (None, why not).

    Text is a ``text/*``, JSON or XML media type (``+json``/``+xml`` suffixes included, so
    STIX bundles are shown) with no charset or a UTF-8/ASCII one, whose bytes are valid UTF-8.
    """
    mime, _, params = content_type.partition(";")
    mime = mime.strip().lower()
    textual = mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith(("+json", "+xml"))
    if not textual:
        return None, "not text"
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in _TEXT_CHARSETS:
            return None, "not UTF-8 text"
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError:
        return None, "not valid UTF-8"


def _columns() -> int:
    return max(shutil.get_terminal_size((80, 24)).columns, 20)


def _rows(line: str, width: int) -> list[str]:
    """Cut `line` (already escaped) into rows of at most `width` terminal cells."""
    from rich.cells import get_character_cell_size

    rows: list[str] = []
    cur: list[str] = []
    used = 0
    for ch in line:
        w = get_character_cell_size(ch)
        if used + w > width and cur:
            rows.append("".join(cur))
            cur, used = [], 0
        cur.append(ch)
        used += w
    rows.append("".join(cur))
    return rows


def _content_lines(text: str) -> list[str]:
    lines = safe(text, multiline=True).split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start another
    return lines


def show_message(msg: m.Message, *, saved: Path | None = None) -> None:
    """`read`'s view: banner, From line, content (or why it is not shown), banner."""
    proof = (
        f"log entry {msg.log_index} proven" if msg.log_proven else "no log proof offered to this principal"
    )
    banner = _fill("==== {label} ====", {"label": msg.label_text}).plain
    head = [
        _fill(
            "From {sender} ({device}) on {channel}, {created}, {type}; signature and sender key "
            "verified, {proof}",
            {
                "sender": msg.sender,
                "device": msg.sender_device,
                "channel": msg.channel,
                "created": msg.created,
                "type": msg.content_type,
                "proof": proof,
            },
        ).plain
    ]
    text, why = content_text(msg.content_type, msg.plaintext)
    size = len(msg.plaintext)
    body: list[str] = []
    if saved is not None:
        head.append(
            _fill(
                "Content ({size} bytes, {type}) written to {path}; not shown.",
                {"size": size, "type": msg.content_type, "path": saved},
            ).plain
        )
    elif text is None:
        head.append(
            _fill(
                "Content not shown ({why}): {size} bytes of {type}. "
                "Save it with: liaison read {id} --output FILE",
                {"why": why, "size": size, "type": msg.content_type, "id": msg.id},
            ).plain
        )
    else:
        body = _content_lines(text)
    _write(_draw(banner, head, body, _attributes(sys.stdout)))


def _draw(banner: str, head: list[str], body: list[str], attributes: bool) -> str:
    if not attributes:
        lines = [banner, *head, *(PREFIX + line if line else PREFIX.rstrip() for line in body), banner]
        return "\n".join(lines) + "\n"
    # One column spare: a row that fills the last column makes some terminals wrap early.
    width = _columns() - 1
    out: list[str] = []

    def emit(rows: list[str], attribute: str) -> None:
        out.extend(f"{attribute}{row}{_RESET}" if attribute else row for row in rows)

    banner_rows = _rows(banner, width)
    emit(banner_rows, BANNER_ATTRIBUTE)
    for line in head:
        first, *rest = _rows(line, width)
        emit([first], _BOLD)
        # Continuation rows are indented: a header can never produce a row that starts a line.
        emit([f"  {row}" for row in _rows("".join(rest), width - 2)] if rest else [], _BOLD)
    for line in body:
        chunks = _rows(line.expandtabs(8), width - len(PREFIX)) if line else [""]
        out.extend(PREFIX + chunk if chunk else PREFIX.rstrip() for chunk in chunks)
    emit(banner_rows, BANNER_ATTRIBUTE)
    return "\n".join(out) + "\n"


def write_raw(data: bytes) -> None:
    """The content's exact bytes on stdout: only to a pipe or a file, never to a terminal."""
    if stdout_is_terminal():
        raise InputError(
            "--raw writes the content's bytes as they are, so not to a terminal: pipe it or use --output FILE"
        )
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def save_content(path: Path, data: bytes, *, force: bool) -> Path:
    """Write `data` to `path` (mode 0600), refusing an existing file unless `force`.

    Without `force` the file is created exclusively (O_EXCL, no symlink followed); with it, the
    bytes go to a new file in the same directory that then replaces `path`. Either way the
    content is never written into an existing device, pipe or terminal.
    """
    import secrets

    target = path.expanduser()
    name = str(target)
    if not force and (target.exists() or target.is_symlink()):
        raise InputError(f"{name} exists: choose another file, or add --force to replace it")
    if target.is_dir():
        raise InputError(f"{name} is a directory")
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp") if force else target
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
    except FileExistsError:
        raise InputError(f"{name} exists: choose another file, or add --force to replace it") from None
    except OSError as e:
        raise InputError(f"cannot write {name}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, target)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise InputError(f"cannot write {name}: {e.strerror}") from None
    return target
