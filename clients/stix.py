"""STIX 2.1 bundles: validated with the `stix2` package before they are sealed."""

from __future__ import annotations

import json
import warnings
from typing import Any

from .errors import InputError

__all__ = ["STIX_CONTENT_TYPE", "is_stix", "validate_stix_bundle"]

STIX_CONTENT_TYPE = "application/stix+json;version=2.1"


def is_stix(content_type: str) -> bool:
    """True for `application/stix+json` (any spacing or parameter order)."""
    return content_type.split(";")[0].strip().lower() == "application/stix+json"


def validate_stix_bundle(data: bytes) -> dict[str, Any]:
    """Parse `data` as a STIX 2.1 bundle and validate every object; InputError says what fails."""
    import stix2
    from stix2.exceptions import STIXError

    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise InputError(f"STIX bundle is not JSON: {e}") from None
    if not isinstance(obj, dict) or obj.get("type") != "bundle":
        raise InputError('STIX content must be a bundle ("type": "bundle")')
    for o in obj.get("objects") or []:
        if isinstance(o, dict) and o.get("spec_version", "2.1") != "2.1":
            raise InputError(f"STIX object {o.get('id')} is not spec_version 2.1")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # stix2 warns about style (e.g. custom ids); errors matter
            stix2.parse(obj, allow_custom=False, version="2.1")
    except (STIXError, ValueError, TypeError, KeyError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"invalid STIX 2.1 bundle: {first}") from None
    return obj
