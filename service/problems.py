"""The service's one domain error, `Problem`, and the catalogue of its types.

Every refusal has a stable slug (its RFC 9457 `type` is `urn:liaison:problem:<slug>`), a title,
a status and a one-line detail. Use cases raise `Problem`s; `api.errors` is the one place that
turns them into HTTP responses. No stack traces and no secret material ever go into a problem.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PROBLEM_BASE", "PROBLEM_TYPES", "Problem"]

PROBLEM_BASE = "urn:liaison:problem:"

#: slug -> (status, title). Documented in docs/api.md; never change a slug.
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "malformed-request": (400, "The request is malformed"),
    "malformed-envelope": (400, "The envelope is malformed"),
    "malformed-label": (400, "The label is malformed"),
    "unknown-field": (422, "The request has an unknown or invalid field"),
    "validation": (422, "The request failed validation"),
    "unauthenticated": (401, "The request is not signed by a known device"),
    "bad-request-signature": (401, "The request signature does not verify"),
    "stale-request": (401, "The request signature is outside the clock-skew window"),
    "replayed-request": (401, "This request nonce was already used"),
    "content-digest": (400, "Content-Digest is missing or does not match the body"),
    "device-revoked": (403, "The device is revoked"),
    "principal-suspended": (403, "The principal is suspended"),
    "forbidden": (403, "Not permitted"),
    "not-admin": (403, "Only an admin may do this"),
    "other-nation": (403, "A nation admin may only manage its own nation"),
    "grant-above-own": (403, "Cannot grant above one's own clearance or compartments"),
    "not-auditor": (403, "Only an auditor or admin may read this"),
    "clearance": (403, "Clearance is below the label"),
    "releasability": (403, "The principal's nation is not in REL TO"),
    "compartment": (403, "A compartment of the label is missing"),
    "system-level": (403, "Systems may not handle this level"),
    "above-ceiling": (403, "The label is above the channel ceiling"),
    "not-member": (403, "Not a member of the channel"),
    "not-recipient": (404, "No such message for this device"),
    "suite-not-allowed": (422, "The KEM suite is not allowed at this level"),
    "signature-required": (422, "A signature algorithm required at this level is missing"),
    "bad-envelope-signature": (422, "The envelope signature does not verify"),
    "sender-mismatch": (403, "The envelope sender is not the authenticated device"),
    "stale-envelope": (422, "The envelope's created time is outside the clock-skew window"),
    "duplicate-envelope": (409, "An envelope with this id was already accepted"),
    "too-large": (413, "The message is larger than its level allows"),
    "attachment-too-large": (413, "The attachment is larger than its level allows"),
    "too-many-attachments": (413, "The message names more attachments than its level allows"),
    "attachment-quota": (403, "The principal's attachment storage quota is used up"),
    "duplicate-attachment": (409, "An attachment with this id already exists"),
    "upload-complete": (409, "The attachment's upload is already complete"),
    "upload-expired": (410, "The upload was not finished in time and was swept"),
    "bad-part": (400, "The part's number or size does not fit the upload"),
    "incomplete-upload": (400, "The upload is missing parts"),
    "attachment-mismatch": (409, "The attachment's ciphertext is not the one declared"),
    "attachment-not-ready": (
        422,
        "An attachment the envelope names is not a complete upload of this device for this message",
    ),
    "range-not-satisfiable": (416, "The range is not within the attachment"),
    "body-too-large": (413, "The request body is too large"),
    "missing-recipient": (422, "An eligible device is missing from the recipients"),
    "ineligible-recipient": (422, "A recipient device is not eligible for this label"),
    "wrong-key-id": (422, "A recipient's key id is not the key of that device"),
    "unsupported-suite": (422, "Unsupported KEM suite or algorithm"),
    "wrong-policy": (422, "The label names another policy"),
    "unknown-level": (422, "Unknown classification level"),
    "unknown-nation": (422, "Unknown nation"),
    "unknown-compartment": (422, "Unknown compartment"),
    "unknown-role": (422, "Unknown role"),
    "not-found": (404, "Not found"),
    "conflict": (409, "The resource already exists"),
    "enrolment-code": (403, "The enrolment code is invalid, used or expired"),
    "bad-bundle": (422, "The device key bundle is invalid"),
    "rate-limited": (429, "Too many requests"),
    "too-many-streams": (429, "This device has too many open streams"),
    "method-not-allowed": (405, "Method not allowed"),
    "unavailable": (503, "The service is not ready"),
    "storage-full": (507, "The service's storage is full"),
    "internal": (500, "Internal error"),
    "bad-cosignature": (422, "The cosignature does not verify"),
    "unknown-witness": (403, "The cosigning key is not a configured witness"),
    "proof": (422, "No such proof"),
    # Request shape and the RFC 9421 profile (issue 10: findings 7, 12 and 17).
    "duplicate-key": (400, "A JSON object repeats a member name"),
    "json-too-deep": (400, "The JSON is nested too deeply"),
    "invalid-character": (400, "A string holds a character the service refuses"),
    "too-many-members": (422, "A channel may not have that many members"),
    "duplicate-signature-field": (401, "Signature-Input, Signature or Content-Digest appears more than once"),
    "misdirected-request": (421, "The request names an authority this server does not serve"),
    "headers-too-large": (431, "The request head is too large"),
    "request-timeout": (408, "The request did not arrive in time"),
    "kem-proof": (403, "The proof of possession of the KEM key is missing or wrong"),
    "genesis-over": (403, "A root device exists: only a root device can issue a root code"),
    "statement-invalid": (400, "The directory statement of this change is missing or wrong"),
}


class Problem(Exception):
    """A refusal with a stable type; raised by use cases, rendered by `api.errors`.

    `retry_after` (seconds) tells a rate-limited caller when to come back.
    """

    def __init__(
        self, slug: str, detail: str, *, retry_after: int | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        if slug not in PROBLEM_TYPES:
            raise KeyError(f"unknown problem type {slug}")
        super().__init__(detail)
        self.slug, self.detail = slug, detail
        self.status, self.title = PROBLEM_TYPES[slug]
        self.retry_after = retry_after
        self.extra = extra or {}

    def to_json(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance[:200]  # the client's own path, bounded
        body.update(self.extra)
        return body
