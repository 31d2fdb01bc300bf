"""Proto <-> domain conversions for the ai_gateway contract (the servicer's only vocabulary)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from custody.ai_gateway.v1 import gateway_pb2
from custody.common.v1 import common_pb2
from services.ai_gateway.domain.gateway import Gateway
from services.ai_gateway.domain.model import (
    AuditedCall,
    CallResult,
    Envelope,
    ImageRequest,
    ImageResult,
    ListFilters,
    Outcome,
    StreamItem,
    TextChunk,
    TextRequest,
)
from services.ai_gateway.pricing import Cost
from services.ai_gateway.transport.base import Usage
from services.common.clock import to_us
from services.common.errors import FieldViolation, InvalidArgument
from services.common.identity import Principal
from services.common.ledger import rpc as ledger_rpc
from services.common.limits import CHUNK_LIMIT_BYTES
from services.common.protomap import datetime_from_proto, principal_kind_from_proto, principal_to_proto

OUTCOMES = {
    Outcome.SUCCEEDED: gateway_pb2.CALL_OUTCOME_SUCCEEDED,
    Outcome.BLOCKED: gateway_pb2.CALL_OUTCOME_BLOCKED,
    Outcome.FAILED: gateway_pb2.CALL_OUTCOME_FAILED,
}
_OUTCOMES_BACK = {v: k for k, v in OUTCOMES.items()}


def text_request(request: gateway_pb2.GenerateTextRequest | gateway_pb2.StreamTextRequest) -> TextRequest:
    return TextRequest(
        operation=request.operation,
        category=request.category,
        provider=request.provider,
        model=request.model,
        prompt=request.prompt,
        system_prompt=request.system_prompt,
        temperature=request.temperature if request.HasField("temperature") else None,
        max_tokens=request.max_tokens,
        variant_seed=request.variant_seed,
        response_json_schema=request.response_json_schema,
        request_id=request.request_id,
        on_behalf_of=on_behalf_of(request),
    )


def image_request(request: gateway_pb2.GenerateImageRequest) -> ImageRequest:
    return ImageRequest(
        operation=request.operation,
        category=request.category,
        provider=request.provider,
        model=request.model,
        prompt=request.prompt,
        size=request.size,
        count=request.count,
        variant_seed=request.seed,
        request_id=request.request_id,
        on_behalf_of=on_behalf_of(request),
    )


def on_behalf_of(
    request: gateway_pb2.GenerateTextRequest | gateway_pb2.StreamTextRequest | gateway_pb2.GenerateImageRequest,
) -> Principal | None:
    """The person a service names (id and kind; roles are not the caller's to say), or None when unset."""
    if not request.HasField("on_behalf_of"):
        return None
    kind = principal_kind_from_proto(request.on_behalf_of.kind)
    if kind is None:
        raise InvalidArgument(
            "ON_BEHALF_OF_INVALID",
            "on_behalf_of needs its kind: PRINCIPAL_KIND_HUMAN",
            violations=[FieldViolation("on_behalf_of.kind", "PRINCIPAL_KIND_HUMAN")],
        )
    return Principal(request.on_behalf_of.id, kind)


def image_responses(result: ImageResult) -> Iterator[gateway_pb2.GenerateImageResponse]:
    """The GenerateImage stream: the metadata first, then each image's bytes in chunks of at most 1 MiB."""
    metadata = gateway_pb2.ImageMetadata(
        envelope=envelope_proto(result.record.envelope),
        cost=cost_proto(result.record.cost),
        ledger=ledger_rpc.entry(result.ledger),
        images=[
            gateway_pb2.ImageDescriptor(
                index=image.index,
                media_type=image.media_type,
                sha256=image.sha256,
                size_bytes=len(image.data),
                width=image.width,
                height=image.height,
            )
            for image in result.images
        ],
        revised_prompt=result.revised_prompt,
    )
    yield gateway_pb2.GenerateImageResponse(metadata=metadata)
    for image in result.images:
        view = memoryview(image.data)
        for start in range(0, len(view), CHUNK_LIMIT_BYTES):
            chunk = gateway_pb2.ImageChunk(index=image.index, data=bytes(view[start : start + CHUNK_LIMIT_BYTES]))
            yield gateway_pb2.GenerateImageResponse(chunk=chunk)


def list_filters(request: gateway_pb2.ListCallsRequest) -> ListFilters:
    return ListFilters(
        request_id=request.request_id,
        operation=request.operation,
        caller=request.caller,
        start_us=_micros(request.start_time, "start_time") if request.HasField("start_time") else None,
        end_us=_micros(request.end_time, "end_time") if request.HasField("end_time") else None,
        outcome=_OUTCOMES_BACK.get(request.outcome),
    )


def generate_response(result: CallResult) -> gateway_pb2.GenerateTextResponse:
    return gateway_pb2.GenerateTextResponse(
        content=result.content,
        envelope=envelope_proto(result.record.envelope),
        cost=cost_proto(result.record.cost),
        ledger=ledger_rpc.entry(result.ledger),
    )


def stream_response(item: StreamItem) -> gateway_pb2.StreamTextResponse:
    if isinstance(item, TextChunk):
        return gateway_pb2.StreamTextResponse(chunk=gateway_pb2.TextChunk(text=item.text, index=item.index))
    end = gateway_pb2.StreamEnd(
        envelope=envelope_proto(item.record.envelope),
        cost=cost_proto(item.record.cost),
        ledger=ledger_rpc.entry(item.ledger),
    )
    return gateway_pb2.StreamTextResponse(end=end)


def _micros(timestamp: Timestamp, field: str) -> int:
    return to_us(datetime_from_proto(timestamp, field))


def _timestamp(micros: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMicroseconds(micros)
    return stamp


def usage_proto(usage: Usage | None) -> common_pb2.TokenUsage | None:
    if usage is None:
        return None
    return common_pb2.TokenUsage(
        input_tokens=usage.input_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
    )


def envelope_proto(envelope: Envelope) -> common_pb2.ProvenanceEnvelope:
    fields: dict[str, Any] = {
        "request_id": envelope.request_id,
        "operation": envelope.operation,
        "category": envelope.category,
        "created_at": _timestamp(to_us(envelope.created_at)),
        "provider": envelope.provider,
        "model": envelope.model,
        "allowed": envelope.allowed,
        "safety_reason": envelope.safety_reason,
        "prompt_sha256": envelope.prompt_sha256,
        "response_sha256": envelope.response_sha256,
        "latency_ms": envelope.latency_ms,
        "usage": usage_proto(envelope.usage),
        "variant_seed": envelope.variant_seed,
        "engine_version": envelope.engine_version,
        "caller": principal_to_proto(envelope.caller),
        "trace_id": envelope.trace_id,
        "attempts": envelope.attempts,
        "price_table_version": envelope.price_table_version,
        "replayed": envelope.replayed,
        "policy_version": envelope.policy_version,
        "call": envelope.call,
        "system_prompt_sha256": envelope.system_prompt_sha256,
        "image_sha256": envelope.image_sha256,
        "revised_prompt_sha256": envelope.revised_prompt_sha256,
    }
    if envelope.on_behalf_of is not None:
        fields["on_behalf_of"] = principal_to_proto(envelope.on_behalf_of)
    if envelope.cost_estimate_usd is not None:  # absent, never 0, when unknown
        fields["cost_estimate_usd"] = envelope.cost_estimate_usd
    return common_pb2.ProvenanceEnvelope(**fields)


def cost_proto(cost: Cost) -> common_pb2.CostRecord:
    fields: dict[str, Any] = {
        "price_table_version": cost.price_table_version,
        "provider": cost.provider,
        "model": cost.model,
        "usage": usage_proto(cost.usage),
        "unpriced_reason": cost.unpriced_reason,
    }
    if cost.estimate_usd is not None:
        fields["estimate_usd"] = cost.estimate_usd
    return common_pb2.CostRecord(**fields)


def call_proto(call: AuditedCall) -> gateway_pb2.Call:
    record = call.record
    return gateway_pb2.Call(
        name=record.envelope.call,
        envelope=envelope_proto(record.envelope),
        cost=cost_proto(record.cost),
        outcome=OUTCOMES[record.outcome],
        error_reason=record.error_reason,
        rule_id=record.rule_id,
        rpc=record.rpc,
        idempotency_key=record.idempotency_key,
        finish_reason=record.finish_reason,
        request_sha256=record.request_sha256,
        prompt_redacted=record.prompt_redacted,
        response_redacted=record.response_redacted,
        verbose=record.verbose,
        create_time=_timestamp(to_us(record.envelope.created_at)),
        ledger=ledger_rpc.entry(call.ledger),
    )


def policy_proto(gateway: Gateway) -> gateway_pb2.Policy:
    """What GetPolicy answers: the loaded policy, prices and each operation's resolved defaults."""
    policy, prices = gateway.policy, gateway.prices

    def rules(direction: str, rules: Any) -> list[gateway_pb2.SafetyRule]:
        found = [gateway_pb2.SafetyRule(id=f"{direction}.max_chars", description=f"at most {rules.max_chars} chars")]
        if direction == "input":
            found.append(
                gateway_pb2.SafetyRule(
                    id="input.max_system_chars", description=f"system prompt at most {rules.max_system_chars} chars"
                )
            )
        found += [
            gateway_pb2.SafetyRule(id=f"{direction}.detector.{d}", description=policy.detectors[d].description)
            for d in rules.detectors
        ]
        found += [
            gateway_pb2.SafetyRule(id=f"{direction}.pattern.{p.id}", description=p.description)
            for p in rules.blocked_patterns
        ]
        return found

    categories = [
        gateway_pb2.SafetyCategory(
            name=name,
            description=category.description,
            input_rules=rules("input", category.input),
            output_rules=rules("output", category.output),
        )
        for name, category in sorted(policy.document.categories.items())
    ]
    price_rows = [
        gateway_pb2.ModelPrice(
            provider=provider,
            model=model,
            input_per_million_usd=float(price.input),
            cached_input_per_million_usd=float(price.cached_input),
            output_per_million_usd=float(price.output),
        )
        for provider, models in sorted(prices.document.models.items())
        for model, price in sorted(models.items())
    ]
    image_prices = [
        gateway_pb2.ImageModelPrice(provider=provider, model=model, size=size, per_image_usd=float(usd))
        for provider, models in sorted(prices.document.image_models.items())
        for model, price in sorted(models.items())
        for size, usd in sorted(price.per_image.items())
    ]
    image_operations = []
    for name in sorted(gateway.config.image_operations):
        image_operation, provider, model, made = gateway.image_operation_defaults(name)
        image_operations.append(
            gateway_pb2.ImageOperationDefaults(
                operation=name,
                categories=image_operation.categories,
                provider=provider,
                model=model,
                size=image_operation.size,
                sizes=made.sizes if made is not None else (),
                max_count=made.max_count if made is not None else 0,
            )
        )
    operations = []
    for name in sorted(gateway.config.operations):
        operation, provider, model = gateway.operation_defaults(name)
        operations.append(
            gateway_pb2.OperationDefaults(
                operation=name,
                categories=operation.categories,
                provider=provider,
                model=model,
                temperature=operation.temperature,
                max_tokens=min(operation.max_tokens, gateway.config.max_tokens_limit),
                fallback_providers=operation.fallback_providers,
            )
        )
    return gateway_pb2.Policy(
        policy_version=policy.version,
        policy_sha256=policy.sha256,
        categories=categories,
        price_table_version=prices.version,
        price_table_sha256=prices.sha256,
        prices=price_rows,
        operations=operations,
        verbose_audit=gateway.config.audit_verbose,
        providers=sorted(gateway.providers),
        image_prices=image_prices,
        image_operations=image_operations,
    )
