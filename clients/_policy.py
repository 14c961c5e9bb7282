"""The policy as `GET /v1/policy` serves it, turned back into a validated `Policy`."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from liaison.crypto.errors import MalformedError
from liaison.crypto.policy import Policy, parse_policy

from .errors import MalformedResponse

__all__ = ["policy_from_json"]

_TOP = ("id", "version", "nations", "compartments")
_LEVEL = ("name", "kem", "signatures", "max_bytes", "retention_days", "systems")


def _toml_value(value: Any) -> str:
    # JSON strings, integers, booleans and lists of strings are valid TOML values as JSON
    # writes them (TOML basic strings use JSON's escapes), so json.dumps is the encoder.
    if isinstance(value, bool | int | str):
        return json.dumps(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return json.dumps(value)
    raise MalformedResponse("policy: unexpected value type in the served policy")


def policy_from_json(obj: Any) -> Policy:
    """Validate the served policy with the same parser the server uses (via its TOML form).

    The served `sha256` is kept: it is the hash of the server's policy file, which a client
    can compare with the one the audit log's `policy.loaded` entry records.
    """
    if not isinstance(obj, dict) or not isinstance(obj.get("levels"), list):
        raise MalformedResponse("policy: the served policy is not an object with levels")
    try:
        lines = [f"{k} = {_toml_value(obj[k])}" for k in _TOP if k in obj]
        for level in obj["levels"]:
            if not isinstance(level, dict) or set(level) - set(_LEVEL):
                raise MalformedResponse("policy: a level has unexpected fields")
            lines.append("[[levels]]")
            lines += [f"{k} = {_toml_value(level[k])}" for k in _LEVEL if k in level]
        policy = parse_policy("\n".join(lines) + "\n")
    except MalformedError as e:
        raise MalformedResponse(f"the served {e}") from None
    sha = obj.get("sha256")
    return replace(policy, sha256=sha) if isinstance(sha, str) else policy
