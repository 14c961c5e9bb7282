"""Service settings: `LIAISON_*` environment variables over the data directory's `settings.toml`
over defaults, each setting with its meaning and an example (docs/operations.md is generated
from them); the database `init` recorded; one-line errors that name the setting.

    load_settings(data_dir, **overrides) -> Settings      raises SettingsError
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import ArgumentError

from liaison.crypto import note
from liaison.crypto.errors import CryptoError

__all__ = [
    "ENV_PREFIX",
    "RECORD_FILE",
    "DatabaseRecord",
    "Settings",
    "SettingsError",
    "env_name",
    "expected_form",
    "is_secret",
    "load_settings",
    "masked_url",
]

ENV_PREFIX = "LIAISON_"
#: What `init` writes into the data directory about the database it made (never a password).
RECORD_FILE = "database.toml"

Source = Literal["default", "file", "env", "option", "record"]


class SettingsError(Exception):
    """The data directory or a setting is missing or invalid; the message says how to fix it."""


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


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
            url = make_url(v)
        except (ArgumentError, ValueError):  # never quote it: it may hold a password
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
    def record_path(self) -> Path:
        return self.data_dir / RECORD_FILE

    @property
    def db_url(self) -> str:
        """The URL the service connects with (the password file's password put in)."""
        url = self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'liaison.db'}"
        if self._db_password is None:
            return url
        return make_url(url).set(password=self._db_password).render_as_string(hide_password=False)

    @property
    def db_kind(self) -> str:
        return make_url(self.db_url).get_backend_name()

    @property
    def is_postgres(self) -> bool:
        return self.db_kind == "postgresql"

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, or None on PostgreSQL (or an in-memory SQLite database)."""
        url = make_url(self.db_url)
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


def masked_url(url: str, *, drop: bool = False) -> str:
    """`url` with its password replaced by *** (or dropped)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "(not a URL)"
    if parsed.password is None:
        return parsed.render_as_string(hide_password=False)
    if drop:  # URL.set() takes None for "unchanged": a named tuple's _replace drops it
        return parsed._replace(password=None).render_as_string(hide_password=False)
    return parsed.render_as_string(hide_password=True)


# --- the database init recorded -----------------------------------------------------------


@dataclass(frozen=True)
class DatabaseRecord:
    """The database `init` made the server's in, as written to the data dir (never a password).

    `url` None is the data directory's own SQLite file. `password_from` says where the password
    came from when init ran: "none", "LIAISON_DATABASE_URL" (it was in that URL: give it again
    there) or "LIAISON_DATABASE_PASSWORD_FILE" (then `password_file` is that file).
    """

    kind: str
    url: str | None = None
    password_from: str = "none"  # noqa: S105 (where it came from, not a password)
    password_file: Path | None = None

    def describe(self) -> str:
        return self.url or "the data directory's liaison.db (SQLite)"

    def to_toml(self) -> str:
        lines = [
            "# Written by `liaison-server init`: the database this server was made in. Commands use",
            "# it when LIAISON_DATABASE_URL is not set, and refuse a database of another kind, or an",
            "# empty one: the server's directory and audit log live in this database. No password is",
            "# stored here; password_from says where it came from when init ran.",
            f"kind = {json.dumps(self.kind)}",
        ]
        if self.url is not None:
            lines.append(f"url = {json.dumps(self.url)}")
        lines.append(f"password_from = {json.dumps(self.password_from)}")
        if self.password_file is not None:
            lines.append(f"password_file = {json.dumps(str(self.password_file))}")
        return "\n".join(lines) + "\n"

    @classmethod
    def of(cls, settings: Settings) -> DatabaseRecord:
        """What to record of the database `settings` name (init)."""
        if settings.database_url is None:
            return cls(kind="sqlite")
        url = make_url(settings.database_url)
        if url.password is not None:
            return cls(
                settings.db_kind, masked_url(settings.database_url, drop=True), env_name("database_url")
            )
        if settings.database_password_file is not None:
            return cls(
                settings.db_kind,
                settings.database_url,
                env_name("database_password_file"),
                settings.database_password_file,
            )
        return cls(settings.db_kind, settings.database_url)

    @classmethod
    def read(cls, path: Path) -> DatabaseRecord | None:
        if not path.exists():
            return None
        try:
            raw = tomllib.loads(path.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise SettingsError(
                f"{path} (init's record of the database) is unreadable: {_one_line(e)}"
            ) from None
        kind, url, source = raw.get("kind"), raw.get("url"), raw.get("password_from", "none")
        file = raw.get("password_file")
        if (
            kind not in ("sqlite", "postgresql")
            or not isinstance(url, str | None)
            or not isinstance(source, str)
            or not isinstance(file, str | None)
            or (url is not None and _backend(url) != kind)
        ):
            raise SettingsError(
                f"{path} (init's record of the database) is malformed: it needs kind = "
                '"sqlite" or "postgresql" and a url of that kind; restore it or write it again'
            )
        return cls(kind, url, source, Path(file) if file else None)


def _backend(url: str) -> str | None:
    try:
        return make_url(url).get_backend_name()
    except ArgumentError:
        return None


# --- loading ------------------------------------------------------------------------------


def load_settings(data_dir: Path | str | None = None, **overrides: Any) -> Settings:
    """Read `settings.toml` from the data directory, then apply `LIAISON_*` and overrides;
    fill the database from init's record when nothing else names one. Raises SettingsError,
    in one line naming the setting and the form it expects (never echoing a secret)."""
    raw_dir = data_dir or os.environ.get(env_name("data_dir"))
    if not raw_dir:
        raise SettingsError("no data directory: pass --data-dir or set LIAISON_DATA_DIR")
    path = Path(raw_dir).expanduser().resolve()
    if not path.is_dir():
        raise SettingsError(
            f"data directory {path} does not exist: run 'liaison-server init --data-dir {path}' first"
        )
    settings_file = path / "settings.toml"
    file_values: dict[str, Any] = {}
    if settings_file.exists():
        try:
            file_values = tomllib.loads(settings_file.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise SettingsError(f"{settings_file} is not valid TOML: {_one_line(e)}") from None
    unknown = sorted(set(file_values) - set(Settings.model_fields) | ({"data_dir"} & set(file_values)))
    if unknown:
        raise SettingsError(
            f"{settings_file}: {', '.join(unknown)} is not a setting here (see docs/operations.md)"
        )
    merged: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for name in Settings.model_fields:
        value: Any = None
        source: Source
        if name in overrides:
            value, source = overrides[name], "option"
        elif os.environ.get(env_name(name), "") != "" and name != "data_dir":  # empty: unset
            value, source = os.environ[env_name(name)], "env"
        elif name in file_values:
            value, source = file_values[name], "file"
        else:
            continue
        merged[name], sources[name] = value, source
    extra = set(overrides) - set(Settings.model_fields)
    if extra:
        raise SettingsError(f"unknown setting {sorted(extra)[0]!r}")
    merged["data_dir"], sources["data_dir"] = path, "option" if data_dir else "env"
    record = DatabaseRecord.read(path / RECORD_FILE)
    if record is not None:
        if merged.get("database_url") in (None, "") and record.url is not None:
            merged["database_url"], sources["database_url"] = record.url, "record"
        if merged.get("database_password_file") is None and record.password_file is not None:
            merged["database_password_file"] = record.password_file
            sources["database_password_file"] = "record"  # noqa: S105
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as e:
        raise SettingsError(_explain(e, merged, sources, path)) from None
    settings._sources = sources
    settings._record = record
    if settings.database_password_file is not None and settings.database_url is not None:
        settings._db_password = _read_password(settings.database_password_file, sources, path)
    if record is not None and settings.db_kind != record.kind:
        where = describe_source("database_url", sources.get("database_url", "default"), path)
        given, made = _KIND_NAMES[settings.db_kind], _KIND_NAMES[record.kind]
        raise SettingsError(
            f"{where} names a {given} database, but init made this server's in {made} "
            f"({record.describe()}, recorded in {path / RECORD_FILE}): unset it to use the "
            f"recorded database, or name a {made} one"
        )
    return settings


_KIND_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def _read_password(file: Path, sources: Mapping[str, Source], data_dir: Path) -> str:
    where = describe_source(
        "database_password_file", sources.get("database_password_file", "default"), data_dir
    )
    try:
        lines = file.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"{where}: cannot read the password file {file}: {_one_line(e)}") from None
    if not lines or not lines[0]:
        raise SettingsError(f"{where}: the password file {file} is empty")
    return lines[0]


def describe_source(name: str, source: Source, data_dir: Path) -> str:
    """How an operator names where a setting was set: the variable, the file, or the option."""
    if source == "env":
        return env_name(name)
    if source == "file":
        return f"{name} in {data_dir / 'settings.toml'}"
    if source == "record":
        return f"{'url' if name == 'database_url' else 'password_file'} in {data_dir / RECORD_FILE}"
    if source == "option":
        return name
    return f"{env_name(name)} (default)"


def is_secret(name: str) -> bool:
    extra = Settings.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("secret"))


def expected_form(name: str) -> str:
    """The form a setting's value takes, as an error message asks for it."""
    info = Settings.model_fields[name]
    extra = info.json_schema_extra
    if isinstance(extra, dict) and extra.get("form"):
        return str(extra["form"])
    return _form_of(info)


def _form_of(info: FieldInfo) -> str:
    annotation = info.annotation
    args = get_args(annotation)
    if get_origin(annotation) in (Union, types.UnionType) and type(None) in args:
        annotation = next(a for a in args if a is not type(None))
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(annotation))
    base = {bool: "true or false", int: "a whole number", float: "a number", str: "text", Path: "a path"}.get(
        annotation,  # type: ignore[arg-type]
        "a value",
    )
    words = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}
    bounds = [
        f"{word} {getattr(m, attr)}"
        for m in info.metadata
        for attr, word in words.items()
        if hasattr(m, attr)
    ]
    return base + (" " + " and ".join(bounds) if bounds else "")


def _explain(
    error: ValidationError, values: Mapping[str, Any], sources: Mapping[str, Source], data_dir: Path
) -> str:
    """One line: each invalid setting, where it was set, the form expected and what was given
    (never a secret's value)."""
    parts = []
    for e in error.errors():
        loc = e.get("loc") or ()
        name = str(loc[0]) if loc else ""
        reason = str(e.get("msg", "")).removeprefix("Value error, ")
        if name not in Settings.model_fields:  # a rule across settings: its message names them
            parts.append(reason)
            continue
        where = describe_source(name, sources.get(name, "default"), data_dir)
        given = values.get(name)
        if is_secret(name):
            shown = "a value not shown (it may hold a password)"
        else:
            text = given if isinstance(given, str) else json.dumps(given, default=str)
            shown = repr(text if len(text) <= 60 else text[:57] + "...")
        line = f"{where}: expected {expected_form(name)}, got {shown}"
        if e.get("type") == "value_error":  # our validators' reasons never quote a secret
            line += f": {reason}"
        parts.append(line)
    return "; ".join(parts).replace("\n", " ")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
