"""Content-addressed blob storage: a blob is named by its sha256.

Uploads hash while streaming into a local temporary file (fsynced); only then is the blob published under its
digest, so a blob is complete or absent, and a digest mismatch or an oversize upload stores nothing. Reads re-hash
before serving: corrupted bytes are DATA_LOSS and are never returned.

Two backends: the local filesystem (the default: rename into place, then fsync the directory), and the runs
database (chunks in a table), for several runs replicas that share a database but no filesystem.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.common.errors import DataLoss, FieldViolation, InvalidArgument, ResourceExhausted
from services.common.hashing import is_sha256_hex
from services.runs import tables

READ_CHUNK_BYTES = 1024 * 1024
EARLY_SYNC_BYTES = 8 * 1024 * 1024


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
        self.path.unlink(missing_ok=True)


class BlobWriter:
    def __init__(self, store: BlobStore, path: Path) -> None:
        self._store = store
        self._path = path
        self._handle = path.open("wb")
        self._hasher = hashlib.sha256()
        self.size_bytes = 0
        self._synced = 0

    def write(self, chunk: bytes) -> None:
        self.size_bytes += len(chunk)
        if self.size_bytes > self._store.max_blob_bytes:
            raise ResourceExhausted(
                "ATTACHMENT_TOO_LARGE",
                f"attachment exceeds the limit of {self._store.max_blob_bytes} bytes; nothing was stored",
                metadata={"limit_bytes": str(self._store.max_blob_bytes)},
            )
        self._hasher.update(chunk)
        self._handle.write(chunk)
        if self.size_bytes - self._synced >= EARLY_SYNC_BYTES:
            # Flush to disk while the rest is still arriving, so the final fsync has little left to do.
            self._handle.flush()
            os.fdatasync(self._handle.fileno())
            self._synced = self.size_bytes

    def finish(self, expected_sha256: str = "", field: str = "sha256") -> PendingBlob:
        """Flushes and fsyncs; raises DIGEST_MISMATCH (and keeps nothing) when the bytes are not the declared ones."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        digest = self._hasher.hexdigest()
        if expected_sha256 and expected_sha256 != digest:
            self.abort()
            raise InvalidArgument(
                "DIGEST_MISMATCH",
                f"declared sha256 {expected_sha256} does not match the bytes received ({digest}); nothing stored",
                violations=[FieldViolation(field, "does not match the sha256 of the bytes")],
            )
        return PendingBlob(self._path, digest, self.size_bytes)

    def abort(self) -> None:
        if not self._handle.closed:
            self._handle.close()
        self._path.unlink(missing_ok=True)


class BlobStore(ABC):
    """What both backends share: staging, hashing and verified reads. Subclasses store and fetch bytes."""

    def __init__(self, staging_dir: Path, max_blob_bytes: int) -> None:
        self.max_blob_bytes = max_blob_bytes
        self._tmp = staging_dir
        self._tmp.mkdir(parents=True, exist_ok=True)

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
