"""Labels: text and JSON round trips, and a clear error for each malformed form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison.crypto.errors import LabelSyntaxError
from liaison.crypto.labels import Label, format_label, parse_label
from liaison.crypto.policy import Policy, parse_policy
from tests.conftest import DEFAULT_POLICY

POLICY = parse_policy(DEFAULT_POLICY.read_bytes())


def labels() -> st.SearchStrategy[Label]:
    return st.builds(
        Label,
        st.just(POLICY.id),
        st.sampled_from([lv.name for lv in POLICY.levels]),
        st.lists(st.sampled_from(POLICY.nations), min_size=1, unique=True).map(tuple),
        st.lists(st.sampled_from(POLICY.compartments), unique=True).map(tuple),
    )


def test_parse_spec_example(policy: Policy) -> None:
    label = parse_label("SECRET//AIRDEF//REL TO FRA, UKR, USA", policy)
    assert label.to_json() == {
        "policy": "coalition-2026",
        "classification": "SECRET",
        "rel": ["FRA", "UKR", "USA"],
        "compartments": ["AIRDEF"],
    }
    assert format_label(label) == "SECRET//AIRDEF//REL TO FRA, UKR, USA"


def test_rel_to_coalition_expands(policy: Policy) -> None:
    label = parse_label("TOP SECRET//REL TO COALITION", policy)
    assert set(label.rel) == set(policy.nations)
    assert label.classification == "TOP SECRET"


def test_lowest_level_may_omit_rel(policy: Policy) -> None:
    assert set(parse_label("UNCLASSIFIED", policy).rel) == set(policy.nations)


def test_tolerates_case_and_spacing(policy: Policy) -> None:
    label = parse_label("  secret // airdef/cyber //rel to usa,ukr ", policy)
    assert format_label(label) == "SECRET//AIRDEF/CYBER//REL TO UKR, USA"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("SECRET", "must state REL TO"),
        ("SECRT//REL TO USA", "unknown classification"),
        ("SECRET//REL TO USA, XYZ", "unknown nation"),
        ("SECRET//REL TO USA, USA", "named twice"),
        ("SECRET//SPACE//REL TO USA", "unknown compartment"),
        ("SECRET//AIRDEF/AIRDEF//REL TO USA", "named twice"),
        ("SECRET////REL TO USA", "empty part"),
        ("SECRET//REL TO USA//AIRDEF", "REL TO must be the last"),
        ("SECRET//AIRDEF//CYBER//REL TO USA", "too many parts"),
        ("SECRET//REL TO ", "comma-separated"),
        ("SECRET//REL TO USA,,UKR", "comma-separated"),
        ("SECRET//AIRDEF//REL TO USA" + "x" * 2000, "too long"),
    ],
)
def test_malformed_text_gives_clear_error(policy: Policy, text: str, message: str) -> None:
    with pytest.raises(LabelSyntaxError, match=message):
        parse_label(text, policy)


@given(labels())
def test_text_round_trip(label: Label) -> None:
    text = format_label(label)
    assert parse_label(text, POLICY) == label
    assert format_label(parse_label(text, POLICY)) == text


@given(labels())
def test_json_round_trip(label: Label) -> None:
    assert Label.from_json(label.to_json(), POLICY) == label


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        {"policy": "coalition-2026", "classification": "SECRET", "rel": ["USA"]},
        {"policy": "coalition-2026", "classification": "SECRET", "rel": ["USA"], "compartments": [], "x": 1},
        {"policy": "coalition-2026", "classification": "SECRET", "rel": ["USA", "FRA"], "compartments": []},
        {"policy": "coalition-2026", "classification": "SECRET", "rel": ["USA", "USA"], "compartments": []},
        {"policy": "coalition-2026", "classification": "SECRET", "rel": [], "compartments": []},
        {"policy": "coalition-2026", "classification": "SECRET", "rel": ["usa"], "compartments": []},
        {"policy": "coalition-2026", "classification": 3, "rel": ["USA"], "compartments": []},
        {"policy": "coalition-2026", "classification": "SECRET", "rel": "USA", "compartments": []},
    ],
)
def test_malformed_json_refused(obj: object) -> None:
    with pytest.raises(LabelSyntaxError):
        Label.from_json(obj)


def test_json_checked_against_policy(policy: Policy) -> None:
    ok = {"policy": "coalition-2026", "classification": "SECRET", "rel": ["USA"], "compartments": []}
    Label.from_json(ok, policy)
    for bad, msg in [
        ({**ok, "policy": "other"}, "policy"),
        ({**ok, "classification": "COSMIC"}, "unknown classification"),
        ({**ok, "rel": ["CAN"]}, "unknown nation"),
        ({**ok, "compartments": ["SPACE"]}, "unknown compartment"),
    ]:
        with pytest.raises(LabelSyntaxError, match=msg):
            Label.from_json(bad, policy)
