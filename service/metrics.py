"""Prometheus metrics of one app instance (its own registry, so tests can run several apps)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "liaison_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "liaison_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.accepted = Counter(
            "liaison_messages_accepted_total", "Messages accepted", registry=self.registry
        )
        self.rejected = Counter(
            "liaison_messages_rejected_total", "Messages rejected", ["reason"], registry=self.registry
        )
        self.log_size = Gauge("liaison_audit_log_size", "Entries in the audit log", registry=self.registry)
        self.batches = Counter(
            "liaison_write_batches_total", "Write transactions (batches)", registry=self.registry
        )
        self.streams = Gauge("liaison_inbox_streams", "Connected inbox streams", registry=self.registry)
        self.signature_failures = Counter(
            "liaison_request_signature_failures_total",
            "Requests whose signature did not verify (never attributed to the device they name)",
            ["reason"],
            registry=self.registry,
        )

        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and its latency. The labelled children are looked up once per
        (method, route, status); a method outside HTTP's usual set counts as OTHER, so a
        client cannot grow the label space."""
        key = (method if method in _METHODS else "OTHER", route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(key[0], route, str(status)),
                self.latency.labels(key[0], route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
