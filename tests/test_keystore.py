"""The client key store: profiles on disk, sealed keys, file modes, passphrase input."""

from __future__ import annotations

import getpass
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nacl import pwhash

from liaison.clients.errors import (
    ClientError,
    KeyStoreError,
    ProfileExists,
    ProfileNotFound,
    WrongPassphrase,
)
from liaison.clients.keystore import (
    MIN_GUESSES_LOG10,
    KeyStore,
    Profile,
    WeakPassphrase,
    check_new_passphrase,
    default_home,
    passphrase_from_env_or_prompt,
)
from liaison.crypto.encoding import b64url_encode
from liaison.crypto.keys import generate_device

KEYS = generate_device("ukr-diu-analyst-07")
OTHER = generate_device("ukr-diu-analyst-07", suite="X25519", mldsa65=False)
PASS = "tr0ub4dor&3 but longer"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _store(home: Path) -> KeyStore:
    # libsodium's minimum Argon2id costs keep the tests fast; the format is the same.
    return KeyStore(home, opslimit=pwhash.argon2id.OPSLIMIT_MIN, memlimit=pwhash.argon2id.MEMLIMIT_MIN)


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return _store(tmp_path / "liaison")


@pytest.fixture
def profile() -> Profile:
    return Profile.for_keys("work", "https://liaison.example:8443", KEYS, ca_cert="/etc/ca.pem", now=NOW)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_round_trip(store: KeyStore, profile: Profile) -> None:
    assert not store.exists("work") and store.list() == []
    path = store.save(profile, KEYS, PASS)
    assert path == store.home / "profiles" / "work.json"
    loaded, keys = store.load("work", PASS)
    assert loaded == profile
    assert keys.to_bytes() == KEYS.to_bytes() and keys.device_id == KEYS.device_id
    assert store.load_public("work") == profile
    assert store.exists("work") and store.list() == ["work"]
    assert profile.principal == KEYS.principal and profile.created == "2026-01-02T03:04:05Z"


def test_several_profiles_listed_sorted(store: KeyStore, profile: Profile) -> None:
    store.save(profile, KEYS, PASS)
    other = Profile.for_keys("alt.lab-2", "https://other.example", OTHER, now=NOW)
    store.save(other, OTHER, "orbit lantern quiet maple")
    (store.home / "profiles" / "README.txt").write_text("ignored")
    assert store.list() == ["alt.lab-2", "work"]
    assert store.load("alt.lab-2", "orbit lantern quiet maple")[1].to_bytes() == OTHER.to_bytes()
    assert store.load_public("alt.lab-2").ca_cert is None


def test_file_and_directory_modes(store: KeyStore, profile: Profile) -> None:
    old = os.umask(0)  # even a permissive umask must not widen the modes
    try:
        path = store.save(profile, KEYS, PASS)
        state = store.state_dir("work")
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    for d in (store.home, store.home / "profiles", store.home / "state", state):
        assert _mode(d) == 0o700, d
    assert state == store.home / "state" / "work"
    assert [p.name for p in path.parent.iterdir()] == ["work.json"]  # no temp file left behind


def test_file_is_never_readable_by_others_even_briefly(
    store: KeyStore, profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_replace = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        seen.append(_mode(Path(src)))
        assert b"ed25519" not in Path(src).read_bytes()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    old = os.umask(0)
    try:
        store.save(profile, KEYS, PASS)
    finally:
        os.umask(old)
    assert seen == [0o600]


def test_no_private_material_in_clear(store: KeyStore, profile: Profile) -> None:
    raw = store.save(profile, KEYS, PASS).read_bytes()
    assert KEYS.mldsa65 is not None
    for secret in (KEYS.ed25519, KEYS.mldsa65, KEYS.kem, KEYS.kem[:32], KEYS.kem[64:]):
        assert b64url_encode(secret).encode() not in raw
        assert secret not in raw
    assert PASS.encode() not in raw
    doc = json.loads(raw)
    assert set(doc) == {"v", "profile", "keys"}
    assert doc["keys"]["kdf"] == "argon2id"
    assert doc["keys"]["opslimit"] == pwhash.argon2id.OPSLIMIT_MIN


def test_default_cost_is_moderate(tmp_path: Path, profile: Profile) -> None:
    path = KeyStore(tmp_path).save(profile, KEYS, PASS)
    assert json.loads(path.read_bytes())["keys"]["memlimit"] == pwhash.argon2id.MEMLIMIT_MODERATE


def test_wrong_passphrase(store: KeyStore, profile: Profile) -> None:
    store.save(profile, KEYS, PASS)
    with pytest.raises(WrongPassphrase, match="wrong passphrase for profile 'work'") as info:
        store.load("work", PASS + "!")
    assert isinstance(info.value, KeyStoreError) and isinstance(info.value, ClientError)
    assert PASS not in str(info.value) and "\n" not in str(info.value)


def test_missing_profile(store: KeyStore) -> None:
    with pytest.raises(ProfileNotFound, match="no profile named 'nope'"):
        store.load("nope", PASS)
    with pytest.raises(ProfileNotFound):
        store.load_public("nope")
    assert not store.exists("nope")


def test_profile_exists_unless_overwrite(store: KeyStore, profile: Profile) -> None:
    store.save(profile, KEYS, PASS)
    with pytest.raises(ProfileExists, match="'work' already exists"):
        store.save(profile, KEYS, "other")
    store.save(profile, KEYS, "a new and longer passphrase", overwrite=True)
    assert store.load("work", "a new and longer passphrase")[1].device_id == KEYS.device_id
    with pytest.raises(WrongPassphrase):
        store.load("work", PASS)


@pytest.mark.parametrize(
    "name",
    ["", "Work", "../etc", ".hidden", "a/b", "-x", "_x", "a" * 65, "wörk", "a b", "work.json/..", "x\n"],
)
def test_bad_names_refused(store: KeyStore, name: str) -> None:
    with pytest.raises(KeyStoreError, match="invalid profile name"):
        store.load(name, PASS)
    with pytest.raises(KeyStoreError, match="invalid profile name"):
        store.state_dir(name)
    with pytest.raises(KeyStoreError, match="invalid profile name"):
        Profile.for_keys(name, "https://liaison.example", KEYS)


def test_good_names_accepted(store: KeyStore) -> None:
    for name in ("a", "0", "work.ukr-diu_07", "a" * 64):
        store.save(Profile.for_keys(name, "https://liaison.example", KEYS), KEYS, PASS)
    assert len(store.list()) == 4


def test_profile_must_describe_the_keys(store: KeyStore, profile: Profile) -> None:
    with pytest.raises(KeyStoreError, match="does not describe these keys"):
        store.save(profile, OTHER, PASS)
    assert not store.exists("work")


def test_empty_passphrase_refused(store: KeyStore, profile: Profile) -> None:
    with pytest.raises(KeyStoreError, match="must not be empty"):
        store.save(profile, KEYS, "")


@pytest.mark.parametrize(
    "weak",
    [
        "x",
        "123456",
        "password1",
        "Tr0ub4dor&3",  # 10^11: four months at 10^4 guesses a second
        "qwertyuiopasdfgh",  # a keyboard walk
        "a" * 100,  # long, but a repeat (and only its first 72 characters are estimated)
        "work work work",  # the profile's own name
        "ukr-diu-analyst-07 ukr-diu-analyst-07",  # the principal
        "liaison.example 2026",  # the server's host and a year
    ],
)
def test_weak_passphrase_refused_when_chosen(store: KeyStore, profile: Profile, weak: str) -> None:
    with pytest.raises(WeakPassphrase, match=r"^passphrase too weak: estimated to be guessed in ") as info:
        store.save(profile, KEYS, weak)
    message = str(info.value)
    assert f"10^{MIN_GUESSES_LOG10} are required); use at least 4 random words" in message
    assert "offline" in message and "\n" not in message
    assert len(weak) < 3 or weak not in message  # never echoed
    assert not store.exists("work") and isinstance(info.value, KeyStoreError)
    # Changing a profile's passphrase (overwrite) is choosing one too.
    store.save(profile, KEYS, PASS)
    with pytest.raises(WeakPassphrase):
        store.save(profile, KEYS, weak, overwrite=True)
    assert store.load("work", PASS)[1].device_id == KEYS.device_id  # the old file is untouched


@pytest.mark.parametrize(
    "strong",
    [
        PASS,
        "correct horse battery staple",
        "orbit lantern quiet maple",
        "Київ, Харків та Львів стоять разом",
        "kP9#vX2$mQ7!rL4@",  # a password manager's 16 random characters
        "orbit lantern quiet maple " * 5,  # longer than zxcvbn's 72 characters
    ],
)
def test_strong_passphrases_accepted(strong: str) -> None:
    check_new_passphrase(strong, profile="work", principal="ukr-diu-analyst-07", server="https://h.example")


def test_a_weak_passphrase_still_opens_an_existing_profile(store: KeyStore, profile: Profile) -> None:
    """Only choosing a passphrase is checked: a profile sealed under a weak one before the rule
    existed still opens, so its owner can move to a new one."""
    from liaison.crypto.passphrase import seal_with_passphrase

    path = store.save(profile, KEYS, PASS)
    doc = json.loads(path.read_text())
    doc["keys"] = json.loads(
        seal_with_passphrase(
            KEYS.to_bytes(), "x", opslimit=pwhash.argon2id.OPSLIMIT_MIN, memlimit=pwhash.argon2id.MEMLIMIT_MIN
        )
    )
    path.write_text(json.dumps(doc))
    assert store.load("work", "x")[1].device_id == KEYS.device_id


@pytest.mark.parametrize(
    "field,value",
    [
        ("server", "ftp://x"),
        ("server", "liaison.example"),
        ("server", 5),
        ("ca_cert", ""),
        ("principal", ""),
        ("device_id", "d_short"),
        ("created", "yesterday"),
        ("name", "Bad"),
    ],
)
def test_profile_fields_validated(profile: Profile, field: str, value: object) -> None:
    obj = profile.to_json()
    obj[field] = value
    with pytest.raises(KeyStoreError):
        Profile.from_json(obj)


def test_profile_json_must_be_exact(profile: Profile) -> None:
    assert Profile.from_json(profile.to_json()) == profile
    bad: list[object] = [{**profile.to_json(), "extra": 1}, {"name": "work"}, [], None]
    for obj in bad:
        with pytest.raises(KeyStoreError):
            Profile.from_json(obj)


def _edit(store: KeyStore, name: str, change: object) -> None:
    path = store.profile_path(name)
    doc = json.loads(path.read_bytes())
    change(doc)  # type: ignore[operator]
    path.write_text(json.dumps(doc))


def test_swapped_device_id_detected(store: KeyStore, profile: Profile) -> None:
    store.save(profile, KEYS, PASS)
    _edit(store, "work", lambda d: d["profile"].update(device_id=OTHER.device_id))
    assert store.load_public("work").device_id == OTHER.device_id  # public half is unauthenticated
    with pytest.raises(KeyStoreError, match="not the device it names"):
        store.load("work", PASS)


def test_tampered_sealed_keys(store: KeyStore, profile: Profile) -> None:
    store.save(profile, KEYS, PASS)
    _edit(store, "work", lambda d: d["keys"].update(salt=b64url_encode(bytes(16))))
    with pytest.raises(WrongPassphrase):
        store.load("work", PASS)
    _edit(store, "work", lambda d: d["keys"].update(memlimit=64 * 1024**3))
    with pytest.raises(KeyStoreError, match="damaged"):
        store.load("work", PASS)


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[]", b'{"v": 2, "profile": {}, "keys": {}}', b"[" * 50_000],
)
def test_damaged_file(store: KeyStore, profile: Profile, content: bytes) -> None:
    store.save(profile, KEYS, PASS)
    store.profile_path("work").write_bytes(content)
    with pytest.raises(KeyStoreError, match="damaged"):
        store.load_public("work")


def test_file_naming_another_profile(store: KeyStore, profile: Profile) -> None:
    path = store.save(profile, KEYS, PASS)
    path.rename(path.with_name("copy.json"))
    with pytest.raises(KeyStoreError, match="names another profile"):
        store.load("copy", PASS)


def test_default_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_home({"LIAISON_HOME": str(tmp_path)}) == tmp_path
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_home({}) == tmp_path / ".config" / "liaison"
    monkeypatch.setenv("LIAISON_HOME", str(tmp_path / "x"))
    assert KeyStore.default().home == tmp_path / "x"


def test_passphrase_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_prompt(_: str) -> str:
        raise AssertionError("must not prompt when the environment has it")

    assert passphrase_from_env_or_prompt(env={"LIAISON_PASSPHRASE": "s3cret"}, prompt=no_prompt) == "s3cret"
    monkeypatch.setenv("LIAISON_PASSPHRASE", "from-env")
    assert passphrase_from_env_or_prompt(confirm=True, prompt=no_prompt) == "from-env"


def test_env_passphrase_opens_the_store(
    store: KeyStore, profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save(profile, KEYS, PASS)
    monkeypatch.setenv("LIAISON_PASSPHRASE", PASS)
    assert store.load("work", passphrase_from_env_or_prompt())[1].device_id == KEYS.device_id


def test_passphrase_prompt() -> None:
    answers = iter(["typed", "typed"])
    prompts: list[str] = []

    def prompt(text: str) -> str:
        prompts.append(text)
        return next(answers)

    assert passphrase_from_env_or_prompt(confirm=True, env={}, prompt=prompt) == "typed"
    assert prompts == ["Passphrase: ", "Repeat passphrase: "]
    assert passphrase_from_env_or_prompt(env={"LIAISON_PASSPHRASE": ""}, prompt=lambda _: "x") == "x"


def test_passphrase_prompt_failures() -> None:
    answers = iter(["one", "two"])
    with pytest.raises(KeyStoreError, match="do not match"):
        passphrase_from_env_or_prompt(confirm=True, env={}, prompt=lambda _: next(answers))
    with pytest.raises(KeyStoreError, match="must not be empty"):
        passphrase_from_env_or_prompt(env={}, prompt=lambda _: "")

    def eof(_: str) -> str:
        raise EOFError

    with pytest.raises(KeyStoreError, match="no passphrase given"):
        passphrase_from_env_or_prompt(env={}, prompt=eof)


def test_no_terminal_refuses_to_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    def echoing_fallback(_: str) -> str:
        import warnings

        warnings.warn("Can not control echo on the terminal.", getpass.GetPassWarning, stacklevel=2)
        return "would have been echoed"

    with pytest.raises(KeyStoreError, match="LIAISON_PASSPHRASE"):
        passphrase_from_env_or_prompt(env={}, prompt=echoing_fallback)
