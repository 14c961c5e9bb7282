"""`load_settings`: defaults, then `settings.toml`, then `LIAISON_*`, then the command's options;
init's database record; errors in one line naming the setting and the form it takes."""

from __future__ import annotations

import json
import os
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from ._base import RECORD_FILE, SettingsError, Source, describe_source, env_name, one_line
from ._record import DatabaseRecord
from ._settings import Settings

__all__ = ["expected_form", "is_secret", "load_settings"]


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
            raise SettingsError(f"{settings_file} is not valid TOML: {one_line(e)}") from None
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
        raise SettingsError(f"{where}: cannot read the password file {file}: {one_line(e)}") from None
    if not lines or not lines[0]:
        raise SettingsError(f"{where}: the password file {file} is empty")
    return lines[0]


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
