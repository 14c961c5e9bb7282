"""The JSON log format: one object per line, structured fields at the top level."""

from __future__ import annotations

import json
import logging

from liaison.service.jsonlog import _Json


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("liaison.access", logging.INFO, __file__, 1, msg, None, None)
    record.__dict__.update(extra)
    return record


def test_structured_fields_become_members() -> None:
    line = _Json().format(_record("request", fields={"event": "request", "status": 201, "request_id": "abc"}))
    out = json.loads(line)
    assert "\n" not in line
    assert (out["event"], out["status"], out["request_id"]) == ("request", 201, "abc")
    assert (out["level"], out["logger"]) == ("info", "liaison.access")
    assert "message" not in out


def test_a_plain_message_is_kept_as_message() -> None:
    out = json.loads(_Json().format(_record("database is unreachable")))
    assert out["message"] == "database is unreachable"
    assert json.loads(_Json().format(_record('{"not": json')))["message"] == '{"not": json'
