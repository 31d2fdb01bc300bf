"""The checkpoint log outside the database. (Provisional: replaced by the core branch's implementation.)"""

from __future__ import annotations

import os
from pathlib import Path


class CheckpointConflict(Exception):
    pass


class CheckpointLog:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, size: int) -> Path:
        return self.directory / f"{size:020d}.checkpoint"

    def append(self, size: int, note_text: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(size)
        if path.exists():
            if path.read_text(encoding="utf-8") != note_text:
                raise CheckpointConflict(f"a different checkpoint of size {size} is already logged")
            return
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(note_text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def get(self, size: int) -> str | None:
        try:
            return self._path(size).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def latest(self) -> tuple[int, str] | None:
        entries = self.entries()
        return entries[-1] if entries else None

    def entries(self) -> list[tuple[int, str]]:
        if not self.directory.exists():
            return []
        return [
            (int(path.stem), path.read_text(encoding="utf-8")) for path in sorted(self.directory.glob("*.checkpoint"))
        ]
