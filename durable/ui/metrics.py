"""Prometheus metrics, read from the store at each scrape (``/metrics``).

A collector on its own registry (not the process-wide default one): nothing is kept in
memory between scrapes, and every number is what the database holds now. Step durations
and retries are read from the whole log, which only grows, so the histogram's counters
never go down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from durable.store.reads import StoreReads

#: Histogram buckets of step durations, in seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class StoreCollector(Collector):
    """Collects workflow counts, step durations, queues and the oldest wait from a store."""

    def __init__(self, store: StoreReads) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        workflows = GaugeMetricFamily(
            "durable_workflows", "Workflows in the database by status and workflow name.",
            labels=["status", "name"])
        for name, status, count in self.store.counts_by_name():
            workflows.add_metric([status, name], count)
        yield workflows
        durations = HistogramMetricFamily(
            "durable_step_duration_seconds",
            "Duration of step attempts (from the previous event of the log) by step name.",
            labels=["step"])
        retries = CounterMetricFamily(
            "durable_step_retries", "Failed step attempts that were retried, by step name.",
            labels=["step"])
        for stats in self.store.step_stats(0.0, BUCKETS):
            buckets = [(str(bound), float(count)) for bound, count in
                       zip(BUCKETS, stats.bucket_counts, strict=True)]
            buckets.append(("+Inf", float(stats.attempts)))
            durations.add_metric([stats.name], buckets, stats.total_seconds)
            retries.add_metric([stats.name], stats.retries)
        yield durations
        yield retries
        depths = self.store.queue_depths()
        if depths is not None:
            queue = GaugeMetricFamily("durable_queue_depth",
                                      "Unfinished workflows per queue.", labels=["queue"])
            for name, depth in depths.items():
                queue.add_metric([name], depth)
            yield queue
        oldest = self.store.oldest_waiting()
        yield GaugeMetricFamily(
            "durable_oldest_waiting_seconds",
            "Age of the oldest unfinished workflow no worker holds (0 when there is none).",
            value=max(0.0, time.time() - oldest.since) if oldest else 0.0)


def registry_for(store: StoreReads) -> CollectorRegistry:
    """A registry that holds only the store's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return registry
