"""Prometheus metrics of one app instance (its own registry, so tests can run several apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("liaison_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("liaison_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
        self.accepted = Counter("liaison_messages_accepted_total", "Messages accepted",
                                registry=self.registry)
        self.rejected = Counter("liaison_messages_rejected_total", "Messages rejected",
                                ["reason"], registry=self.registry)
        self.log_size = Gauge("liaison_audit_log_size", "Entries in the audit log",
                              registry=self.registry)
        self.batches = Counter("liaison_write_batches_total", "Write transactions (batches)",
                               registry=self.registry)
        self.streams = Gauge("liaison_inbox_streams", "Connected inbox streams",
                             registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
