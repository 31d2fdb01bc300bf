"""The governed AI call: one path for every GenerateText and StreamText (pure domain logic, no grpc).

validate (bad input writes nothing) -> replay a repeated request_id -> rate limit and budget reservation ->
input safety check (blocks are audited) -> provider attempts with retries and fallbacks inside the caller's
deadline -> output safety and JSON-schema checks (one repair attempt) -> price -> audit row + JSON log line.
Every call that reaches the safety check is audited, whatever its outcome.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match
from opentelemetry import trace

from services.ai_gateway.budgets import NO_RESERVATION, Budgets, Reservation
from services.ai_gateway.config import AiGatewaySettings, OperationSettings
from services.ai_gateway.model import (
    CALL_ID_PREFIX,
    CALL_NAME_PREFIX,
    CallPage,
    CallRecord,
    CallResult,
    Envelope,
    ListFilters,
    Outcome,
    PreparedRequest,
    TextRequest,
    to_micros,
    utcnow,
)
from services.ai_gateway.policy import Direction, SafetyPolicy, Verdict
from services.ai_gateway.pricing import Cost, PriceTable
from services.ai_gateway.store import CallStore, ReplayClaim, ReplayEntry
from services.ai_gateway.transport.base import (
    ErrorKind,
    Message,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    StreamFinished,
    Usage,
)
from services.ai_gateway.transport.local import approx_tokens
from services.common import call_context, idempotency, pagination
from services.common.errors import (
    CustodyError,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.common.group_commit import GroupCommit
from services.common.hashing import sha256_text
from services.common.identity import Principal, PrincipalKind
from services.common.ids import id_pattern, new_id
from services.common.json_limits import loads_json
from services.common.telemetry import current_trace_id
from services.common.version import CUSTODY_VERSION

log = logging.getLogger("custody.ai_gateway.audit")

ENGINE_VERSION = f"custody-ai-gateway/{CUSTODY_VERSION}"
KNOWN_PROVIDERS = ("local", "openai")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@\-]{0,127}$")
MAX_VARIANT_SEED = 128
# Time kept back from the caller's deadline to record the call and answer.
DEADLINE_MARGIN_S = 0.05
CALL_ID = id_pattern(CALL_ID_PREFIX)
# ListCalls page tokens: valid for ListCalls only, with a cursor of (created_at in microseconds, call id).
LIST_CALLS = pagination.PagedList("custody.ai_gateway.v1.AiGatewayService/ListCalls", (int, str))
_FENCED_JSON = re.compile(r"^\s*```(?:json)?\s*\n(.*)\n\s*```\s*$", re.S)


@dataclass(frozen=True)
class TextChunk:
    text: str
    index: int


StreamItem = TextChunk | CallResult


@dataclass
class _Call:
    """Bookkeeping of one call in progress, from which its audit record is built whatever the outcome."""

    prepared: PreparedRequest
    caller: Principal
    rpc: str
    request_sha256: str
    call_id: str
    created_at: Any
    started: float
    deadline: float
    provider: str
    model: str
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    usage_unknown: str = ""
    answer_model: str = ""
    finish_reason: str = ""
    response: str | None = None
    verdict: Verdict | None = None
    recorded: bool = False

    @property
    def name(self) -> str:
        return CALL_NAME_PREFIX + self.call_id

    def answered(self, response: ProviderResponse | StreamFinished, content: str) -> None:
        self.answer_model = response.model or self.model
        self.finish_reason = response.finish_reason
        self.response = content
        if response.usage is None:
            self.usage_unknown = "the provider reported no usage"
        else:
            self.usage = self.usage + response.usage


class Gateway:
    def __init__(
        self,
        *,
        settings: AiGatewaySettings,
        policy: SafetyPolicy,
        prices: PriceTable,
        providers: Mapping[str, Provider],
        store: CallStore,
        budgets: Budgets,
        tracer: trace.Tracer | None = None,
        page_tokens: pagination.PageTokens | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.prices = prices
        self.providers = dict(providers)
        self._store = store
        # Calls finishing together share one durable commit; every call still answers only after its own record
        # is stored.
        self._audit: GroupCommit[tuple[CallRecord, ReplayClaim | None], ReplayEntry | None] = GroupCommit(
            store.insert_many, "ai-audit"
        )
        self._budgets = budgets
        self._inflight: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._tracer = tracer or trace.get_tracer("custody.ai_gateway")
        self._page_tokens = page_tokens or pagination.PageTokens.ephemeral()
        self._default_provider = self._resolve_auto(settings.default_provider)

    # --- validation -----------------------------------------------------------------------------------------------

    def _resolve_auto(self, choice: str) -> str:
        if choice != "auto":
            return choice
        return "openai" if "openai" in self.providers else "local"

    def operation_defaults(self, name: str) -> tuple[OperationSettings, str, str]:
        """(settings, provider, model) an operation uses when the request leaves them empty."""
        operation = self.settings.operations[name]
        provider = self._resolve_auto(operation.provider if operation.provider != "auto" else self._default_provider)
        explicit = operation.provider != "auto" and operation.model
        model = operation.model if explicit else self._default_model(provider)
        return operation, provider, model

    def _default_model(self, provider: str) -> str:
        found = self.providers.get(provider)
        if found is not None:
            return found.default_model
        return self.settings.openai_model if provider == "openai" else self.settings.local_model

    def prepare(self, request: TextRequest) -> PreparedRequest:
        """Resolves defaults and checks every field; InvalidArgument lists all problems at once."""
        idempotency.validate_request_id(request.request_id)
        problems: list[FieldViolation] = []

        def bad(field_name: str, description: str) -> None:
            problems.append(FieldViolation(field_name, description))

        operation = self.settings.operations.get(request.operation)
        if operation is None:
            known = ", ".join(sorted(self.settings.operations))
            bad("operation", f"unknown operation {request.operation[:64]!r}; known: {known}")
            raise _invalid(problems)
        _, default_provider, default_model = self.operation_defaults(request.operation)
        category = request.category or operation.categories[0]
        if not self.policy.has_category(category):
            bad("category", f"unknown safety category {category[:64]!r}")
        elif category not in operation.categories:
            bad("category", f"{request.operation} allows categories {', '.join(operation.categories)}")
        provider = self._resolve_auto(request.provider) if request.provider else default_provider
        if provider not in KNOWN_PROVIDERS:
            bad("provider", f"unknown provider {request.provider[:64]!r}; known: {', '.join(KNOWN_PROVIDERS)}")
        model = request.model or (default_model if provider == default_provider else self._default_model(provider))
        if not MODEL_NAME.match(model):
            bad("model", "a model name is 1-128 letters, digits and ._:/@- characters")
        if not request.prompt.strip():
            bad("prompt", "must not be empty")
        temperature = operation.temperature if request.temperature is None else request.temperature
        if not (math.isfinite(temperature) and 0.0 <= temperature <= 2.0):
            bad("temperature", "must be between 0.0 and 2.0")
        max_tokens = request.max_tokens or min(operation.max_tokens, self.settings.max_tokens_limit)
        if not 1 <= max_tokens <= self.settings.max_tokens_limit:
            bad("max_tokens", f"must be between 1 and {self.settings.max_tokens_limit} (0 for the default)")
        if len(request.variant_seed) > MAX_VARIANT_SEED:
            bad("variant_seed", f"at most {MAX_VARIANT_SEED} characters")
        schema = self._schema(request.response_json_schema, bad)
        if problems:
            raise _invalid(problems)
        if provider not in self.providers:
            raise FailedPrecondition(
                "PROVIDER_NOT_CONFIGURED",
                f"provider {provider!r} is not configured on this gateway (no key); use another provider",
                metadata={"provider": provider},
            )
        fallbacks = tuple(p for p in operation.fallback_providers if p != provider and p in self.providers)
        return PreparedRequest(
            request, request.operation, category, provider, model, temperature, max_tokens, schema, fallbacks
        )

    def _schema(self, text: str, bad: Callable[[str, str], None]) -> dict[str, Any] | None:
        if not text:
            return None
        if len(text.encode("utf-8")) > self.settings.max_schema_bytes:
            bad("response_json_schema", f"at most {self.settings.max_schema_bytes} bytes")
            return None
        try:
            schema = loads_json(text, "response_json_schema")
        except json.JSONDecodeError as exc:
            bad("response_json_schema", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
            return None
        if not isinstance(schema, dict):
            bad("response_json_schema", "must be a JSON object (a JSON Schema)")
            return None
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            where = "/".join(str(p) for p in exc.path) or "(root)"
            bad("response_json_schema", f"not a valid JSON Schema (draft 2020-12) at {where}: {exc.message[:200]}")
            return None
        return schema

    # --- GenerateText ---------------------------------------------------------------------------------------------

    async def generate(self, request: TextRequest) -> CallResult:
        prepared = self.prepare(request)
        caller = call_context.require_principal()
        fingerprint = idempotency.fingerprint(request.fingerprint_fields())
        replay = await self._claim(caller.id, request.request_id, fingerprint)
        if replay is not None:
            return self._replayed(replay)
        try:
            return await self._generate(self._begin(prepared, caller, fingerprint, "GenerateText"))
        finally:
            self._release(caller.id, request.request_id)

    async def _generate(self, call: _Call) -> CallResult:
        reservation = await self._admit(call)
        try:
            with self._tracer.start_as_current_span("ai_gateway.generate") as span:
                await self._check_input(call)
                response = await self._complete(call, self._provider_request(call.prepared))
                content = await self._checked_output(call, response)
                if call.prepared.response_schema is not None:
                    problem = schema_problem(call.prepared.response_schema, content)
                    if problem is not None:  # one repair attempt, counted in attempts
                        repair = self._repair_request(call.prepared, content, problem)
                        response = await self._complete(call, repair)
                        content = await self._checked_output(call, response)
                        problem = schema_problem(call.prepared.response_schema, content)
                    if problem is not None:
                        raise _schema_failed(problem, repaired=True)
                    content = unfence(content)
                record = await self._record(call, Outcome.SUCCEEDED)
                _annotate(span, call, record)
                holder = await self._save(call, record, content)
            return self._replayed(holder) if holder is not None else CallResult(content, record)
        except BaseException as exc:
            await self._record_failure(call, exc)
            raise
        finally:
            self._settle(call, reservation)

    # --- StreamText -----------------------------------------------------------------------------------------------

    async def stream(self, request: TextRequest) -> AsyncIterator[StreamItem]:
        prepared = self.prepare(request)
        caller = call_context.require_principal()
        fingerprint = idempotency.fingerprint(request.fingerprint_fields())
        replay = await self._claim(caller.id, request.request_id, fingerprint)
        if replay is not None:
            result = self._replayed(replay)
            yield TextChunk(result.content, 0)
            yield result
            return
        try:
            async for item in self._stream(self._begin(prepared, caller, fingerprint, "StreamText")):
                yield item
        finally:
            self._release(caller.id, request.request_id)

    async def _stream(self, call: _Call) -> AsyncIterator[StreamItem]:
        reservation = await self._admit(call)
        try:
            await self._check_input(call)
            rules = self.policy.rules(call.prepared.category, Direction.OUTPUT)
            holdback = self.policy.holdback_chars
            request = self._provider_request(call.prepared)
            text, released, index = "", 0, 0
            error = ProviderError(ErrorKind.CONNECTION)
            for name, model, attempt, last in self._attempt_plan(call):
                provider = self.providers[name]
                call.provider, call.model = name, model
                call.attempts += 1
                received = finished = False
                try:
                    async with asyncio.timeout(self._remaining(call)):
                        async for event in provider.stream(replace(request, model=model), self._attempt_timeout(call)):
                            if isinstance(event, StreamFinished):
                                call.answered(event, text)
                                finished = True
                                break
                            received = True
                            text += event.text
                            # Check a window that reaches back `holdback` characters behind what was sent, and
                            # send only what lies `holdback` characters behind the end: a match shorter than the
                            # holdback is seen whole before any of it leaves the gateway.
                            if len(text) > rules.max_chars:
                                self._block(call, Verdict(False, "output.max_chars", "the response is too long"))
                            verdict = await self.policy.scan_async(
                                call.prepared.category, Direction.OUTPUT, text[max(0, released - holdback) :]
                            )
                            if not verdict.allowed:
                                call.response = text
                                self._block(call, verdict)
                            if len(text) - holdback > released:
                                yield TextChunk(text[released : len(text) - holdback], index)
                                index += 1
                                released = len(text) - holdback
                    if not finished:
                        raise ProviderError(ErrorKind.INTERRUPTED if received else ErrorKind.BAD_RESPONSE)
                    break
                except TimeoutError:
                    error = ProviderError(ErrorKind.TIMEOUT)
                except ProviderError as exc:
                    error = exc
                if received or error.kind is ErrorKind.INTERRUPTED:
                    call.response = text
                    call.usage_unknown = "the stream was cut; the provider may have charged for it"
                    raise _interrupted(call, error)
                await self._after_failed_attempt(call, error, attempt, last)
                if self._remaining(call) <= 0:
                    raise self._unavailable(call, error)
            else:
                raise self._unavailable(call, error)
            verdict = await self.policy.check_async(call.prepared.category, Direction.OUTPUT, {"response": text})
            if not verdict.allowed:
                self._block(call, verdict)
            if call.prepared.response_schema is not None:
                problem = schema_problem(call.prepared.response_schema, text)
                if problem is not None:  # chunks were sent already: no repair for streams
                    raise _schema_failed(problem, repaired=False)
            if len(text) > released:
                yield TextChunk(text[released:], index)
            record = await self._record(call, Outcome.SUCCEEDED)
            await self._save(call, record, text)  # chunks are out: a same-request race keeps this call's record
            yield CallResult(text, record)
        except BaseException as exc:
            await self._record_failure(call, exc)
            raise
        finally:
            self._settle(call, reservation)

    # --- steps shared by both -------------------------------------------------------------------------------------

    def _begin(self, prepared: PreparedRequest, caller: Principal, fingerprint: str, rpc: str) -> _Call:
        remaining = call_context.time_remaining()
        budget = self.settings.call_deadline_s if remaining is None else max(0.0, remaining - DEADLINE_MARGIN_S)
        now = time.monotonic()
        return _Call(
            prepared=prepared,
            caller=caller,
            rpc=rpc,
            request_sha256=fingerprint,
            call_id=new_id(CALL_ID_PREFIX),
            created_at=utcnow(),
            started=now,
            deadline=now + budget,
            provider=prepared.provider,
            model=prepared.model,
        )

    async def _admit(self, call: _Call) -> Reservation:
        """Rate limit and budget reservation: refusals here write no audit row (nothing was attempted)."""
        caller = call.caller.id
        self._budgets.admit_request(caller)
        prepared = call.prepared
        limit = self._budgets.limit_for(caller)
        if limit is None or (limit.tokens_per_day is None and limit.usd_per_day is None):
            return NO_RESERVATION
        prompt_tokens = approx_tokens(prepared.raw.prompt) + approx_tokens(prepared.raw.system_prompt)
        repairs = 2 if prepared.response_schema is not None else 1
        worst = Usage(prompt_tokens * repairs, 0, prepared.max_tokens * repairs)
        usd = None
        if self.prices.price(prepared.provider, prepared.model) is not None:
            usd = self.prices.estimate(prepared.provider, prepared.model, worst)
        return await self._budgets.reserve(caller, worst.total_tokens, usd)

    def _settle(self, call: _Call, reservation: Reservation) -> None:
        if reservation is NO_RESERVATION:
            return
        cost = self._cost(call)
        tokens = None if call.usage_unknown else call.usage.total_tokens
        usd = None if cost.estimate_usd is None else Decimal(str(cost.estimate_usd))
        self._budgets.settle(reservation, tokens, usd)

    async def _check_input(self, call: _Call) -> None:
        texts = {"prompt": call.prepared.raw.prompt}
        if call.prepared.raw.system_prompt:
            texts["system_prompt"] = call.prepared.raw.system_prompt
        verdict = await self.policy.check_async(call.prepared.category, Direction.INPUT, texts)
        if not verdict.allowed:
            self._block(call, verdict)

    async def _checked_output(self, call: _Call, response: ProviderResponse) -> str:
        verdict = await self.policy.check_async(
            call.prepared.category, Direction.OUTPUT, {"response": response.content}
        )
        if not verdict.allowed:
            self._block(call, verdict)
        return response.content

    def _block(self, call: _Call, verdict: Verdict) -> None:
        call.verdict = verdict
        raise FailedPrecondition(
            "SAFETY_BLOCKED",
            f"blocked by the safety policy ({call.prepared.category}, rule {verdict.rule_id}): {verdict.description}",
            metadata={
                "category": call.prepared.category,
                "rule_id": verdict.rule_id,
                "direction": verdict.rule_id.split(".", 1)[0],
                "policy_version": self.policy.version,
            },
        )

    def _provider_request(self, prepared: PreparedRequest) -> ProviderRequest:
        messages = []
        if prepared.raw.system_prompt:
            messages.append(Message("system", prepared.raw.system_prompt))
        messages.append(Message("user", prepared.raw.prompt))
        return ProviderRequest(
            operation=prepared.operation,
            model=prepared.model,
            messages=tuple(messages),
            temperature=prepared.temperature,
            max_tokens=prepared.max_tokens,
            variant_seed=prepared.raw.variant_seed,
            response_schema=prepared.response_schema,
        )

    def _repair_request(self, prepared: PreparedRequest, content: str, problem: str) -> ProviderRequest:
        request = self._provider_request(prepared)
        instruction = (
            f"Your previous answer does not satisfy the required JSON Schema: {problem}. "
            "Answer again with only the corrected JSON document, no commentary."
        )
        return replace(
            request, messages=(*request.messages, Message("assistant", content), Message("user", instruction))
        )

    def _attempt_plan(self, call: _Call) -> list[tuple[str, str, int, bool]]:
        """(provider, model, attempt index, last attempt of that provider) in order: the chosen provider, then
        each fallback with its default model."""
        plan = []
        for name in (call.prepared.provider, *call.prepared.fallbacks):
            model = call.prepared.model if name == call.prepared.provider else self.providers[name].default_model
            for attempt in range(self.settings.max_attempts):
                plan.append((name, model, attempt, attempt == self.settings.max_attempts - 1))
        return plan

    def _remaining(self, call: _Call) -> float:
        return call.deadline - time.monotonic()

    def _attempt_timeout(self, call: _Call) -> float:
        return max(0.001, min(self.settings.provider_timeout_s, self._remaining(call)))

    async def _complete(self, call: _Call, request: ProviderRequest) -> ProviderResponse:
        """One answer, retried on 429/5xx/timeouts with backoff (Retry-After honoured) inside the deadline, then
        from the fallbacks; PROVIDER_UNAVAILABLE or UPSTREAM_ERROR when none answers."""
        same_provider = call.attempts > 0  # a repair goes to whoever answered
        plan = [p for p in self._attempt_plan(call) if not same_provider or p[0] == call.provider]
        error = ProviderError(ErrorKind.CONNECTION)
        for name, model, attempt, last in plan:
            if same_provider:
                model = call.model
            call.provider, call.model = name, model
            if self._remaining(call) <= 0:
                break
            call.attempts += 1
            try:
                async with asyncio.timeout(self._remaining(call)):
                    response = await self.providers[name].complete(
                        replace(request, model=model), self._attempt_timeout(call)
                    )
                content = response.content
                call.answered(response, content)
                return response
            except TimeoutError:
                error = ProviderError(ErrorKind.TIMEOUT)
            except ProviderError as exc:
                error = exc
            await self._after_failed_attempt(call, error, attempt, last)
        raise self._unavailable(call, error)

    async def _after_failed_attempt(self, call: _Call, error: ProviderError, attempt: int, last: bool) -> None:
        """Raises for errors that are not retried; otherwise waits the backoff (or Retry-After) if it fits."""
        if error.kind is ErrorKind.TIMEOUT:
            call.usage_unknown = "an attempt timed out; the provider may have charged for it"
        if not error.retryable:
            raise Unavailable(
                "UPSTREAM_ERROR",
                f"provider {call.provider} answered with something unusable ({error.kind}"
                + (f", HTTP {error.status}" if error.status else "")
                + "); not retried",
                metadata=_error_metadata(call, error),
            )
        if last:
            return
        delay = error.retry_after_s
        if delay is None:
            ceiling = min(self.settings.backoff_max_s, self.settings.backoff_initial_s * 2**attempt)
            delay = ceiling * random.uniform(0.5, 1.0)
        if delay > self.settings.max_retry_wait_s or delay >= self._remaining(call):
            raise self._unavailable(call, error)
        await asyncio.sleep(delay)

    def _unavailable(self, call: _Call, error: ProviderError) -> CustodyError:
        if self._remaining(call) <= 0 and error.retry_after_s is None:
            return DeadlineExceeded(
                "DEADLINE_EXCEEDED",
                f"the deadline passed after {call.attempts} provider attempts",
                metadata=_error_metadata(call, error),
            )
        return Unavailable(
            "PROVIDER_UNAVAILABLE",
            f"provider {call.provider} is unavailable ({error.kind}"
            + (f", HTTP {error.status}" if error.status else "")
            + f") after {call.attempts} attempts",
            metadata=_error_metadata(call, error),
            retry_after_s=error.retry_after_s,
        )

    # --- records --------------------------------------------------------------------------------------------------

    def _cost(self, call: _Call) -> Cost:
        if call.attempts == 0:  # nothing was sent to a provider: a known zero
            return Cost(0.0, self.prices.version, call.provider, call.model, Usage())
        usage = None if call.usage_unknown else call.usage
        cost = self.prices.cost(call.provider, (call.answer_model, call.model), usage)
        if usage is None:
            return replace(cost, unpriced_reason=call.usage_unknown)
        return cost

    async def _record(self, call: _Call, outcome: Outcome, error: CustodyError | None = None) -> CallRecord:
        raw = call.prepared.raw
        cost = self._cost(call)
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
            price_table_version=self.prices.version,
            policy_version=self.policy.version,
        )
        verbose = self.settings.audit_verbose
        prompt, response = "", ""
        # A text the policy withheld (it holds a secret, or the checks could not tell) is not kept, even redacted.
        withheld = call.verdict.rule_id.split(".", 1)[0] if blocked and call.verdict and call.verdict.withhold else ""
        if verbose and withheld != "input":
            prompt = await self.policy.redact_async(raw.prompt)
            if raw.system_prompt:
                prompt = f"[system]\n{await self.policy.redact_async(raw.system_prompt)}\n[user]\n{prompt}"
        if verbose and withheld != "output" and call.response:
            response = await self.policy.redact_async(call.response)
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

    async def _save(self, call: _Call, record: CallRecord, content: str | None = None) -> ReplayEntry | None:
        """Stores the record (claiming the request_id on success) and writes the audit log line. Returns the
        result another replica stored first for the same request_id, if one did (REQUEST_ID_REUSED when that
        was a different request)."""
        claim = None
        if content is not None and record.idempotency_key:
            now_us = to_micros(utcnow())
            claim = ReplayClaim(content, now_us, now_us + int(self.settings.replay_retention_s * 1_000_000))
        call.recorded = True
        holder = await self._audit.submit_async((record, claim))
        _audit_log(record)
        if holder is not None:
            idempotency.ensure_same_request(record.idempotency_key, holder.request_sha256, record.request_sha256)
        return holder

    async def _record_failure(self, call: _Call, exc: BaseException) -> None:
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
            await self._save(call, await self._record(call, outcome, error))
        except Exception:
            log.exception("could not store the audit record of %s", call.name)

    # --- idempotent replay ----------------------------------------------------------------------------------------

    async def _claim(self, caller_id: str, key: str, fingerprint: str) -> ReplayEntry | None:
        """The stored result for a repeated key (or REQUEST_ID_REUSED); else reserves the key in this process so
        a concurrent duplicate waits for the first and then replays it instead of calling the provider twice."""
        if not key:
            return None
        slot = (caller_id, key)
        while (pending := self._inflight.get(slot)) is not None:
            await asyncio.shield(pending)
        self._inflight[slot] = asyncio.get_running_loop().create_future()
        try:
            entry = await asyncio.to_thread(self._store.find_replay, caller_id, key, now_us=to_micros(utcnow()))
            if entry is not None:
                idempotency.ensure_same_request(key, entry.request_sha256, fingerprint)
        except BaseException:
            self._release(caller_id, key)
            raise
        if entry is not None:
            self._release(caller_id, key)
        return entry

    def _release(self, caller_id: str, key: str) -> None:
        if not key:
            return
        pending = self._inflight.pop((caller_id, key), None)
        if pending is not None and not pending.done():
            pending.set_result(None)

    def _replayed(self, entry: ReplayEntry) -> CallResult:
        log.info(
            "ai call replayed",
            extra={"event": "ai_call_replayed", "call": entry.record.envelope.call},
        )
        return CallResult(entry.content, entry.record.replayed())

    # --- reads ----------------------------------------------------------------------------------------------------

    async def get_call(self, name: str) -> CallRecord:
        call_id = name.removeprefix(CALL_NAME_PREFIX)
        if not name.startswith(CALL_NAME_PREFIX) or not CALL_ID.match(call_id):
            raise InvalidArgument(
                "NAME_INVALID",
                "name must be calls/call_<32 hex digits>",
                violations=[FieldViolation("name", "must be calls/call_<32 hex digits>")],
            )
        record = await asyncio.to_thread(self._store.get, call_id)
        viewer = call_context.require_principal()
        if record is None or not _may_see(viewer, record):
            raise NotFound("CALL_NOT_FOUND", f"no call {name}", metadata={"name": name})
        return record

    async def list_calls(self, filters: ListFilters, page_size: int, page_token: str) -> CallPage:
        viewer = call_context.require_principal()
        if viewer.kind is PrincipalKind.SERVICE:
            if filters.caller and filters.caller != viewer.id:
                raise PermissionDenied(
                    "CALLER_FILTER_DENIED",
                    f"{viewer.id} may list only its own calls",
                    metadata={"principal": viewer.id},
                )
            filters = replace(filters, caller=viewer.id)
        if filters.start_us is not None and filters.end_us is not None and filters.start_us >= filters.end_us:
            raise InvalidArgument(
                "REQUEST_INVALID",
                "start_time must be before end_time",
                violations=[FieldViolation("end_time", "must be after start_time")],
            )
        size = pagination.page_size(page_size)
        key = filters.as_dict()
        cursor = self._page_tokens.decode(LIST_CALLS, page_token, key)
        after = (cursor.after[0], cursor.after[1]) if cursor else None
        rows = await asyncio.to_thread(self._store.list, filters, size + 1, after)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            token = self._page_tokens.encode(LIST_CALLS, [to_micros(last.envelope.created_at), last.call_id], key)
        return CallPage(rows, token)

    async def purge_replays(self) -> int:
        return await asyncio.to_thread(self._store.purge_replays, to_micros(utcnow()))

    async def close(self) -> None:
        for provider in self.providers.values():
            await provider.close()


def _may_see(viewer: Principal, record: CallRecord) -> bool:
    return viewer.kind is not PrincipalKind.SERVICE or record.envelope.caller.id == viewer.id


def _invalid(problems: list[FieldViolation]) -> InvalidArgument:
    return InvalidArgument(
        "REQUEST_INVALID", "; ".join(f"{p.field}: {p.description}" for p in problems), violations=problems
    )


def _error_metadata(call: _Call, error: ProviderError) -> dict[str, str]:
    metadata = {"provider": call.provider, "attempts": str(call.attempts), "kind": str(error.kind)}
    if error.status:
        metadata["upstream_status"] = str(error.status)
    return metadata


def _interrupted(call: _Call, error: ProviderError) -> Unavailable:
    return Unavailable(
        "STREAM_INTERRUPTED",
        f"the provider's stream ended before it finished ({error.kind}); not retried after the first chunk",
        metadata=_error_metadata(call, error),
    )


def _schema_failed(problem: str, *, repaired: bool) -> FailedPrecondition:
    after = " after one repair attempt" if repaired else " (streams are not repaired)"
    return FailedPrecondition(
        "SCHEMA_VALIDATION_FAILED",
        f"the response does not satisfy response_json_schema{after}: {problem}",
        metadata={"error": problem[:200]},
    )


def unfence(content: str) -> str:
    """The JSON inside a ```json fence, which models often add; the text itself otherwise."""
    match = _FENCED_JSON.match(content)
    return match.group(1) if match else content


def schema_problem(schema: dict[str, Any], content: str) -> str | None:
    """Why `content` is not a JSON document satisfying `schema` (path and failed keyword, never the values it
    holds), or None when it is."""
    try:
        document = json.loads(unfence(content))
    except ValueError as exc:
        return f"not JSON ({exc.msg} at line {getattr(exc, 'lineno', '?')} column {getattr(exc, 'colno', '?')})"
    try:
        error = best_match(Draft202012Validator(schema).iter_errors(document))
    except Exception:
        return "the schema could not be applied (an unresolvable $ref?)"
    if error is None:
        return None
    return f"at {error.json_path}: fails {error.validator!r}"


def _annotate(span: trace.Span, call: _Call, record: CallRecord) -> None:
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
