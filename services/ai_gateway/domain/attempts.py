"""The provider attempts of one call, and the retry rules both GenerateText and StreamText follow.

Order: the chosen provider with the request's model, then each configured fallback of the operation with its
default model; each gets up to `max_attempts` attempts. A schema repair goes only to the provider and model
that answered, with attempts of its own.

Deadline: the call's deadline (the caller's, less a margin to record the call; `call_deadline_s` when the
caller sent none) bounds everything. No attempt starts once it has passed: the call fails DEADLINE_EXCEEDED,
naming the provider last tried. Each attempt is cut at the deadline and given min(provider_timeout_s, time
left) as its own timeout.

Which errors retry: rate limited (429), server errors (5xx), timeouts and connection failures
(transport.base.RETRYABLE). Anything else (a rejected request, an unusable answer) fails at once with
UPSTREAM_ERROR, with no fallback. A timed-out attempt may have been charged, so the call's usage becomes unknown.

Backoff, between attempts of one provider only (a fallback starts at once): the provider's Retry-After when it
sent one, else a random wait between half and all of min(backoff_max_s, backoff_initial_s * 2**attempt). A wait
longer than max_retry_wait_s, or that does not fit in the time left, is not made: the call fails at once with
PROVIDER_UNAVAILABLE (carrying the Retry-After as RetryInfo), or DEADLINE_EXCEEDED when time ran out.

Budgets: every attempt counts in the record's `attempts` and adds its usage, all inside the one reservation
the call made before its first attempt (services/ai_gateway/budgets.py); nothing here reserves again.

Streams add one rule of their own (domain/gateway.py): an attempt that already sent a chunk is never retried.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator, Mapping
from typing import Any

from services.ai_gateway.domain.calls import CallState
from services.ai_gateway.domain.config import GatewayConfig
from services.ai_gateway.transport.base import ErrorKind, Provider, ProviderError
from services.common.errors import CustodyError, DeadlineExceeded, Unavailable


class Attempts:
    """Iterating yields the provider of each attempt in turn, with `call.provider`, `call.model` and
    `call.attempts` already updated; report each failure with `await failed(error)`, which raises when the call
    must stop there or waits the backoff. When the iteration ends, raise `exhausted()`.

        attempts = Attempts(call, providers, config)
        for provider in attempts:
            try:
                return await provider.complete(request, attempts.timeout_s())  # bounded by call.remaining()
            except ProviderError as exc:
                await attempts.failed(exc)
        raise attempts.exhausted()
    """

    def __init__(
        self, call: CallState[Any], providers: Mapping[str, Provider], config: GatewayConfig, *, repair: bool = False
    ) -> None:
        self._call = call
        self._providers = providers
        self._config = config
        self._repair = repair
        # What exhaustion reports when the deadline passed before any attempt.
        self.error = ProviderError(ErrorKind.CONNECTION)
        self._index = 0
        self._last = False

    def __iter__(self) -> Iterator[Provider]:
        call, max_attempts = self._call, self._config.max_attempts
        names = (call.provider,) if self._repair else (call.prepared.provider, *call.prepared.fallbacks)
        for name in names:
            if self._repair:
                model = call.model
            elif name == call.prepared.provider:
                model = call.prepared.model
            else:
                model = self._providers[name].default_model
            for index in range(max_attempts):
                if call.remaining() <= 0:
                    return
                call.provider, call.model = name, model
                call.attempts += 1
                self._index, self._last = index, index == max_attempts - 1
                yield self._providers[name]

    def timeout_s(self) -> float:
        """The current attempt's own timeout, passed to the provider."""
        return max(0.001, min(self._config.provider_timeout_s, self._call.remaining()))

    async def failed(self, error: ProviderError) -> None:
        """Raises for errors that are not retried; otherwise waits the backoff (or Retry-After) if it fits."""
        self.error = error
        call, config = self._call, self._config
        if error.kind is ErrorKind.TIMEOUT:
            call.usage_unknown = "an attempt timed out; the provider may have charged for it"
        if not error.retryable:
            raise Unavailable(
                "UPSTREAM_ERROR",
                f"provider {call.provider} answered with something unusable ({error.kind}"
                + (f", HTTP {error.status}" if error.status else "")
                + "); not retried",
                metadata=error_metadata(call, error),
            )
        if self._last:
            return
        delay = error.retry_after_s
        if delay is None:
            ceiling = min(config.backoff_max_s, config.backoff_initial_s * 2**self._index)
            delay = ceiling * random.uniform(0.5, 1.0)
        if delay > config.max_retry_wait_s or delay >= call.remaining():
            raise self.exhausted()
        await asyncio.sleep(delay)

    def exhausted(self) -> CustodyError:
        """The error of a call no attempt answered."""
        call, error = self._call, self.error
        if call.remaining() <= 0 and error.retry_after_s is None:
            return DeadlineExceeded(
                "DEADLINE_EXCEEDED",
                f"the deadline passed after {call.attempts} provider attempts",
                metadata=error_metadata(call, error),
            )
        return Unavailable(
            "PROVIDER_UNAVAILABLE",
            f"provider {call.provider} is unavailable ({error.kind}"
            + (f", HTTP {error.status}" if error.status else "")
            + f") after {call.attempts} attempts",
            metadata=error_metadata(call, error),
            retry_after_s=error.retry_after_s,
        )


def error_metadata(call: CallState[Any], error: ProviderError) -> dict[str, str]:
    metadata = {"provider": call.provider, "attempts": str(call.attempts), "kind": str(error.kind)}
    if error.status:
        metadata["upstream_status"] = str(error.status)
    return metadata
