"""Structured JSON logs on stderr; nothing secret is ever passed to a logger."""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["configure_logging"]


class _Json(logging.Formatter):
    """One JSON object per line. A record's `fields` (passed as `extra={"fields": {...}}`)
    become top-level members; any other message becomes `message`. `extra` is added to every
    line (a worker's number)."""

    def __init__(self, extra: dict[str, object] | None = None) -> None:
        super().__init__()
        self.extra = extra or {}

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            body = fields
        else:
            msg = record.getMessage()
            try:
                body = json.loads(msg) if msg.startswith("{") else {"message": msg}
            except ValueError:
                body = {"message": msg}
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            **self.extra,
            **body,
        }
        if record.exc_info:
            exc = record.exc_info[1]
            out["error"] = f"{type(exc).__name__}: {exc}"[:500]
        return json.dumps(out)


def configure_logging(level: str = "info", *, worker: int | None = None) -> None:
    """JSON lines on stderr; a worker of `run --workers` adds `"worker": N` to each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Json(None if worker is None else {"worker": worker}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).disabled = True
