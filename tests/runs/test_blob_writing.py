"""Blob writing below the service: exact bytes whatever the chunking, with O_DIRECT and where a filesystem refuses
it, and a failed write that reaches the uploader and keeps nothing."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import time
from pathlib import Path

import pytest

from services.runs import blobs
from services.runs.blobs import BlobWriter, FilesystemBlobStore, StreamingUpload

SIZES = [0, 1, 4095, 4096, 4097, 1024 * 1024 - 1, 1024 * 1024 + 3, 3 * 1024 * 1024 + 12345]


def _store(root: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(root, max_blob_bytes=64 * 1024 * 1024)


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


@pytest.fixture(params=["o_direct", "o_direct_refused"])
def root(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test disk as it is (O_DIRECT), and as a filesystem that refuses O_DIRECT would be (ordinary writes)."""
    if request.param == "o_direct_refused":
        real_open = os.open

        def refusing_open(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
            if flags & os.O_DIRECT:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_open(path, flags, mode)

        monkeypatch.setattr(blobs.os, "open", refusing_open)
    return tmp_path / "blobs"


@pytest.mark.parametrize("size", SIZES)
def test_written_blob_holds_exactly_the_bytes_sent(root: Path, size: int) -> None:
    data = os.urandom(size)
    pending = _store(root).write(_chunks(data, 65_537))  # chunks that straddle the aligned buffer
    assert pending.path.read_bytes() == data
    assert (pending.sha256, pending.size_bytes) == (hashlib.sha256(data).hexdigest(), size)


@pytest.mark.parametrize("size", [0, 4097, 3 * 1024 * 1024 + 12345])
def test_streamed_upload_holds_exactly_the_bytes_sent(root: Path, size: int) -> None:
    data = os.urandom(size)
    store = _store(root)

    async def upload() -> tuple[Path, str, int]:
        streaming = StreamingUpload(store.writer())
        for chunk in _chunks(data, 1024 * 1024):
            await streaming.write(chunk)
        pending = await streaming.finish("", "sha256")
        return pending.path, pending.sha256, pending.size_bytes

    path, digest, length = asyncio.run(upload())
    assert path.read_bytes() == data and (digest, length) == (hashlib.sha256(data).hexdigest(), size)


class _DiskFullAfter(BlobWriter):
    def __init__(self, store: FilesystemBlobStore, path: Path, chunks: int) -> None:
        super().__init__(store, path)
        self._left = chunks

    def store(self, chunk: bytes) -> None:
        if self._left == 0:
            raise OSError(28, "No space left on device")
        self._left -= 1
        super().store(chunk)


def test_a_failed_store_reaches_the_uploader_and_keeps_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path / "blobs")
    staging = tmp_path / "blobs" / "tmp"
    writer = _DiskFullAfter(store, staging / "upload-test", chunks=2)

    async def upload() -> None:
        streaming = StreamingUpload(writer)
        try:
            for _ in range(40):
                await streaming.write(b"x" * 1024 * 1024)
            await streaming.finish("", "sha256")
        except BaseException:
            await streaming.abort()
            raise

    with pytest.raises(OSError, match="No space left"):
        asyncio.run(upload())
    deadline = time.monotonic() + 5  # the temporary file is removed in the background
    while (staging / "upload-test").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (staging / "upload-test").exists()
