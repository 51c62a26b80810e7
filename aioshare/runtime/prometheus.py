"""Prometheus exposition of the runtime's metrics (optional: needs ``prometheus_client``).

    from aioshare.runtime.prometheus import register_metrics
    register_metrics(app.metrics)                  # into prometheus_client's default REGISTRY
    # or: start_http_server(app.metrics, port=9464)

Series are read from ``Metrics`` at scrape time (a custom collector: nothing is copied on
the hot path).  Names: ``aioshare_`` + the metric name with dashes as underscores, e.g.
``records-consumed-total`` → ``aioshare_records_consumed_total``,
``handler-duration-seconds`` → ``aioshare_handler_duration_seconds_bucket/_sum/_count``.

``prometheus_client`` is imported when one of these functions is called, never before.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator
from typing import Any

from aioshare.runtime.metrics import Counter, Gauge, Histogram, Metrics

__all__ = ["PrometheusCollector", "register_metrics", "start_http_server"]


def _client(module: str = "prometheus_client") -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            "the Prometheus exporter needs the prometheus_client package (pip install prometheus-client)"
        ) from exc


def _name(namespace: str, metric: str) -> str:
    name = f"{namespace}_{metric.replace('-', '_')}"
    return name[: -len("_total")] if name.endswith("_total") else name


class PrometheusCollector:
    """A prometheus_client collector over one ``Metrics``."""

    def __init__(self, metrics: Metrics, namespace: str = "aioshare") -> None:
        self._metrics = metrics
        self._namespace = namespace
        self._core = _client("prometheus_client.core")

    def describe(self) -> Iterator[Any]:
        return self._families(samples=False)

    def collect(self) -> Iterator[Any]:
        return self._families(samples=True)

    def _families(self, *, samples: bool) -> Iterator[Any]:
        core = self._core
        for metric in self._metrics:
            name = _name(self._namespace, metric.name)
            labels = list(metric.labelnames)
            if isinstance(metric, Counter):
                family = core.CounterMetricFamily(name, metric.help, labels=labels)
                if samples:
                    for key, value in metric.values.items():
                        family.add_metric(list(key), value)
            elif isinstance(metric, Gauge):
                family = core.GaugeMetricFamily(name, metric.help, labels=labels)
                if samples:
                    for key, value in metric.values.items():
                        family.add_metric(list(key), value)
            else:
                assert isinstance(metric, Histogram)
                family = core.HistogramMetricFamily(name, metric.help, labels=labels)
                if samples:
                    bounds = [*metric.bounds, math.inf]
                    for key, data in metric.values.items():
                        buckets = [
                            ("+Inf" if math.isinf(b) else repr(float(b)), float(c))
                            for b, c in zip(bounds, data.cumulative(), strict=True)
                        ]
                        family.add_metric(list(key), buckets, data.sum)
            yield family


def register_metrics(
    metrics: Metrics, registry: Any = None, namespace: str = "aioshare"
) -> PrometheusCollector:
    """Register a collector for ``metrics`` (default: prometheus_client's global REGISTRY)."""
    client = _client()
    collector = PrometheusCollector(metrics, namespace)
    (registry if registry is not None else client.REGISTRY).register(collector)
    return collector


def start_http_server(
    metrics: Metrics, port: int, addr: str = "127.0.0.1", registry: Any = None, namespace: str = "aioshare"
) -> PrometheusCollector:
    """Register ``metrics`` and serve ``/metrics`` on ``addr:port`` (prometheus_client's thread)."""
    client = _client()
    if registry is None:
        registry = client.CollectorRegistry()
    collector = register_metrics(metrics, registry, namespace)
    client.start_http_server(port, addr=addr, registry=registry)
    return collector
