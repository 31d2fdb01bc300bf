"""Audit records: what a call cost, the record built from its bookkeeping, and its durable write.

Every call that reaches the safety check is recorded whatever its outcome, and answers only after its record
is stored. Calls finishing together share one durable commit (group commit); each record is also logged as one
JSON line carrying metadata only, never text. Image calls record their images' digests and the revised prompt's,
never the bytes (those stay with the caller, and in the replay cache for its window). Each stored record also
counts in the gateway's metrics (calls by outcome, tokens, cost; services/common/metrics.py), labelled by caller,
operation, provider and model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

from opentelemetry import trace

from services.ai_gateway.domain.calls import CallState
from services.ai_gateway.domain.config import GatewayConfig
from services.ai_gateway.domain.model import CallRecord, Envelope, Outcome, PreparedImage
from services.ai_gateway.policy import SafetyPolicy
from services.ai_gateway.pricing import Cost, PriceTable
from services.ai_gateway.store import CallStore, ReplayClaim, Stored
from services.ai_gateway.transport.base import Usage
from services.common import call_context, idempotency
from services.common.clock import to_us, utc_now
from services.common.errors import CustodyError
from services.common.group_commit import GroupCommit
from services.common.hashing import sha256_text
from services.common.metrics import GATEWAY_CALLS, GATEWAY_COST, GATEWAY_TOKENS, OTHER_MODEL
from services.common.telemetry import current_trace_id
from services.common.version import CUSTODY_VERSION

log = logging.getLogger("custody.ai_gateway.audit")

ENGINE_VERSION = f"custody-ai-gateway/{CUSTODY_VERSION}"


class Auditor:
    def __init__(self, config: GatewayConfig, policy: SafetyPolicy, prices: PriceTable, store: CallStore) -> None:
        self._config = config
        self._policy = policy
        self._prices = prices
        # Calls finishing together share one durable commit; every call still answers only after its own record
        # is stored.
        self._commit: GroupCommit[tuple[CallRecord, ReplayClaim | None], Stored] = GroupCommit(
            store.insert_many, "ai-audit"
        )

    async def close(self) -> None:
        await asyncio.to_thread(self._commit.close)

    def cost(self, call: CallState[Any]) -> Cost:
        if call.attempts == 0:  # nothing was sent to a provider: a known zero
            return Cost(0.0, self._prices.version, call.provider, call.model, Usage())
        if isinstance(call.prepared, PreparedImage):  # priced per image returned; unknown if one may be unseen
            made = None if call.usage_unknown else len(call.images or ())
            models = (call.answer_model, call.model)
            return self._prices.image_cost(call.provider, models, call.prepared.size, made, call.usage_unknown)
        usage = None if call.usage_unknown else call.usage
        cost = self._prices.cost(call.provider, (call.answer_model, call.model), usage)
        if usage is None:
            return replace(cost, unpriced_reason=call.usage_unknown)
        return cost

    async def record(self, call: CallState[Any], outcome: Outcome, error: CustodyError | None = None) -> CallRecord:
        raw = call.prepared.raw
        cost = self.cost(call)
        policy = self._policy
        blocked = call.verdict is not None and not call.verdict.allowed
        envelope = Envelope(
            call=call.name,
            request_id=call_context.request_id() or "",
            operation=call.prepared.operation,
            category=call.prepared.category,
            created_at=call.created_at,
            provider=call.provider,
            model=call.answer_model or call.model,
            allowed=not blocked,
            safety_reason=call.verdict.reason if blocked and call.verdict else "",
            prompt_sha256=sha256_text(raw.prompt),
            system_prompt_sha256=sha256_text(raw.system_prompt) if raw.system_prompt else "",
            response_sha256=sha256_text(call.response) if call.response is not None else "",
            latency_ms=round((time.monotonic() - call.started) * 1000, 3),
            usage=cost.usage,
            cost_estimate_usd=cost.estimate_usd,
            variant_seed=raw.variant_seed,
            engine_version=ENGINE_VERSION,
            caller=call.caller,
            trace_id=current_trace_id(),
            attempts=call.attempts,
            price_table_version=self._prices.version,
            policy_version=policy.version,
            image_sha256=tuple(image.sha256 for image in call.images or ()),
            revised_prompt_sha256=sha256_text(call.revised_prompt) if call.revised_prompt else "",
            on_behalf_of=raw.on_behalf_of,
        )
        verbose = self._config.audit_verbose
        prompt, response = "", ""
        # A text the policy withheld (it holds a secret, or the checks could not tell) is not kept, even redacted.
        withheld = call.verdict.rule_id.split(".", 1)[0] if blocked and call.verdict and call.verdict.withhold else ""
        if verbose and withheld != "input":
            prompt = await policy.redact_async(raw.prompt)
            if raw.system_prompt:
                prompt = f"[system]\n{await policy.redact_async(raw.system_prompt)}\n[user]\n{prompt}"
        if verbose and withheld != "output" and call.response:
            response = await policy.redact_async(call.response)
        if verbose and not withheld and call.revised_prompt:  # an image call's text answer is its revised prompt
            response = await policy.redact_async(call.revised_prompt)
        return CallRecord(
            envelope=envelope,
            cost=cost,
            outcome=outcome,
            rpc=call.rpc,
            request_sha256=call.request_sha256,
            idempotency_key=raw.request_id,
            error_reason=error.reason if error else "",
            rule_id=call.verdict.rule_id if blocked and call.verdict else "",
            finish_reason=call.finish_reason,
            verbose=verbose,
            prompt_redacted=prompt,
            response_redacted=response,
        )

    async def save(self, call: CallState[Any], record: CallRecord, content: str | None = None) -> Stored:
        """Stores the record with its ledger leaf (claiming the request_id on success) and writes the audit log
        line. Returns the leaf index, and the result another replica stored first for the same request_id if one
        did (REQUEST_ID_REUSED when that was a different request)."""
        claim = None
        if content is not None and record.idempotency_key:
            now_us = to_us(utc_now())
            claim = ReplayClaim(content, now_us, now_us + int(self._config.replay_retention_s * 1_000_000))
        call.recorded = True
        stored = await self._commit.submit_async((record, claim))
        _audit_log(record)
        self._measure(record)
        if stored.holder is not None:
            idempotency.ensure_same_request(record.idempotency_key, stored.holder.request_sha256, record.request_sha256)
        return stored

    def _measure(self, record: CallRecord) -> None:
        envelope = record.envelope
        listed = self._prices.lists(envelope.provider, envelope.model)
        labels = {
            "caller": envelope.caller.id,
            "operation": envelope.operation,
            "provider": envelope.provider,
            "model": envelope.model if listed else OTHER_MODEL,
        }
        GATEWAY_CALLS.add(1, {**labels, "outcome": record.outcome.value})
        usage = record.cost.usage
        if usage is not None and usage.total_tokens:
            GATEWAY_TOKENS.add(usage.input_tokens, {**labels, "token_type": "input"})
            GATEWAY_TOKENS.add(usage.output_tokens, {**labels, "token_type": "output"})
        if record.cost.estimate_usd is not None:
            GATEWAY_COST.add(record.cost.estimate_usd, labels)

    async def record_failure(self, call: CallState[Any], exc: BaseException) -> None:
        """Records a call that ended with `exc`, unless it was recorded already; never raises."""
        if call.recorded:
            return
        if isinstance(exc, CustodyError):
            outcome = Outcome.BLOCKED if exc.reason == "SAFETY_BLOCKED" else Outcome.FAILED
            error: CustodyError = exc
            exc.metadata["call"] = call.name
            exc.metadata.setdefault("rpc", call.rpc)
        else:
            outcome = Outcome.FAILED
            reason = "CANCELLED" if isinstance(exc, asyncio.CancelledError | GeneratorExit) else "INTERNAL"
            error = CustodyError(reason, reason.lower())
        try:
            await self.save(call, await self.record(call, outcome, error))
        except Exception:
            log.exception("could not store the audit record of %s", call.name)


def annotate(span: trace.Span, call: CallState[Any], record: CallRecord) -> None:
    span.set_attributes(
        {
            "custody.call": call.name,
            "custody.operation": call.prepared.operation,
            "custody.category": call.prepared.category,
            "custody.provider": call.provider,
            "custody.model": record.envelope.model,
            "custody.attempts": call.attempts,
        }
    )


def _audit_log(record: CallRecord) -> None:
    log.info(
        "ai call %s",
        record.outcome.value,
        extra={"event": "ai_call", "call": record.log_view()},
    )
