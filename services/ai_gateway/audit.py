"""Group commit for audit records: calls finishing together share one transaction, so one durable commit
(an fsync with SQLite's synchronous=FULL) serves many calls, and every call still returns only after its own
record is stored. Under no load a batch is one record and nothing waits.
"""

from __future__ import annotations

import asyncio

from services.ai_gateway.model import CallRecord
from services.ai_gateway.store import CallStore, ReplayClaim, ReplayEntry

MAX_BATCH = 256

_Pending = tuple[CallRecord, ReplayClaim | None, "asyncio.Future[ReplayEntry | None]"]


class AuditWriter:
    def __init__(self, store: CallStore, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self._max_batch = max_batch
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, record: CallRecord, claim: ReplayClaim | None) -> ReplayEntry | None:
        """Stores the record (durably) and returns the holder of its claim if another call had it."""
        done: asyncio.Future[ReplayEntry | None] = asyncio.get_running_loop().create_future()
        self._pending.append((record, claim, done))
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush())
        # A caller that goes away does not take its record with it: the flusher writes it regardless.
        return await asyncio.shield(done)

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                try:
                    holders = await asyncio.to_thread(self._store.insert_many, [(r, c) for r, c, _ in batch])
                except Exception as exc:
                    for _, _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for (_, _, done), holder in zip(batch, holders, strict=True):
                    if not done.done():
                        done.set_result(holder)
        finally:
            self._flusher = None
