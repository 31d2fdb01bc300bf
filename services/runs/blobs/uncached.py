"""A new file written around the page cache (O_DIRECT), for staging large uploads."""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from pathlib import Path


class UncachedFile:
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
                self._write_buffered(self.BUFFER_BYTES)
                self._filled = 0

    def close(self) -> None:
        """Writes what is buffered (padded to a block, then cut back to the real size) and fsyncs."""
        try:
            if self._buffer is not None and self._filled:
                padded = -(-self._filled // self.BLOCK) * self.BLOCK
                self._buffer[self._filled : padded] = bytes(padded - self._filled)
                self._write_buffered(padded)
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

    def _write_buffered(self, size: int) -> None:
        """Writes the buffer's first `size` bytes. Its views are released even when the write fails (a full disk):
        a view left to the traceback would keep the buffer exported, and closing it would then raise BufferError
        in place of the real error."""
        assert self._buffer is not None
        with memoryview(self._buffer) as whole, whole[:size] as part:
            self._write_all(part)

    def _write_all(self, data: memoryview) -> None:
        written = 0
        while written < len(data):
            with data[written:] as rest:
                written += os.write(self._fd, rest)
