"""Content-addressed blob storage on the local filesystem: a blob's path is its sha256.

Writes hash while streaming into a temporary file, fsync it, rename it into place and fsync the directory, so a
blob is either complete under its digest or absent. Reads re-hash before serving: corrupted bytes are DATA_LOSS
and are never returned.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import DataLoss, FieldViolation, InvalidArgument, ResourceExhausted
from services.common.hashing import is_sha256_hex

READ_CHUNK_BYTES = 1024 * 1024


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


class BlobStore:
    def __init__(self, root: Path, max_blob_bytes: int) -> None:
        self.root = root
        self.max_blob_bytes = max_blob_bytes
        self._tmp = root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        if not is_sha256_hex(sha256):  # the digest becomes a path: accept nothing else
            raise InvalidArgument("DIGEST_INVALID", f"not a sha256 digest: {sha256[:80]!r}")
        return self.root / "sha256" / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def writer(self) -> BlobWriter:
        """A writer that hashes while it writes to a temporary file; nothing is visible until `commit`."""
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

    def publish(self, pending: PendingBlob) -> StoredBlob:
        """Moves a received blob under its digest (atomic rename, then directory fsync)."""
        final = self.path_for(pending.sha256)
        if final.is_file():  # content-addressed: the same bytes are already there
            pending.path.unlink(missing_ok=True)
            return StoredBlob(pending.sha256, pending.size_bytes)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(pending.path, final)
        directory = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return StoredBlob(pending.sha256, pending.size_bytes)

    def verify(self, sha256: str, size_bytes: int | None = None) -> str | None:
        """None when the blob is intact, else the problem (BLOB_MISSING, SIZE_MISMATCH, BLOB_CORRUPTED)."""
        path = self.path_for(sha256)
        try:
            hasher = hashlib.sha256()
            size = 0
            with path.open("rb") as handle:
                while block := handle.read(READ_CHUNK_BYTES):
                    hasher.update(block)
                    size += len(block)
        except FileNotFoundError:
            return "BLOB_MISSING"
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
        return self._chunks(self.path_for(sha256))

    @staticmethod
    def _chunks(path: Path) -> Iterator[bytes]:
        with path.open("rb") as handle:
            while block := handle.read(READ_CHUNK_BYTES):
                yield block

    def read_all_verified(self, sha256: str, size_bytes: int | None = None) -> bytes:
        return b"".join(self.read_verified(sha256, size_bytes))
