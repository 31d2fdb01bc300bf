"""Group commit: many concurrent writers, one durable commit.

Callers submit an item and wait until it is committed. A writer takes everything queued at that moment, up to a
limit, and applies it in a single transaction, so N concurrent writes cost one fsync instead of N. A lone writer
is committed at once: there is no added wait.

The writer is a thread of its own, so an event loop whose calls submit items keeps serving while a batch waits for
its fsync (on a slow disk, a commit applied on the loop stalls every call the process serves).

Each batch's size and commit time are measured (`custody.group_commit.batch.size` and `.commit.duration`, labelled
with the group commit's name; services/common/metrics.py), which is how an operator sees the batching work.

A submitted item is committed whatever happens to its caller: cancelling an async caller stops its wait, never
the write (an audit record must not vanish because its client hung up). `close()` at shutdown refuses new items
and returns once every item submitted before it is committed.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

from services.common.metrics import GROUP_COMMIT_BATCH, GROUP_COMMIT_DURATION

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 256
_STOP = object()  # queued by close(): the writer commits what came before it and exits


class GroupCommitClosed(RuntimeError):
    """An item was submitted after close()."""


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        apply: Callable[[list[Item]], Sequence[Result | BaseException]],
        name: str,
        max_batch: int = MAX_BATCH,
    ) -> None:
        """`apply` commits a batch in one transaction and returns one result per item, in order (an exception
        as an item's result is raised to that item's caller alone); if `apply` raises, every item gets it."""
        self._apply = apply
        self._name = name
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[Item, Future[Result]] | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._attributes = {"group_commit": name}

    def submit(self, item: Item) -> Result:
        """Blocks the calling thread until the item is committed."""
        return self._enqueue(item).result()

    def submit_nowait(self, item: Item) -> Future[Result]:
        """Queues the item and returns at once: for a write nobody waits on (the future is done once it is
        committed, or holds the error)."""
        return self._enqueue(item)

    async def submit_async(self, item: Item) -> Result:
        """Waits on the event loop, holding no thread, until the item is committed."""
        return await asyncio.shield(asyncio.wrap_future(self._enqueue(item)))

    def close(self, timeout_s: float = 30.0) -> None:
        """Refuses new items; returns once everything submitted earlier is committed (or after `timeout_s`)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(_STOP)  # under the lock: after every item queued before close
        if thread is not None:
            thread.join(timeout_s)

    def _enqueue(self, item: Item) -> Future[Result]:
        future: Future[Result] = Future()
        with self._lock:
            if self._closed:
                raise GroupCommitClosed(f"group commit {self._name} is closed: the service is shutting down")
            self._queue.put((item, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._write_forever, name=self._name, daemon=True)
                self._thread.start()
        return future

    def _write_forever(self) -> None:
        stopping = False
        while not stopping:
            batch: list[tuple[Item, Future[Result]]] = []
            entry = self._queue.get()
            while True:
                if entry is _STOP:
                    stopping = True
                    break
                batch.append(entry)  # type: ignore[arg-type]
                if len(batch) >= self._max_batch:
                    break
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
            # Nothing here hands these futures out, so none can be cancelled; the check keeps the writer alive
            # if that ever changes.
            self._settle([(item, future) for item, future in batch if future.set_running_or_notify_cancel()])

    def _settle(self, batch: list[tuple[Item, Future[Result]]]) -> None:
        if not batch:
            return
        started = time.perf_counter()
        outcome = "committed"
        try:
            results = self._apply([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"group commit {self._name}: {len(results)} results for {len(batch)} items")
        except BaseException as exc:  # handed to every waiting caller; the writer keeps going
            results = [exc] * len(batch)
            outcome = "failed"
        GROUP_COMMIT_BATCH.record(len(batch), self._attributes)
        GROUP_COMMIT_DURATION.record(time.perf_counter() - started, {**self._attributes, "outcome": outcome})
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
