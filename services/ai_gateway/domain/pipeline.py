"""The steps every governed call shares, text or image (pure domain logic, no grpc).

claim (validate first, then replay a repeated request_id) -> begin (the call's bookkeeping and deadline) ->
admit (rate limit and budget reservation: refusals write nothing) -> the call's own safety checks and provider
attempts (`attempt`, under the retry rules of domain/attempts.py) -> audit (domain/audit.py) -> settle (the
reservation becomes what the call cost, committed in the background: the call answers once its audit record is
durable). domain/gateway.py drives it for GenerateText and StreamText,
domain/images.py for GenerateImage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from opentelemetry import trace

from services.ai_gateway.budgets import NO_RESERVATION, Budgets, Reservation
from services.ai_gateway.domain.attempts import Attempts
from services.ai_gateway.domain.audit import Auditor
from services.ai_gateway.domain.calls import CallState, P
from services.ai_gateway.domain.config import GatewayConfig
from services.ai_gateway.domain.model import ImageRequest, TextRequest
from services.ai_gateway.domain.replay import Replays
from services.ai_gateway.domain.validation import validate_on_behalf_of
from services.ai_gateway.policy import SafetyPolicy
from services.ai_gateway.pricing import PriceTable
from services.ai_gateway.store import CallStore, ReplayEntry
from services.ai_gateway.transport.base import ErrorKind, Provider, ProviderError
from services.common import call_context, idempotency
from services.common.clock import utc_now
from services.common.identity import Principal
from services.common.ids import new_id
from services.common.resource_names import CALL_ID_PREFIX

# Time kept back from the caller's deadline to record the call and answer.
DEADLINE_MARGIN_S = 0.05

T = TypeVar("T")


class Pipeline:
    def __init__(
        self,
        *,
        config: GatewayConfig,
        policy: SafetyPolicy,
        prices: PriceTable,
        providers: Mapping[str, Provider],
        store: CallStore,
        budgets: Budgets,
        tracer: trace.Tracer,
    ) -> None:
        self.config = config
        self.tracer = tracer
        self.policy = policy
        self.prices = prices
        self.providers = providers
        self.audit = Auditor(config, policy, prices, store)
        self.replays = Replays(store)
        self._budgets = budgets

    async def claim(self, request: TextRequest | ImageRequest) -> tuple[Principal, str, ReplayEntry | None]:
        """(caller, request fingerprint, the stored result of a repeated request_id or None). Without a stored
        result the key stays reserved in this process until `release`. A caller that may not name the person it
        calls for (on_behalf_of) is refused first, before anything is written."""
        caller = call_context.require_principal()
        validate_on_behalf_of(request.on_behalf_of, caller)
        fingerprint = idempotency.fingerprint(request.fingerprint_fields())
        return caller, fingerprint, await self.replays.claim(caller.id, request.request_id, fingerprint)

    def release(self, caller: Principal, request: TextRequest | ImageRequest) -> None:
        self.replays.release(caller.id, request.request_id)

    def begin(self, prepared: P, caller: Principal, fingerprint: str, rpc: str) -> CallState[P]:
        remaining = call_context.time_remaining()
        budget = self.config.call_deadline_s if remaining is None else max(0.0, remaining - DEADLINE_MARGIN_S)
        now = time.monotonic()
        return CallState(
            prepared=prepared,
            caller=caller,
            rpc=rpc,
            request_sha256=fingerprint,
            call_id=new_id(CALL_ID_PREFIX),
            created_at=utc_now(),
            started=now,
            deadline=now + budget,
            provider=prepared.provider,
            model=prepared.model,
        )

    async def admit(self, call: CallState[Any], worst_case: Callable[[], tuple[int, Decimal | None]]) -> Reservation:
        """Rate limit and budget reservation: refusals here write no audit row (nothing was attempted).
        `worst_case` gives the call's most tokens and USD (None: unpriced), asked only when a budget applies."""
        return await self._budgets.admit(call.caller.id, call.call_id, call.remaining(), worst_case)

    async def settle(self, call: CallState[Any], reservation: Reservation) -> None:
        if reservation is NO_RESERVATION:
            return
        cost = self.audit.cost(call)
        tokens = None if call.usage_unknown else call.usage.total_tokens
        usd = None if cost.estimate_usd is None else Decimal(str(cost.estimate_usd))
        await self._budgets.settle(reservation, tokens, usd)

    async def attempt(
        self, call: CallState[Any], send: Callable[[Provider, float], Awaitable[T]], *, repair: bool = False
    ) -> T:
        """One answer from `send(provider, timeout_s)` under the retry rules of domain/attempts.py (`call.model`
        names the model of each attempt); a repair goes to whoever answered."""
        attempts = Attempts(call, self.providers, self.config, repair=repair)
        for provider in attempts:
            try:
                async with asyncio.timeout(call.remaining()):
                    return await send(provider, attempts.timeout_s())
            except TimeoutError:
                await attempts.failed(ProviderError(ErrorKind.TIMEOUT))
            except ProviderError as exc:
                await attempts.failed(exc)
        raise attempts.exhausted()
