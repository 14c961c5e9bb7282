"""The S3 server of the tests: `LIAISON_TEST_S3_URL` (http://ACCESS:SECRET@HOST:PORT, as
`eval "$(bash scripts/s3.sh start)"` sets it, a SeaweedFS on loopback), and a bucket of the test
session's own, made for it and removed with all it holds at its end (as the PostgreSQL tests
create and drop their own database)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S3_ENV = "LIAISON_TEST_S3_URL"
#: Why an S3 test skipped, and how to run it.
S3_SKIP = (
    f"S3 tests need {S3_ENV} (http://ACCESS:SECRET@127.0.0.1:18333): "
    'eval "$(bash scripts/s3.sh start)" starts a SeaweedFS and sets it; .ci/run does'
)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"

    def client(self) -> S3Client:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )


def s3_server() -> S3Server | None:
    """The server `LIAISON_TEST_S3_URL` names, or None when it is unset."""
    raw = os.environ.get(S3_ENV)
    if not raw:
        return None
    url = urlsplit(raw)
    if url.username is None or url.password is None or url.hostname is None:
        raise ValueError(f"{S3_ENV} is http://ACCESS:SECRET@HOST:PORT")
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    port = f":{url.port}" if url.port else ""
    return S3Server(f"{url.scheme}://{host}{port}", unquote(url.username), unquote(url.password))


@contextmanager
def s3_bucket(server: S3Server) -> Iterator[str]:
    """A new bucket, removed at the end with its objects and its uploads."""
    client = server.client()
    name = f"liaison-test-{secrets.token_hex(6)}"
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        try:
            for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
                for upload in page.get("Uploads", []):
                    client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
                for obj in page.get("Contents", []):
                    client.delete_object(Bucket=name, Key=obj["Key"])
            client.delete_bucket(Bucket=name)
        finally:
            client.close()
