"""Staging: where received bytes wait, fsynced, until they are published under their digest or discarded.

A blob is complete or absent: uploads hash while they write a temporary file here, and a digest mismatch or an
oversize upload keeps nothing. Files a crashed process left behind are swept when a store starts."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from services.common.errors import FieldViolation, InvalidArgument, ResourceExhausted
from services.runs.blobs.uncached import UncachedFile

if TYPE_CHECKING:
    from services.runs.blobs.base import BlobStore

log = logging.getLogger("custody.runs.blobs")

STALE_UPLOAD_S = 3600


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


class BlobWriter:
    def __init__(self, store: BlobStore, path: Path) -> None:
        self._store = store
        self._path = path
        self._file = UncachedFile(path)
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
