"""The database `init` made the server's in: `database.toml` in the data directory, written by
init and read by every command (never a password)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ._base import SettingsError, env_name, masked_url, one_line, parse_db_url

__all__ = ["DatabaseRecord"]


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
    def of(cls, database_url: str | None, password_file: Path | None) -> DatabaseRecord:
        """What init records of the database it was given (`Settings.database_url` and
        `database_password_file`): the URL without its password, and where that came from."""
        if database_url is None:
            return cls(kind="sqlite")
        url = parse_db_url(database_url)
        kind = url.get_backend_name()
        if url.password is not None:
            return cls(kind, masked_url(database_url, drop=True), env_name("database_url"))
        if password_file is not None:
            return cls(kind, database_url, env_name("database_password_file"), password_file)
        return cls(kind, database_url)

    @classmethod
    def read(cls, path: Path) -> DatabaseRecord | None:
        if not path.exists():
            return None
        try:
            raw = tomllib.loads(path.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise SettingsError(
                f"{path} (init's record of the database) is unreadable: {one_line(e)}"
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
        return parse_db_url(url).get_backend_name()
    except ValueError:
        return None
