"""AI calls as the gateway audited them: metadata only (digests, usage, cost, safety), never prompt or response
text, even when the gateway's verbose audit kept a redacted copy."""

from __future__ import annotations

from dataclasses import dataclass

from custody.ai_gateway.v1 import gateway_pb2
from services.console.pages.formatting import enum_label


@dataclass(frozen=True)
class CallSummary:
    name: str
    operation: str
    category: str
    provider: str
    model: str
    caller: str
    request_id: str
    created_at: str
    outcome: str
    allowed: bool
    safety_reason: str
    rule_id: str
    policy_version: str
    prompt_sha256: str
    system_prompt_sha256: str
    response_sha256: str
    input_tokens: int
    output_tokens: int
    total_tokens: int
    # None when the price table has no price for the model: an unknown cost is never shown as 0.
    cost_usd: float | None
    unpriced_reason: str
    price_table_version: str
    attempts: int
    latency_ms: float
    replayed: bool
    trace_id: str
    ledger_index: int | None


def call_summary(call: gateway_pb2.Call) -> CallSummary:
    envelope = call.envelope
    return CallSummary(
        name=call.name,
        operation=envelope.operation,
        category=envelope.category,
        provider=envelope.provider,
        model=envelope.model,
        caller=envelope.caller.id,
        request_id=envelope.request_id,
        created_at=envelope.created_at.ToJsonString() if envelope.HasField("created_at") else "",
        outcome=enum_label(gateway_pb2.CallOutcome.Name(call.outcome), "CALL_OUTCOME_"),
        allowed=envelope.allowed,
        safety_reason=envelope.safety_reason,
        rule_id=call.rule_id,
        policy_version=envelope.policy_version,
        prompt_sha256=envelope.prompt_sha256,
        system_prompt_sha256=envelope.system_prompt_sha256,
        response_sha256=envelope.response_sha256,
        input_tokens=envelope.usage.input_tokens,
        output_tokens=envelope.usage.output_tokens,
        total_tokens=envelope.usage.total_tokens,
        cost_usd=call.cost.estimate_usd if call.cost.HasField("estimate_usd") else None,
        unpriced_reason=call.cost.unpriced_reason,
        price_table_version=call.cost.price_table_version or envelope.price_table_version,
        attempts=envelope.attempts,
        latency_ms=envelope.latency_ms,
        replayed=envelope.replayed,
        trace_id=envelope.trace_id,
        ledger_index=call.ledger.leaf_index if call.HasField("ledger") else None,
    )
