"""One pure-ASGI middleware: request ids, the body-size limit, metrics and JSON access logs.

The body limit is enforced before the body is read: a declared Content-Length over the limit
is refused at once, and a streamed body is counted as it arrives and cut off at the limit.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..metrics import Metrics
from ..problems import Problem

__all__ = ["RequestMiddleware"]

access_log = logging.getLogger("liaison.access")


class _TooLarge(StarletteHTTPException):
    """Raised from `receive` at the limit. An HTTPException, because FastAPI turns any other
    error while it reads a body into a 400; this one reaches the problem handler as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, max_body: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = rid
        status = 500
        started = False

        async def send_wrapped(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        declared = headers.get(b"content-length")
        try:
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
                raise _TooLarge(self.max_body)
            received = 0

            async def receive_limited() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body:
                        raise _TooLarge(self.max_body)
                return message

            await self.app(scope, receive_limited, send_wrapped)
        except _TooLarge:
            if not started:
                await self._problem(
                    send_wrapped,
                    Problem("body-too-large", f"request body exceeds {self.max_body} bytes"),
                    scope,
                )
        except ClientDisconnect:
            # The client went away in the middle of its request (or the server's body deadline
            # cut it off): nobody to answer, and not a server error. 499, as nginx logs it.
            status = 499
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope.get("method", "")
            self.metrics.observe_request(method, path, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "fields": {
                            "event": "request",
                            "request_id": rid,
                            "method": method,
                            "path": scope.get("path", ""),
                            "route": path,
                            "status": status,
                            "ms": round(elapsed * 1000, 2),
                            "client": (scope.get("client") or ("", 0))[0],
                        }
                    },
                )

    @staticmethod
    async def _problem(send: Any, problem: Problem, scope: Scope) -> None:
        body = json.dumps(problem.to_json(scope.get("path"))).encode()
        await send(
            {
                "type": "http.response.start",
                "status": problem.status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
