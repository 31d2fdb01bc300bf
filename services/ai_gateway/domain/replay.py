"""Idempotent replay: a repeated request_id answers with the stored result instead of calling a provider again.

Across replicas the store's replay table decides (its primary key makes concurrent claims converge on one
winner, see store.py); within one process a duplicate that arrives while the first is still running waits for
it and then replays its result.
"""

from __future__ import annotations

import asyncio
import logging

from services.ai_gateway.domain.model import CallResult
from services.ai_gateway.store import CallStore, ReplayEntry
from services.common import idempotency
from services.common.clock import to_us, utc_now

log = logging.getLogger("custody.ai_gateway.audit")


class Replays:
    def __init__(self, store: CallStore) -> None:
        self._store = store
        self._inflight: dict[tuple[str, str], asyncio.Future[None]] = {}

    async def claim(self, caller_id: str, key: str, fingerprint: str) -> ReplayEntry | None:
        """The stored result for a repeated key (or REQUEST_ID_REUSED); else reserves the key in this process so
        a concurrent duplicate waits for the first and then replays it instead of calling the provider twice.
        A reserved key must be given back with `release` once the call is recorded."""
        if not key:
            return None
        slot = (caller_id, key)
        while (pending := self._inflight.get(slot)) is not None:
            await asyncio.shield(pending)
        self._inflight[slot] = asyncio.get_running_loop().create_future()
        try:
            entry = await asyncio.to_thread(self._store.find_replay, caller_id, key, now_us=to_us(utc_now()))
            if entry is not None:
                idempotency.ensure_same_request(key, entry.request_sha256, fingerprint)
        except BaseException:
            self.release(caller_id, key)
            raise
        if entry is not None:
            self.release(caller_id, key)
        return entry

    def release(self, caller_id: str, key: str) -> None:
        if not key:
            return
        pending = self._inflight.pop((caller_id, key), None)
        if pending is not None and not pending.done():
            pending.set_result(None)


def log_replayed(entry: ReplayEntry) -> None:
    log.info(
        "ai call replayed",
        extra={"event": "ai_call_replayed", "call": entry.record.envelope.call},
    )


def replayed(entry: ReplayEntry) -> CallResult:
    log_replayed(entry)
    return CallResult(entry.content, entry.record.replayed(), entry.ledger)
