"""Service settings: environment (`LIAISON_*`) over the data directory's `settings.toml`."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    audit_public: bool = False
    #: Live inbox streams one device may hold open in one service process (then 429).
    max_streams_per_device: int = Field(default=4, ge=1)
    #: How often open streams are re-checked: a revoked device's or suspended principal's
    #: streams close within about this many seconds, whichever replica they are open on.
    stream_recheck_seconds: float = Field(default=2.0, gt=0)
    retention_interval_seconds: float = 3600.0
    batch_max: int = 256
    witness_keys: list[str] = Field(default_factory=list)
    log_level: str = "info"

    @field_validator("origin")
    @classmethod
    def _origin(cls, v: str) -> str:
        if not v or any(c.isspace() for c in v) or "+" in v:
            raise ValueError("origin must be a non-empty name without spaces or '+'")
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
