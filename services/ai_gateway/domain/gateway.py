"""The governed AI call: one path for every GenerateText, StreamText and GenerateImage (pure domain logic, no grpc).

validate (bad input writes nothing) -> replay a repeated request_id -> rate limit and budget reservation ->
input safety check (blocks are audited) -> provider attempts with retries and fallbacks inside the caller's
deadline (domain/attempts.py) -> output safety and JSON-schema checks (one repair attempt; streams are held
back by domain/stream_guard.py) -> price -> audit row + JSON log line (domain/audit.py).
Every call that reaches the safety check is audited, whatever its outcome. The steps text and images share live
in domain/pipeline.py; this module drives them for text, domain/images.py for images.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from decimal import Decimal

from opentelemetry import trace

from services.ai_gateway.budgets import Budgets, Reservation
from services.ai_gateway.domain import safety
from services.ai_gateway.domain.attempts import Attempts, error_metadata
from services.ai_gateway.domain.audit import annotate
from services.ai_gateway.domain.calls import CallState
from services.ai_gateway.domain.config import GatewayConfig, ImageModel, ImageOperation, Operation
from services.ai_gateway.domain.images import ImageCalls
from services.ai_gateway.domain.model import (
    AuditedCall,
    CallPage,
    CallResult,
    ImageRequest,
    ImageResult,
    ListFilters,
    Outcome,
    PreparedRequest,
    StreamItem,
    TextChunk,
    TextRequest,
)
from services.ai_gateway.domain.pipeline import Pipeline
from services.ai_gateway.domain.queries import CallQueries
from services.ai_gateway.domain.replay import replayed
from services.ai_gateway.domain.stream_guard import StreamGuard
from services.ai_gateway.domain.tokens import approx_tokens
from services.ai_gateway.domain.validation import Validator, schema_failed, schema_problem, unfence
from services.ai_gateway.policy import SafetyPolicy
from services.ai_gateway.pricing import PriceTable
from services.ai_gateway.store import CallStore
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
from services.common import pagination
from services.common.errors import Unavailable

TextCall = CallState[PreparedRequest]


class Gateway:
    def __init__(
        self,
        *,
        config: GatewayConfig,
        policy: SafetyPolicy,
        prices: PriceTable,
        providers: Mapping[str, Provider],
        store: CallStore,
        budgets: Budgets,
        tracer: trace.Tracer | None = None,
        page_tokens: pagination.PageTokens | None = None,
    ) -> None:
        self.config = config
        self.policy = policy
        self.prices = prices
        self.providers = dict(providers)
        self._validator = Validator(config, policy, self.providers)
        self._tracer = tracer or trace.get_tracer("custody.ai_gateway")
        self._pipeline = Pipeline(
            config=config,
            policy=policy,
            prices=prices,
            providers=self.providers,
            store=store,
            budgets=budgets,
            tracer=self._tracer,
        )
        self._audit = self._pipeline.audit
        self._images = ImageCalls(self._pipeline, self._validator)
        self._queries = CallQueries(store, page_tokens or pagination.PageTokens.ephemeral())

    def operation_defaults(self, name: str) -> tuple[Operation, str, str]:
        """(operation, provider, model) an operation uses when the request leaves them empty."""
        return self._validator.operation_defaults(name)

    def image_operation_defaults(self, name: str) -> tuple[ImageOperation, str, str, ImageModel | None]:
        """(image operation, provider, model, what that model can make) when the request leaves them empty."""
        return self._validator.image_operation_defaults(name)

    # --- GenerateImage (domain/images.py) ---------------------------------------------------------------------------

    async def generate_image(self, request: ImageRequest) -> ImageResult:
        return await self._images.generate(request)

    # --- GenerateText ---------------------------------------------------------------------------------------------

    async def generate(self, request: TextRequest) -> CallResult:
        prepared = self._validator.prepare(request)
        caller, fingerprint, replay = await self._pipeline.claim(request)
        if replay is not None:
            return replayed(replay)
        try:
            return await self._generate(self._pipeline.begin(prepared, caller, fingerprint, "GenerateText"))
        finally:
            self._pipeline.release(caller, request)

    async def _generate(self, call: TextCall) -> CallResult:
        reservation = await self._admit(call)
        try:
            with self._tracer.start_as_current_span("ai_gateway.generate") as span:
                await safety.check_input(self.policy, call)
                response = await self._complete(call, self._provider_request(call.prepared))
                content = await safety.check_output(self.policy, call, response.content)
                if call.prepared.response_schema is not None:
                    problem = schema_problem(call.prepared.response_schema, content)
                    if problem is not None:  # one repair attempt, counted in attempts
                        repair = self._repair_request(call.prepared, content, problem)
                        response = await self._complete(call, repair, repair=True)
                        content = await safety.check_output(self.policy, call, response.content)
                        problem = schema_problem(call.prepared.response_schema, content)
                    if problem is not None:
                        raise schema_failed(problem, repaired=True)
                    content = unfence(content)
                record = await self._audit.record(call, Outcome.SUCCEEDED)
                annotate(span, call, record)
                stored = await self._audit.save(call, record, content)
            if stored.holder is not None:
                return replayed(stored.holder)
            return CallResult(content, record, stored.ledger)
        except BaseException as exc:
            await self._audit.record_failure(call, exc)
            raise
        finally:
            await self._pipeline.settle(call, reservation)

    async def _complete(self, call: TextCall, request: ProviderRequest, *, repair: bool = False) -> ProviderResponse:
        """One answer under the retry rules of domain/attempts.py; a repair goes to whoever answered."""

        async def send(provider: Provider, timeout_s: float) -> ProviderResponse:
            return await provider.complete(replace(request, model=call.model), timeout_s)

        response = await self._pipeline.attempt(call, send, repair=repair)
        call.answered(response, response.content)
        return response

    # --- StreamText -----------------------------------------------------------------------------------------------

    async def stream(self, request: TextRequest) -> AsyncIterator[StreamItem]:
        prepared = self._validator.prepare(request)
        caller, fingerprint, replay = await self._pipeline.claim(request)
        if replay is not None:
            result = replayed(replay)
            yield TextChunk(result.content, 0)
            yield result
            return
        try:
            async for item in self._stream(self._pipeline.begin(prepared, caller, fingerprint, "StreamText")):
                yield item
        finally:
            self._pipeline.release(caller, request)

    async def _stream(self, call: TextCall) -> AsyncIterator[StreamItem]:
        reservation = await self._admit(call)
        try:
            await safety.check_input(self.policy, call)
            guard = StreamGuard(self.policy, call)
            request = self._provider_request(call.prepared)
            text = ""
            # The retry rules of domain/attempts.py, plus one: an attempt that sent a chunk is not retried.
            attempts = Attempts(call, self.providers, self.config)
            for provider in attempts:
                received = finished = False
                try:
                    async with asyncio.timeout(call.remaining()):
                        async for event in provider.stream(replace(request, model=call.model), attempts.timeout_s()):
                            if isinstance(event, StreamFinished):
                                call.answered(event, text)
                                finished = True
                                break
                            received = True
                            text += event.text
                            chunk = await guard.scan(text)
                            if chunk is not None:
                                yield chunk
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
                await attempts.failed(error)
            else:
                raise attempts.exhausted()
            text = await safety.check_output(self.policy, call, text)
            if call.prepared.response_schema is not None:
                problem = schema_problem(call.prepared.response_schema, text)
                if problem is not None:  # chunks were sent already: no repair for streams
                    raise schema_failed(problem, repaired=False)
            rest = guard.rest(text)
            if rest is not None:
                yield rest
            record = await self._audit.record(call, Outcome.SUCCEEDED)
            # Chunks are out: a same-request race keeps this call's record.
            stored = await self._audit.save(call, record, text)
            yield CallResult(text, record, stored.ledger)
        except BaseException as exc:
            await self._audit.record_failure(call, exc)
            raise
        finally:
            await self._pipeline.settle(call, reservation)

    # --- steps of text calls -------------------------------------------------------------------------------------

    async def _admit(self, call: TextCall) -> Reservation:
        def worst_case() -> tuple[int, Decimal | None]:
            prepared = call.prepared
            prompt_tokens = approx_tokens(prepared.raw.prompt) + approx_tokens(prepared.raw.system_prompt)
            repairs = 2 if prepared.response_schema is not None else 1
            worst = Usage(prompt_tokens * repairs, 0, prepared.max_tokens * repairs)
            if self.prices.price(prepared.provider, prepared.model) is None:
                return worst.total_tokens, None
            return worst.total_tokens, self.prices.estimate(prepared.provider, prepared.model, worst)

        return await self._pipeline.admit(call, worst_case)

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

    # --- reads ----------------------------------------------------------------------------------------------------

    async def get_call(self, name: str) -> AuditedCall:
        return await self._queries.get_call(name)

    async def list_calls(self, filters: ListFilters, page_size: int, page_token: str) -> CallPage:
        return await self._queries.list_calls(filters, page_size, page_token)

    async def purge_replays(self) -> int:
        return await self._queries.purge_replays()

    async def close(self) -> None:
        """At shutdown, after the server drained: every audit record queued is committed before providers close."""
        await self._audit.close()
        for provider in self.providers.values():
            await provider.close()


def _interrupted(call: TextCall, error: ProviderError) -> Unavailable:
    return Unavailable(
        "STREAM_INTERRUPTED",
        f"the provider's stream ended before it finished ({error.kind}); not retried after the first chunk",
        metadata=error_metadata(call, error),
    )
