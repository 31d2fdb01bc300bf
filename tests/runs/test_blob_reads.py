"""A blob is served as exactly the bytes that were hashed: storage is read once, so someone who can write to the
blob directory cannot swap the bytes between the check and the read (BindCandidate's verdict and ReadAttachment's
stream are about the digest they name)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.errors import DataLoss
from services.runs.blobs import FilesystemBlobStore
from services.runs.blobs.base import IN_MEMORY_READ_BYTES

SMALL = b"rosette " * 1000
LARGE = os.urandom(IN_MEMORY_READ_BYTES + 3 * 1024 * 1024 + 17)


def _stored(tmp_path: Path, data: bytes) -> tuple[FilesystemBlobStore, str]:
    store = FilesystemBlobStore(tmp_path / "blobs", max_blob_bytes=64 * 1024 * 1024)
    return store, store.publish(store.write([data])).sha256


def _swapped_after_each_read(
    store: FilesystemBlobStore, sha256: str, other: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attacker with write access to storage: every time the store finishes reading the blob, its file on disk
    is overwritten with `other` (so a second read would see other bytes)."""
    read = store._chunks_of

    def reading_then_swapping(digest: str) -> Iterator[bytes] | None:
        chunks = read(digest)
        if chunks is None:
            return None

        def then_swap() -> Iterator[bytes]:
            yield from chunks
            path = store.path_for(digest)
            path.chmod(0o644)
            path.write_bytes(other)

        return then_swap()

    monkeypatch.setattr(store, "_chunks_of", reading_then_swapping)


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["in_memory", "spooled"])
def test_bytes_swapped_in_storage_after_the_check_are_never_served(
    tmp_path: Path, data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, sha256 = _stored(tmp_path, data)
    _swapped_after_each_read(store, sha256, b"X" * len(data), monkeypatch)
    served = b"".join(store.read_verified(sha256, len(data)))
    assert served == data


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["in_memory", "spooled"])
def test_whole_reads_are_the_checked_bytes_too(tmp_path: Path, data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    store, sha256 = _stored(tmp_path, data)
    _swapped_after_each_read(store, sha256, b"X" * len(data), monkeypatch)
    assert hashlib.sha256(store.read_all_verified(sha256, len(data))).hexdigest() == sha256


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["in_memory", "spooled"])
def test_a_blob_changed_in_storage_is_data_loss_and_nothing_is_served(tmp_path: Path, data: bytes) -> None:
    store, sha256 = _stored(tmp_path, data)
    path = store.path_for(sha256)
    path.chmod(0o644)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(DataLoss) as refused:
        next(iter(store.read_verified(sha256, len(data))))
    assert refused.value.reason == "BLOB_CORRUPTED"


def test_a_blob_grown_in_storage_is_refused_without_reading_past_its_size(tmp_path: Path) -> None:
    store, sha256 = _stored(tmp_path, SMALL)
    path = store.path_for(sha256)
    path.chmod(0o644)
    path.write_bytes(SMALL + b"\0" * (64 * 1024 * 1024))
    with pytest.raises(DataLoss) as refused:
        store.read_all_verified(sha256, len(SMALL))
    assert refused.value.reason == "BLOB_CORRUPTED"


def test_a_spooled_read_leaves_no_file_in_staging(tmp_path: Path) -> None:
    store, sha256 = _stored(tmp_path, LARGE)
    staged_before = set((tmp_path / "blobs").rglob("upload-*"))
    assert b"".join(store.read_verified(sha256, len(LARGE))) == LARGE
    assert set((tmp_path / "blobs").rglob("upload-*")) == staged_before
