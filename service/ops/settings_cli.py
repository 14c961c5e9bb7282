"""`liaison-server config`: the effective settings (secrets masked) and the settings reference.

config               every setting's value and where it came from (default, settings.toml,
                     environment, option, init's database record); --json for scripts
config --reference   the reference of every LIAISON_* setting as Markdown (the table in
                     docs/operations.md is this output, checked by a test)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import Settings, env_name, expected_form, is_secret, load_settings, masked_url

__all__ = ["config", "reference_markdown"]

_SOURCES = {
    "default": "default",
    "file": "settings.toml",
    "env": "environment",
    "option": "option",
    "record": "database.toml",
}


def _masked(name: str, value: Any) -> Any:
    if value is None or not is_secret(name):
        return value
    if name == "database_url":
        return masked_url(str(value))
    return "***"


def _text(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "(empty)"
    if isinstance(value, dict):
        return json.dumps(value) if value else "(empty)"
    return str(value)


def effective(settings: Settings) -> dict[str, Any]:
    """What `config --json` prints: every setting (secrets masked), its source, the database."""
    values = {name: _masked(name, getattr(settings, name)) for name in Settings.model_fields}
    record = settings.database_record
    return {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in values.items()},
        "sources": {name: settings.sources.get(name, "default") for name in Settings.model_fields},
        "database": {
            "kind": settings.db_kind,
            "url": masked_url(settings.db_url),
            "recorded_by_init": None
            if record is None
            else {"kind": record.kind, "url": record.url, "password_from": record.password_from},
        },
    }


def config(
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", envvar="LIAISON_DATA_DIR", help="Server data directory")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    reference: Annotated[
        bool, typer.Option("--reference", help="Print the reference of every setting (Markdown)")
    ] = False,
) -> None:
    """Print the effective settings and where each came from (secrets masked)."""
    if reference:
        typer.echo(reference_markdown(), nl=False)
        return
    settings = load_settings(data_dir)
    out = effective(settings)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    width = max(len(env_name(n)) for n in Settings.model_fields)
    typer.echo(f"# Effective settings of {settings.data_dir} (where each came from on the right)")
    for name, value in out["settings"].items():
        source = _SOURCES[out["sources"][name]]
        typer.echo(f"{env_name(name):<{width}}  {_text(value)}  [{source}]")
    db = out["database"]
    recorded = db["recorded_by_init"]
    typer.echo(
        f"# Database: {db['kind']}, {db['url']}; "
        + (
            f"init recorded {recorded['url'] or 'the data directory SQLite file'} "
            f"(password from: {recorded['password_from']})"
            if recorded
            else "no record of init's database (a data directory made by an older init)"
        )
    )


# --- the reference (docs/operations.md) -----------------------------------------------------


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(name: str) -> str:
    info = Settings.model_fields[name]
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None or value in ([], {}):
        return "unset"
    return f"`{_text(value)}`"


def reference_markdown() -> str:
    """A Markdown table of every setting: its variable and settings.toml key, meaning, form,
    default and an example."""
    rows = [
        "| Environment variable (`settings.toml` key) | Meaning | Default | Example |",
        "| --- | --- | --- | --- |",
    ]
    for name, info in Settings.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        meaning = f"{info.description} Form: {expected_form(name)}."
        if is_secret(name):
            meaning += " Secret: masked by `liaison-server config`, never shown in an error."
        rows.append(
            f"| `{env_name(name)}` (`{name}`) | {_cell(meaning)} | {_default(name)} "
            f"| `{_cell(str(extra.get('example', '')))}` |"
        )
    return "\n".join(rows) + "\n"
