"""`check_recipients`, the pure rule for an envelope's recipient devices (no database)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liaison.crypto.errors import PolicyViolation
from liaison.service.usecases.directory import Eligibility
from liaison.service.usecases.messaging import check_recipients

ELIG = Eligibility(
    devices={"d_usa1": "usa", "d_usa2": "usa", "d_ukr1": "ukr"},
    excluded={"fra": "clearance", "pol": "no-device"},
    suite="MLKEM768-X25519",
    members=frozenset({"usa", "ukr", "fra", "pol"}),
)


def _refused(given_: list[str], to: list[str] | None) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as e:
        check_recipients(ELIG, given_, to)
    return e.value


def test_without_to_every_eligible_device_and_only_those() -> None:
    assert check_recipients(ELIG, ["d_ukr1", "d_usa2", "d_usa1"], None) == ["d_ukr1", "d_usa1", "d_usa2"]
    e = _refused(["d_usa1", "d_ukr1"], None)
    assert (e.reason, e.detail) == ("missing-recipient", "eligible device(s) missing: d_usa2")
    e = _refused(["d_usa1", "d_usa2", "d_ukr1", "d_fra1"], None)
    assert (e.reason, e.detail) == ("ineligible-recipient", "device(s) not eligible: d_fra1")


def test_with_to_exactly_the_devices_of_the_named_principals() -> None:
    assert check_recipients(ELIG, ["d_usa1", "d_usa2"], ["usa"]) == ["d_usa1", "d_usa2"]
    e = _refused(["d_usa1"], ["usa"])
    assert e.reason == "missing-recipient"
    e = _refused(["d_usa1", "d_usa2", "d_ukr1"], ["usa"])
    assert (e.reason, e.detail) == ("ineligible-recipient", "recipients must be exactly the devices of 'to'")


def test_naming_an_ineligible_principal_says_why() -> None:
    e = _refused(["d_usa1"], ["usa", "fra", "pol", "nobody"])
    assert e.reason == "ineligible-recipient"
    assert e.detail == "not eligible: fra, nobody, pol (clearance, not-member, no-device)"


@given(
    st.sets(st.sampled_from(["d_usa1", "d_usa2", "d_ukr1", "d_x"])),
    st.none() | st.lists(st.sampled_from(["usa", "ukr", "fra"]), unique=True),
)
def test_accepted_means_exactly_the_expected_devices(given_: set[str], to: list[str] | None) -> None:
    expected = {d for d, p in ELIG.devices.items() if to is None or p in to}
    try:
        out = check_recipients(ELIG, given_, to)
    except PolicyViolation as e:
        assert e.reason in ("missing-recipient", "ineligible-recipient")
        assert given_ != expected or (to is not None and "fra" in to)
    else:
        assert set(out) == given_ == expected and out == sorted(out)
