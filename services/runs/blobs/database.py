"""The database blob backend: blobs as chunks in the runs database, for several runs replicas that share a
database but no filesystem. The chunks themselves are read and written by chunk_store.BlobChunks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from services.runs.blobs.base import BlobStore, checked_digest, file_chunks
from services.runs.blobs.staging import PendingBlob
from services.runs.chunk_store import BlobChunks


class DatabaseBlobStore(BlobStore):
    """Blobs as 1 MiB chunks in the runs database (table blob_chunks), shared by every runs replica."""

    backend = "database"

    def __init__(self, engine: sa.Engine, staging_dir: Path, max_blob_bytes: int) -> None:
        super().__init__(staging_dir, max_blob_bytes)
        self._chunks = BlobChunks(engine)

    def exists(self, sha256: str) -> bool:
        return self._chunks.exists(checked_digest(sha256))

    def _publish(self, pending: PendingBlob) -> bool:
        """All chunks in one transaction: a concurrent publisher of the same bytes loses the race harmlessly."""
        stored = self._chunks.add(pending.sha256, _staged_chunks(pending.path))
        pending.discard()
        return stored

    def _chunks_of(self, sha256: str) -> Iterator[bytes] | None:
        if not self.exists(sha256):
            return None
        return self._chunks.read(sha256)


def _staged_chunks(path: Path) -> Iterator[bytes]:
    """The staged file in chunks, opened only when read (not at all when the blob is already stored)."""
    yield from file_chunks(path.open("rb"))
