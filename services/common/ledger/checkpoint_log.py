"""The signed checkpoints of one ledger, kept outside its database: an append-only directory, one file per size.

Someone who can rewrite the database can recompute every root, but not the checkpoints already written here (or
handed to a peer): an audit compares the two. Each file is `<size:020d>.checkpoint` holding the signed note text, so
names sort in size order. A file is written whole to a temporary name, flushed to disk, then hard-linked to its final
name and the directory flushed: a crash leaves either no checkpoint or a complete one, and linking (unlike rename)
never replaces a file, so two writers racing at one size cannot overwrite each other: the second gets
CheckpointConflict unless it brought the same text.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from services.common.ledger.note import parse_checkpoint

_NAME = re.compile(r"(\d{20})\.checkpoint")
_MODE = 0o644


class CheckpointConflict(Exception):
    """A different signed checkpoint is already logged at this tree size: the log signed two views of one size."""


class CheckpointLog:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, size: int) -> Path:
        return self.directory / f"{size:020d}.checkpoint"

    def append(self, size: int, note_text: str) -> bool:
        """Logs the signed checkpoint note for `size`; True if written, False if this exact text was already there.

        Raises CheckpointConflict if another note is logged at `size`, ValueError if the note's body is not a
        checkpoint of `size` (the signature is for the reader to check).
        """
        if type(size) is not int or size < 0:
            raise ValueError(f"a tree size is a non-negative integer, not {size!r}")
        stated = parse_checkpoint(note_text[: note_text.rfind("\n\n") + 1]).size
        if stated != size:
            raise ValueError(f"the note is a checkpoint of size {stated}, not {size}")
        data = note_text.encode("utf-8")
        self._ensure_directory()
        target = self.path(size)
        if target.exists():
            return self._same_as_logged(target, data, size)
        descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fchmod(handle.fileno(), _MODE)
                os.fsync(handle.fileno())
            try:
                os.link(temporary, target)
            except FileExistsError:
                return self._same_as_logged(target, data, size)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        _fsync_directory(self.directory)
        return True

    def latest(self) -> tuple[int, str] | None:
        """The logged checkpoint of the largest size, or None when nothing is logged."""
        sizes = self._sizes()
        return (sizes[-1], self._read(sizes[-1])) if sizes else None

    def get(self, size: int) -> str | None:
        """The note logged at `size`, or None."""
        try:
            return self._read(size)
        except FileNotFoundError:
            return None

    def entries(self) -> list[tuple[int, str]]:
        """Every logged (size, note text), smallest size first."""
        return [(size, self._read(size)) for size in self._sizes()]

    def _sizes(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        return sorted(int(match[1]) for entry in os.scandir(self.directory) if (match := _NAME.fullmatch(entry.name)))

    def _read(self, size: int) -> str:
        return self.path(size).read_bytes().decode("utf-8")

    def _same_as_logged(self, target: Path, data: bytes, size: int) -> bool:
        if target.read_bytes() != data:
            raise CheckpointConflict(f"a different checkpoint is already logged at size {size} in {target}")
        return False

    def _ensure_directory(self) -> None:
        if self.directory.is_dir():
            return
        missing = [self.directory, *(parent for parent in self.directory.parents if not parent.exists())]
        self.directory.mkdir(parents=True, exist_ok=True)
        for created in reversed(missing):  # make each new directory entry durable in its parent
            _fsync_directory(created.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
