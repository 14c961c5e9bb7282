"""Settings (issue 11, item 4): every `LIAISON_*` setting is documented in docs/operations.md
(the table is `liaison-server config --reference`, compared here, so it cannot drift); a bad
value is refused in one line naming the setting, where it was set and the form expected, never
echoing a secret; `liaison-server config` prints the effective settings, secrets masked."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liaison.crypto import note
from liaison.service.config import Settings, SettingsError, env_name, load_settings
from liaison.service.ops.cli import app
from liaison.service.ops.settings_cli import reference_markdown

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
BEGIN, END = "<!-- settings-reference:begin -->\n", "<!-- settings-reference:end -->"


def _documented() -> str:
    text = OPERATIONS.read_text("utf-8")
    assert BEGIN in text and END in text, "docs/operations.md lost its settings-reference markers"
    return text.split(BEGIN, 1)[1].split(END, 1)[0]


def test_every_setting_is_documented() -> None:
    documented = _documented()
    missing = [env_name(n) for n in Settings.model_fields if f"`{env_name(n)}`" not in documented]
    assert not missing, f"settings missing from docs/operations.md: {missing}"
    # Each row has a meaning, a default and an example.
    for name, info in Settings.model_fields.items():
        row = next(line for line in documented.splitlines() if line.startswith(f"| `{env_name(name)}`"))
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert len(cells) == 4 and all(cells), row
        assert info.description and info.description in cells[1].replace("\\|", "|"), row


def test_the_reference_is_the_generated_one() -> None:
    assert _documented() == reference_markdown(), (
        "docs/operations.md's settings table differs from service/config/: paste the output of "
        "`liaison-server config --reference` between its settings-reference markers"
    )
    result = CliRunner().invoke(app, ["config", "--reference"])
    assert result.exit_code == 0 and result.stdout == reference_markdown()


def test_the_readme_links_the_reference() -> None:
    assert "docs/operations.md" in (ROOT / "README.md").read_text("utf-8")


def test_examples_are_valid_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every documented example is a value the setting takes, as written in the environment."""
    for name, info in Settings.model_fields.items():
        if name in ("data_dir", "witness_keys", "witness_urls", "proxy_protocol"):
            continue  # checked below: a directory; keys with real key material; a rule across two
        extra = info.json_schema_extra
        assert isinstance(extra, dict)
        monkeypatch.setenv(env_name(name), str(extra["example"]))
        try:
            load_settings(tmp_path)
        except SettingsError as e:
            raise AssertionError(f"{env_name(name)}'s example does not load: {e}") from None
        finally:
            monkeypatch.delenv(env_name(name))
    _, vkey = note.generate_signer_key("w1.example", sig_type=note.SIG_COSIGNATURE_V1)
    monkeypatch.setenv("LIAISON_WITNESS_KEYS", vkey)
    monkeypatch.setenv("LIAISON_WITNESS_URLS", '{"w1.example": "https://w1.example:8444"}')
    monkeypatch.setenv("LIAISON_PROXY_PROTOCOL", "true")
    monkeypatch.setenv("LIAISON_PROXY_TRUSTED", "172.30.0.10,127.0.0.1")
    s = load_settings(tmp_path)
    assert s.witness_keys == [vkey] and s.witness_urls == {"w1.example": "https://w1.example:8444"}
    monkeypatch.setenv("LIAISON_WITNESS_URLS", "w1.example=https://w1.example:8444")  # the other form
    assert load_settings(tmp_path).witness_urls == {"w1.example": "https://w1.example:8444"}


BAD = [
    # (variable, value, what the one line must say)
    (
        "LIAISON_WITNESS_KEYS",
        "garbage",
        "LIAISON_WITNESS_KEYS: expected a comma-separated list of vkeys (name+hash+base64), got 'garbage'",
    ),
    (
        "LIAISON_PORT",
        "eighty",
        "LIAISON_PORT: expected a whole number at least 1 and at most 65535, got 'eighty'",
    ),
    (
        "LIAISON_PORT",
        "70000",
        "LIAISON_PORT: expected a whole number at least 1 and at most 65535, got '70000'",
    ),
    ("LIAISON_AUDIT_PUBLIC", "perhaps", "LIAISON_AUDIT_PUBLIC: expected true or false, got 'perhaps'"),
    ("LIAISON_LOG_LEVEL", "loud", "LIAISON_LOG_LEVEL: expected one of debug, info, warning, error, critical"),
    (
        "LIAISON_PROXY_TRUSTED",
        "haproxy",
        "LIAISON_PROXY_TRUSTED: expected a comma-separated list (or JSON list)",
    ),
    ("LIAISON_WITNESS_URLS", "{nope", "LIAISON_WITNESS_URLS: expected a JSON object"),
    ("LIAISON_PUBLIC_URL", "liaison.example", "LIAISON_PUBLIC_URL: expected an https:// or http:// URL"),
    ("LIAISON_STREAM_RECHECK_SECONDS", "0", "LIAISON_STREAM_RECHECK_SECONDS: expected a number more than 0"),
    ("LIAISON_ORIGIN", "has space", "LIAISON_ORIGIN: expected a name without spaces or '+'"),
]


@pytest.mark.parametrize(("variable", "value", "says"), BAD, ids=[f"{v}={x}" for v, x, _ in BAD])
def test_a_bad_value_names_the_setting_and_its_form(
    variable: str, value: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings(tmp_path)
    message = str(refused.value)
    assert says in message and "\n" not in message and "EnvSettingsSource" not in message, message
    # Through the real CLI: one line, exit 2.
    result = CliRunner().invoke(app, ["config", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr == f"liaison-server: {message}\n"


def test_the_same_setting_in_settings_toml_is_named_there(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text('port = "eighty"\nno_such_setting = 1\n')
    with pytest.raises(SettingsError, match=r"no_such_setting is not a setting"):
        load_settings(tmp_path)
    (tmp_path / "settings.toml").write_text('port = "eighty"\n')
    with pytest.raises(SettingsError) as refused:
        load_settings(tmp_path)
    assert str(refused.value) == (
        f"port in {tmp_path.resolve() / 'settings.toml'}: expected a whole number at least 1 and at "
        "most 65535, got 'eighty'"
    )


@pytest.mark.parametrize(
    "url",
    [
        "mysql://admin:Sup3rSecret@db.example/liaison",
        "postgresql+asyncpg://admin:Sup3rSecret@db.example:notaport/liaison",
        "Sup3rSecret",
    ],
)
def test_a_bad_database_url_is_never_echoed(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIAISON_DATABASE_URL", url)
    result = CliRunner().invoke(app, ["config", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("liaison-server: LIAISON_DATABASE_URL: expected a postgresql+asyncpg://")
    assert "Sup3rSecret" not in result.output


def test_config_prints_the_effective_settings_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "settings.toml").write_text('origin = "ops.example/log"\nport = 9443\n')
    monkeypatch.setenv("LIAISON_DATABASE_URL", "postgresql://liaison_app:Sup3rSecret@db.example/liaison")
    monkeypatch.setenv("LIAISON_PROXY_TRUSTED", "10.0.0.0/8,127.0.0.1")
    monkeypatch.setenv("LIAISON_PASSPHRASE", "a client's, not a setting")  # ignored
    result = CliRunner().invoke(app, ["config", "--data-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert "Sup3rSecret" not in result.output
    out = json.loads(result.stdout)
    assert set(out["settings"]) == set(Settings.model_fields)
    assert out["settings"]["database_url"] == "postgresql+asyncpg://liaison_app:***@db.example/liaison"
    assert out["settings"]["port"] == 9443 and out["sources"]["port"] == "file"
    assert out["settings"]["proxy_trusted"] == ["10.0.0.0/8", "127.0.0.1"]
    assert out["sources"]["proxy_trusted"] == "env" and out["sources"]["host"] == "default"
    assert out["database"]["kind"] == "postgresql" and out["database"]["recorded_by_init"] is None
    text = CliRunner().invoke(app, ["config", "--data-dir", str(tmp_path)]).stdout
    assert "Sup3rSecret" not in text
    assert re.search(r"^LIAISON_PORT +9443  \[settings.toml\]$", text, re.M), text
    assert re.search(
        r"^LIAISON_DATABASE_URL +postgresql\+asyncpg://liaison_app:\*\*\*@db.example/liaison"
        r"  \[environment\]$",
        text,
        re.M,
    )
    assert len([line for line in text.splitlines() if line.startswith("LIAISON_")]) == len(
        Settings.model_fields
    )
