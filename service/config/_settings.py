"""`Settings`: every setting of the service, with its meaning, an example and the form it takes
(docs/operations.md is generated from them), its validation and what is derived from it."""

from __future__ import annotations

import ipaddress
import json
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from liaison.crypto import note
from liaison.crypto.errors import CryptoError

from ._base import RECORD_FILE, Source, describe_source, env_name, masked_url, parse_db_url
from ._record import DatabaseRecord

__all__ = ["Settings", "setting"]


def setting(
    default: Any = None,
    *,
    meaning: str,
    example: str,
    factory: Any = None,
    form: str | None = None,
    secret: bool = False,
    **constraints: Any,
) -> Any:
    """A documented setting: what it means, an example value as written in the environment,
    the form an error message asks for (derived from the type when not given), and whether its
    value is a secret (masked by `liaison-server config`, never echoed in an error)."""
    extra: dict[str, Any] = {"example": example, "form": form, "secret": secret}
    if factory is not None:
        return Field(default_factory=factory, description=meaning, json_schema_extra=extra, **constraints)
    return Field(default, description=meaning, json_schema_extra=extra, **constraints)


def _comma_list(v: Any) -> Any:
    """A JSON list, or comma-separated items (blank ones dropped), as written in the environment."""
    if isinstance(v, str):
        text = v.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                raise ValueError("not a valid JSON list") from None
        return [p.strip() for p in text.split(",") if p.strip()]
    return v


class Settings(BaseModel):
    """Everything the service reads at start. Built by `load_settings` (the CLI and the app
    factory), never at import."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path = setting(
        ...,  # required
        meaning="The server's data directory: settings.toml, policy.toml, the log's keys, tls/, "
        "database.toml and the SQLite database. Also --data-dir.",
        example="/var/lib/liaison",
        form="a directory",
    )
    origin: str = setting(
        "liaison.example/audit",
        meaning="The audit log's name: the origin line of its checkpoints and the name of its "
        "signing key, chosen at init (`init --origin`, or this variable) and then fixed.",
        example="liaison.example.org/audit",
        form="a name without spaces or '+'",
    )
    database_url: str | None = setting(
        meaning="The database. Unset: the one init recorded (database.toml), else SQLite in "
        "the data directory. Prefer a URL without a password, with "
        "LIAISON_DATABASE_PASSWORD_FILE.",
        example="postgresql+asyncpg://liaison_app@db.example:5432/liaison",
        form="a postgresql+asyncpg:// or sqlite+aiosqlite:/// URL",
        secret=True,
    )
    database_password_file: Path | None = setting(
        meaning="A file holding the database password (its first line), for a database URL "
        "without one: a Docker or Kubernetes secret. init records its path.",
        example="/run/secrets/liaison-db-password",
        form="the path of a readable file",
    )
    public_url: str | None = setting(
        meaning="The base URL clients use, which their request signatures cover: set it behind "
        "a proxy. Unset: the server answers as its host and port only (and the loopback "
        "names when it listens there).",
        example="https://liaison.example.org",
        form="an https:// or http:// URL",
    )
    host: str = setting(
        "127.0.0.1",
        meaning="The address `run` listens on.",
        example="0.0.0.0",  # noqa: S104 (an example)
        form="an IP address or host name",
    )
    port: int = setting(8443, meaning="The API's port (TLS 1.3).", example="443", ge=1, le=65535)
    dev_plain_http: bool = setting(
        False,
        meaning="Development only: plain HTTP instead of TLS, refused unless `host` is a loopback address.",
        example="true",
    )
    max_body_bytes: int = setting(
        12 * 1024 * 1024,
        meaning="The largest request body accepted (413 past it).",
        example="4194304",
        ge=1024,
    )
    attachment_part_bytes: int = setting(
        8 * 1024 * 1024,
        meaning="The size of an attachment upload's parts (each one signed request; at most "
        "max_body_bytes is used).",
        example="4194304",
        ge=64 * 1024,
        le=1 << 30,
    )
    attachment_quota_bytes: int = setting(
        50 * 1024**3,
        meaning="Attachment ciphertext one principal may keep stored: uploads in progress and "
        "attachments of messages not yet expired (then 403 attachment-quota).",
        example="10737418240",
        ge=0,
    )
    attachment_upload_ttl_seconds: int = setting(
        7 * 24 * 3600,
        meaning="How long an attachment upload may stay unfinished (or finished but named by no "
        "accepted message) before the retention pass sweeps it: its parts deleted, the sweep "
        "logged (`attachment.uploads_swept`).",
        example="86400",
        ge=60,
    )
    blob_store: Literal["file", "s3"] = setting(
        "file",
        meaning="Where attachment ciphertext is kept: `file`, the data directory's "
        "attachments/ folder; `s3`, an S3-compatible object store (the s3_* settings), which "
        "replicas of the server share.",
        example="file",
    )
    s3_endpoint: str | None = setting(
        meaning="The S3-compatible store's URL (unset: AWS S3 in s3_region).",
        example="https://s3.example.org:9000",
        form="an https:// or http:// URL",
    )
    s3_bucket: str | None = setting(
        meaning="The bucket attachment ciphertext goes in (required with blob_store = s3; "
        "created beforehand, versioning off: docs/operations.md, Attachment storage).",
        example="liaison-attachments",
        form="a bucket name",
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
    )
    s3_prefix: str = setting(
        "liaison/",
        meaning="The prefix of every object name the server writes in the bucket.",
        example="prod/liaison/",
        form="an object name prefix ending in '/', or empty",
        pattern=r"^([A-Za-z0-9._-]+/)*$",
    )
    s3_region: str = setting("us-east-1", meaning="The S3 region (signatures name it).", example="eu-west-3")
    s3_access_key_id: str | None = setting(
        meaning="The S3 access key id (unset: the usual AWS sources, e.g. an instance role).",
        example="LIAISONAPP",
    )
    s3_secret_access_key: str | None = setting(
        meaning="The S3 secret access key (prefer s3_secret_access_key_file).",
        example="(a secret)",
        secret=True,
    )
    s3_secret_access_key_file: Path | None = setting(
        meaning="A file holding the S3 secret access key (its first line): a Docker or Kubernetes secret.",
        example="/run/secrets/liaison-s3-secret",
        form="the path of a readable file",
    )
    s3_ca_file: Path | None = setting(
        meaning="A CA bundle to verify the S3 endpoint's TLS certificate (unset: the system's).",
        example="/etc/liaison/s3-ca.pem",
        form="the path of a readable file",
    )
    clock_skew_seconds: int = setting(
        300,
        meaning="How far a signed request's or envelope's time may be from the server's clock.",
        example="120",
        ge=1,
    )
    enrolment_code_ttl_seconds: int = setting(
        24 * 3600, meaning="How long an enrolment code stays valid.", example="3600", ge=60
    )
    rate_limit_per_second: float = setting(
        200.0,
        meaning="Signed requests per device per second (a token bucket), then 429.",
        example="50",
        gt=0,
    )
    rate_limit_burst: int = setting(
        400, meaning="The bucket of rate_limit_per_second: the burst a device may send.", example="100", ge=1
    )
    enrol_rate_per_second: float = setting(
        1.0,
        meaning="Enrolment attempts per client address per second, then 429 (codes have 104 "
        "bits; this only curbs noise).",
        example="0.5",
        gt=0,
    )
    enrol_rate_burst: int = setting(20, meaning="The burst of enrol_rate_per_second.", example="10", ge=1)
    auth_failure_rate_per_second: float = setting(
        1.0,
        meaning="Requests whose signature does not verify, per client address per second, then "
        "429 (never charged to the device they name: device ids are public).",
        example="0.2",
        gt=0,
    )
    auth_failure_burst: int = setting(
        20, meaning="The burst of auth_failure_rate_per_second.", example="10", ge=1
    )
    audit_public: bool = setting(
        False,
        meaning="Serve the audit log's entries to anyone, without signing in (docs/audit.md): "
        "every field of every entry. The server warns at every start. Checkpoints, tiles and "
        "proofs are always public.",
        example="true",
    )
    max_streams_per_device: int = setting(
        4,
        meaning="Live inbox streams one device may hold open on one server process (then 429).",
        example="2",
        ge=1,
    )
    stream_recheck_seconds: float = setting(
        2.0,
        meaning="How often open streams are re-checked: a revoked device's or suspended "
        "principal's streams close within about this long, whichever replica they are on.",
        example="5",
        gt=0,
    )
    retention_interval_seconds: float = setting(
        3600.0,
        meaning="How often expired messages and old request nonces are deleted.",
        example="600",
        gt=0,
    )
    workers: int = setting(
        1,
        meaning="Worker processes of `liaison-server run`, all serving the API's port (bound once; "
        "each new connection goes to the worker holding the fewest) and one database: HTTP, TLS "
        "and signature checks run in parallel, writes still go one batch at a time. One per core is the rule "
        "(docs/scaling.md). Worker N serves its own metrics on metrics_port + N.",
        example="2",
        ge=1,
        le=64,
    )
    batch_max: int = setting(
        256, meaning="The most writer jobs (requests) in one database transaction.", example="64", ge=1
    )
    witness_keys: list[str] = setting(
        factory=list,
        meaning="The witnesses' cosignature verifier keys (vkeys): their cosignatures are "
        "checked and stored, and clients may require them (docs/audit.md).",
        example="w1.example+4a1bf2c3+BHRx...",
        form="a comma-separated list of vkeys (name+hash+base64)",
    )
    witness_urls: dict[str, str] = setting(
        factory=dict,
        meaning="Witnesses the service pushes every new checkpoint to (c2sp.org/tlog-witness), "
        "by the name of their key in witness_keys; the URL is the witness's submission "
        "prefix (POST <url>/add-checkpoint). Empty: no push.",
        example='{"w1.example": "https://w1.example:8444"}',
        form='a JSON object {"key name": "https://..."} or name=URL pairs separated by commas',
    )
    witness_ca_cert: Path | None = setting(
        meaning="PEM CA certificates that witnesses' HTTPS certificates must chain to. Unset: "
        "the system's trust store. Plain http:// works too (a cosignature is checked, not "
        "the channel).",
        example="/etc/liaison/witness-ca.pem",
        form="the path of a PEM file",
    )
    witness_poll_seconds: float = setting(
        1.0, meaning="How often the pusher looks for a newer checkpoint to push.", example="5", gt=0, le=60
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = setting(
        "info", meaning="The least level logged (JSON lines on stderr).", example="warning"
    )

    # --- connections (`liaison-server run`; docs/api.md "Operations") -----------------------
    header_max_bytes: int = setting(
        64 * 1024,
        meaning="The most bytes of a request head (request line and header lines); a larger "
        "head is answered 431 and the connection closed.",
        example="32768",
        ge=1024,
    )
    header_line_max_bytes: int = setting(
        16 * 1024, meaning="The most bytes of one header line (431 past it).", example="8192", ge=256
    )
    header_max_count: int = setting(
        100, meaning="The most header fields of a request (431 past it).", example="50", ge=8
    )
    head_timeout_seconds: float = setting(
        10.0,
        meaning="Time from a connection's accept (or its previous response) to a complete "
        "request head, PROXY header and TLS handshake included; then it is closed (408 "
        "when part of a head had arrived).",
        example="5",
        gt=0,
    )
    body_timeout_seconds: float = setting(
        30.0,
        meaning="The longest silence inside a request body; then 408 and close "
        "(max_body_bytes bounds a slow body that keeps arriving).",
        example="10",
        gt=0,
    )
    max_connections_per_address: int = setting(
        64,
        meaning="Open connections per client address (IPv6: per /64), TLS handshakes "
        "included; more are closed at once.",
        example="16",
        ge=1,
    )
    proxy_protocol: bool = setting(
        False,
        meaning="Expect a PROXY protocol v2 header (HAProxy send-proxy-v2) on every connection "
        "and take the client's address from it; connections from outside proxy_trusted are "
        "refused.",
        example="true",
    )
    proxy_trusted: list[str] = setting(
        factory=list,
        meaning="The proxies whose PROXY headers are believed: addresses or networks.",
        example="172.30.0.10,127.0.0.1",
        form="a comma-separated list (or JSON list) of IP addresses or CIDR networks",
    )
    metrics_port: int | None = setting(
        meaning="Serve Prometheus metrics (GET /metrics) on a plain-HTTP listener of their own "
        "on this port of metrics_host. Unset: no metrics listener; the API port never "
        "serves them.",
        example="9464",
        ge=1,
        le=65535,
    )
    metrics_host: str = setting(
        "127.0.0.1",
        meaning="The address of the metrics listener.",
        example="0.0.0.0",  # noqa: S104 (an example)
        form="an IP address or host name",
    )
    api_docs: bool = setting(
        False,
        meaning="Serve the OpenAPI document and its viewers (/openapi.json, /docs, /redoc) on the API port.",
        example="true",
    )

    _sources: dict[str, Source] = PrivateAttr(default_factory=dict)
    _record: DatabaseRecord | None = PrivateAttr(default=None)
    _db_password: str | None = PrivateAttr(default=None)

    @field_validator("proxy_trusted", mode="before")
    @classmethod
    def _proxy_list(cls, v: Any) -> Any:
        v = _comma_list(v)
        if isinstance(v, list):
            for item in v:
                try:
                    ipaddress.ip_network(str(item).strip(), strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address or network") from None
            return [str(item).strip() for item in v]
        return v

    @field_validator("witness_keys", mode="before")
    @classmethod
    def _witness_keys(cls, v: Any) -> Any:
        v = _comma_list(v)
        if isinstance(v, list):
            for item in v:
                try:
                    key = note.parse_verifier_key(item)
                except CryptoError as e:
                    which = f"{str(item)[:40]!r}: " if len(v) > 1 else ""
                    raise ValueError(f"{which}{e}") from None
                if key.sig_type != note.SIG_COSIGNATURE_V1:
                    raise ValueError(f"{key.name}'s key is not a cosignature key (type 0x04)")
        return v

    @field_validator("witness_urls", mode="before")
    @classmethod
    def _witness_url_pairs(cls, v: Any) -> Any:
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("{"):
                try:
                    return json.loads(text)
                except ValueError:
                    raise ValueError("not a valid JSON object") from None
            pairs = [p.strip() for p in text.split(",") if p.strip()]
            if not all("=" in p for p in pairs):
                raise ValueError("each item must be name=URL")
            return dict(p.split("=", 1) for p in pairs)
        return v

    @field_validator("witness_urls")
    @classmethod
    def _witness_urls(cls, v: dict[str, str]) -> dict[str, str]:
        for name, url in v.items():
            if not url.startswith(("https://", "http://")) or any(c.isspace() for c in url):
                raise ValueError(f"the URL of witness {name} must be an http(s):// URL")
        return v

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("origin")
    @classmethod
    def _origin(cls, v: str) -> str:
        if not note.is_valid_key_name(v):
            raise ValueError("origin must be a non-empty name without spaces or '+'")
        return v

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str | None) -> str | None:
        if v is not None and (not v.startswith(("https://", "http://")) or any(c.isspace() for c in v)):
            raise ValueError("not an http(s):// URL")
        return v

    @field_validator("database_url", mode="before")
    @classmethod
    def _database_url(cls, v: Any) -> Any:
        if v is None or v == "":
            return None
        if not isinstance(v, str):
            return v
        try:
            url = parse_db_url(v)
        except ValueError:  # never quote it: it may hold a password
            raise ValueError("not a database URL") from None
        # The drivers the service runs on; the plain spellings mean them.
        drivers = {
            "postgresql": "postgresql+asyncpg",
            "postgres": "postgresql+asyncpg",
            "postgresql+asyncpg": "postgresql+asyncpg",
            "sqlite": "sqlite+aiosqlite",
            "sqlite+aiosqlite": "sqlite+aiosqlite",
        }
        driver = drivers.get(url.drivername)
        if driver is None:
            raise ValueError(
                f"the driver {url.drivername!r} is not one of postgresql+asyncpg, sqlite+aiosqlite"
            )
        return url.set(drivername=driver).render_as_string(hide_password=False)

    @model_validator(mode="after")
    def _proxy_needs_trust(self) -> Settings:
        if self.proxy_protocol and not self.proxy_trusted:
            raise ValueError(
                "LIAISON_PROXY_PROTOCOL (proxy_protocol) is on but LIAISON_PROXY_TRUSTED "
                "(proxy_trusted) is empty: set it to the addresses of the proxies"
            )
        keys = {k.split("+", 1)[0] for k in self.witness_keys}
        for name in self.witness_urls:
            if name not in keys:
                raise ValueError(
                    f"LIAISON_WITNESS_URLS (witness_urls) names {name!r}, which is not the name "
                    "of a key in LIAISON_WITNESS_KEYS (witness_keys)"
                )
        return self

    @model_validator(mode="after")
    def _s3_complete(self) -> Settings:
        if self.s3_endpoint is not None and not self.s3_endpoint.startswith(("https://", "http://")):
            raise ValueError("LIAISON_S3_ENDPOINT (s3_endpoint) must be an https:// or http:// URL")
        if self.s3_secret_access_key is not None and self.s3_secret_access_key_file is not None:
            raise ValueError(
                "LIAISON_S3_SECRET_ACCESS_KEY and LIAISON_S3_SECRET_ACCESS_KEY_FILE are both set: keep one"
            )
        if self.blob_store == "s3" and self.attachment_part_bytes < 5 * 1024 * 1024:
            raise ValueError(
                "LIAISON_ATTACHMENT_PART_BYTES (attachment_part_bytes) must be at least 5 MiB "
                "(5242880) with LIAISON_BLOB_STORE=s3: S3 refuses smaller parts but the last"
            )
        if self.blob_store == "s3" and self.s3_bucket is None:
            raise ValueError(
                "LIAISON_BLOB_STORE (blob_store) is s3 but LIAISON_S3_BUCKET (s3_bucket) is unset"
            )
        return self

    def s3_secret(self) -> str | None:
        """The S3 secret access key, from the setting or the first line of its file (OSError
        when the file cannot be read)."""
        if self.s3_secret_access_key_file is None:
            return self.s3_secret_access_key
        lines = self.s3_secret_access_key_file.read_text(encoding="utf-8").splitlines()
        return lines[0].strip() if lines else ""

    # --- derived paths -------------------------------------------------------------------
    @property
    def policy_path(self) -> Path:
        return self.data_dir / "policy.toml"

    @property
    def tls_cert(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    @property
    def tls_key(self) -> Path:
        return self.data_dir / "tls" / "key.pem"

    @property
    def log_key_path(self) -> Path:
        return self.data_dir / "log-signer.key"

    @property
    def attachments_dir(self) -> Path:
        """Where the filesystem store keeps attachment ciphertext (service/storage/blobs.py)."""
        return self.data_dir / "attachments"

    @property
    def record_path(self) -> Path:
        return self.data_dir / RECORD_FILE

    @property
    def db_url(self) -> str:
        """The URL the service connects with (the password file's password put in)."""
        url = self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'liaison.db'}"
        if self._db_password is None:
            return url
        return parse_db_url(url).set(password=self._db_password).render_as_string(hide_password=False)

    @property
    def db_kind(self) -> str:
        if self.database_url is None:
            return "sqlite"  # the default database: no URL to parse
        return parse_db_url(self.db_url).get_backend_name()

    @property
    def is_postgres(self) -> bool:
        return self.db_kind == "postgresql"

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, or None on PostgreSQL (or an in-memory SQLite database)."""
        url = parse_db_url(self.db_url)
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        return Path(url.database)

    @property
    def db_display(self) -> str:
        """The database for messages: its URL without a password."""
        return masked_url(self.db_url, drop=True)

    @property
    def sources(self) -> Mapping[str, Source]:
        """Where each setting's value came from: default, file, env, option or record."""
        return types.MappingProxyType(self._sources)

    @property
    def database_record(self) -> DatabaseRecord | None:
        """What init recorded of the database it made; None for a data dir made before init
        recorded it."""
        return self._record

    def database_hint(self) -> str:
        """Where the database (and its password) should come from, for error messages."""
        record = self._record
        source = self._sources.get("database_url", "default")
        if source == "record" and record is not None:
            text = f" (the database init recorded in {self.record_path})"
            if record.password_from == env_name("database_url") and self._db_password is None:
                text += (
                    f"; init was given its password in {env_name('database_url')}: set it, or "
                    f"{env_name('database_password_file')}"
                )
            return text
        if source in ("env", "file", "option"):
            return f" (from {describe_source('database_url', source, self.data_dir)})"
        return ""
