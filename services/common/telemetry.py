"""Tracing and logging for one process: OpenTelemetry spans and JSON log lines that carry request and trace ids.

Exporters are chosen by configuration: none (ids still propagate, nothing is exported), console, OTLP, or a JSON
lines file (handy for tests that follow one trace across processes).
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from pathlib import Path
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.common import call_context
from services.common.config import ProcessSettings
from services.common.version import CUSTODY_VERSION

# Fields every log record may carry beyond the message; passed with `extra={...}`.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def current_trace_id() -> str:
    """W3C trace id of the active span (32 hex characters), or "" when there is none."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line with service, request_id and trace_id, so logs join with traces and audits."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
            # Captured where the record was made when it is formatted elsewhere (see _CallQueueHandler).
            "request_id": getattr(record, "_request_id", None) or call_context.request_id() or "",
            "trace_id": getattr(record, "_trace_id", None) or current_trace_id(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


class _CallQueueHandler(QueueHandler):
    """Queues records for the writer thread with what only the calling task knows (its request id and trace id),
    leaving formatting and the write to that thread: a call does not wait for its log lines."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record._request_id = call_context.request_id() or ""
        record._trace_id = current_trace_id()
        record.msg, record.args = record.getMessage(), None  # arguments may change after the call returns
        return record


_log_writer: QueueListener | None = None


def _stop_log_writer() -> None:
    """Writes what is queued, then ends the writer thread (at exit)."""
    global _log_writer
    if _log_writer is not None:
        _log_writer.stop()
        _log_writer = None


def configure_logging(service: str, level: str) -> None:
    """JSON lines on stderr, formatted and written by a thread of their own (stopped, and drained, at exit)."""
    global _log_writer
    # The JSON lines carry no source location, thread or process name: don't collect them for every record.
    logging._srcfile = None  # the logging HOWTO's own advice ("Optimization")
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    writer = logging.StreamHandler(sys.stderr)
    writer.setFormatter(JsonLogFormatter(service))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    if _log_writer is None:
        atexit.register(_stop_log_writer)
    else:
        _log_writer.stop()
    _log_writer = QueueListener(records, writer)
    _log_writer.start()
    root = logging.getLogger()
    root.handlers[:] = [_CallQueueHandler(records)]
    root.setLevel(level)
    # Library chatter (grpc, sqlalchemy) stays at WARNING unless asked for.
    for noisy in ("grpc", "sqlalchemy", "alembic", "opentelemetry"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object per line."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
        with self._lock, self._path.open("a", encoding="utf-8") as handle:
            handle.write(lines)
        return SpanExportResult.SUCCESS


def configure_tracing(settings: ProcessSettings) -> TracerProvider:
    """A tracer provider for this process; W3C tracecontext + baggage propagation is set globally."""
    propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()]))
    resource = Resource.create({"service.name": f"custody-{settings.service}", "service.version": CUSTODY_VERSION})
    exporter = settings.telemetry_exporter
    # With nothing to export, a trace this process starts is not recorded (its ids still propagate and reach the
    # logs); a caller's sampled trace still is, so its sampled flag passes on unchanged to hops that do export.
    sampler = ParentBased(ALWAYS_OFF) if exporter == "none" else ParentBased(ALWAYS_ON)
    provider = TracerProvider(resource=resource, sampler=sampler)
    if exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    elif exporter == "file":
        path = settings.telemetry_file or settings.state_dir / "traces" / f"{settings.service}.jsonl"
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    return provider
