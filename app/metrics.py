"""Prometheus metrics, one registry per app instance (no process-global state, so several
apps in one test process do not collide)."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rnnserve_requests", "HTTP requests by endpoint and status", ["endpoint", "method", "status"], registry=r)
        self.request_seconds = Histogram("rnnserve_request_seconds", "HTTP request latency", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("rnnserve_queue_depth", "requests waiting or running in workers", ["worker"], registry=r)
        # The autoscaling signal: one number per replica whatever its worker count (an HPA
        # averages it over pods; see deploy/k8s).
        self.in_flight_per_worker = Gauge("rnnserve_in_flight_per_worker", "requests in flight per worker, averaged over this replica's workers", registry=r)
        self.batch_size = Histogram("rnnserve_batch_size", "rows per engine step", ["kind"], buckets=BATCH_BUCKETS, registry=r)
        self.time_to_first_token = Histogram("rnnserve_time_to_first_token_seconds", "from submission to the first token", buckets=LATENCY_BUCKETS, registry=r)
        self.inter_token = Histogram("rnnserve_inter_token_seconds", "time between tokens of a sequence", buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("rnnserve_prompt_tokens", "generation prompt tokens (start token included), taken from the prompt-state cache or read by the model",
                                     ["source"], registry=r)
        self.tokens_generated = Counter("rnnserve_tokens_generated", "tokens generated", ["model"], registry=r)
        self.cache = Counter("rnnserve_cache_lookups", "result cache lookups", ["result"], registry=r)
        self.worker_restarts = Counter("rnnserve_worker_restarts", "workers restarted after dying", registry=r)
        self.workers_alive = Gauge("rnnserve_workers_alive", "workers alive and ready", registry=r)
        self.rate_limited = Counter("rnnserve_rate_limited", "requests refused by a rate limit", registry=r)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The metrics and their content type: OpenMetrics when the scraper accepts it (the format
        that carries exemplars, each latency sample's request id), Prometheus text otherwise."""
        if "application/openmetrics-text" in accept:
            return openmetrics.generate_latest(self.registry), openmetrics.CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
