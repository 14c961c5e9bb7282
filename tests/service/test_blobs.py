"""The attachment store's contract (service/storage/blobs.py), every test on each backend: the
directory of files, and an S3 bucket (service/storage/s3blobs.py) on a real SeaweedFS where
LIAISON_TEST_S3_URL names one (tests/service/s3_kit.py; else those skip and say how). Uploads
begun once, parts stored whole or not at all and replaced, listed for a resume, completed into
one object atomically, aborted; objects read by range a piece at a time, deleted; names that
could become paths refused; two processes sharing one upload. Then what only one backend has:
S3's own check of a part's SHA-256, its races and failures, the checksums AWS wants (stubbed),
and the file store's renames."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from liaison.service.storage import s3blobs
from liaison.service.storage.blobs import PIECE, BlobError, BlobStore, FileBlobStore
from liaison.service.storage.s3blobs import S3BlobStore
from tests.service.s3_kit import S3_SKIP, S3Server, s3_bucket, s3_server

KEY, OTHER = "obj_0123456789abcdef", "obj_fedcba9876543210"
#: The smallest part S3 takes other than an object's last.
MIN_PART = 5 << 20


# -- the backends ---------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Place:
    """Where one test's S3 stores are: the session's bucket, a prefix of the test's own."""

    server: S3Server
    bucket: str
    prefix: str

    def store(self) -> S3BlobStore:
        s = self.server
        return S3BlobStore(
            s.endpoint, self.bucket, self.prefix, s.region, s.access_key_id, s.secret_access_key
        )


@pytest.fixture(scope="session")
def s3_session_bucket() -> Iterator[tuple[S3Server, str]]:
    server = s3_server()
    if server is None:
        pytest.skip(S3_SKIP)
    with s3_bucket(server) as bucket:
        yield server, bucket


@pytest.fixture
def s3_place(s3_session_bucket: tuple[S3Server, str]) -> S3Place:
    server, bucket = s3_session_bucket
    return S3Place(server, bucket, f"t-{secrets.token_hex(6)}/")


Opener = Callable[[], BlobStore]


@pytest.fixture(params=["file", "s3"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens stores over one place, as several processes of the server would."""
    made: list[BlobStore] = []
    place: S3Place | None = request.getfixturevalue("s3_place") if request.param == "s3" else None

    def opener() -> BlobStore:
        store: BlobStore = FileBlobStore(tmp_path / "blobs") if place is None else place.store()
        made.append(store)
        return store

    yield opener
    for store in made:
        await store.close()


@pytest.fixture
def store(open_store: Opener) -> BlobStore:
    return open_store()


@pytest.fixture
async def s3_store(s3_place: S3Place) -> AsyncIterator[S3BlobStore]:
    store = s3_place.store()
    yield store
    await store.close()


async def _pieces(*chunks: bytes) -> AsyncIterator[bytes]:
    for c in chunks:
        yield c


async def _dropped() -> AsyncIterator[bytes]:
    yield b"x" * 100
    raise ConnectionResetError("the client went away")


async def _read(store: BlobStore, key: str, start: int, end: int) -> list[bytes]:
    return [p async for p in store.read(key, start, end)]


async def _make(store: BlobStore, key: str, *parts: bytes) -> None:
    await store.begin(key)
    for number, data in enumerate(parts, 1):
        await store.put_part(key, number, _pieces(data))
    await store.complete(key, list(range(1, len(parts) + 1)))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the contract, on each backend ----------------------------------------------------------


async def test_begin_is_idempotent_and_keeps_the_parts(store: BlobStore) -> None:
    await store.begin(KEY)
    await store.put_part(KEY, 1, _pieces(b"abc"))
    await store.begin(KEY)
    assert [(p.number, p.size) for p in await store.parts(KEY)] == [(1, 3)]
    assert [u.key for u in await store.uploads()] == [KEY]


async def test_a_part_of_no_begun_upload_is_refused(store: BlobStore) -> None:
    with pytest.raises(BlobError, match="no upload"):
        await store.put_part(KEY, 1, _pieces(b"x"))
    assert await store.parts(KEY) == []
    assert await store.uploads() == []


async def test_parts_are_stored_whole_and_replaced(store: BlobStore) -> None:
    one, two = b"a" * (MIN_PART + 5), b"b" * 1000
    await store.begin(KEY)
    info = await store.put_part(KEY, 2, _pieces(two))
    assert (info.number, info.size, info.sha256) == (2, 1000, _sha(two))
    info = await store.put_part(KEY, 1, _pieces(one[:10], one[10:PIECE], one[PIECE:]))
    assert (info.number, info.size, info.sha256) == (1, MIN_PART + 5, _sha(one))
    # A part sent again replaces the earlier one of its number; a SHA-256 given is used.
    info = await store.put_part(KEY, 2, _pieces(two[:500]), hashlib.sha256(two[:500]).digest())
    assert (info.size, info.sha256) == (500, _sha(two[:500]))
    stored = await store.parts(KEY)
    assert [(p.number, p.size) for p in stored] == [(1, MIN_PART + 5), (2, 500)]
    assert [p.sha256 for p in stored] in ([_sha(one), _sha(two[:500])], [None, None])
    assert await store.complete(KEY, [1, 2]) == MIN_PART + 505
    assert b"".join(await _read(store, KEY, MIN_PART, MIN_PART + 505)) == b"a" * 5 + two[:500]


async def test_an_interrupted_part_is_never_listed_nor_used(store: BlobStore) -> None:
    await store.begin(KEY)
    with pytest.raises(ConnectionResetError):
        await store.put_part(KEY, 1, _dropped())
    assert await store.parts(KEY) == []
    with pytest.raises(BlobError, match="no part 1"):
        await store.complete(KEY, [1])
    assert await store.size(KEY) is None
    # Nor does one cut short replace the part stored before it.
    await store.put_part(KEY, 1, _pieces(b"kept"))
    with pytest.raises(ConnectionResetError):
        await store.put_part(KEY, 1, _dropped())
    assert [(p.number, p.size) for p in await store.parts(KEY)] == [(1, 4)]
    assert await store.complete(KEY, [1]) == 4
    assert await _read(store, KEY, 0, 4) == [b"kept"]


async def test_completing_joins_the_named_parts_in_order(store: BlobStore) -> None:
    one, two, three = b"a" * (MIN_PART + 1), b"b" * (MIN_PART + 2), b"c" * 300
    await store.begin(KEY)
    for number, data in ((3, three), (1, one), (2, two)):
        await store.put_part(KEY, number, _pieces(data))
    # No object until the upload is completed, never half of one.
    assert await store.size(KEY) is None
    with pytest.raises(BlobError, match="no object"):
        await _read(store, KEY, 0, 1)
    assert await store.complete(KEY, [1, 3]) == len(one) + len(three)  # part 2 left out
    assert await store.size(KEY) == len(one) + len(three)
    assert b"".join(await _read(store, KEY, 0, len(one) + len(three))) == one + three
    across = await _read(store, KEY, len(one) - 3, len(one) + 3)  # a range across two parts
    assert b"".join(across) == b"aaaccc"
    # The upload is gone.
    assert await store.parts(KEY) == []
    assert await store.uploads() == []
    with pytest.raises(BlobError, match="no upload"):
        await store.put_part(KEY, 1, _pieces(b"x"))


async def test_a_missing_part_is_refused_and_makes_nothing(store: BlobStore) -> None:
    await store.begin(KEY)
    await store.put_part(KEY, 1, _pieces(b"a" * MIN_PART))
    with pytest.raises(BlobError, match="no part 2"):
        await store.complete(KEY, [1, 2])
    with pytest.raises(BlobError, match="no part 1"):
        await store.complete(KEY, [])
    assert await store.size(KEY) is None
    assert [p.number for p in await store.parts(KEY)] == [1]  # the upload is still there
    with pytest.raises(BlobError, match="no part 1"):
        await store.complete(OTHER, [1])  # no upload at all


async def test_an_object_is_never_replaced_only_deleted(store: BlobStore) -> None:
    await _make(store, KEY, b"first")
    with pytest.raises(BlobError, match="never replaced"):
        await _make(store, KEY, b"second!")
    assert await store.size(KEY) == 5
    assert await _read(store, KEY, 0, 5) == [b"first"]
    await store.abort(KEY)
    await store.delete(KEY)
    await _make(store, KEY, b"second!")
    assert await _read(store, KEY, 0, 7) == [b"second!"]


async def test_reads_by_range_a_piece_at_a_time(store: BlobStore) -> None:
    data = bytes(range(256)) * ((2 * PIECE + 1000) // 256)
    n = len(data)
    await _make(store, KEY, data)
    whole = await _read(store, KEY, 0, n)
    assert all(len(p) <= PIECE for p in whole) and len(whole) >= 3 and b"".join(whole) == data
    some = await _read(store, KEY, 3, PIECE + 20)
    assert all(len(p) <= PIECE for p in some) and b"".join(some) == data[3 : PIECE + 20]
    assert await _read(store, KEY, 5, 5) == []
    assert await _read(store, KEY, n, n) == []
    with pytest.raises(BlobError, match="shorter"):
        await _read(store, KEY, 0, n + 1)
    with pytest.raises(BlobError, match="shorter"):
        await _read(store, KEY, n + 10, n + 20)
    with pytest.raises(BlobError, match="not a range"):
        await _read(store, KEY, 2, 1)
    with pytest.raises(BlobError, match=f"no object {OTHER}"):
        await _read(store, OTHER, 0, 1)
    with pytest.raises(BlobError, match=f"no object {OTHER}"):
        await _read(store, OTHER, 0, 0)


async def test_deleting_is_idempotent(store: BlobStore) -> None:
    await _make(store, KEY, b"x" * 10)
    await store.delete(KEY)
    await store.delete(KEY)
    await store.delete(OTHER)  # never was
    assert await store.size(KEY) is None
    with pytest.raises(BlobError, match="no object"):
        await _read(store, KEY, 0, 1)


async def test_aborting_is_idempotent_and_leaves_the_object(store: BlobStore) -> None:
    await _make(store, KEY, b"kept")
    await store.begin(KEY)
    await store.put_part(KEY, 1, _pieces(b"new"))
    await store.abort(KEY)
    await store.abort(KEY)
    await store.abort(OTHER)  # never was
    assert await store.parts(KEY) == []
    assert await store.uploads() == []
    with pytest.raises(BlobError, match="no upload"):
        await store.put_part(KEY, 1, _pieces(b"late"))
    assert await _read(store, KEY, 0, 4) == [b"kept"]


async def test_uploads_are_the_open_ones_with_when_they_began(store: BlobStore) -> None:
    keys = [f"up_{i}_0123456789" for i in range(3)]
    before = datetime.now(UTC)
    for key in keys:
        await store.begin(key)
    after = datetime.now(UTC)
    await store.put_part(keys[1], 1, _pieces(b"x"))
    await store.complete(keys[1], [1])
    await store.abort(keys[2])
    listed = await store.uploads()
    assert [u.key for u in listed] == [keys[0]]
    # A plausible time, in UTC (S3 keeps whole seconds).
    assert listed[0].begun.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) <= listed[0].begun <= after + timedelta(seconds=5)


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "short", "UPPER_CASE_NAME", "a/b/cdefghij", "", "x" * 97, "-leading-dash"]
)
async def test_names_that_could_be_paths_are_refused(store: BlobStore, tmp_path: Path, name: str) -> None:
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.begin(name),
        lambda: store.put_part(name, 1, _pieces(b"x")),
        lambda: store.parts(name),
        lambda: store.complete(name, [1]),
        lambda: store.abort(name),
        lambda: _read(store, name, 0, 1),
        lambda: store.size(name),
        lambda: store.delete(name),
    ]
    for call in calls:
        with pytest.raises(BlobError, match="not a valid name"):
            await call()
    assert await store.uploads() == []
    assert not await asyncio.to_thread(lambda: any(tmp_path.rglob("*passwd*")))


async def test_bad_part_numbers_and_digests_are_refused(store: BlobStore) -> None:
    await store.begin(KEY)
    for number in (0, 10_001, -1):
        with pytest.raises(BlobError, match="part number"):
            await store.put_part(KEY, number, _pieces(b"x"))
    with pytest.raises(BlobError, match="32 bytes"):
        await store.put_part(KEY, 1, _pieces(b"x"), b"too short")
    assert await store.parts(KEY) == []


async def test_two_processes_share_one_upload(open_store: Opener) -> None:
    first, second = open_store(), open_store()
    one, two = b"a" * MIN_PART, b"b" * 10
    await first.begin(KEY)
    await second.put_part(KEY, 1, _pieces(one))  # an upload the other began
    await second.begin(KEY)  # idempotent across processes too
    await second.put_part(KEY, 2, _pieces(two))
    assert [(p.number, p.size) for p in await first.parts(KEY)] == [(1, MIN_PART), (2, 10)]
    assert await first.complete(KEY, [1, 2]) == MIN_PART + 10
    assert b"".join(await _read(second, KEY, 0, MIN_PART + 10)) == one + two
    assert await second.uploads() == []
    # One remembers an upload the other aborted and began again: it finds the new one.
    await first.begin(OTHER)
    await second.abort(OTHER)
    await second.begin(OTHER)
    await first.put_part(OTHER, 1, _pieces(b"fresh"))
    assert [p.size for p in await second.parts(OTHER)] == [5]
    await second.abort(OTHER)
    with pytest.raises(BlobError, match="no upload"):
        await first.put_part(OTHER, 1, _pieces(b"late"))
    assert await first.parts(OTHER) == []


# -- S3 only ----------------------------------------------------------------------------------


async def test_s3_refuses_a_part_that_does_not_match_its_sha256(s3_store: S3BlobStore) -> None:
    # The file store trusts the SHA-256 the caller verified; S3 checks it again (BadDigest).
    await s3_store.begin(KEY)
    with pytest.raises(BlobError, match="BadDigest"):
        await s3_store.put_part(KEY, 1, _pieces(b"abc"), hashlib.sha256(b"abd").digest())
    assert await s3_store.parts(KEY) == []


async def test_s3_two_uploads_of_one_key_resolve_to_the_earliest(s3_place: S3Place) -> None:
    # Two processes began KEY at once: every store keeps the earliest (then least UploadId).
    client = s3_place.server.client()
    name = f"{s3_place.prefix}objects/{KEY}"
    try:
        for size in (3, 4):
            upload = client.create_multipart_upload(Bucket=s3_place.bucket, Key=name)["UploadId"]
            client.upload_part(
                Bucket=s3_place.bucket, Key=name, UploadId=upload, PartNumber=1, Body=b"x" * size
            )
        listed = client.list_multipart_uploads(Bucket=s3_place.bucket, Prefix=name)["Uploads"]
        earliest = min(listed, key=lambda u: (u["Initiated"], u["UploadId"]))["UploadId"]
        expected = client.list_parts(Bucket=s3_place.bucket, Key=name, UploadId=earliest)["Parts"][0]["Size"]
        store = s3_place.store()
        try:
            assert [u.key for u in await store.uploads()] == [KEY]  # listed once
            await store.begin(KEY)
            assert [p.size for p in await store.parts(KEY)] == [expected]
            left = client.list_multipart_uploads(Bucket=s3_place.bucket, Prefix=name)["Uploads"]
            assert [u["UploadId"] for u in left] == [earliest]
        finally:
            await store.close()
    finally:
        client.close()


async def test_s3_joins_parts_in_ascending_order_only(s3_store: S3BlobStore) -> None:
    await s3_store.begin(KEY)
    for number in (1, 2):
        await s3_store.put_part(KEY, number, _pieces(b"p" * MIN_PART))
    for numbers in ([2, 1], [1, 1]):
        with pytest.raises(BlobError, match="ascending"):
            await s3_store.complete(KEY, numbers)
    assert await s3_store.size(KEY) is None


async def test_s3_a_small_part_before_the_last_is_refused_in_one_line(s3_store: S3BlobStore) -> None:
    await s3_store.begin(KEY)
    await s3_store.put_part(KEY, 1, _pieces(b"small"))
    await s3_store.put_part(KEY, 2, _pieces(b"last"))
    with pytest.raises(BlobError, match="EntityTooSmall") as refused:
        await s3_store.complete(KEY, [1, 2])
    assert "\n" not in str(refused.value)
    assert [p.number for p in await s3_store.parts(KEY)] == [1, 2]


async def test_s3_check_names_the_endpoint_and_the_bucket(s3_place: S3Place) -> None:
    good = s3_place.store()
    missing = S3Place(s3_place.server, "liaison-no-such-bucket", "p/").store()
    s = s3_place.server
    wrong = S3BlobStore(s.endpoint, s3_place.bucket, "p/", s.region, s.access_key_id, "not-the-secret")
    try:
        await good.check()
        with pytest.raises(BlobError, match=r"bucket liaison-no-such-bucket at http://.*no such bucket"):
            await missing.check()
        with pytest.raises(BlobError, match="access is denied") as denied:
            await wrong.check()
        assert "not-the-secret" not in str(denied.value)
    finally:
        for store in (good, missing, wrong):
            await store.close()


async def test_s3_unreachable_is_a_connection_error_and_check_says_so() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = S3BlobStore(f"http://127.0.0.1:{port}", "bucket", "p/", "us-east-1", "key", "secret")
    try:
        with pytest.raises(ConnectionError, match="unreachable"):
            await store.size(KEY)
        with pytest.raises(OSError):
            await store.begin(KEY)
        with pytest.raises(BlobError, match=rf"bucket bucket at http://127.0.0.1:{port} is unreachable"):
            await store.check()
    finally:
        await store.close()


# -- S3, stubbed: what AWS asks and answers, and what no server here does -------------------


def test_s3_arguments_are_checked() -> None:
    with pytest.raises(BlobError, match="credentials"):
        S3BlobStore("http://key:secret@127.0.0.1:1", "bucket", "p/", "us-east-1", None, None)
    with pytest.raises(BlobError, match="go together"):
        S3BlobStore("http://127.0.0.1:1", "bucket", "p/", "us-east-1", "key", None)
    with pytest.raises(BlobError, match="not an http"):
        S3BlobStore("ftp://127.0.0.1:1", "bucket", "p/", "us-east-1", None, None)


async def test_s3_where_the_store_keeps_part_checksums_uploads_declare_them() -> None:
    # AWS: a part sent with x-amz-checksum-sha256 needs an upload created with ChecksumAlgorithm
    # SHA256, whose completion repeats each part's checksum (ListParts returns them).
    store = S3BlobStore("https://s3.example.invalid", "bucket", "p/", "eu-west-3", "key", "secret")
    name = f"p/objects/{KEY}"
    data = b"d" * 100
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    probe = [base64.b64encode(hashlib.sha256(p).digest()).decode() for p in s3blobs.PROBE_PARTS]
    begun = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with Stubber(store._client) as stub:
        any_upload = {"Bucket": "bucket", "Key": ANY, "UploadId": ANY}
        stub.add_response(
            "create_multipart_upload",
            {"UploadId": "probe"},
            {"Bucket": "bucket", "Key": ANY, "ChecksumAlgorithm": "SHA256"},
        )
        for sent in probe:  # part 1, twice: AWS lists the second only
            stub.add_response(
                "upload_part",
                {"ETag": '"p"'},
                {**any_upload, "PartNumber": 1, "Body": ANY, "ChecksumSHA256": sent},
            )
        stub.add_response(
            "list_parts", {"Parts": [{"PartNumber": 1, "ChecksumSHA256": probe[1]}]}, any_upload
        )
        stub.add_response("abort_multipart_upload", {}, any_upload)
        # begin
        stub.add_response("list_multipart_uploads", {"Uploads": []}, {"Bucket": "bucket", "Prefix": name})
        stub.add_response(
            "create_multipart_upload",
            {"UploadId": "u1"},
            {"Bucket": "bucket", "Key": name, "ChecksumAlgorithm": "SHA256"},
        )
        stub.add_response(
            "list_multipart_uploads",
            {"Uploads": [{"Key": name, "UploadId": "u1", "Initiated": begun}]},
            {"Bucket": "bucket", "Prefix": name},
        )
        # put_part, parts, complete
        upload = {"Bucket": "bucket", "Key": name, "UploadId": "u1"}
        stub.add_response(
            "upload_part",
            {"ETag": '"e1"'},
            {**upload, "PartNumber": 1, "Body": data, "ContentLength": 100, "ChecksumSHA256": checksum},
        )
        listed = {"Parts": [{"PartNumber": 1, "ETag": '"e1"', "Size": 100, "ChecksumSHA256": checksum}]}
        stub.add_response("list_parts", listed, upload)
        stub.add_response("list_parts", listed, upload)
        stub.add_response(
            "complete_multipart_upload",
            {},
            {
                **upload,
                "MultipartUpload": {"Parts": [{"PartNumber": 1, "ETag": '"e1"', "ChecksumSHA256": checksum}]},
                "IfNoneMatch": "*",
            },
        )
        await store.begin(KEY)
        assert (await store.put_part(KEY, 1, _pieces(data))).sha256 == _sha(data)
        assert [(p.number, p.size, p.sha256) for p in await store.parts(KEY)] == [(1, 100, _sha(data))]
        assert await store.complete(KEY, [1]) == 100
        stub.assert_no_pending_responses()
    await store.close()


async def test_s3_a_failing_store_is_unavailable_not_a_refusal() -> None:
    store = S3BlobStore("https://s3.example.invalid", "bucket", "p/", "eu-west-3", "key", "secret")
    with Stubber(store._client) as stub:
        stub.add_client_error("head_object", "SlowDown", "Please reduce your request rate.", 503)
        stub.add_client_error("head_object", "InternalError", "We encountered an internal error.", 500)
        stub.add_client_error("head_object", "AccessDenied", "Access Denied", 403)
        for _ in range(2):
            with pytest.raises(ConnectionError, match="failed"):
                await store.size(KEY)
        with pytest.raises(BlobError, match="AccessDenied"):
            await store.size(KEY)
    await store.close()


# -- the file store's own -------------------------------------------------------------------


async def test_files_an_interrupted_part_leaves_no_temporary(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    await store.begin(KEY)
    with pytest.raises(ConnectionResetError):
        await store.put_part(KEY, 1, _dropped())
    folder = tmp_path / "blobs" / "uploads" / KEY
    assert [p.name for p in folder.iterdir()] == ["begun"]  # no temporary left
    await store.abort(KEY)
    await store.abort(KEY)
    assert not folder.exists()


async def test_files_completing_copies_nothing_and_deleting_removes_the_manifest_first(
    tmp_path: Path,
) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    await store.begin(KEY)
    await store.put_part(KEY, 1, _pieces(b"a" * 10))
    await store.put_part(KEY, 2, _pieces(b"b" * 5))
    part = next((tmp_path / "blobs" / "uploads" / KEY).glob("1.*.part"))
    inode = part.stat().st_ino
    assert await store.complete(KEY, [1, 2]) == 15
    moved = next((tmp_path / "blobs" / "objects").rglob("1.*.part"))
    assert moved.stat().st_ino == inode  # renamed, not copied
    (moved.parent / "manifest").unlink()  # a delete cut short after its first step
    assert await store.size(KEY) is None
    await store.delete(KEY)
    assert not moved.parent.exists()
