"""Group commit: many concurrent writers, one durable commit.

Callers (worker threads) submit an item and block until it is committed. One writer thread takes everything
queued at that moment, up to a limit, and applies it in a single transaction, so N concurrent writes cost one
fsync instead of N. A lone writer is committed at once: there is no added wait.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 256


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self, apply: Callable[[list[Item]], list[Result | BaseException]], name: str, max_batch: int = MAX_BATCH
    ) -> None:
        """`apply` commits a batch in one transaction and returns one result per item, in order (an exception
        as an item's result is raised to that item's caller alone); if `apply` raises, every item gets it."""
        self._apply = apply
        self._name = name
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[Item, Future[Result]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, item: Item) -> Result:
        """Blocks the calling thread until the item is committed."""
        return self._enqueue(item).result()

    async def submit_async(self, item: Item) -> Result:
        """Waits on the event loop, holding no thread, until the item is committed. Cancelling the caller drops
        the item if the writer has not taken it yet; otherwise it is committed all the same."""
        return await asyncio.wrap_future(self._enqueue(item))

    def _enqueue(self, item: Item) -> Future[Result]:
        future: Future[Result] = Future()
        self._queue.put((item, future))
        self._ensure_writer()
        return future

    def _ensure_writer(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._write_forever, name=self._name, daemon=True)
                self._thread.start()

    def _write_forever(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # A submission its caller cancelled before the writer took it is dropped; once taken, it is written
            # and no longer cancellable, so its caller's cancellation can never stop the writer.
            batch = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
            if not batch:
                continue
            items = [item for item, _ in batch]
            try:
                results = self._apply(items)
            except BaseException as exc:  # handed to every waiting caller; the writer keeps going
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
