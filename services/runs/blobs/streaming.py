"""Streaming an upload from the event loop: hashing and storing on threads of their own while the loop receives
the next chunks."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable

from services.runs.blobs.staging import BlobWriter, PendingBlob


class StreamingUpload:
    """A BlobWriter fed from the event loop. Hashing and storing each run on a thread of their own, each seeing
    the chunks in order, while the loop receives the next ones: an upload goes at about the pace of its slowest
    step instead of all of them in turn, and the loop never waits per chunk. At most DEPTH chunks wait for either
    step (memory stays bounded); the loop stops receiving while that many do."""

    DEPTH = 8

    def __init__(self, writer: BlobWriter) -> None:
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._room = asyncio.Event()
        self._failure: BaseException | None = None
        self._finishing: asyncio.Future[PendingBlob] | None = None
        self._steps = [_Step(self, "upload-hash", writer.hash), _Step(self, "upload-store", writer.store)]

    async def write(self, chunk: bytes) -> None:
        if self._failure is not None:
            raise self._failure
        self._writer.count(chunk)
        for step in self._steps:
            step.put(chunk)
        while self._failure is None and any(step.waiting >= self.DEPTH for step in self._steps):
            self._room.clear()
            await self._room.wait()

    async def finish(self, expected_sha256: str, field: str) -> PendingBlob:
        """BlobWriter.finish once every chunk is hashed and stored."""
        await self._stop()
        if self._failure is not None:
            raise self._failure
        self._finishing = asyncio.ensure_future(asyncio.to_thread(self._writer.finish, expected_sha256, field))
        return await asyncio.shield(self._finishing)

    async def abort(self) -> None:
        """Waits for the work in hand (chunks, the final fsync: never removes a file under a running write), then
        removes the file. Shield it from cancellation, or a second cancel could leave the file behind."""
        await self._stop()
        if self._finishing is not None:
            await asyncio.gather(self._finishing, return_exceptions=True)
        self._writer.abort()

    async def _stop(self) -> None:
        for step in self._steps:
            step.put(None)
        await asyncio.shield(asyncio.gather(*(step.done for step in self._steps)))

    # Called on the loop by the steps' threads.

    def _progressed(self) -> None:
        if all(step.waiting < self.DEPTH // 2 for step in self._steps):
            self._room.set()

    def _failed(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._room.set()


class _Step:
    """One thread applying one function to every chunk, in order."""

    def __init__(self, upload: StreamingUpload, name: str, apply: Callable[[bytes], None]) -> None:
        self._upload = upload
        self._loop = upload._loop
        self._apply = apply
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.waiting = 0
        self.done: asyncio.Future[None] = self._loop.create_future()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def put(self, chunk: bytes | None) -> None:
        if chunk is not None:
            self.waiting += 1
        self._chunks.put(chunk)

    def _run(self) -> None:
        failed = False
        try:
            while (chunk := self._chunks.get()) is not None:
                if not failed:
                    try:
                        self._apply(chunk)
                    except BaseException as exc:  # reported on the loop; later chunks are drained, not applied
                        failed = True
                        self._loop.call_soon_threadsafe(self._upload._failed, exc)
                self._loop.call_soon_threadsafe(self._taken)
        finally:
            self._loop.call_soon_threadsafe(self._finished)

    def _taken(self) -> None:
        self.waiting -= 1
        self._upload._progressed()

    def _finished(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
