"""LocalCounter and LocalHistogram expose what prometheus_client's Counter and Histogram would."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway.local_metrics import LocalCounter, LocalHistogram

BUCKETS = (0.001, 0.01, 1.0, 256.0, 1048576.0)
VALUES = (0.0005, 0.001, 0.002, 0.01, 0.5, 1.0, 300.0, 2_000_000.0)


def _samples(registry: CollectorRegistry) -> list[str]:
    # prometheus_client adds `_created` samples, which hold a time; the rest must be equal.
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if line and "_created" not in line]


def test_local_metrics_expose_like_prometheus_client() -> None:
    local_registry = CollectorRegistry()
    reference_registry = CollectorRegistry()
    local_counter = LocalCounter("demo_requests", "Requests.", ["action"], registry=local_registry)
    reference_counter = Counter("demo_requests", "Requests.", ["action"], registry=reference_registry)
    local_histogram = LocalHistogram("demo_seconds", "Durations.", ["action"], BUCKETS, registry=local_registry)
    reference_histogram = Histogram(
        "demo_seconds", "Durations.", ["action"], buckets=BUCKETS, registry=reference_registry
    )

    for value in VALUES:
        for counter in (local_counter, reference_counter):
            counter.labels("report_new_msg").inc()
        for histogram in (local_histogram, reference_histogram):
            histogram.labels("report_new_msg").observe(value)
    local_counter.labels("login").inc(2)
    reference_counter.labels("login").inc(2)

    assert _samples(local_registry) == _samples(reference_registry)


def test_unlabelled_histogram_observes_directly() -> None:
    registry = CollectorRegistry()
    histogram = LocalHistogram("demo_produce_seconds", "Produce time.", [], BUCKETS, registry=registry)

    histogram.observe(0.001)
    histogram.observe(0.5)

    samples = _samples(registry)
    assert 'demo_produce_seconds_bucket{le="0.001"} 1.0' in samples
    assert 'demo_produce_seconds_bucket{le="1.0"} 2.0' in samples
    assert "demo_produce_seconds_count 2.0" in samples
    assert "demo_produce_seconds_sum 0.501" in samples


def test_labelled_histogram_rejects_plain_observe() -> None:
    histogram = LocalHistogram("demo_body_bytes", "Sizes.", ["action"], BUCKETS, registry=CollectorRegistry())

    with pytest.raises(ValueError, match="observe through labels"):
        histogram.observe(1.0)


def test_wrong_label_count_rejected() -> None:
    counter = LocalCounter("demo_total_requests", "Requests.", ["action", "outcome"], registry=CollectorRegistry())

    with pytest.raises(ValueError, match="expected labels"):
        counter.labels("report_new_msg")
