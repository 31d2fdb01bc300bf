"""Builders of domain records for unit and storage tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.ai_gateway.domain.model import CallRecord, Envelope, Outcome
from services.ai_gateway.pricing import Cost
from services.ai_gateway.transport.base import Usage
from services.common.identity import Principal, PrincipalKind
from services.common.ids import new_id

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def record(
    *,
    caller: str = "service:runs",
    operation: str = "general_text",
    at: datetime = T0,
    outcome: Outcome = Outcome.SUCCEEDED,
    key: str = "",
    request_id: str = "req-1",
    tokens: tuple[int, int, int] = (10, 0, 5),
    cost: float | None = 0.001,
    **fields: Any,
) -> CallRecord:
    usage = Usage(*tokens)
    envelope = Envelope(
        call="calls/" + new_id("call"),
        request_id=request_id,
        operation=operation,
        category="GENERAL",
        created_at=at,
        provider="openai",
        model="gpt-4o-mini",
        allowed=outcome is not Outcome.BLOCKED,
        safety_reason="",
        prompt_sha256="a" * 64,
        system_prompt_sha256="",
        response_sha256="b" * 64,
        latency_ms=1.5,
        usage=usage,
        cost_estimate_usd=cost,
        variant_seed="",
        engine_version="test",
        caller=Principal(caller, PrincipalKind.SERVICE if caller.startswith("service:") else PrincipalKind.HUMAN),
        trace_id="",
        attempts=1,
        price_table_version="p1",
        policy_version="s1",
    )
    return CallRecord(
        envelope=envelope,
        cost=Cost(cost, "p1", "openai", "gpt-4o-mini", usage),
        outcome=outcome,
        rpc="GenerateText",
        request_sha256=fields.pop("request_sha256", "c" * 64),
        idempotency_key=key,
        **fields,
    )


def later(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)
