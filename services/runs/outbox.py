"""Delivers outbox messages: writes to other services that a mint committed to, retried until they land.

The message and the run commit in one transaction, so neither exists without the other; delivery is at least
once, made exactly-once by the receiver's idempotency key. A message that the receiver refuses for good (bad
input) is marked FAILED with the reason, and shows on the run; one that cannot be delivered yet (receiver down)
waits with exponential backoff and goes as soon as the receiver is back.

What an operator watches (services/common/metrics.py): `custody.outbox.backlog`, the messages still to deliver,
read from the database when metrics are collected (so every replica reports the shared backlog), and
`custody.outbox.delivery.lag`, the time from a message's commit to its delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from services.common import call_context
from services.common.metrics import OUTBOX_BACKLOG, OUTBOX_DELIVERY_LAG, Reading
from services.runs.model import OutboxMessage
from services.runs.store import RunsStore

log = logging.getLogger("custody.runs.outbox")

BATCH = 50
# Long enough for one delivery attempt; a message claimed by a process that died is retried after it.
LEASE_S = 60.0
MAX_BACKOFF_S = 30.0


class RetryLater(Exception):
    """The receiver could not take the message now (unreachable, overloaded); try again later."""


class Refused(Exception):
    """The receiver refused the message for good; retrying would not help."""


Deliver = Callable[[OutboxMessage], Awaitable[str]]


def backoff_s(attempts: int) -> float:
    return float(min(MAX_BACKOFF_S, 0.5 * 2**attempts))


class OutboxDispatcher:
    def __init__(self, store: RunsStore, deliver: Deliver, clock: Callable[[], datetime], poll_s: float = 1.0) -> None:
        self._store = store
        self._deliver = deliver
        self._clock = clock
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        OUTBOX_BACKLOG.register(self.backlog)

    def backlog(self) -> Reading:
        """The backlog gauge's reading (called on the metrics thread when metrics are collected)."""
        return [(self._store.outbox_backlog(), {})]

    def wake(self) -> None:
        """Deliver now rather than at the next poll (called after a mint that wrote a message)."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run_forever(), name="runs-outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run_forever(self) -> None:
        while True:
            try:
                delivered = await self.deliver_due()
            except Exception:  # a database hiccup must not end delivery for the life of the process
                log.exception("outbox pass failed; retrying")
                delivered = 0
            if delivered:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_s)
            self._wake.clear()

    async def deliver_due(self) -> int:
        """One pass: claims due messages and attempts each; returns how many were attempted."""
        messages = await asyncio.to_thread(self._store.due_outbox, self._clock(), LEASE_S, BATCH)
        for message in messages:
            await asyncio.create_task(self._attempt(message))  # own task: its own call context
        return len(messages)

    async def _attempt(self, message: OutboxMessage) -> None:
        # Outgoing calls carry the request id of the mint that wrote the message.
        call_context.bind(request_id=message.request_id, principal=None, time_remaining=None)
        try:
            result = await self._deliver(message)
        except RetryLater as exc:
            retry_at = self._clock() + timedelta(seconds=backoff_s(message.attempts))
            log.info("outbox delivery deferred", extra={"outbox_message": message.message_id, "error": str(exc)})
            await asyncio.to_thread(self._store.outbox_failed, message.message_id, str(exc), retry_at)
        except Refused as exc:
            log.warning("outbox delivery refused", extra={"outbox_message": message.message_id, "error": str(exc)})
            await asyncio.to_thread(self._store.outbox_failed, message.message_id, str(exc), None)
        else:
            await asyncio.to_thread(self._store.outbox_delivered, message.message_id, result)
            lag_s = (self._clock() - message.created_at).total_seconds()
            OUTBOX_DELIVERY_LAG.record(max(0.0, lag_s), {"kind": message.kind})
