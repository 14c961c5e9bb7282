"""`liaison.crypto.httpsig` given the header fields as received (a list of name/value pairs,
repeats kept), as a server gives them: one Signature-Input, Signature and Content-Digest
field each, whichever copy would have verified (docs/protocol.md, section 6)."""

from __future__ import annotations

import pytest

from liaison.crypto.errors import RequestSignatureError
from liaison.crypto.httpsig import check_request, parse_signature_params, sign_request, verify_request
from liaison.crypto.keys import generate_device

KEYS = generate_device("alice", mldsa65=False)
URL = "https://liaison.test/v1/messages"
BODY = b'{"envelope": {}}'
JUNK = {
    "signature": "liaison=:" + "A" * 86 + "==:",
    "signature-input": 'liaison=("@method");created=1;keyid="d_' + "a" * 26 + '";nonce="' + "n" * 16 + '"',
    "content-digest": "sha-256=:" + "B" * 43 + "=:",
}


def _fields() -> list[tuple[str, str]]:
    headers = {"Content-Type": "application/json"}
    headers.update(sign_request("POST", URL, headers, BODY, KEYS))
    return list(headers.items())


def test_a_field_list_verifies_as_the_mapping_does() -> None:
    fields = _fields()
    assert verify_request("POST", URL, fields, BODY, KEYS.public.ed25519).keyid == KEYS.device_id
    assert verify_request("POST", URL, dict(fields), BODY, KEYS.public.ed25519).keyid == KEYS.device_id


@pytest.mark.parametrize("name", sorted(JUNK))
@pytest.mark.parametrize("where", ["before", "after", "same value"])
def test_a_repeated_field_is_refused(name: str, where: str) -> None:
    fields = _fields()
    at = next(i for i, (k, _) in enumerate(fields) if k.lower() == name)
    extra = (name.title(), fields[at][1] if where == "same value" else JUNK[name])
    fields.insert(at if where == "before" else at + 1, extra)
    for call in (
        lambda: parse_signature_params(fields),
        lambda: check_request("POST", URL, fields, BODY),
        lambda: verify_request("POST", URL, fields, BODY, KEYS.public.ed25519),
    ):
        with pytest.raises(RequestSignatureError) as e:
            call()
        assert e.value.reason == "duplicate-signature-field"
        assert name in e.value.detail.lower()


def test_an_unsigned_request_is_unauthenticated_before_repeats_count() -> None:
    fields = [("content-digest", JUNK["content-digest"]), ("content-digest", JUNK["content-digest"])]
    with pytest.raises(RequestSignatureError) as e:
        parse_signature_params(fields)
    assert e.value.reason == "unauthenticated"


def test_names_are_case_insensitive() -> None:
    fields = [(k.upper(), v) for k, v in _fields()]
    assert verify_request("POST", URL, fields, BODY, KEYS.public.ed25519).keyid == KEYS.device_id
    fields.append(("SIGNATURE", JUNK["signature"]))
    with pytest.raises(RequestSignatureError) as e:
        parse_signature_params(fields)
    assert e.value.reason == "duplicate-signature-field"
