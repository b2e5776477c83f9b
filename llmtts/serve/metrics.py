"""Prometheus metrics of one server (its own registry: two apps in one process do not share counters)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("llmtts_requests", "HTTP requests to /v1/audio/speech by status code",
                                ["status"], registry=r)
        self.jobs = Counter("llmtts_jobs", "generation jobs by outcome (ok, cancelled, timeout)", ["outcome"],
                            registry=r)
        self.queue_depth = Gauge("llmtts_queue_depth", "requests waiting for a batch row", registry=r)
        self.active_rows = Gauge("llmtts_active_rows", "requests being generated (rows in the batch)", registry=r)
        self.batch_size = Histogram("llmtts_batch_size", "rows per decode step", registry=r,
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64))
        self.audio_seconds = Counter("llmtts_audio_seconds", "seconds of audio generated", registry=r)
        self.first_audio = Histogram("llmtts_time_to_first_audio_seconds", "submit -> first audio chunk",
                                     registry=r, buckets=_LATENCY)
        self.latency = Histogram("llmtts_request_latency_seconds", "request received -> last byte queued",
                                 registry=r, buckets=_LATENCY)

    def render(self) -> bytes:
        return generate_latest(self.registry)
