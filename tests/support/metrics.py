"""The process's metrics, read in memory: what the catalog's instruments (services/common/metrics.py) recorded in a
test that runs services in process. Installed once per test process, as a service installs its exporters."""

from __future__ import annotations

from functools import cache

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader


@cache
def in_memory_reader() -> InMemoryMetricReader:
    """The reader of this process's meter provider (a test process installs no other)."""
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader


def histogram_count(name: str, **attributes: object) -> int:
    """Measurements recorded so far by histogram `name` at points carrying these attributes."""
    data = in_memory_reader().get_metrics_data()
    total = 0
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    wanted = all(point.attributes.get(k) == v for k, v in attributes.items())
                    if isinstance(point, HistogramDataPoint) and wanted:
                        total += point.count
    return total
