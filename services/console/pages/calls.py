"""AI calls as the gateway audited them: metadata only (digests, usage, cost, safety), never prompt or response
text, even when the gateway's verbose audit kept a redacted copy.

The list (ListCalls, newest first, filtered as it allows) and one call (GetCall) drop the redacted texts from the
gateway's answer as soon as it arrives, before any view is built: no template can show what no view holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from custody.ai_gateway.v1 import gateway_pb2
from services.common.resource_names import CALL_NAME
from services.console.pages.filters import FilterForm
from services.console.pages.formatting import age, enum_label, timestamp
from services.console.upstream import PersonCalls

PAGE_SIZE = 50


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


@dataclass(frozen=True)
class CallRecord:
    """A call's summary and the rest of its audit record that is metadata."""

    summary: CallSummary
    call_id: str
    error_reason: str
    rpc: str
    idempotency_key: str
    finish_reason: str
    request_sha256: str
    # Whether verbose audit was on for the call (the gateway then kept redacted texts, which are never shown).
    verbose: bool
    create_time: str
    age: str
    cached_input_tokens: int
    variant_seed: str
    engine_version: str
    ledger_origin: str


@dataclass(frozen=True)
class CallsPage:
    form: FilterForm
    calls: list[CallRecord]
    next_page: str


def call_name(call_id: str) -> str | None:
    """calls/{call_id} when the id is one the gateway could have issued; None otherwise (nothing to call)."""
    name = f"calls/{call_id}"
    return name if CALL_NAME.fullmatch(name) else None


def metadata_only(call: gateway_pb2.Call) -> gateway_pb2.Call:
    """The call without its prompt and response texts (kept, redacted, only with verbose audit on)."""
    call.ClearField("prompt_redacted")
    call.ClearField("response_redacted")
    return call


def call_record(call: gateway_pb2.Call) -> CallRecord:
    call = metadata_only(call)
    envelope = call.envelope
    created = timestamp(call, "create_time") or timestamp(envelope, "created_at")
    return CallRecord(
        summary=call_summary(call),
        call_id=call.name.removeprefix("calls/"),
        error_reason=call.error_reason,
        rpc=call.rpc,
        idempotency_key=call.idempotency_key,
        finish_reason=call.finish_reason,
        request_sha256=call.request_sha256,
        verbose=call.verbose,
        create_time=created,
        age=age(created),
        cached_input_tokens=envelope.usage.cached_input_tokens,
        variant_seed=envelope.variant_seed,
        engine_version=envelope.engine_version,
        ledger_origin=call.ledger.origin,
    )


def calls_form(params: Mapping[str, str]) -> tuple[FilterForm, gateway_pb2.ListCallsRequest]:
    """The filter form as submitted, and the ListCalls request it asks for (call it only without problems)."""
    form = FilterForm(params)
    request = gateway_pb2.ListCallsRequest(
        page_size=PAGE_SIZE,
        operation=form.text("operation", "Operation", "prompt_to_svg_spec"),
        caller=form.text("caller", "Caller", "service:art_studio"),
        outcome=form.choice("outcome", "Outcome", gateway_pb2.CallOutcome, "CALL_OUTCOME_"),  # type: ignore[arg-type]
        request_id=form.text("request_id", "Request id or idempotency key"),
    )
    start = form.time("start_time", "From (UTC)")
    end = form.time("end_time", "Before (UTC)")
    form.require_order(start, end, "end_time")
    if start is not None:
        request.start_time.CopyFrom(start)
    if end is not None:
        request.end_time.CopyFrom(end)
    request.page_token = form.page_token()
    return form, request


async def calls_list(calls: PersonCalls, params: Mapping[str, str]) -> CallsPage:
    form, request = calls_form(params)
    if form.problems:
        return CallsPage(form, [], "")
    response = await calls.call("ai_gateway", "ListCalls", request)
    return CallsPage(form, [call_record(c) for c in response.calls], form.next_page("/calls", response.next_page_token))


async def call_page(calls: PersonCalls, name: str) -> CallRecord:
    return call_record(await calls.call("ai_gateway", "GetCall", gateway_pb2.GetCallRequest(name=name)))
