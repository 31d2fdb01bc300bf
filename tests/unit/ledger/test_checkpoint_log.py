"""The checkpoint log: one file per size, written atomically, never overwritten."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from services.common.ledger.checkpoint_log import CheckpointConflict, CheckpointLog
from services.common.ledger.note import Checkpoint, NoteSigner, generate_note_key

ORIGIN = "localhost/custody/runs"
SIGNER = NoteSigner(generate_note_key(ORIGIN)[0])
OTHER_SIGNER = NoteSigner(generate_note_key(ORIGIN)[0])


def note(size: int, signer: NoteSigner = SIGNER, salt: str = "") -> str:
    return signer.sign(Checkpoint(ORIGIN, size, hashlib.sha256(f"{salt}{size}".encode()).digest()).body())


def test_an_empty_or_missing_log_has_no_entries_and_is_not_created_by_reading(tmp_path: Path) -> None:
    log = CheckpointLog(tmp_path / "absent")
    assert log.entries() == []
    assert log.latest() is None
    assert not (tmp_path / "absent").exists()


def test_append_creates_the_directory_and_one_file_per_size(tmp_path: Path) -> None:
    log = CheckpointLog(tmp_path / "deep" / "checkpoints")
    assert log.append(42, note(42)) is True
    assert sorted(os.listdir(tmp_path / "deep" / "checkpoints")) == ["00000000000000000042.checkpoint"]
    assert (tmp_path / "deep" / "checkpoints" / "00000000000000000042.checkpoint").read_text() == note(42)


def test_files_are_readable_by_everyone_and_writable_by_the_owner(tmp_path: Path) -> None:
    log = CheckpointLog(tmp_path)
    log.append(1, note(1))
    assert stat.S_IMODE(log.path(1).stat().st_mode) == 0o644


def test_entries_are_in_size_order_and_latest_is_the_largest(tmp_path: Path) -> None:
    log = CheckpointLog(tmp_path)
    for size in (10, 2, 100, 0):
        log.append(size, note(size))
    assert log.entries() == [(size, note(size)) for size in (0, 2, 10, 100)]
    assert log.latest() == (100, note(100))


def test_appending_the_same_note_again_changes_nothing(tmp_path: Path) -> None:
    log = CheckpointLog(tmp_path)
    assert log.append(5, note(5)) is True
    before = log.path(5).stat()
    assert log.append(5, note(5)) is False
    assert log.entries() == [(5, note(5))]
    assert log.path(5).stat().st_ino == before.st_ino


@pytest.mark.parametrize(
    "different",
    [note(5, OTHER_SIGNER), note(5, salt="another root")],
    ids=["same checkpoint, another key", "another root"],
)
def test_a_different_note_at_a_logged_size_is_a_conflict(tmp_path: Path, different: str) -> None:
    log = CheckpointLog(tmp_path)
    log.append(5, note(5))
    with pytest.raises(CheckpointConflict, match="already logged at size 5"):
        log.append(5, different)
    assert log.entries() == [(5, note(5))]


def test_writers_racing_at_one_size_never_overwrite_each_other(tmp_path: Path) -> None:
    log = CheckpointLog(tmp_path)
    notes = [note(9, salt=str(writer)) for writer in range(8)]
    start = threading.Barrier(len(notes))
    outcomes: list[str] = []

    def write(text: str) -> None:
        start.wait()
        try:
            log.append(9, text)
            outcomes.append("written")
        except CheckpointConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write, args=(text,)) for text in notes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["written"]
    [(size, logged)] = log.entries()
    assert size == 9 and logged in notes
    assert os.listdir(tmp_path) == ["00000000000000000009.checkpoint"]


def test_each_file_and_the_directory_are_flushed_to_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flushed: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        flushed.append("directory" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "file")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    CheckpointLog(tmp_path / "new").append(3, note(3))
    assert flushed[:2] == ["directory", "file"]  # the new directory in its parent, then the note
    assert flushed[-1] == "directory"  # the note's name in the directory


def test_a_failed_write_leaves_neither_a_checkpoint_nor_a_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = CheckpointLog(tmp_path)
    log.append(1, note(1))

    def failing_fsync(descriptor: int) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk gone"):
        log.append(2, note(2))
    assert os.listdir(tmp_path) == ["00000000000000000001.checkpoint"]
    assert log.entries() == [(1, note(1))]


def test_temporary_and_unrelated_files_are_not_entries(tmp_path: Path) -> None:
    log = CheckpointLog(tmp_path)
    log.append(4, note(4))
    (tmp_path / ".00000000000000000005.checkpoint.abc.tmp").write_text(note(5)[:20])
    (tmp_path / "README").write_text("not a checkpoint")
    (tmp_path / "5.checkpoint").write_text(note(5))
    assert log.entries() == [(4, note(4))]


@pytest.mark.parametrize(
    ("size", "text", "message"),
    [
        (6, note(5), "checkpoint of size 5, not 6"),
        (-1, note(5), "non-negative"),
        (5, "not a note", "checkpoint"),
        (5, "origin\n5\nbm90IGEgcm9vdA==\n\n\u2014 x AAAAAAA=\n", "32"),
    ],
    ids=["size mismatch", "negative size", "not a note", "not a checkpoint"],
)
def test_only_a_checkpoint_note_of_the_given_size_is_logged(tmp_path: Path, size: int, text: str, message: str) -> None:
    log = CheckpointLog(tmp_path)
    with pytest.raises(ValueError, match=message):
        log.append(size, text)
    assert log.entries() == []
