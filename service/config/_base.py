"""What every part of the settings shares: the variables' prefix, the one error, masking."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from sqlalchemy.engine.url import URL


__all__ = [
    "ENV_PREFIX",
    "RECORD_FILE",
    "SettingsError",
    "Source",
    "describe_source",
    "env_name",
    "masked_url",
    "one_line",
]

ENV_PREFIX = "LIAISON_"
#: What `init` writes into the data directory about the database it made (never a password).
RECORD_FILE = "database.toml"

Source = Literal["default", "file", "env", "option", "record"]


class SettingsError(Exception):
    """The data directory or a setting is missing or invalid; the message says how to fix it."""


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def parse_db_url(url: str) -> URL:
    """SQLAlchemy's parse of a database URL; ValueError (never quoting it: it may hold a
    password) when it is not one. Imported here, when a URL is parsed: importing SQLAlchemy
    costs a quarter of a second of CPU, which the light commands (`healthcheck` on the default
    SQLite database, `--help`) never need."""
    from sqlalchemy.engine.url import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except ArgumentError:
        raise ValueError("not a database URL") from None


def masked_url(url: str, *, drop: bool = False) -> str:
    """`url` with its password replaced by *** (or dropped)."""
    try:
        parsed = parse_db_url(url)
    except ValueError:
        return "(not a URL)"
    if parsed.password is None:
        return parsed.render_as_string(hide_password=False)
    if drop:  # URL.set() takes None for "unchanged": a named tuple's _replace drops it
        return parsed._replace(password=None).render_as_string(hide_password=False)
    return parsed.render_as_string(hide_password=True)


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


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
