"""Typed errors -> google.rpc.Status with ErrorInfo, BadRequest and RetryInfo, and back."""

from __future__ import annotations

import grpc

from services.common import status
from services.common.errors import FieldViolation, ResourceExhausted


class _Failed(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, message: str, trailers: tuple[tuple[str, bytes], ...]) -> None:
        self._code, self._message, self._trailers = code, message, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._trailers


def test_error_round_trips_through_the_rich_status() -> None:
    error = ResourceExhausted(
        "BUDGET_EXCEEDED",
        "daily token budget of service:runs is spent",
        violations=[FieldViolation("max_tokens", "above the remaining budget")],
        metadata={"budget": "tokens_per_day"},
        retry_after_s=1.5,
    )
    code, message, trailers = status.encode(error, "ai_gateway")
    decoded = status.decode(_Failed(code, message, trailers))
    assert decoded.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (decoded.reason, decoded.domain, decoded.metadata) == (
        "BUDGET_EXCEEDED",
        "ai_gateway.custody",
        {"budget": "tokens_per_day"},
    )
    assert decoded.violations == (FieldViolation("max_tokens", "above the remaining budget"),)
    assert decoded.retry_after_s == 1.5
    assert decoded.message == "daily token budget of service:runs is spent"


def test_plain_status_without_details_still_decodes() -> None:
    decoded = status.decode(_Failed(grpc.StatusCode.UNAVAILABLE, "connection refused", ()))
    assert (decoded.code, decoded.message, decoded.reason) == (grpc.StatusCode.UNAVAILABLE, "connection refused", "")
