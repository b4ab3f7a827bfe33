"""Every Prometheus metric of the gateway, declared once; units are in the names.

With one worker the values live in this process. With several (`wehub gateway --workers N`),
the command sets PROMETHEUS_MULTIPROC_DIR before the workers start: each worker writes its
values to files there, and /metrics sums the files of all workers, whichever one serves it.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.local_metrics import LocalCounter, LocalHistogram

# prometheus_client reads the same variable when it is imported to pick its value storage.
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
MULTIPROCESS = MULTIPROCESS_DIR_VARIABLE in os.environ

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZE_BUCKETS_BYTES = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 33554432)

# The four metrics every callback request updates are plain Python counts in a single worker
# (gateway.local_metrics); several workers need prometheus_client's multiprocess files.
_Counter = Counter if MULTIPROCESS else LocalCounter
_Histogram = Histogram if MULTIPROCESS else LocalHistogram

REQUESTS = _Counter(
    "wehub_gateway_requests",
    "Requests by action (typed actions; others are 'other'; 'none' when no action was read, as for a "
    "wrong path or method) and outcome (ok or an error code name).",
    ["action", "outcome"],
    registry=REGISTRY,
)
REQUEST_DURATION = _Histogram(
    "wehub_gateway_request_duration_seconds",
    "Time from the request's arrival to its answer, Kafka acknowledgement included.",
    ["action"],
    buckets=_LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
PRODUCE_DURATION = _Histogram(
    "wehub_gateway_produce_duration_seconds",
    "Time Kafka took to acknowledge (acks=all) the records of one request.",
    [],
    buckets=_LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
BODY_SIZE = _Histogram(
    "wehub_gateway_request_body_bytes",
    "Size of request bodies by action.",
    ["action"],
    buckets=_SIZE_BUCKETS_BYTES,
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "wehub_gateway_dead_letters_total",
    "Refused requests written to the dead-letter topic, by reason code.",
    ["reason_code"],
    registry=REGISTRY,
)
DEAD_LETTERS_LOST = Counter(
    "wehub_gateway_dead_letters_failed_total",
    "Refused requests whose dead-letter record Kafka did not acknowledge.",
    registry=REGISTRY,
)
POLLS_NOT_STORED = Counter(
    "wehub_gateway_polls_not_stored_total",
    "pull_task events that Kafka did not acknowledge after their poll was answered.",
    registry=REGISTRY,
)
SPLIT_PARTS = Counter(
    "wehub_gateway_split_parts_total",
    "Part records written for events too large for one Kafka record, by action.",
    ["action"],
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "wehub_gateway_kafka_in_flight_requests",
    "Requests waiting for Kafka's acknowledgement.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
PRODUCER_RESTARTS = Counter(
    "wehub_gateway_producer_restarts_total",
    "Kafka producers recreated after a fatal producer error or repeated timeouts.",
    registry=REGISTRY,
)
KAFKA_READY = Gauge(
    "wehub_gateway_kafka_ready",
    "1 when the Kafka producer last started or a readiness check reached Kafka, 0 when either failed or "
    "the producer was dropped (with several workers, the latest change in any).",
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)


def exposition() -> bytes:
    """Return the text of /metrics: this process's values, or the sum over every worker's files."""
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
