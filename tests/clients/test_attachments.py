"""Attachments on the client (issue 15, protocol 11): sending files with a message, listing
them on `read`, saving them verified; the CLI's `send --attach`, `read` and `save`.

The pure pieces (the part splitter, opening sources, the directory target, the download
writer) run on their own; everything else against a real server of this module's own, with
small upload parts (`LIAISON_ATTACHMENT_PART_BYTES`) so a few hundred KiB make several parts,
and a policy whose CONFIDENTIAL level allows one attachment of at most 100,000 encrypted bytes.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from liaison.clients import (
    Attachment,
    AttachmentMeta,
    Client,
    ContentInvalid,
    InputError,
    KeyStore,
    NotFound,
    cli,
)
from liaison.clients import _attachments as att
from liaison.clients import _terminal as term
from liaison.crypto.attachments import ChunkTree, Sealer, ciphertext_size, context, new_attachment_id
from tests.clients.conftest import FAST_KDF, PASSPHRASE, Liaison, Server, running_server
from tests.clients.test_docs import DOC, blocks

PART = 64 * 1024
LABEL = "UNCLASSIFIED//REL TO UKR, USA"
LIMITED = "CONFIDENTIAL//REL TO UKR, USA"  # one attachment, at most LIMIT encrypted bytes
LIMIT = 100_000


# --- pure pieces -----------------------------------------------------------------------------


@pytest.mark.parametrize("piece", [1, 1000, PART - 1, PART, PART + 1, 3 * PART + 7])
def test_the_splitter_cuts_exact_parts_and_a_short_rest(piece: int) -> None:
    data = os.urandom(5 * PART + 123)
    splitter = att.PartSplitter(PART)
    parts = [p for i in range(0, len(data), piece) for p in splitter.feed(data[i : i + piece])]
    rest = splitter.rest()
    assert all(len(p) == PART for p in parts) and 0 < len(rest) < PART
    assert b"".join([*parts, rest]) == data
    assert len(parts) + 1 == att.parts_of(len(data), PART)


def test_a_stream_ending_on_a_part_boundary_has_no_rest() -> None:
    splitter = att.PartSplitter(PART)
    assert len(list(splitter.feed(bytes(2 * PART)))) == 2 and splitter.rest() == b""
    assert att.parts_of(2 * PART, PART) == 2 and att.parts_of(2 * PART + 1, PART) == 3


def test_sources_take_name_type_and_length(tmp_path: Path) -> None:
    pdf = tmp_path / "map.pdf"
    pdf.write_bytes(b"%PDF" + bytes(1000))
    src = att.open_source(Attachment(pdf))
    assert (src.name, src.media_type, src.length) == ("map.pdf", "application/pdf", 1004)
    assert b"".join(src.pieces()) == pdf.read_bytes()
    src.close()
    assert src.file.closed  # opened here, closed here
    stream = io.BytesIO(b"0123456789")
    stream.seek(4)  # what is left from the position is sent
    src = att.open_source(Attachment(stream, name="rest.bin", media_type="application/x-test"))
    assert (src.name, src.media_type, src.length) == ("rest.bin", "application/x-test", 6)
    src.close()
    assert not stream.closed  # the caller's file stays open
    assert att.open_source(Attachment(io.BytesIO(), name="x")).media_type == "application/octet-stream"
    with pdf.open("rb") as f:  # a file object's own name is its default
        assert att.open_source(Attachment(f)).name == "map.pdf"


@pytest.mark.parametrize(
    ("attachment", "says"),
    [
        (Attachment("/nonexistent/dir/file"), "cannot attach /nonexistent/dir/file: No such file"),
        (Attachment("."), "it is a directory"),
        (Attachment(io.BytesIO(b"x")), "needs a name"),
        (Attachment(io.BytesIO(b"x"), name="\u202eevil.pdf"), "printable characters"),
        (Attachment(io.BytesIO(b"x"), name="a\x1b[2Jb"), "printable characters"),
        (Attachment(io.BytesIO(b"x"), name="../etc/passwd"), "without /"),
        (Attachment(io.BytesIO(b"x"), name=".."), "not . or .."),
        (Attachment(io.BytesIO(b"x"), name="x", media_type="text/plain\x1b[2J"), "media type refused"),
    ],
)
def test_unusable_sources_are_refused_in_one_line(attachment: Attachment, says: str) -> None:
    with pytest.raises(InputError, match=re.escape(says)) as e:
        att.open_source(attachment)
    assert "\n" not in str(e.value)


def test_a_source_of_unknown_length_or_that_ends_early_is_refused(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.close(w)
    with os.fdopen(r, "rb") as pipe, pytest.raises(InputError, match="length is not known"):
        att.open_source(Attachment(pipe, name="pipe"))
    f = tmp_path / "shrinks"
    f.write_bytes(bytes(3 * att.PIECE))
    src = att.open_source(Attachment(f))
    os.truncate(f, att.PIECE)
    with pytest.raises(InputError, match=r"ended .* early"):
        list(src.pieces())
    src.close()


def test_a_directory_target_is_named_only_on_commit(tmp_path: Path) -> None:
    target = att.DirectoryTarget(tmp_path, "report.pdf")
    target.file.write(b"partial")
    assert not (tmp_path / "report.pdf").exists()
    (tmp_file,) = tmp_path.iterdir()
    assert stat.S_IMODE(tmp_file.stat().st_mode) == 0o600 and "report" not in tmp_file.name
    assert target.commit() == tmp_path / "report.pdf"
    assert [p.name for p in tmp_path.iterdir()] == ["report.pdf"]
    # An existing file is never replaced, neither found at the start nor appearing meanwhile.
    with pytest.raises(InputError, match="exists"):
        att.DirectoryTarget(tmp_path, "report.pdf")
    late = att.DirectoryTarget(tmp_path, "late.txt")
    (tmp_path / "late.txt").write_bytes(b"theirs")
    with pytest.raises(InputError, match="exists"):
        late.commit()
    assert (tmp_path / "late.txt").read_bytes() == b"theirs"
    replaced = att.DirectoryTarget(tmp_path, "late.txt", overwrite=True)
    replaced.file.write(b"ours")
    replaced.commit()
    assert (tmp_path / "late.txt").read_bytes() == b"ours"
    gone = att.DirectoryTarget(tmp_path, "gone.bin")
    gone.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.txt", "report.pdf"]


def test_a_hidden_name_is_not_planted() -> None:
    assert att.safe_file_name(".bashrc") == "_.bashrc"
    assert att.safe_file_name("map.pdf") == "map.pdf"


def _sealed(data: bytes, msg: Any, aid: str) -> tuple[bytes, AttachmentMeta, bytes]:
    key = os.urandom(32)
    sealer = Sealer(key, os.urandom(24), context(msg.id, aid, msg.label.to_json()), len(data))
    ciphertext = sealer.update(data) + sealer.finish()
    tree = ChunkTree()
    tree.update(ciphertext)
    meta = AttachmentMeta(
        1, aid, "f.bin", "application/octet-stream", len(data), sealer.sha256, len(ciphertext), tree.root()
    )
    return ciphertext, meta, key


def _fake_message() -> Any:
    label = SimpleNamespace(to_json=lambda: {"classification": "UNCLASSIFIED", "rel_to": ["UKR"]})
    return SimpleNamespace(id="01900000-0000-7000-8000-000000000000", label=label)


def test_the_download_writer_checks_every_byte() -> None:
    msg, aid = _fake_message(), new_attachment_id()
    data = os.urandom(100_000)
    ciphertext, meta, key = _sealed(data, msg, aid)
    assert len(ciphertext) == ciphertext_size(len(data))
    out = io.BytesIO()
    opener = att._Opener(msg, meta, key, out, None)
    for i in range(0, len(ciphertext), 7001):
        opener.feed(ciphertext[i : i + 7001])
    opener.finish()
    assert out.getvalue() == data
    # One byte flipped in a chunk: refused, naming the attachment.
    bad = bytearray(ciphertext)
    bad[30_000] ^= 1
    opener = att._Opener(msg, meta, key, io.BytesIO(), None)
    with pytest.raises(ContentInvalid, match=f"attachment 1 \\({aid}\\) of message .* altered"):
        opener.feed(bytes(bad))
        opener.finish()
    # The right ciphertext under another signed root: refused at the end.
    other = AttachmentMeta(1, aid, "f.bin", "x/y", len(data), meta.sha256, meta.size, bytes(32))
    opener = att._Opener(msg, other, key, io.BytesIO(), None)
    opener.feed(ciphertext)
    with pytest.raises(ContentInvalid, match="chunk tree root is not the one the sender signed"):
        opener.finish()


def test_listed_names_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    """A name can only be printable (the protocol refuses the rest), but the listing escapes
    whatever it is given all the same, and never reads it as markup."""
    names = ["\u202eevil\x1b[2J.pdf", "[bold red]x[/]", "plain.txt"]
    metas = tuple(
        AttachmentMeta(i, new_attachment_id(), n, "text/plain", 2048, "ab" * 32, 3000, bytes(32))
        for i, n in enumerate(names, 1)
    )
    cli._list_attachments(SimpleNamespace(id="m-1", attachments=metas))  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "\u202e" not in out and "\x1b" not in out
    assert "\\u202eevil\\x1b[2J.pdf" in out and "[bold red]x[/]" in out and "2.0 KiB" in out
    assert "abababababababab…" in out


def test_sizes_for_people() -> None:
    assert [term.human_size(n) for n in (0, 900, 1536, 20 * 2**20, 3 * 2**30)] == [
        "0 B",
        "900 B",
        "1.5 KiB",
        "20.0 MiB",
        "3.0 GiB",
    ]


# --- against a real server --------------------------------------------------------------------


def _limited_policy(text: str) -> str:
    """CONFIDENTIAL: one attachment of at most LIMIT encrypted bytes."""
    head, marker, rest = text.partition('name = "CONFIDENTIAL"\n')
    assert marker
    block, sep, tail = rest.partition("[[levels]]")
    block = re.sub(r"(?m)^max_attachments\s*=.*\n|^max_attachment_bytes\s*=.*\n", "", block)
    block = f"max_attachments = 1\nmax_attachment_bytes = {LIMIT}\n" + block
    return head + marker + block + sep + tail


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    mp = pytest.MonkeyPatch()
    mp.setenv("LIAISON_ATTACHMENT_PART_BYTES", str(PART))
    try:
        with running_server(tmp_path_factory.mktemp("attachments-server"), policy=_limited_policy) as srv:
            mp.undo()
            yield srv
    finally:
        mp.undo()


def analysts(home: Path, server: Server) -> Path:
    """In `home`: root, a USA and a UKR analyst (SECRET), one channel `ops` up to
    SECRET//REL TO UKR, USA, enrolled on `server` through the CLI."""
    mp = pytest.MonkeyPatch()
    try:
        run = Liaison(home, server, mp)
        run.enrol("root", server.init["root_invitation"], principal="root")
        run.principal("usa", "USA", "SECRET")
        run.principal("ukr", "UKR", "SECRET")
        run("-p", "root", "admin", "channel", "create", "ops", "--ceiling", "SECRET//REL TO UKR, USA")
        run("-p", "root", "admin", "channel", "members", "ops", "usa", "ukr")
    finally:
        mp.undo()
    return home


@pytest.fixture(scope="module")
def world_home(own_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return analysts(tmp_path_factory.mktemp("attachments-home"), own_server)


@pytest.fixture
def run(own_server: Server, world_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Liaison:
    home = tmp_path / "home"
    shutil.copytree(world_home, home)
    return Liaison(home, own_server, monkeypatch)


def _client(run: Liaison, profile: str, transport: httpx.AsyncBaseTransport | None = None) -> Client:
    store = KeyStore(run.home, opslimit=FAST_KDF[0], memlimit=FAST_KDF[1])
    return Client.from_profile(profile, PASSPHRASE, store=store, transport=transport)


class Counting(httpx.AsyncHTTPTransport):
    """The real server, every request's method and path noted (a failed one too)."""

    def __init__(self, cert: str) -> None:
        super().__init__(verify=ssl.create_default_context(cafile=cert))
        self.seen: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path))
        return await super().handle_async_request(request)

    def puts(self) -> list[int]:
        """The part numbers PUT, in order."""
        return [int(p.rsplit("/", 1)[1]) for m, p in self.seen if m == "PUT"]


def _files(tmp_path: Path) -> tuple[Path, Path]:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    big = tmp_path / "imagery.bin"
    big.write_bytes(os.urandom(5 * PART + 4321))  # six parts of ciphertext and a short one
    return empty, big


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_library_sends_lists_and_saves_two_files(run: Liaison, tmp_path: Path) -> None:
    empty, big = _files(tmp_path)
    seen: list[tuple[str, int, int]] = []
    counting = Counting(run.server.cert)
    with _client(run, "usa", counting) as usa:
        sent = usa.send(
            "ops",
            LABEL,
            b"two files",
            attachments=[Attachment(empty), Attachment(big, media_type="image/x-raw")],
            progress=lambda *a: seen.append(a),
        )
    parts = [p for m, p in counting.seen if m == "PUT"]
    assert len(parts) == att.parts_of(ciphertext_size(big.stat().st_size), PART) + 1  # + the empty file's
    assert seen[-1] == ("imagery.bin", big.stat().st_size, big.stat().st_size) and ("empty.txt", 0, 0) in seen
    assert [(a.index, a.name, a.media_type, a.length) for a in sent.attachments] == [
        (1, "empty.txt", "text/plain", 0),
        (2, "imagery.bin", "image/x-raw", big.stat().st_size),
    ]
    with _client(run, "ukr") as ukr:
        msg = ukr.read(sent.id)
        assert msg.text == "two files" and msg.attachments == sent.attachments
        assert [a.sha256 for a in msg.attachments] == [_sha(empty), _sha(big)]
        out = tmp_path / "out"
        out.mkdir()
        saved = ukr.save_attachments(sent.id, out)
        assert [s.path for s in saved] == [str(out / "empty.txt"), str(out / "imagery.bin")]
        assert (out / "imagery.bin").read_bytes() == big.read_bytes() and (
            out / "empty.txt"
        ).read_bytes() == b""
        into = io.BytesIO()
        one = ukr.save_attachment(sent.id, msg.attachments[1].id, into)
        assert into.getvalue() == big.read_bytes() and one.path is None and one.sha256 == _sha(big)
        with pytest.raises(InputError, match="exists: nothing was saved"):
            ukr.save_attachments(sent.id, out)
        with pytest.raises(InputError, match="has 2 attachments: no attachment 3"):
            ukr.save_attachment(sent.id, 3, out)
    json_form = msg.to_json()["attachments"][1]
    assert json_form["root"] and json_form["sha256"] == _sha(big) and "key" not in json_form


def test_cli_attach_read_and_save(run: Liaison, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty, big = _files(tmp_path)
    sent = run(
        "-p",
        "usa",
        "--json",
        "send",
        "-c",
        "ops",
        "-l",
        LABEL,
        "--attach",
        str(empty),
        "--attach",
        str(big),
        input="see the imagery",
    ).json()
    assert [a["name"] for a in sent["attachments"]] == ["empty.txt", "imagery.bin"]
    shown = run("-p", "ukr", "read", sent["id"]).stdout
    assert "see the imagery" in shown and "empty.txt" in shown and "imagery.bin" in shown
    assert "0 B" in shown and "324.2 KiB" in shown and _sha(big)[:16] in shown
    assert "liaison save" in shown
    listed = run("-p", "ukr", "--json", "read", sent["id"]).json()["attachments"]
    assert [(a["index"], a["length"]) for a in listed] == [(1, 0), (2, big.stat().st_size)]

    out = tmp_path / "out"
    out.mkdir()
    r = run("-p", "ukr", "save", sent["id"][:13], "--attachment", "2", "--output", str(out))
    assert f"Saved {out / 'imagery.bin'}" in r.stdout and f"sha256 {_sha(big)} verified" in r.stdout
    assert [p.name for p in out.iterdir()] == ["imagery.bin"] and _sha(out / "imagery.bin") == _sha(big)
    line = run.refused("-p", "ukr", "save", sent["id"], "--attachment", "2", "--output", str(out))
    assert "imagery.bin exists" in line
    run("-p", "ukr", "save", sent["id"], "--attachment", "2", "--output", str(out), "--force")
    # All of them, into the current directory, as JSON.
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    saved = run("-p", "ukr", "--json", "save", sent["id"]).json()["saved"]
    assert [(s["name"], s["sha256"]) for s in saved] == [
        ("empty.txt", _sha(empty)),
        ("imagery.bin", _sha(big)),
    ]
    assert sorted(p.name for p in here.iterdir()) == ["empty.txt", "imagery.bin"]


def test_cli_refuses_a_missing_file_before_sending(run: Liaison, tmp_path: Path) -> None:
    before = len(run("-p", "ukr", "--json", "inbox").json())
    line = run.refused(
        "-p", "usa", "send", "-c", "ops", "-l", LABEL, "--attach", str(tmp_path / "nope.pdf"), input="x"
    )
    assert "cannot attach" in line and "nope.pdf" in line
    unreadable = tmp_path / "secret.bin"
    unreadable.write_bytes(b"x")
    unreadable.chmod(0)
    if not os.access(unreadable, os.R_OK):  # (root reads anything)
        line = run.refused(
            "-p", "usa", "send", "-c", "ops", "-l", LABEL, "--attach", str(unreadable), input="x"
        )
        assert "cannot attach" in line and "Permission denied" in line
    assert len(run("-p", "ukr", "--json", "inbox").json()) == before
    line = run.refused("-p", "ukr", "save", "0" * 8, "--output", str(tmp_path / "nodir"))
    assert "is not a directory" in line


def test_limits_are_refused_before_anything_is_uploaded(run: Liaison, tmp_path: Path) -> None:
    small, other = tmp_path / "a.txt", tmp_path / "b.txt"
    small.write_bytes(b"a")
    other.write_bytes(b"b")
    large = tmp_path / "large.bin"
    large.write_bytes(bytes(LIMIT))  # its ciphertext is more than LIMIT
    counting = Counting(run.server.cert)
    with _client(run, "usa", counting) as usa:
        with pytest.raises(InputError, match="2 attachments: CONFIDENTIAL allows at most 1"):
            usa.send("ops", LIMITED, b"x", attachments=[Attachment(small), Attachment(other)])
        with pytest.raises(
            InputError, match=f"more than the {LIMIT} encrypted bytes allowed at CONFIDENTIAL"
        ):
            usa.send("ops", LIMITED, b"x", attachments=[Attachment(large)])
        with pytest.raises(InputError, match=r"two attachments are named 'a\.txt'"):
            usa.send("ops", LABEL, b"x", attachments=[Attachment(small), Attachment(other, name="a.txt")])
        with pytest.raises(InputError, match="printable"):
            usa.send("ops", LABEL, b"x", attachments=[Attachment(small, name="\u202etxt.exe")])
    assert not [p for _, p in counting.seen if p.startswith(("/v1/attachments", "/v1/messages"))]
    line = run.refused("-p", "usa", "send", "-c", "ops", "-l", LIMITED, "--attach", str(large), input="x")
    assert "encrypted bytes allowed at CONFIDENTIAL" in line
    # Within the limits, the limited level takes one.
    sent = run(
        "-p", "usa", "--json", "send", "-c", "ops", "-l", LIMITED, "--attach", str(small), input="x"
    ).json()
    assert len(sent["attachments"]) == 1


def _stored_ciphertext(server: Server, aid: str) -> Path:
    """A file of attachment `aid`'s stored ciphertext: the object itself, or (an object kept
    as the folder of its parts and a manifest) its first part."""
    found = sorted(
        (p for p in (server.data / "attachments" / "objects").rglob("*") if p.is_file() and aid in str(p)),
        key=lambda p: (p.name == "manifest", p.name),
    )
    assert found and found[0].name != "manifest", found
    return found[0]


def test_a_tampered_download_is_refused_and_leaves_no_file(run: Liaison, tmp_path: Path) -> None:
    _, big = _files(tmp_path)
    sent = run(
        "-p", "usa", "--json", "send", "-c", "ops", "-l", LABEL, "--attach", str(big), input="x"
    ).json()
    stored = _stored_ciphertext(run.server, sent["attachments"][0]["id"])
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    line = run.refused("-p", "ukr", "save", sent["id"], "--output", str(out))
    assert "refused (content-invalid)" in line and "altered" in line and sent["attachments"][0]["id"] in line
    assert list(out.iterdir()) == []  # neither the file nor its temporary one


def test_a_hidden_name_is_saved_visibly(run: Liaison, tmp_path: Path) -> None:
    with _client(run, "usa") as usa:
        sent = usa.send(
            "ops", LABEL, b"x", attachments=[Attachment(io.BytesIO(b"echo hi\n"), name=".bashrc")]
        )
    out = tmp_path / "out"
    out.mkdir()
    run("-p", "ukr", "save", sent.id, "--output", str(out))
    assert [p.name for p in out.iterdir()] == ["_.bashrc"]


def test_the_docs_example_runs(run: Liaison, tmp_path: Path) -> None:
    (example,) = [b.text for b in blocks(DOC) if b.lang == "python" and "Attachment(" in b.text]
    script = tmp_path / "example.py"
    script.write_text(example)
    env = {
        **os.environ,
        "LIAISON_HOME": str(run.home),
        "LIAISON_PASSPHRASE": PASSPHRASE,
        "LIAISON_CHANNEL": "ops",
        "LIAISON_LABEL": LABEL,
        "LIAISON_SENDER": "usa",
        "LIAISON_READER": "ukr",
        "LIAISON_OUTPUT": str(tmp_path),
    }
    r = subprocess.run([sys.executable, str(script)], capture_output=True, env=env, timeout=300, check=False)
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert "1 track-7.geojson " in out and " 2300000 " in out and "verified" in out
    assert (tmp_path / "copy.geojson").stat().st_size == 2_300_000


def test_a_send_that_fails_after_uploading_deletes_its_uploads(run: Liaison, tmp_path: Path) -> None:
    _, big = _files(tmp_path)
    counting = Counting(run.server.cert)

    def interrupted(name: str, done: int, total: int) -> None:
        if done > 2 * PART:
            raise KeyError("the caller gave up")

    with _client(run, "usa", counting) as usa:
        with pytest.raises(KeyError, match="gave up"):
            usa.send("ops", LABEL, b"x", attachments=[Attachment(big)], progress=interrupted)
        assert [p for m, p in counting.seen if m == "POST"].count("/v1/attachments") == 1
        aid = next(p.split("/")[3] for m, p in counting.seen if m == "PUT")
        assert ("DELETE", f"/v1/attachments/{aid}") in counting.seen
        assert not [p for m, p in counting.seen if p == "/v1/messages"]
        with pytest.raises(NotFound):  # the upload is gone
            usa._run(usa.aio._json("GET", f"/v1/attachments/{aid}"))
