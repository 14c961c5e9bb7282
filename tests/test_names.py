"""The protocol's words: each spelled in `liaison.crypto.names` only, and its patterns exact."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest

from liaison.crypto import _primitives as p
from liaison.crypto import names

ROOT = Path(__file__).resolve().parent.parent
#: Every word of names.py, and the body of every pattern without its anchors.
WORDS = {
    names.ED25519,
    names.MLDSA65,
    names.X25519,
    names.MLKEM768_X25519,
    *(
        pattern.strip("^$")
        for pattern in (names.SLUG_PATTERN, names.NATION_PATTERN, names.COMPARTMENT_PATTERN)
    ),
    names.SLUG_PATTERN,
    names.NATION_PATTERN,
    names.COMPARTMENT_PATTERN,
}


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """String constants of a module's code, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_no_module_spells_a_word_of_names_again() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {value!r}"
        for package in ("crypto", "clients")
        for path in sorted((ROOT / package).glob("*.py"))
        if path.name != "names.py"
        for line, value in _code_strings(path)
        if value in WORDS
    ]
    assert found == []


def test_the_sets_are_made_of_the_words() -> None:
    assert names.SIGNATURE_ALGS == (names.ED25519, names.MLDSA65)
    assert names.KEM_SUITES == (names.X25519, names.MLKEM768_X25519)
    assert names.ROLES == get_args(names.Role) == ("analyst", "admin", "auditor")
    assert set(names.DEFAULT_ROLES) <= set(names.ROLES)
    # The primitives implement exactly the suites named (and re-export the same tuple).
    assert p.KEM_SUITES is names.KEM_SUITES
    assert set(p._HPKE) == set(names.KEM_SUITES)


@pytest.mark.parametrize("value", ["a", "0", "ukr-diu.analyst_07", "a" * 64, "9-._"])
def test_slugs_accepted(value: str) -> None:
    assert names.SLUG_RE.fullmatch(value)


@pytest.mark.parametrize("value", ["", "A", "-a", ".a", "_a", "a" * 65, "a/b", "..", "a b", "a\n", "é"])
def test_slugs_refused(value: str) -> None:
    assert not names.SLUG_RE.fullmatch(value)


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (names.NATION_RE, ["UKR", "USA"], ["UK", "ukr", "UKRA", "UK1", "USA\n"]),
        (names.COMPARTMENT_RE, ["AIRDEF", "A", "A-1", "A" * 32], ["", "1A", "-A", "a", "A" * 33, "A_B"]),
    ],
)
def test_nation_and_compartment_patterns(pattern: object, good: list[str], bad: list[str]) -> None:
    assert isinstance(pattern, type(names.SLUG_RE))
    assert all(pattern.fullmatch(v) for v in good)
    assert not any(pattern.fullmatch(v) for v in bad)
