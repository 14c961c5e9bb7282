"""The S3-compatible attachment store (issue 16): the contract of `blobs.py` on a bucket that
the server's processes share, through boto3 (its synchronous client is thread-safe: every call
runs in a thread).

Object `key` is `<prefix>objects/<key>`, and an upload of `key` is an S3 multipart upload of
that very name, so that completing it makes the object, copying nothing. An upload's UploadId
is found by listing the bucket's multipart uploads of that exact name; it is remembered, never
trusted (a NoSuchUpload makes the store look again), so that every process can put parts into,
list, complete or abort an upload another one began. Two uploads of one key (two processes
began it at once) resolve to the earliest begun (then the least UploadId); the others are
aborted.

Every part is checked by the store: its SHA-256 (the caller's, else computed here) goes with it
as `x-amz-checksum-sha256`, and a mismatch (BadDigest) is a BlobError. AWS refuses such a part
unless its upload was created with ChecksumAlgorithm SHA256, and then its completion must
repeat each part's checksum, which ListParts returns. SeaweedFS (4.48) checks the part all the
same, but its ListParts omits the checksums, so an upload created that way could not be
completed by a process that did not put its parts. SeaweedFS also keeps a part sent again
beside the one it replaces, lists both (timed to the second) and completes with the newest of
those named. Which kind a store is, a probe upload tells, once per process (at `check()` or the
first `begin`): uploads are created with the algorithm only where ListParts returns it; where
ListParts lists replaced parts, `parts` shows the newest of each number, a part is sent again a
second later should ListParts time another of its number no earlier, and a completion names
every part of each number (the store keeps the newest).

Conditional writes: an object is written only by the completion of its upload, sent with
`If-None-Match: *`, so that an object, once written, is never replaced (only deleted), whatever
a second completion racing the first, or a replayed one, would write; a begun upload is found
by listing (CreateMultipartUpload takes no condition), and a race resolved as above.

Failures: the store unreachable, timing out or answering 5xx (after botocore's few retries) is
a ConnectionError, an OSError (`unavailable` to the client); whatever else it refuses is a
BlobError of one line (naming no secret; the endpoint never carries credentials).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ParamSpec, TypeVar
from urllib.parse import urlsplit

import boto3
from botocore import exceptions as boto_errors
from botocore.config import Config

from .blobs import KEY_RE, PIECE, BlobError, OpenUpload, PartInfo, check_key, check_part

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, MultipartUploadTypeDef, PartTypeDef

__all__ = ["S3BlobStore"]

P = ParamSpec("P")
T = TypeVar("T")

#: Where objects (and the uploads that become them) are, under the prefix.
_OBJECTS = "objects/"
#: The probe's upload: under objects/ (where the credentials may write) but never a key.
_PROBE = ".probe-"
#: How many UploadIds a process remembers (a hint: the bucket's listing is the truth).
_REMEMBERED = 4096
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The probe's part 1, sent twice: does ListParts return its checksum, and both?
PROBE_PARTS = (b"liaison: a part and its checksum", b"liaison: the same part sent again")
#: How many times a part is sent again a second later, where ListParts could not tell it
#: from the one it replaces (SeaweedFS).
_RESENDS = 2


@dataclass(frozen=True)
class _Traits:
    """What the probe found out about the store."""

    #: ListParts returns part checksums: uploads are created with ChecksumAlgorithm SHA256
    #: (AWS: it refuses a part with a checksum otherwise).
    declare: bool
    #: ListParts lists a part sent again beside the one it replaced (SeaweedFS).
    lists_replaced: bool


class _Refused(BlobError):
    """The store refused a request: its error code and HTTP status, for the callers that
    expect one (NoSuchUpload, 404)."""

    def __init__(self, message: str, code: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _hex_sha256(checksum: str | None) -> str | None:
    """A part's ChecksumSHA256 (base64) as hex; None where the store returned none."""
    if checksum is None:
        return None
    try:
        raw = base64.b64decode(checksum, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


class S3BlobStore:
    """The contract of `blobs.py` on an S3-compatible bucket (AWS when `endpoint` is None).
    The constructor checks its arguments only (BlobError); `check()` reaches the bucket."""

    def __init__(
        self,
        endpoint: str | None,
        bucket: str,
        prefix: str,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        ca_file: str | None = None,
    ) -> None:
        if endpoint is not None:
            url = urlsplit(endpoint)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise BlobError("the S3 endpoint is not an http:// or https:// URL")
            if url.username is not None or url.password is not None:
                raise BlobError("the S3 endpoint must not carry credentials (they are separate settings)")
        if prefix.startswith("/") or len(prefix) > 512 or not prefix.isprintable():
            raise BlobError("the S3 prefix is not an object name prefix")
        if (access_key_id is None) != (secret_access_key is None):
            raise BlobError("an S3 access key id and its secret go together: give both or neither")
        self.bucket = bucket
        self._where = f"bucket {bucket} at {endpoint or f'AWS S3 ({region})'}"
        self._objects = prefix + _OBJECTS
        config = Config(
            region_name=region,
            signature_version="s3v4",
            # Path-style for S3-compatible servers (no wildcard DNS needed); AWS's own default
            # (virtual-hosted) there, path-style being deprecated.
            s3={"addressing_style": "path" if endpoint is not None else "virtual"},
            retries={"mode": "standard", "total_max_attempts": 3},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=32,
            tcp_keepalive=True,
            # Checksums only where an operation requires one: the part's own SHA-256 is sent
            # explicitly, and servers other than AWS refuse some of botocore's defaults.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            self._client: S3Client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                verify=ca_file if ca_file is not None else True,
                config=config,
            )
        except boto_errors.BotoCoreError as e:
            raise BlobError(f"the S3 client: {_one_line(str(e))}") from None
        self._ids: dict[str, str] = {}  # key -> UploadId, most recent last
        self._traits: _Traits | None = None
        self._probing = asyncio.Lock()

    # -- the contract ---------------------------------------------------------------------

    async def begin(self, key: str) -> None:
        name = self._name(key)
        traits = await self._probed()
        self._remember(key, await self._run(f"beginning {key}", self._s_begin, name, traits.declare))

    async def put_part(
        self, key: str, number: int, pieces: AsyncIterable[bytes], sha256: bytes | None = None
    ) -> PartInfo:
        check_part(number, sha256)
        self._name(key)
        if await self._upload_id(key) is None:
            raise BlobError(f"no upload of {key} was begun")
        data = b"".join([piece async for piece in pieces])  # a part is at most the part size
        digest = sha256 if sha256 is not None else await asyncio.to_thread(_sha256, data)
        traits = await self._probed()

        def put(name: str, upload: str) -> bool:
            self._s_put(name, upload, number, data, _b64(digest), traits.lists_replaced)
            return True

        if await self._with_upload(key, f"part {number} of {key}", put) is None:
            raise BlobError(f"no upload of {key} was begun")
        return PartInfo(number, len(data), digest.hex())

    async def parts(self, key: str) -> list[PartInfo]:
        stored = await self._with_upload(key, f"listing the parts of {key}", self._s_parts)
        return [
            PartInfo(p["PartNumber"], p.get("Size", 0), _hex_sha256(p.get("ChecksumSHA256")))
            for p in _latest(stored or [])
        ]

    async def complete(self, key: str, numbers: Sequence[int]) -> int:
        numbers = list(numbers)
        for n in numbers:
            check_part(n, None)

        def complete(name: str, upload: str) -> int:
            return self._s_complete(name, upload, numbers)

        size = await self._with_upload(key, f"completing {key}", complete)
        if size is None:  # no upload at all: none of its parts is there
            raise BlobError(f"the upload has no part {numbers[0] if numbers else 1}")
        self._forget(key)
        return size

    async def abort(self, key: str) -> None:
        name = self._name(key)
        self._forget(key)
        await self._run(f"aborting the upload of {key}", self._s_abort_all, name)

    async def uploads(self) -> list[OpenUpload]:
        return await self._run("listing the uploads", self._s_uploads)

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        name = self._name(key)
        if start < 0 or end < start:
            raise BlobError(f"the range [{start}, {end}) is not a range")
        if start == end:  # nothing to ask the store for, but the object must exist
            if await self.size(key) is None:
                raise BlobError(f"no object {key}")
            return
        try:
            response = await self._run(
                f"reading {key}",
                self._client.get_object,
                Bucket=self.bucket,
                Key=name,
                Range=f"bytes={start}-{end - 1}",
            )
        except _Refused as e:
            if e.status == 404 and e.code != "NoSuchBucket":
                raise BlobError(f"no object {key}") from None
            if e.code == "InvalidRange":  # starts at or past its end
                raise BlobError(f"object {key} is shorter than {end} bytes") from None
            raise
        body = response["Body"]
        try:
            left = end - start
            while left > 0:
                piece = await self._run(f"reading {key}", body.read, min(PIECE, left))
                if not piece:
                    raise BlobError(f"object {key} is shorter than {end} bytes")
                left -= len(piece)
                yield piece
        finally:
            await asyncio.to_thread(body.close)

    async def size(self, key: str) -> int | None:
        name = self._name(key)
        try:
            head = await self._run(
                f"the size of {key}", self._client.head_object, Bucket=self.bucket, Key=name
            )
        except _Refused as e:
            if e.status == 404 and e.code != "NoSuchBucket":
                return None
            raise
        return head["ContentLength"]

    async def delete(self, key: str) -> None:
        name = self._name(key)
        await self._run(f"deleting {key}", self._client.delete_object, Bucket=self.bucket, Key=name)

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)

    # -- start-up -------------------------------------------------------------------------

    async def check(self) -> None:
        """At start-up: the bucket is there, these credentials reach it and it takes a
        multipart upload (the probe); else a BlobError of one line naming the endpoint and the
        bucket."""
        try:
            await self._run("HeadBucket", self._client.head_bucket, Bucket=self.bucket)
            await self._probed()
        except _Refused as e:
            why = {
                404: "there is no such bucket",
                403: "access is denied (the access key, its secret or the bucket's policy)",
                301: "the bucket is in another region",
            }.get(e.status, str(e))
            raise BlobError(f"{self._where}: {why}") from None
        except OSError as e:  # its message names the endpoint and the bucket
            raise BlobError(str(e)) from None
        except BlobError as e:
            raise BlobError(f"{self._where}: {e}") from None

    # -- uploads by key -------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return self._objects + check_key(key)

    def _remember(self, key: str, upload: str) -> None:
        self._ids.pop(key, None)
        self._ids[key] = upload
        if len(self._ids) > _REMEMBERED:
            del self._ids[next(iter(self._ids))]

    def _forget(self, key: str) -> None:
        self._ids.pop(key, None)

    async def _upload_id(self, key: str) -> str | None:
        """The UploadId of `key`'s upload, remembered or listed; None when there is none."""
        upload = self._ids.get(key)
        if upload is None:
            upload = await self._run(f"finding the upload of {key}", self._s_find, self._name(key))
            if upload is not None:
                self._remember(key, upload)
        return upload

    async def _with_upload(self, key: str, what: str, op: Callable[[str, str], T]) -> T | None:
        """`op(name, upload_id)` in a thread on the upload of `key`, listed again if the one
        remembered is gone (NoSuchUpload); None when `key` has no upload."""
        name = self._name(key)
        for fresh in (key not in self._ids, True):
            if fresh:
                self._forget(key)
            upload = await self._upload_id(key)
            if upload is None:
                return None
            try:
                return await self._run(what, op, name, upload)
            except _Refused as e:
                if e.code != "NoSuchUpload":
                    raise
                self._forget(key)
                if fresh:  # completed or aborted meanwhile
                    return None
        return None

    async def _probed(self) -> _Traits:
        if self._traits is None:
            async with self._probing:
                if self._traits is None:
                    self._traits = await self._run("probing the store", self._s_probe)
        return self._traits

    async def _run(self, what: str, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`call` in a thread, botocore's exceptions as this store raises them."""
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except boto_errors.ClientError as e:
            raise self._refusal(e, what) from None
        except (boto_errors.ConnectionError, boto_errors.HTTPClientError) as e:
            raise ConnectionError(f"{self._where} is unreachable ({what}: {type(e).__name__})") from None
        except boto_errors.BotoCoreError as e:
            raise BlobError(f"{what}: {_one_line(str(e))}") from None

    def _refusal(self, e: boto_errors.ClientError, what: str) -> Exception:
        error = e.response.get("Error", {})
        code = str(error.get("Code", "")) or "?"
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if status >= 500:
            return ConnectionError(f"{self._where} failed ({what}: {code}, HTTP {status})")
        if code == "BadDigest":
            message = "the bytes do not match their SHA-256"
        elif code == "EntityTooSmall":
            message = "a part other than the last is smaller than S3's minimum (5 MiB)"
        else:
            message = _one_line(str(error.get("Message", "")))
        detail = f" ({message})" if message else ""
        return _Refused(f"the attachment store refused {what}: {code}{detail}", code, status)

    # -- in a thread ----------------------------------------------------------------------

    def _s_find(self, name: str) -> str | None:
        """The UploadId of the upload of object `name`: the earliest begun, the others (a
        race of two processes) aborted."""
        found: list[MultipartUploadTypeDef] = [
            upload
            for page in self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=name
            )
            for upload in page.get("Uploads", [])
            if upload.get("Key") == name and "UploadId" in upload
        ]
        if not found:
            return None
        found.sort(key=lambda u: (u.get("Initiated", _EPOCH), u["UploadId"]))
        for extra in found[1:]:
            self._s_abort(name, extra["UploadId"])
        return found[0]["UploadId"]

    def _s_begin(self, name: str, declare: bool) -> str:
        upload = self._s_find(name)
        if upload is not None:
            return upload
        if declare:
            created = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=name, ChecksumAlgorithm="SHA256"
            )
        else:
            created = self._client.create_multipart_upload(Bucket=self.bucket, Key=name)
        # Listed again: should another process have begun the same key at the same time,
        # both keep the earliest.
        return self._s_find(name) or created["UploadId"]

    def _s_put(
        self, name: str, upload: str, number: int, data: bytes, checksum: str, lists_replaced: bool
    ) -> None:
        for _ in range(1 + _RESENDS):
            etag = self._client.upload_part(
                Bucket=self.bucket,
                Key=name,
                UploadId=upload,
                PartNumber=number,
                Body=data,
                ContentLength=len(data),
                ChecksumSHA256=checksum,
            )["ETag"]
            if not lists_replaced or not self._s_shadowed(name, upload, number, etag):
                return
            time.sleep(1)  # ListParts times parts to the second: a second later, it tells

    def _s_shadowed(self, name: str, upload: str, number: int, etag: str) -> bool:
        """Does ListParts show another part `number`, of other bytes, no older than the one
        just sent (ETag `etag`), so that it could not tell which is the newer?"""
        same = [p for p in self._s_parts(name, upload) if p["PartNumber"] == number]
        ours = max((p.get("LastModified", _EPOCH) for p in same if p.get("ETag") == etag), default=None)
        if ours is None:
            return False
        return any(p.get("ETag") != etag and p.get("LastModified", _EPOCH) >= ours for p in same)

    def _s_parts(self, name: str, upload: str) -> list[PartTypeDef]:
        parts = [
            part
            for page in self._client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=name, UploadId=upload
            )
            for part in page.get("Parts", [])
            if "PartNumber" in part
        ]
        return sorted(parts, key=lambda p: p["PartNumber"])  # stable: the listing's order within

    def _s_complete(self, name: str, upload: str, numbers: list[int]) -> int:
        listed = self._s_parts(name, upload)
        stored = {p["PartNumber"]: p for p in _latest(listed)}
        missing = [n for n in numbers if n not in stored]
        if missing or not numbers:
            raise BlobError(f"the upload has no part {missing[0] if missing else 1}")
        if any(a >= b for a, b in itertools.pairwise(numbers)):
            raise BlobError("S3 joins the parts of an upload in ascending number order, each once")
        # Every distinct ETag listed for a number: where a store lists a part sent again beside
        # the earlier one (SeaweedFS), it keeps the newest of those named (it times them finer
        # than ListParts shows); elsewhere a number has one ETag.
        named: dict[int, list[PartTypeDef]] = {}
        for p in listed:
            same = named.setdefault(p["PartNumber"], [])
            if all(q.get("ETag") != p.get("ETag") for q in same):
                same.append(p)
        chosen: list[CompletedPartTypeDef] = []
        for n in numbers:
            for p in named[n]:
                part: CompletedPartTypeDef = {"PartNumber": n, "ETag": p.get("ETag", "")}
                if "ChecksumSHA256" in p:  # an upload created with ChecksumAlgorithm SHA256
                    part["ChecksumSHA256"] = p["ChecksumSHA256"]
                chosen.append(part)
        try:
            # A conditional write: an object, once written (and its chunk tree checked by the
            # caller), is never replaced; only deleted.
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=name,
                UploadId=upload,
                MultipartUpload={"Parts": chosen},
                IfNoneMatch="*",
            )
        except boto_errors.ClientError as e:
            if e.response.get("Error", {}).get("Code") == "PreconditionFailed":
                raise BlobError(
                    f"object {name.rsplit('/', 1)[-1]} exists: an object is never replaced"
                ) from None
            raise
        if len(chosen) > len(numbers):  # which of a number's parts the store kept, it says
            return self._client.head_object(Bucket=self.bucket, Key=name)["ContentLength"]
        return sum(stored[n].get("Size", 0) for n in numbers)

    def _s_abort(self, name: str, upload: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload)
        except boto_errors.ClientError as e:
            if e.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise

    def _s_abort_all(self, name: str) -> None:
        for page in self._client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=name
        ):
            for upload in page.get("Uploads", []):
                if upload.get("Key") == name and "UploadId" in upload:
                    self._s_abort(name, upload["UploadId"])

    def _s_uploads(self) -> list[OpenUpload]:
        begun: dict[str, datetime] = {}
        for page in self._client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self._objects
        ):
            for upload in page.get("Uploads", []):
                key = upload.get("Key", "")[len(self._objects) :]
                when = upload.get("Initiated")
                if not KEY_RE.fullmatch(key) or when is None:  # the probe, or not this server's
                    continue
                when = when.astimezone(UTC)
                begun[key] = min(when, begun.get(key, when))
        return sorted((OpenUpload(k, t) for k, t in begun.items()), key=lambda u: (u.begun, u.key))

    def _s_probe(self) -> _Traits:
        """An upload created with ChecksumAlgorithm SHA256, its part 1 sent twice, listed and
        aborted: does ListParts return the part's checksum, and both parts?"""
        name = f"{self._objects}{_PROBE}{secrets.token_hex(8)}"
        try:
            upload = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=name, ChecksumAlgorithm="SHA256"
            )["UploadId"]
        except boto_errors.ClientError as e:
            if int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) in (400, 501):
                return _Traits(declare=False, lists_replaced=False)  # the algorithm refused
            raise
        try:
            sent = [_b64(hashlib.sha256(body).digest()) for body in PROBE_PARTS]
            for body, checksum in zip(PROBE_PARTS, sent, strict=True):
                self._client.upload_part(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload,
                    PartNumber=1,
                    Body=body,
                    ChecksumSHA256=checksum,
                )
            parts = self._client.list_parts(Bucket=self.bucket, Key=name, UploadId=upload).get("Parts", [])
            return _Traits(
                declare=any(p.get("ChecksumSHA256") in sent for p in parts), lists_replaced=len(parts) > 1
            )
        finally:
            self._s_abort(name, upload)


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _latest(parts: list[PartTypeDef]) -> list[PartTypeDef]:
    """One part per number, in number order: the latest modified where a store lists a part
    sent again beside the earlier one (SeaweedFS; within one second of ListParts' times, the
    last listed)."""
    latest: dict[int, PartTypeDef] = {}
    for part in parts:
        n = part["PartNumber"]
        if n not in latest or part.get("LastModified", _EPOCH) >= latest[n].get("LastModified", _EPOCH):
            latest[n] = part
    return [latest[n] for n in sorted(latest)]
