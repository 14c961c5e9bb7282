"""jcs (RFC 8785): byte for byte the rfc8785 package, errors included, on its fast path and off it;
the published JCS test data."""

from __future__ import annotations

import enum
import json
import math
import sys
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liaison.crypto import encoding
from liaison.crypto.encoding import jcs
from liaison.crypto.envelope import seal
from liaison.crypto.errors import MalformedError
from liaison.crypto.keys import generate_device
from liaison.crypto.labels import Label

VECTORS = Path(__file__).parent / "vectors" / "rfc8785"
VECTOR_NAMES = sorted(p.stem for p in (VECTORS / "input").glob("*.json"))


def _reference(value: Any) -> tuple[str, Any]:
    """What jcs did before the fast path: rfc8785.dumps, its refusals as MalformedError."""
    try:
        return "ok", rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as e:
        return "MalformedError", f"value cannot be canonicalised: {e}"


def _ours(value: Any) -> tuple[str, Any]:
    try:
        return "ok", jcs(value)
    except MalformedError as e:
        return "MalformedError", str(e)


# --- strategies ------------------------------------------------------------------------------

# Characters JCS treats specially, or that sort differently by UTF-16 code unit than by code point
# (U+E000..U+FFFF against U+10000 and above), or that are not Unicode scalar values at all.
SPECIAL_CHARS = [
    '"',
    "\\",
    "/",
    "\x00",
    "\x01",
    "\x08",
    "\t",
    "\n",
    "\x0b",
    "\x0c",
    "\r",
    "\x1f",
    " ",
    "\x7f",
    "\x80",
    "\u00f6",
    "\u0632",
    "\u2028",
    "\u2029",
    "\u20ac",
    "\ud7ff",
    "\ue000",
    "\ufb33",
    "\ufeff",
    "\uffff",
    "\U00010000",
    "\U0001f600",
    "\U0010ffff",
]
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff", "\ud83d"]

valid_chars = st.one_of(
    st.characters(max_codepoint=0x7F),
    st.sampled_from(SPECIAL_CHARS),
    st.characters(codec="utf-8"),  # any Unicode scalar value: no surrogates
)
any_chars = st.one_of(valid_chars, st.sampled_from(SURROGATES), st.characters(exclude_categories=()))

# Short keys over a small alphabet, so that keys share prefixes and meet at the characters where
# UTF-16 and code point order part ways.
KEY_ALPHABET = [
    "a",
    "b",
    "B",
    "1",
    "_",
    '"',
    "\\",
    "\n",
    "\x7f",
    "\u00f6",
    "\u20ac",
    "\ue000",
    "\ufb33",
    "\uffff",
    "\U00010000",
    "\U0001f600",
    "\U0010ffff",
]
valid_keys = st.one_of(st.text(st.sampled_from(KEY_ALPHABET), max_size=3), st.text(valid_chars, max_size=8))
any_keys = st.one_of(valid_keys, st.text(st.sampled_from(KEY_ALPHABET + SURROGATES), max_size=3))

SAFE = 2**53 - 1
edge_ints = st.sampled_from([0, 1, -1, SAFE, -SAFE, SAFE + 1, -SAFE - 1, 2**63, -(2**64), 10**30])


def _json_values(
    chars: st.SearchStrategy[str],
    keys: st.SearchStrategy[str],
    ints: st.SearchStrategy[int],
    floats: st.SearchStrategy[float],
) -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), ints, floats, st.text(chars, max_size=12))
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(keys, children, max_size=6),
        ),
        max_leaves=30,
    )


# Anything: lone surrogates, NaN and infinities, integers outside the safe range.
any_values = _json_values(any_chars, any_keys, st.one_of(st.integers(), edge_ints), st.floats())
# Values RFC 8785 can serialise: what the fast path must take on, without handing over.
valid_values = _json_values(
    valid_chars, valid_keys, st.integers(-SAFE, SAFE), st.floats(allow_nan=False, allow_infinity=False)
)


# --- properties ------------------------------------------------------------------------------


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_values)
def test_same_bytes_or_same_error_as_rfc8785(value: Any) -> None:
    assert _ours(value) == _reference(value)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_values)
def test_fast_path_serialises_every_valid_value_as_rfc8785_does(value: Any) -> None:
    # _fast_jcs raises instead of handing over, so this checks the fast path itself, not the
    # fallback.
    assert encoding._fast_jcs(value) == rfc8785.dumps(value)
    assert jcs(value) == rfc8785.dumps(value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_values, st.sampled_from(SURROGATES), st.text(valid_chars, max_size=4))
def test_lone_surrogate_anywhere_is_refused_as_before(value: Any, surrogate: str, pad: str) -> None:
    # Everything else in the value can be serialised, so the surrogate is what both refuse.
    text = pad + surrogate + pad
    for bad in ([value, text], {"v": value, "s": text}, {"v": value, text: 1}, [{"d": [text]}]):
        result = _ours(bad)
        assert result[0] == "MalformedError"
        assert result == _reference(bad)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(valid_keys, st.integers(-SAFE, SAFE), min_size=2, max_size=8))
def test_members_sorted_by_utf16_code_units(obj: dict[str, int]) -> None:
    out = json.loads(jcs(obj))
    assert list(out) == sorted(obj, key=lambda k: k.encode("utf-16-be"))
    assert out == obj


@settings(max_examples=300, deadline=None)
@given(st.text(any_chars, max_size=40))
def test_strings_same_as_rfc8785(text: str) -> None:
    for value in (text, [text], {"k": text}, {text: 0}):
        assert _ours(value) == _reference(value)


# --- fixed cases -----------------------------------------------------------------------------


def _id(value: Any) -> str:
    """A test id that is the same in every process (pytest-xdist compares them)."""
    if type(value) is object:
        return "<object>"
    try:
        return ascii(value)[:40]
    except ValueError:  # an int too long for str()
        return f"<{type(value).__name__}>"


class Colour(enum.IntEnum):
    RED = 1


class Tone(enum.StrEnum):
    DARK = "dark"


class LoudStr(str):
    """A str subclass whose own methods must not run: rfc8785 only calls its `encode`."""

    def _called(self, *args: object) -> Any:
        raise AssertionError("jcs ran a method of a str subclass")

    __lt__ = __gt__ = __le__ = __ge__ = __format__ = __add__ = __radd__ = _called


class MyList(list[Any]):
    pass


class MyDict(dict[str, Any]):
    pass


@pytest.mark.parametrize(
    "value",
    [
        # numbers at and beyond the I-JSON integer range, and floats in ECMAScript form
        SAFE,
        -SAFE,
        SAFE + 1,
        -SAFE - 1,
        2**64,
        10**5000,
        [1, 2**53],
        {"n": -(2**60)},
        0.0,
        -0.0,
        1.0,
        1.5,
        -2.5,
        1e21,
        1e-7,
        1e-6,
        123456789012345680000.0,
        5e-324,
        1.7976931348623157e308,
        0.1 + 0.2,
        [1.0, {"f": 1e300}],
        math.nan,
        math.inf,
        -math.inf,
        [math.nan],
        {"x": math.inf},
        # strings
        "",
        "plain",
        "\u2028\u2029\x7f",
        '"\\/\x00\x1f\b\t\n\f\r',
        "\ud800",
        ["ok", "\udfff"],
        {"\ud83d": 1},
        {"a": 1, "\U0001f600": "\ud83d"},
        # types rfc8785 refuses, or accepts by subclass
        b"bytes",
        bytearray(b"x"),
        {1, 2},
        frozenset(),
        Decimal("1.5"),
        1j,
        object(),
        [b"x"],
        {1: "int key"},
        {None: 1},
        {True: 1},
        {1.5: 1},
        {("t",): 1},
        {"a": 1, 2: "mixed"},
        {LoudStr("b"): 1, "a": 2},
        {"a": 2, LoudStr("b"): 1},
        {"k": LoudStr("v")},
        [LoudStr("v")],
        LoudStr("top"),
        OrderedDict([("b", 1), ("a", 2)]),
        MyDict(b=1, a=2),
        MyList([3, 2]),
        Colour.RED,
        [Colour.RED],
        Tone.DARK,
        {"t": Tone.DARK},
        {Tone.DARK: 1},
        (1, "two", (3,)),
        [],
        {},
        (),
        [[]],
        {"": {}},
        None,
        True,
        False,
    ],
    ids=lambda v: _id(v),
)
def test_fixed_values_same_as_rfc8785(value: Any) -> None:
    assert _ours(value) == _reference(value)


def test_escapes_are_jcs() -> None:
    # RFC 8785 section 3.2.2.2: two-character forms for \b \t \n \f \r, \u00xx in lowercase
    # hex for the other controls, everything else (U+007F, U+2028, '/', non-ASCII) as is.
    value = {"s": '"\\/\x00\x08\t\n\x0b\x0c\r\x1b\x1f\x7f\u2028\u20ac\U0001f600'}
    assert (
        jcs(value)
        == ('{"s":"\\"\\\\/\\u0000\\b\\t\\n\\u000b\\f\\r\\u001b\\u001f\x7f\u2028\u20ac\U0001f600"}').encode()
    )
    assert jcs(value) == rfc8785.dumps(value)


def test_utf16_order_differs_from_code_point_order() -> None:
    obj = {"\ufb33": 1, "\U0001f600": 2, "\ue000": 3, "a": 4, "\u00f6": 5}
    assert sorted(obj) != sorted(obj, key=lambda k: k.encode("utf-16-be"))
    assert jcs(obj) == '{"a":4,"\u00f6":5,"\U0001f600":2,"\ue000":3,"\ufb33":1}'.encode()
    assert jcs(obj) == rfc8785.dumps(obj)


def test_cycles_raise_recursion_error_as_before() -> None:
    loop: list[Any] = []
    loop.append(loop)
    ring: dict[str, Any] = {}
    ring["self"] = ring
    for value in (loop, ring, {"a": [ring]}):
        with pytest.raises(RecursionError):
            rfc8785.dumps(value)
        with pytest.raises(RecursionError):
            jcs(value)


@pytest.mark.parametrize("depth", [1, 63, 64, 65, 200])
def test_deep_nesting_same_as_rfc8785(depth: int) -> None:
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    assert _ours(value) == _reference(value)


def _old_jcs(value: Any) -> bytes:
    """jcs as it was: one frame around rfc8785.dumps."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as e:
        raise MalformedError(f"value cannot be canonicalised: {e}") from e


def _outcome(f: Any, value: Any) -> str:
    try:
        f(value)
    except RecursionError:
        return "RecursionError"
    return "ok"


def test_near_the_stack_limit_behaves_as_before() -> None:
    # rfc8785 needs a frame or two more than the fast path per value, so without the depth cap
    # jcs would serialise some deep values that used to raise RecursionError. Sweep the
    # recursion limit across the point where the old jcs starts to fail.
    value: Any = "leaf"
    for _ in range(90):
        value = [value]
    depth, frame = 0, sys._getframe()
    while frame.f_back is not None:
        depth, frame = depth + 1, frame.f_back
    limit = sys.getrecursionlimit()
    outcomes = []
    try:
        for extra in range(60, 140):
            sys.setrecursionlimit(depth + extra)
            old, new = _outcome(_old_jcs, value), _outcome(jcs, value)
            outcomes.append(old)
            assert new == old, f"limit depth+{extra}: jcs {new}, before {old}"
    finally:
        sys.setrecursionlimit(limit)
    assert "ok" in outcomes and "RecursionError" in outcomes  # the sweep crossed the edge


def test_sealed_envelope_takes_the_fast_path() -> None:
    label = Label("coalition-2026", "SECRET", ("UKR", "USA"), ("AIRDEF",))
    recipients = [generate_device(f"jcs-recipient-{i}").public for i in range(3)]
    env = seal(
        b"grid 37U",
        channel="airdef-ops",
        label=label,
        sender=generate_device("jcs-sender"),
        recipients=recipients,
    )
    assert encoding._fast_jcs(env) == rfc8785.dumps(env) == jcs(env)
    unsigned = {k: v for k, v in env.items() if k != "signatures"}
    assert encoding._fast_jcs(unsigned) == rfc8785.dumps(unsigned) == jcs(unsigned)


# --- published test data (tests/vectors/rfc8785/SOURCE.md) ----------------------------------


def test_vectors_present() -> None:
    assert VECTOR_NAMES == ["french", "simpleString", "structures", "unicode", "values", "weird"]


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_published_vectors(name: str) -> None:
    value = json.loads((VECTORS / "input" / f"{name}.json").read_bytes())
    expected = (VECTORS / "output" / f"{name}.json").read_bytes()
    assert jcs(value) == expected
    assert rfc8785.dumps(value) == expected


def test_weird_vector_pins_utf16_order() -> None:
    out = json.loads((VECTORS / "output" / "weird.json").read_bytes())
    assert list(out) == ["1", "</script>", "\u0080", "\u00f6", "\u20ac", "\U0001f602", "\ufb33"]
    assert out["\u0080"] == "Control\x7f"
