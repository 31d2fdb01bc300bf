"""JSON log lines are written by a thread of their own, yet carry the request and trace ids of the call that logged."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from services.common import call_context, telemetry


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The service's logging, writing to a buffer in place of stderr."""
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    telemetry.configure_logging("runs", "INFO")
    try:
        yield buffer
    finally:
        telemetry._stop_log_writer()
        root.handlers[:] = handlers
        root.setLevel(level)


def _log_inside_a_call() -> str:
    call_context.bind(request_id="req-log-thread-1", principal=None, time_remaining=None)
    with TracerProvider().get_tracer("test").start_as_current_span("call") as span:
        logging.getLogger("custody.test").info("inside %s", "the call", extra={"step": 3})
        return format(span.get_span_context().trace_id, "032x")


def test_a_line_written_by_the_log_thread_carries_the_calls_ids(stderr: io.StringIO) -> None:
    trace_id = contextvars.copy_context().run(_log_inside_a_call)
    telemetry._stop_log_writer()  # drains the queue: every line is written
    (line,) = [json.loads(text) for text in stderr.getvalue().splitlines() if "inside" in text]
    assert line["msg"] == "inside the call" and line["step"] == 3 and line["service"] == "runs"
    assert (line["request_id"], line["trace_id"]) == ("req-log-thread-1", trace_id)
