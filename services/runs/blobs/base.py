"""What both blob backends share: a blob is named by its sha256, received through staging, re-hashed before it is
served (corrupted bytes are DATA_LOSS and are never returned), and counted when newly stored
(`custody.blobs.stored`, in bytes, by backend)."""

from __future__ import annotations

import hashlib
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from services.common.errors import DataLoss, InvalidArgument
from services.common.hashing import is_sha256_hex
from services.common.metrics import BLOB_BYTES_STORED
from services.runs.blobs.staging import BlobWriter, PendingBlob, remove_later, sweep_staging

READ_CHUNK_BYTES = 1024 * 1024
# Blobs up to this size are verified and served from memory; larger ones from a private spool file.
IN_MEMORY_READ_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size_bytes: int


class BlobStore(ABC):
    """What both backends share: staging, hashing and verified reads. Subclasses store and fetch bytes."""

    backend: str  # the `backend` label of the stored-bytes counter

    def __init__(self, staging_dir: Path, max_blob_bytes: int) -> None:
        self.max_blob_bytes = max_blob_bytes
        self._tmp = staging_dir
        self._tmp.mkdir(parents=True, exist_ok=True)
        sweep_staging(self._tmp)

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    def publish(self, pending: PendingBlob) -> StoredBlob:
        """Makes a received blob readable under its digest (idempotent: the same bytes may already be there)."""
        if self._publish(pending):
            BLOB_BYTES_STORED.add(pending.size_bytes, {"backend": self.backend})
        return StoredBlob(pending.sha256, pending.size_bytes)

    @abstractmethod
    def _publish(self, pending: PendingBlob) -> bool:
        """Stores the pending blob unless its digest is stored already; True when this call stored it."""

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
        chunks = self._chunks_of(checked_digest(sha256))
        if chunks is None:
            return "BLOB_MISSING"
        return _copy_problem(chunks, sha256, size_bytes, lambda block: None)

    def read_verified(self, sha256: str, size_bytes: int | None = None) -> Iterator[bytes]:
        """The blob's bytes in chunks: exactly the bytes that were hashed. Storage is read once, into memory when
        the blob is small, else into a private staging file, and served only when it hashes to its digest; reading
        it again after the check could return other bytes (someone who can write to storage swapping them), and a
        verdict on those would name a digest it was not about. Corrupted or missing bytes are DATA_LOSS."""
        chunks = self._chunks_of(checked_digest(sha256))
        if chunks is None:
            raise _blob_problem(sha256, "BLOB_MISSING")
        if size_bytes is not None and size_bytes <= IN_MEMORY_READ_BYTES:
            held: list[bytes] = []
            _checked_copy(chunks, sha256, size_bytes, held.append)
            return iter(held)
        spool = self._tmp / f"upload-read-{secrets.token_hex(8)}"
        try:
            with spool.open("wb") as handle:
                _checked_copy(chunks, sha256, size_bytes, handle.write)
            checked = spool.open("rb")
        except BaseException:
            remove_later(spool)
            raise
        os.unlink(spool)  # the open handle keeps the bytes until they are served; nothing is left behind
        return file_chunks(checked)

    def read_all_verified(self, sha256: str, size_bytes: int | None = None) -> bytes:
        return b"".join(self.read_verified(sha256, size_bytes))


def _checked_copy(
    chunks: Iterator[bytes], sha256: str, size_bytes: int | None, sink: Callable[[bytes], object]
) -> None:
    """Copies the stored chunks to `sink` while hashing them; DATA_LOSS when they are not the blob."""
    if _copy_problem(chunks, sha256, size_bytes, sink) is not None:
        raise _blob_problem(sha256, "BLOB_CORRUPTED")


def _copy_problem(
    chunks: Iterator[bytes], sha256: str, size_bytes: int | None, sink: Callable[[bytes], object]
) -> str | None:
    """Hashes the stored chunks as it hands each to `sink`: None when they are the blob, else SIZE_MISMATCH (reading
    stops once they run past the expected size) or BLOB_CORRUPTED."""
    hasher = hashlib.sha256()
    size = 0
    for block in chunks:
        size += len(block)
        if size_bytes is not None and size > size_bytes:
            return "SIZE_MISMATCH"
        hasher.update(block)
        sink(block)
    if size_bytes is not None and size != size_bytes:
        return "SIZE_MISMATCH"
    return None if hasher.hexdigest() == sha256 else "BLOB_CORRUPTED"


def _blob_problem(sha256: str, reason: str) -> DataLoss:
    what = "missing" if reason == "BLOB_MISSING" else "corrupted"
    return DataLoss(
        reason,
        f"blob {sha256} is {what} in storage; it is not served. Restore it from a backup or re-upload it",
        metadata={"sha256": sha256},
    )


def checked_digest(sha256: str) -> str:
    if not is_sha256_hex(sha256):  # the digest becomes a path or a key: accept nothing else
        raise InvalidArgument("DIGEST_INVALID", f"not a sha256 digest: {sha256[:80]!r}")
    return sha256


def file_chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while block := handle.read(READ_CHUNK_BYTES):
            yield block
