"""Service settings: environment (`LIAISON_*`) over the data directory's `settings.toml`."""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "SettingsError", "load_settings"]


class SettingsError(Exception):
    """The data directory or a setting is missing or invalid; the message says how to fix it."""


class Settings(BaseSettings):
    """Everything the service reads at start. Built once in `create_app`/the CLI, never at import."""

    model_config = SettingsConfigDict(env_prefix="LIAISON_", extra="forbid")

    data_dir: Path
    origin: str = "liaison.example/audit"
    database_url: str | None = None
    public_url: str | None = Field(
        default=None, description="Base URL clients use (for @target-uri behind a proxy)"
    )
    host: str = "127.0.0.1"
    port: int = 8443
    dev_plain_http: bool = False
    max_body_bytes: int = 12 * 1024 * 1024
    clock_skew_seconds: int = 300
    enrolment_code_ttl_seconds: int = 24 * 3600
    rate_limit_per_second: float = 200.0
    rate_limit_burst: int = 400
    #: Enrolment attempts per client address (codes have 104 bits; this only curbs noise).
    enrol_rate_per_second: float = 1.0
    enrol_rate_burst: int = 20
    #: Requests whose signature does not verify, per client address (then 429): device ids
    #: are public, so such failures are never charged to (or logged against) the device named.
    auth_failure_rate_per_second: float = 1.0
    auth_failure_burst: int = 20
    #: Open the audit log's entries to anyone (docs/audit.md): every field of every entry, until
    #: entries are committed; the server warns at start. Checkpoints, tiles, proofs: always public.
    audit_public: bool = False
    #: Live inbox streams one device may hold open in one service process (then 429).
    max_streams_per_device: int = Field(default=4, ge=1)
    #: How often open streams are re-checked: a revoked device's or suspended principal's
    #: streams close within about this many seconds, whichever replica they are open on.
    stream_recheck_seconds: float = Field(default=2.0, gt=0)
    retention_interval_seconds: float = 3600.0
    batch_max: int = 256
    witness_keys: list[str] = Field(default_factory=list)
    #: Witnesses the service pushes every new checkpoint to (c2sp.org/tlog-witness), by the
    #: name of their key in `witness_keys`: {"w1.example": "https://w1.example:8444"}, the
    #: URL being the witness's submission prefix (POST <url>/add-checkpoint). Empty: no push.
    witness_urls: dict[str, str] = Field(default_factory=dict)
    #: PEM CA certificates that witnesses' HTTPS certificates must chain to (default: the
    #: system's trust store). Plain http:// works too: a cosignature is checked, not the channel.
    witness_ca_cert: Path | None = None
    #: How often the pusher looks for a newer checkpoint to push (seconds).
    witness_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    log_level: str = "info"

    # --- connections (`liaison-server run`; docs/api.md "Operations") -----------------------
    #: The request head (request line and header lines, with their CRLFs) may hold at most this
    #: many bytes, each line at most header_line_max_bytes, and at most header_max_count header
    #: fields; a larger head is answered 431 (`headers-too-large`) and the connection closed.
    header_max_bytes: int = Field(default=64 * 1024, ge=1024)
    header_line_max_bytes: int = Field(default=16 * 1024, ge=256)
    header_max_count: int = Field(default=100, ge=8)
    #: A connection has this long from its accept (or from the end of its previous response)
    #: to complete the PROXY header, the TLS handshake and a request head; else it is closed
    #: (with 408 `request-timeout` when part of a head had arrived).
    head_timeout_seconds: float = Field(default=10.0, gt=0)
    #: While a request body is incoming, the client may be silent at most this long; then 408
    #: and close. A slow body that keeps arriving is not cut off (max_body_bytes bounds it).
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    #: Open connections per client address (IPv6: per /64), counted from accept to close,
    #: TLS handshakes included; connections past it are closed at once.
    max_connections_per_address: int = Field(default=64, ge=1)
    #: Expect a PROXY protocol v2 header (HAProxy `send-proxy-v2`) on every connection and take
    #: the client's address from it; connections from addresses outside proxy_trusted are
    #: refused. proxy_trusted: addresses or networks (CIDR), a JSON list or comma-separated.
    proxy_protocol: bool = False
    proxy_trusted: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Serve Prometheus metrics on their own plain-HTTP listener (GET /metrics) on this port
    #: of metrics_host; off when unset. The API port never serves them.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    #: Serve the OpenAPI document and its viewers (/openapi.json, /docs, /redoc) on the API port.
    api_docs: bool = False

    @field_validator("proxy_trusted", mode="before")
    @classmethod
    def _proxy_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = json.loads(v) if v.strip().startswith("[") else [p for p in v.split(",") if p.strip()]
        if isinstance(v, list):
            for item in v:
                try:
                    ipaddress.ip_network(str(item).strip(), strict=False)
                except ValueError:
                    raise ValueError(f"proxy_trusted: {item!r} is not an IP address or network") from None
            return [str(item).strip() for item in v]
        return v

    @model_validator(mode="after")
    def _proxy_needs_trust(self) -> Settings:
        if self.proxy_protocol and not self.proxy_trusted:
            raise ValueError("proxy_protocol needs proxy_trusted: the addresses of the proxies")
        return self

    @field_validator("origin")
    @classmethod
    def _origin(cls, v: str) -> str:
        if not v or any(c.isspace() for c in v) or "+" in v:
            raise ValueError("origin must be a non-empty name without spaces or '+'")
        return v

    @field_validator("witness_urls")
    @classmethod
    def _witness_urls(cls, v: dict[str, str]) -> dict[str, str]:
        for name, url in v.items():
            if not url.startswith(("https://", "http://")) or any(c.isspace() for c in url):
                raise ValueError(f"the URL of witness {name} must be an http(s):// URL")
        return v

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
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'liaison.db'}"

    @property
    def is_postgres(self) -> bool:
        return self.db_url.startswith("postgresql")


def load_settings(data_dir: Path | str | None = None, **overrides: Any) -> Settings:
    """Read `settings.toml` from the data directory, then apply `LIAISON_*` and overrides."""
    raw_dir = data_dir or os.environ.get("LIAISON_DATA_DIR")
    if not raw_dir:
        raise SettingsError("no data directory: pass --data-dir or set LIAISON_DATA_DIR")
    path = Path(raw_dir).expanduser().resolve()
    if not path.is_dir():
        raise SettingsError(
            f"data directory {path} does not exist: run 'liaison-server init --data-dir {path}' first"
        )
    file_values: dict[str, Any] = {}
    settings_file = path / "settings.toml"
    if settings_file.exists():
        try:
            file_values = tomllib.loads(settings_file.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise SettingsError(f"{settings_file} is not valid TOML: {e}") from e
    # Environment wins over the file; explicit overrides win over both.
    env_names = {k[len("LIAISON_") :].lower() for k in os.environ if k.startswith("LIAISON_")}
    merged = {k: v for k, v in file_values.items() if k not in env_names}
    merged.update(overrides)
    merged["data_dir"] = path
    try:
        return Settings(**merged)
    except Exception as e:  # pydantic ValidationError: say which setting, in one line
        raise SettingsError(f"invalid settings: {e}".replace("\n", " ")) from e
