"""Per-call state carried in contextvars: request id, caller, deadline, and the service whose certificate the
call's connection carried (mutual TLS), which may differ from the caller when a service acts with a person's token.

Set once by the server's call handling for each RPC; read by domain code, loggers and the client factory. Code
reads the caller from here, never from a request field.
"""

from __future__ import annotations

import re
import time
import uuid
from contextvars import ContextVar

from services.common.identity import Principal

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_BAGGAGE_KEY = "request_id"
# Printable, bounded, no separators that would break a log line or a metadata value.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

_request_id: ContextVar[str | None] = ContextVar("custody_request_id", default=None)
_principal: ContextVar[Principal | None] = ContextVar("custody_principal", default=None)
_deadline: ContextVar[float | None] = ContextVar("custody_deadline", default=None)
_via_service: ContextVar[str | None] = ContextVar("custody_via_service", default=None)


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex}"


def is_valid_request_id(value: str) -> bool:
    return bool(REQUEST_ID_PATTERN.fullmatch(value))


def request_id() -> str | None:
    return _request_id.get()


def principal() -> Principal | None:
    return _principal.get()


def require_principal() -> Principal:
    found = _principal.get()
    if found is None:
        raise RuntimeError("no authenticated principal in this context")
    return found


def via_service() -> str | None:
    """The service named by the connection's verified client certificate (None: no certificate), for audit."""
    return _via_service.get()


def time_remaining() -> float | None:
    """Seconds left before the incoming call's deadline, or None when it has none."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def bind(
    *, request_id: str, principal: Principal | None, time_remaining: float | None, via_service: str | None = None
) -> None:
    """Sets the call state for the current task (each RPC runs in its own task, so nothing leaks)."""
    _request_id.set(request_id)
    _principal.set(principal)
    _via_service.set(via_service)
    _deadline.set(None if time_remaining is None else time.monotonic() + time_remaining)


def bind_request_id(value: str) -> None:
    """For processes that act outside an RPC (CLI, dispatchers): a request id for what follows."""
    _request_id.set(value)
