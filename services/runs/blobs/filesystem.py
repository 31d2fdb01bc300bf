"""The filesystem blob backend (the default): blobs as files, published by an atomic rename and an fsync of the
directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from services.runs.blobs.base import BlobStore, checked_digest, file_chunks
from services.runs.blobs.staging import PendingBlob


class FilesystemBlobStore(BlobStore):
    """Blobs as files under root/sha256/ab/cd/<digest>."""

    backend = "filesystem"

    def __init__(self, root: Path, max_blob_bytes: int) -> None:
        super().__init__(root / "tmp", max_blob_bytes)
        self.root = root

    def path_for(self, sha256: str) -> Path:
        sha256 = checked_digest(sha256)
        return self.root / "sha256" / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def _publish(self, pending: PendingBlob) -> bool:
        """Atomic rename into place, then an fsync of the directory so the name survives a crash."""
        final = self.path_for(pending.sha256)
        if final.is_file():
            pending.discard()
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(pending.path, final)
        directory = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return True

    def _chunks_of(self, sha256: str) -> Iterator[bytes] | None:
        path = self.path_for(sha256)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return None
        return file_chunks(handle)
