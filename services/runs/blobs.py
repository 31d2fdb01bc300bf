"""Content-addressed blob storage: a blob is named by its sha256.

Uploads hash while streaming into a local temporary file (fsynced); only then is the blob published under its
digest, so a blob is complete or absent, and a digest mismatch or an oversize upload stores nothing. Reads re-hash
before serving: corrupted bytes are DATA_LOSS and are never returned.

Two backends: the local filesystem (the default: rename into place, then fsync the directory), and the runs
database (chunks in a table), for several runs replicas that share a database but no filesystem.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import fcntl
import hashlib
import logging
import mmap
import os
import queue
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.common.errors import DataLoss, FieldViolation, InvalidArgument, ResourceExhausted
from services.common.hashing import is_sha256_hex
from services.runs import tables

log = logging.getLogger("custody.runs.blobs")

READ_CHUNK_BYTES = 1024 * 1024
STALE_UPLOAD_S = 3600


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class PendingBlob:
    """Bytes received and fsynced to a temporary file, with their digest; published or discarded next."""

    path: Path
    sha256: str
    size_bytes: int

    def discard(self) -> None:
        remove_later(self.path)


def remove_later(path: Path) -> None:
    """Removes a temporary file off the request path: on a filesystem mounted with online discard, unlinking a
    large fsynced file waits for the device to trim it (some 75 ms for 64 MiB here)."""
    _removals.put(path)
    global _remover
    if _remover is None:
        with _remover_lock:
            if _remover is None:
                _remover = threading.Thread(target=_remove_forever, name="blob-remover", daemon=True)
                _remover.start()
                atexit.register(_remove_remaining)


_removals: queue.SimpleQueue[Path] = queue.SimpleQueue()
_remover: threading.Thread | None = None
_remover_lock = threading.Lock()


def _remove_forever() -> None:
    while True:
        _remove(_removals.get())


def _remove_remaining() -> None:
    """At exit, what is still queued is removed before the process goes (the daemon thread would not finish)."""
    while True:
        try:
            _remove(_removals.get_nowait())
        except queue.Empty:
            return


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # a leftover in staging is harmless; say so and go on
        log.warning("could not remove temporary file %s: %s", path, exc)


def sweep_staging(staging_dir: Path, older_than_s: float = STALE_UPLOAD_S) -> int:
    """Removes upload files a crashed process left behind (untouched for `older_than_s`: a live upload writes
    every few milliseconds). Returns how many."""
    cutoff = time.time() - older_than_s
    removed = 0
    for leftover in staging_dir.glob("upload-*"):
        with contextlib.suppress(FileNotFoundError):
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
                removed += 1
    return removed


class _UncachedFile:
    """A new file written around the page cache (O_DIRECT) from one reused, aligned buffer.

    Large uploads are written once and rarely read back soon: through the page cache each would claim fresh
    memory pages (slow to obtain on virtual machines that hand free memory back to their host) and leave dirty
    data for writeback. Where a filesystem refuses O_DIRECT, ordinary writes. `close` makes it durable."""

    BLOCK = 4096
    BUFFER_BYTES = 1024 * 1024

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            self._buffer = self._go_direct()
        except BaseException:
            os.close(self._fd)
            raise
        self._filled = 0
        self._size = 0
        self.closed = False

    def _go_direct(self) -> mmap.mmap | None:
        """Switches the open file to O_DIRECT and returns the aligned buffer, or None where that is refused.
        (Opening with O_DIRECT would create the file before the filesystem could refuse the flag.)"""
        direct = getattr(os, "O_DIRECT", 0)
        if not direct:
            return None
        try:
            fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) | direct)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            return None
        return mmap.mmap(-1, self.BUFFER_BYTES)

    def write(self, data: bytes) -> None:
        self._size += len(data)
        if self._buffer is None:
            self._write_all(memoryview(data))
            return
        view = memoryview(data)
        while view:
            taken = min(len(view), self.BUFFER_BYTES - self._filled)
            self._buffer[self._filled : self._filled + taken] = view[:taken]
            self._filled += taken
            view = view[taken:]
            if self._filled == self.BUFFER_BYTES:
                self._write_all(memoryview(self._buffer))
                self._filled = 0

    def close(self) -> None:
        """Writes what is buffered (padded to a block, then cut back to the real size) and fsyncs."""
        try:
            if self._buffer is not None and self._filled:
                padded = -(-self._filled // self.BLOCK) * self.BLOCK
                self._buffer[self._filled : padded] = bytes(padded - self._filled)
                self._write_all(memoryview(self._buffer)[:padded])
                os.ftruncate(self._fd, self._size)
            os.fsync(self._fd)
        finally:
            self.abort()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._fd)
            if self._buffer is not None:
                self._buffer.close()

    def _write_all(self, view: memoryview) -> None:
        while view:
            view = view[os.write(self._fd, view) :]


class BlobWriter:
    def __init__(self, store: BlobStore, path: Path) -> None:
        self._store = store
        self._path = path
        self._file = _UncachedFile(path)
        self._hasher = hashlib.sha256()
        self.size_bytes = 0

    def write(self, chunk: bytes) -> None:
        self.count(chunk)
        self.hash(chunk)
        self.store(chunk)

    # The three steps of `write`, for callers that run hashing and storing side by side (StreamingUpload): each
    # step must still see the chunks in order.

    def count(self, chunk: bytes) -> None:
        """Refuses the chunk that would take the blob past the limit (before any work is spent on it)."""
        self.size_bytes += len(chunk)
        if self.size_bytes > self._store.max_blob_bytes:
            raise ResourceExhausted(
                "ATTACHMENT_TOO_LARGE",
                f"attachment exceeds the limit of {self._store.max_blob_bytes} bytes; nothing was stored",
                metadata={"limit_bytes": str(self._store.max_blob_bytes)},
            )

    def hash(self, chunk: bytes) -> None:
        self._hasher.update(chunk)

    def store(self, chunk: bytes) -> None:
        self._file.write(chunk)

    def finish(self, expected_sha256: str = "", field: str = "sha256") -> PendingBlob:
        """Makes the bytes durable (fsync); raises DIGEST_MISMATCH (and keeps nothing) when they are not the
        declared ones."""
        digest = self._hasher.hexdigest()
        if expected_sha256 and expected_sha256 != digest:
            self.abort()
            raise InvalidArgument(
                "DIGEST_MISMATCH",
                f"declared sha256 {expected_sha256} does not match the bytes received ({digest}); nothing stored",
                violations=[FieldViolation(field, "does not match the sha256 of the bytes")],
            )
        self._file.close()
        return PendingBlob(self._path, digest, self.size_bytes)

    def abort(self) -> None:
        self._file.abort()
        remove_later(self._path)


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


class BlobStore(ABC):
    """What both backends share: staging, hashing and verified reads. Subclasses store and fetch bytes."""

    def __init__(self, staging_dir: Path, max_blob_bytes: int) -> None:
        self.max_blob_bytes = max_blob_bytes
        self._tmp = staging_dir
        self._tmp.mkdir(parents=True, exist_ok=True)
        sweep_staging(self._tmp)

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    def publish(self, pending: PendingBlob) -> StoredBlob:
        """Makes a received blob readable under its digest (idempotent: the same bytes may already be there)."""

    @abstractmethod
    def _chunks_of(self, sha256: str) -> Iterator[bytes] | None:
        """The stored bytes in chunks, or None when nothing is stored under the digest."""

    def writer(self) -> BlobWriter:
        """A writer that hashes while it writes to a temporary file; nothing is visible until `publish`."""
        return BlobWriter(self, self._tmp / f"upload-{secrets.token_hex(8)}")

    def write(self, chunks: Iterable[bytes], expected_sha256: str = "", field: str = "sha256") -> PendingBlob:
        """Receives a whole stream into a pending blob (see BlobWriter)."""
        writer = self.writer()
        try:
            for chunk in chunks:
                writer.write(chunk)
            return writer.finish(expected_sha256, field)
        except BaseException:
            writer.abort()
            raise

    def verify(self, sha256: str, size_bytes: int | None = None) -> str | None:
        """None when the blob is intact, else the problem (BLOB_MISSING, SIZE_MISMATCH, BLOB_CORRUPTED)."""
        chunks = self._chunks_of(_checked(sha256))
        if chunks is None:
            return "BLOB_MISSING"
        hasher = hashlib.sha256()
        size = 0
        for block in chunks:
            hasher.update(block)
            size += len(block)
        if size_bytes is not None and size != size_bytes:
            return "SIZE_MISMATCH"
        return None if hasher.hexdigest() == sha256 else "BLOB_CORRUPTED"

    def read_verified(self, sha256: str, size_bytes: int | None = None) -> Iterator[bytes]:
        """The blob's bytes in chunks, after a full re-hash; DATA_LOSS instead of corrupted bytes."""
        problem = self.verify(sha256, size_bytes)
        if problem is not None:
            raise DataLoss(
                "BLOB_MISSING" if problem == "BLOB_MISSING" else "BLOB_CORRUPTED",
                f"blob {sha256} is {'missing' if problem == 'BLOB_MISSING' else 'corrupted'} in storage; "
                "it is not served. Restore it from a backup or re-upload it",
                metadata={"sha256": sha256},
            )
        chunks = self._chunks_of(sha256)
        if chunks is None:  # deleted between the check and the read
            raise DataLoss("BLOB_MISSING", f"blob {sha256} is missing in storage", metadata={"sha256": sha256})
        return chunks

    def read_all_verified(self, sha256: str, size_bytes: int | None = None) -> bytes:
        return b"".join(self.read_verified(sha256, size_bytes))


def _checked(sha256: str) -> str:
    if not is_sha256_hex(sha256):  # the digest becomes a path or a key: accept nothing else
        raise InvalidArgument("DIGEST_INVALID", f"not a sha256 digest: {sha256[:80]!r}")
    return sha256


class FilesystemBlobStore(BlobStore):
    """Blobs as files under root/sha256/ab/cd/<digest>."""

    def __init__(self, root: Path, max_blob_bytes: int) -> None:
        super().__init__(root / "tmp", max_blob_bytes)
        self.root = root

    def path_for(self, sha256: str) -> Path:
        sha256 = _checked(sha256)
        return self.root / "sha256" / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def publish(self, pending: PendingBlob) -> StoredBlob:
        """Atomic rename into place, then an fsync of the directory so the name survives a crash."""
        final = self.path_for(pending.sha256)
        if final.is_file():
            pending.discard()
            return StoredBlob(pending.sha256, pending.size_bytes)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(pending.path, final)
        directory = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return StoredBlob(pending.sha256, pending.size_bytes)

    def _chunks_of(self, sha256: str) -> Iterator[bytes] | None:
        path = self.path_for(sha256)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return None
        return _file_chunks(handle)


def _file_chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while block := handle.read(READ_CHUNK_BYTES):
            yield block


class DatabaseBlobStore(BlobStore):
    """Blobs as 1 MiB chunks in the runs database (table blob_chunks), shared by every runs replica."""

    def __init__(self, engine: sa.Engine, staging_dir: Path, max_blob_bytes: int) -> None:
        super().__init__(staging_dir, max_blob_bytes)
        self._engine = engine

    def exists(self, sha256: str) -> bool:
        with self._engine.connect() as connection:
            return self._stored(connection, _checked(sha256))

    @staticmethod
    def _stored(connection: sa.Connection, sha256: str) -> bool:
        query = sa.select(tables.blob_chunks.c.seq).where(
            tables.blob_chunks.c.sha256 == sha256, tables.blob_chunks.c.seq == 0
        )
        return connection.execute(query).first() is not None

    def publish(self, pending: PendingBlob) -> StoredBlob:
        """All chunks in one transaction: a concurrent publisher of the same bytes loses the race harmlessly."""
        try:
            with self._engine.begin() as connection:
                if not self._stored(connection, pending.sha256):
                    with pending.path.open("rb") as handle:
                        seq = 0
                        # Chunk 0 always exists (it marks the blob as stored, even when empty).
                        while (block := handle.read(READ_CHUNK_BYTES)) or seq == 0:
                            connection.execute(
                                tables.blob_chunks.insert(), {"sha256": pending.sha256, "seq": seq, "data": block}
                            )
                            seq += 1
        except IntegrityError:
            with self._engine.connect() as connection:
                if not self._stored(connection, pending.sha256):
                    raise
        pending.discard()
        return StoredBlob(pending.sha256, pending.size_bytes)

    def _chunks_of(self, sha256: str) -> Iterator[bytes] | None:
        if not self.exists(sha256):
            return None
        return self._database_chunks(sha256)

    def _database_chunks(self, sha256: str) -> Iterator[bytes]:
        """One chunk per query, so a 64 MiB blob never sits in memory whole."""
        seq = 0
        with self._engine.connect() as connection:
            while True:
                row = connection.execute(
                    sa.select(tables.blob_chunks.c.data).where(
                        tables.blob_chunks.c.sha256 == sha256, tables.blob_chunks.c.seq == seq
                    )
                ).first()
                if row is None:
                    return
                if row.data:
                    yield bytes(row.data)
                seq += 1
