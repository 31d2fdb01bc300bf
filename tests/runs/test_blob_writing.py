"""Blob writing below the service: exact bytes whatever the chunking, with O_DIRECT and where a filesystem refuses
it, and a failed write that reaches the uploader and keeps nothing."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
import time
from pathlib import Path

import pytest

from services.runs import blobs
from services.runs.blobs import BlobWriter, FilesystemBlobStore, StreamingUpload, uncached

SIZES = [0, 1, 4095, 4096, 4097, 1024 * 1024 - 1, 1024 * 1024 + 3, 3 * 1024 * 1024 + 12345]


def _store(root: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(root, max_blob_bytes=64 * 1024 * 1024)


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


@pytest.fixture(params=["o_direct", "o_direct_refused"])
def root(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test disk as it is (O_DIRECT), and as a filesystem that refuses O_DIRECT would be (ordinary writes):
    such a filesystem answers EINVAL when the flag is set on the open file."""
    if request.param == "o_direct_refused":
        real_fcntl = fcntl.fcntl

        def refusing_fcntl(fd: int, command: int, argument: int = 0) -> int:
            if command == fcntl.F_SETFL and argument & os.O_DIRECT:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_fcntl(fd, command, argument)

        monkeypatch.setattr(uncached.fcntl, "fcntl", refusing_fcntl)
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


class _SlowToFinish(BlobWriter):
    def __init__(self, store: FilesystemBlobStore, path: Path) -> None:
        super().__init__(store, path)
        self.errors: list[BaseException] = []

    def finish(self, expected_sha256: str = "", field: str = "sha256") -> blobs.PendingBlob:
        time.sleep(0.3)  # a long final fsync
        try:
            return super().finish(expected_sha256, field)
        except BaseException as exc:  # e.g. the file closed under it
            self.errors.append(exc)
            raise


def test_an_upload_cancelled_during_its_final_fsync_is_removed_after_it(tmp_path: Path) -> None:
    store = _store(tmp_path / "blobs")
    path = tmp_path / "blobs" / "tmp" / "upload-slow"
    writer = _SlowToFinish(store, path)

    async def upload() -> None:
        streaming = StreamingUpload(writer)
        try:
            await streaming.write(os.urandom(5000))
            await streaming.finish("", "sha256")
        except BaseException:
            await asyncio.shield(streaming.abort())
            raise

    async def cancel_midway() -> None:
        task = asyncio.ensure_future(upload())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    assert writer.errors == []  # the final write and fsync ran to the end before the file was removed
    deadline = time.monotonic() + 5
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not path.exists()


def test_a_store_sweeps_upload_files_a_crashed_process_left_behind(tmp_path: Path) -> None:
    staging = tmp_path / "blobs" / "tmp"
    staging.mkdir(parents=True)
    stale, live = staging / "upload-stale", staging / "upload-live"
    stale.write_bytes(b"x")
    live.write_bytes(b"y")
    hour_ago = time.time() - blobs.STALE_UPLOAD_S - 60
    os.utime(stale, (hour_ago, hour_ago))
    _store(tmp_path / "blobs")
    assert not stale.exists() and live.exists()  # a file written in the last hour may be a live upload
