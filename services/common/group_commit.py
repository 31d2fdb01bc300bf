"""Group commit: many concurrent writers, one durable commit.

Callers submit an item and wait until it is committed. A writer takes everything queued at that moment, up to a
limit, and applies it in a single transaction, so N concurrent writes cost one fsync instead of N. A lone writer
is committed at once: there is no added wait.

The writer is a thread by default. With `on_loop=True` it is a task on the caller's event loop that applies
batches inline: for an embedded database, whose commit is a short local write, that is cheaper than handing every
batch to a thread and back (async callers only).

A submitted item is committed whatever happens to its caller: cancelling an async caller stops its wait, never
the write (an audit record must not vanish because its client hung up).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 256


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        apply: Callable[[list[Item]], Sequence[Result | BaseException]],
        name: str,
        max_batch: int = MAX_BATCH,
        *,
        on_loop: bool = False,
    ) -> None:
        """`apply` commits a batch in one transaction and returns one result per item, in order (an exception
        as an item's result is raised to that item's caller alone); if `apply` raises, every item gets it."""
        self._apply = apply
        self._name = name
        self._max_batch = max_batch
        self._on_loop = on_loop
        self._queue: queue.SimpleQueue[tuple[Item, Future[Result]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def submit(self, item: Item) -> Result:
        """Blocks the calling thread until the item is committed."""
        if self._on_loop:
            raise RuntimeError(f"group commit {self._name} runs on the event loop: use submit_async")
        return self._enqueue(item).result()

    async def submit_async(self, item: Item) -> Result:
        """Waits on the event loop, holding no thread, until the item is committed."""
        if not self._on_loop:
            return await asyncio.shield(asyncio.wrap_future(self._enqueue(item)))
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush_on_loop())
        return await asyncio.shield(done)

    # ---- writer thread ---------------------------------------------------------------------------------------

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
            # Nothing here hands these futures out, so none can be cancelled; the check keeps the writer alive
            # if that ever changes.
            batch = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
            self._settle(batch)

    # ---- writer task on the event loop -----------------------------------------------------------------------

    async def _flush_on_loop(self) -> None:
        try:
            while self._pending:
                self._settle(self._next_batch())
                await asyncio.sleep(0)  # let the calls just committed answer before the next batch
        except asyncio.CancelledError:  # the loop is shutting down: what was submitted is still committed
            while self._pending:
                self._settle(self._next_batch())
            raise
        finally:
            self._flusher = None

    def _next_batch(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        return batch

    # ---- both --------------------------------------------------------------------------------------------------

    def _settle(self, batch: list[tuple[Item, Future[Result]]] | list[tuple[Item, asyncio.Future[Result]]]) -> None:
        if not batch:
            return
        try:
            results = self._apply([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"group commit {self._name}: {len(results)} results for {len(batch)} items")
        except BaseException as exc:  # handed to every waiting caller; the writer keeps going
            results = [exc] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
