"""Metrics for one process: every OpenTelemetry instrument Custody records, and where they are exported.

The instruments are declared here, in one catalog (the README's "Metrics" table lists the same names), with the
OpenTelemetry API only; code that records one imports it from here and never touches the SDK. Until
`configure_metrics` installs a meter provider the instruments are no-ops, so a library user or an in-process test
pays nothing.

`configure_metrics` runs once per process (the server bootstrap calls it): a Prometheus scrape endpoint
(`/metrics`, plaintext HTTP on the service's host and `metrics_port`, off when that is unset) and, when traces go to
OTLP, an OTLP metric exporter to the same collector. Every series carries the `service_name` label.

Attribute values are bounded by construction: methods are the service's own RPCs, status codes are gRPC's, callers
are principals from the credentials file, operations come from the gateway's configuration (an unknown one is
refused before it is recorded), and a model the price table does not list is recorded as "other" (callers may
name any model, so their names are not labels).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Observation

from services.common.version import CUSTODY_VERSION

if TYPE_CHECKING:  # domain code imports the instruments; only the bootstrap needs the settings
    from services.common.config import ServiceSettings

log = logging.getLogger("custody.metrics")

METER = metrics.get_meter("custody", CUSTODY_VERSION)

# Seconds: from a cached read (under a millisecond) to a slow provider call or a stalled fsync.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Delivery lag includes backoff while a receiver is down (up to 30 s between attempts), so it reaches further.
LAG_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# Items per group-commit batch: powers of two up to the largest batch (services/common/group_commit.py).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# A model the price table does not list, as a label value.
OTHER_MODEL = "other"


@dataclass(frozen=True)
class Declared:
    """One instrument of the catalog, as the README table and the deployment checks read it."""

    name: str
    kind: str  # counter | histogram | gauge
    unit: str

    @property
    def prometheus_name(self) -> str:
        """The series name Prometheus sees (the exporter's rules: dots to underscores, a unit suffix unless the unit
        is an annotation in braces, _total on counters); histograms add _bucket, _sum and _count."""
        suffix = {"s": "_seconds", "By": "_bytes"}.get(self.unit, "")
        return self.name.replace(".", "_") + suffix + ("_total" if self.kind == "counter" else "")


DECLARED: list[Declared] = []


def _counter(name: str, unit: str, description: str) -> Counter:
    DECLARED.append(Declared(name, "counter", unit))
    return METER.create_counter(name, unit=unit, description=description)


def _histogram(name: str, unit: str, description: str, buckets: Sequence[float]) -> Histogram:
    DECLARED.append(Declared(name, "histogram", unit))
    return METER.create_histogram(name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets)


# ---- every service -------------------------------------------------------------------------------------------------

RPC_DURATION = _histogram(
    "rpc.server.call.duration",
    "s",
    "Duration of each RPC a service served (health and reflection excepted), by rpc.service, "
    "rpc.method and rpc.grpc.status_code; its count is the number of RPCs.",
    LATENCY_BUCKETS_S,
)

# ---- group commit (services/common/group_commit.py: runs-mint, runs-attach, ai-audit, ai-budget-*) ------------

GROUP_COMMIT_BATCH = _histogram(
    "custody.group_commit.batch.size",
    "{item}",
    "Items committed together in one transaction, by group_commit.",
    BATCH_BUCKETS,
)
GROUP_COMMIT_DURATION = _histogram(
    "custody.group_commit.commit.duration",
    "s",
    "Time to apply and commit one batch (the fsync included), by group_commit and outcome.",
    LATENCY_BUCKETS_S,
)

# ---- ai_gateway ----------------------------------------------------------------------------------------------------

GATEWAY_CALLS = _counter(
    "custody.gateway.calls",
    "{call}",
    "AI calls recorded in the audit store, by caller, operation, provider, model and outcome "
    "(SUCCEEDED, BLOCKED by the safety policy, FAILED).",
)
GATEWAY_TOKENS = _counter(
    "custody.gateway.tokens",
    "{token}",
    "Tokens the providers reported, by caller, operation, provider, model and token_type (input, output).",
)
GATEWAY_COST = _counter(
    "custody.gateway.cost.usd",
    "{USD}",
    "Estimated cost in USD from the price table, by caller, operation, provider and model (calls whose "
    "cost is unknown add nothing here; the audit record flags them).",
)
GATEWAY_BUDGET_REFUSALS = _counter(
    "custody.gateway.budget.refusals",
    "{call}",
    "Calls refused by a caller's budget before anything was sent, by caller and limit "
    "(requests_per_minute, tokens_per_day, usd_per_day).",
)

# ---- runs ----------------------------------------------------------------------------------------------------------

OUTBOX_DELIVERY_LAG = _histogram(
    "custody.outbox.delivery.lag",
    "s",
    "From a message's commit with its run to its delivery, retries included, by kind.",
    LAG_BUCKETS_S,
)
BLOB_BYTES_STORED = _counter(
    "custody.blobs.stored",
    "By",
    "Bytes of blobs newly stored (a blob already stored under its digest adds nothing), by backend.",
)

# ---- observed at collection time ----------------------------------------------------------------------------------

Reading = Iterable[tuple[float, Mapping[str, str]]]


class ObservedGauge:
    """A gauge read when metrics are collected, from sources registered at run time (a store, the budgets).

    Sources are bound methods held weakly: a source whose object is gone (a test's store, a stopped service) drops
    out instead of being kept alive by the metrics. A source that raises (its database is down) is skipped for
    that collection; the others still report."""

    def __init__(self, name: str, unit: str, description: str) -> None:
        self._name = name
        self._sources: list[weakref.WeakMethod[Callable[[], Reading]]] = []
        self._lock = threading.Lock()
        DECLARED.append(Declared(name, "gauge", unit))
        METER.create_observable_gauge(name, callbacks=[self._observe], unit=unit, description=description)

    def register(self, source: Callable[[], Reading]) -> None:
        with self._lock:
            self._sources.append(weakref.WeakMethod(source))

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            self._sources = [ref for ref in self._sources if ref() is not None]
            sources = [ref() for ref in self._sources]
        observations: list[Observation] = []
        for source in sources:
            if source is None:
                continue
            try:
                observations.extend(Observation(value, dict(attributes)) for value, attributes in source())
            except Exception as exc:  # one unreadable source must not hide the others
                log.warning("metrics: %s could not be read: %s: %s", self._name, type(exc).__name__, exc)
        return observations


BUDGET_TOKENS_REMAINING = ObservedGauge(
    "custody.gateway.budget.tokens_remaining",
    "{token}",
    "Tokens a caller may still use today (UTC) under tokens_per_day, from the budget ledger replicas share, by caller.",
)
BUDGET_USD_REMAINING = ObservedGauge(
    "custody.gateway.budget.usd_remaining",
    "{USD}",
    "USD a caller may still spend today (UTC) under usd_per_day, from the budget ledger replicas share, by caller.",
)
OUTBOX_BACKLOG = ObservedGauge(
    "custody.outbox.backlog",
    "{message}",
    "Outbox messages waiting for delivery (due now or backing off), read from the runs database.",
)


# ---- the process's exporters --------------------------------------------------------------------------------------


@dataclass
class MetricsExport:
    """What `configure_metrics` started: the scrape endpoint's bound port (None when off) and how to stop."""

    port: int | None
    shutdown: Callable[[], None]


_configured: MetricsExport | None = None


def configure_metrics(settings: ServiceSettings) -> MetricsExport:
    """Installs this process's meter provider (once; later calls return the first result): the Prometheus endpoint
    on `settings.metrics_port` and, with `telemetry_exporter: otlp`, OTLP export to `otlp_endpoint`."""
    global _configured
    if _configured is not None:
        return _configured
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    readers: list[MetricReader] = []
    port: int | None = None
    server: Any = None
    if settings.metrics_port is not None:
        reader, server, port = _prometheus_endpoint(settings.host, settings.metrics_port)
        readers.append(reader)
    if settings.telemetry_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=settings.otlp_endpoint)))
    resource = Resource.create({"service.name": f"custody-{settings.service}", "service.version": CUSTODY_VERSION})
    provider = MeterProvider(resource=resource, metric_readers=readers)
    metrics.set_meter_provider(provider)

    def shutdown() -> None:
        if server is not None:
            server.shutdown()
            server.server_close()
        provider.shutdown()

    _configured = MetricsExport(port, shutdown)
    return _configured


def _prometheus_endpoint(host: str, port: int) -> tuple[Any, Any, int]:
    """A Prometheus reader on its own registry (the process's CPU, memory, file descriptors and GC beside it),
    served over HTTP on a daemon thread; raises OSError when the port is taken."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.gc_collector import GCCollector
    from prometheus_client.process_collector import ProcessCollector

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    reader = PrometheusMetricReader(registry=registry, resource_attribute_filter=_LABELLED_RESOURCE.__contains__)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return reader, server, int(server.server_port)


# Resource attributes copied onto every series, so a dashboard can tell the services apart without relabelling.
_LABELLED_RESOURCE: Sequence[str] = ("service.name",)
