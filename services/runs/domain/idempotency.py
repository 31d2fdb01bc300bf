"""A request's fingerprint: what a retry under the same request id must repeat to be answered as the original."""

from __future__ import annotations

from typing import Any

from services.common.idempotency import fingerprint


def fingerprint_of(value: Any) -> str:
    return fingerprint({"value": value})
