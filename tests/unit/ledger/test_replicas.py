"""Two replicas of one authority: two Ledger objects (each its own engine, tree and checkpointer, as two processes
have) on one database, one signing key and one checkpoint log. Whichever replica a client reaches, it answers
for what the other signed: proofs at a size the other replica signed, the latest checkpoint the other logged;
appending and signing from both at once keeps leaf indexes dense and every logged checkpoint consistent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.common.db import create_engine
from services.common.errors import DataLoss
from services.common.ledger import merkle
from services.common.ledger.checkpointer import parse_signed
from services.common.ledger.leaves import Leaf
from services.common.ledger.ledger import Ledger, LedgerSettings
from services.common.ledger.note import Checkpoint, NoteVerifier, generate_note_key
from services.common.ledger.store import LedgerRows, ledger_table

ORIGIN = "test/custody/runs"


def leaf(name: str) -> Leaf:
    return Leaf(kind="run", name=name, time_us=1, digests={})


@pytest.fixture
def shared(tmp_path: Path, database_url: str) -> Iterator[tuple[str, LedgerSettings, NoteVerifier]]:
    private, public = generate_note_key(ORIGIN)
    key = tmp_path / "runs.ledger.key"
    key.write_text(private + "\n")
    key.chmod(0o600)
    engine = create_engine(database_url)
    ledger_table(sa.MetaData()).metadata.create_all(engine)
    engine.dispose()
    # Signed only when asked (or forced), so each test decides which replica signs what.
    yield database_url, LedgerSettings(key, tmp_path / "checkpoints", 1_000_000, 3600), NoteVerifier(public)


def replica(shared: tuple[str, LedgerSettings, NoteVerifier]) -> Ledger:
    database_url, settings, _ = shared
    return Ledger(create_engine(database_url), LedgerRows(ledger_table(sa.MetaData())), settings, ())


def append(ledger: Ledger, names: list[str]) -> None:
    with ledger._engine.begin() as connection:  # as a store appends: in the record's transaction
        ledger.place(connection, [leaf(name) for name in names])


def test_a_replica_proves_inclusion_and_consistency_at_a_size_only_the_other_signed(
    shared: tuple[str, LedgerSettings, NoteVerifier],
) -> None:
    a, b = replica(shared), replica(shared)
    append(a, ["runs/r0", "runs/r1"])
    b.sign_now()  # b has signed size 2 and caught up to 2
    append(a, [f"runs/r{i}" for i in range(2, 9)])
    signed = a.sign_now()
    assert signed.checkpoint.size == 9

    proof = b.inclusion("runs/r8", None, 9)
    assert proof.checkpoint.note == signed.note
    merkle.verify_inclusion(merkle.leaf_hash(proof.leaf.leaf), 8, 9, proof.hashes, signed.checkpoint.root)
    consistency = b.consistency(2, 9)
    merkle.verify_consistency(2, 9, consistency.old.checkpoint.root, signed.checkpoint.root, consistency.hashes)


def test_a_replica_answers_with_the_checkpoint_the_other_logged_at_the_current_size(
    shared: tuple[str, LedgerSettings, NoteVerifier],
) -> None:
    a, b = replica(shared), replica(shared)
    append(a, ["runs/r0"])
    b.sign_now()
    append(a, ["runs/r1", "runs/r2"])
    signed = a.sign_now()

    b.checkpointer.tick()  # its background pass: nothing of its own is due, but the log covers every leaf
    assert b.checkpoint().note == signed.note
    # A record the other replica committed and signed is provable here at once, not NOT_YET_CHECKPOINTED.
    assert b.inclusion("runs/r2", None, 0).checkpoint.note == signed.note


def test_a_replica_refuses_to_adopt_a_logged_checkpoint_its_database_does_not_match(
    shared: tuple[str, LedgerSettings, NoteVerifier],
) -> None:
    _, settings, _ = shared
    a, b = replica(shared), replica(shared)
    append(a, ["runs/r0", "runs/r1"])
    a.sign_now()
    b.checkpointer.tick()  # b adopts a's checkpoint of size 2
    # The log gets a checkpoint at size 3, signed with the key, whose root is not the tree's (a replica of another
    # database writing into this log, or a rewrite): b must raise the alarm, not adopt it or sign beside it.
    append(a, ["runs/r2"])
    forged = a.checkpointer.signer.sign(Checkpoint(ORIGIN, 3, merkle.leaf_hash(b"not the tree")).body())
    (settings.checkpoint_dir / f"{3:020d}.checkpoint").write_text(forged)
    b.checkpointer.tick()
    assert b.checkpointer.alarm is not None and "checkpoint 3" in b.checkpointer.alarm
    with pytest.raises(DataLoss):
        b.checkpoint()
    assert [size for size, _ in b.checkpointer.checkpoints.entries()] == [2, 3]


def test_two_replicas_appending_and_signing_at_once_keep_dense_leaves_and_consistent_checkpoints(
    shared: tuple[str, LedgerSettings, NoteVerifier],
) -> None:
    _, _, verifier = shared
    a, b = replica(shared), replica(shared)
    errors: list[BaseException] = []

    def work(ledger: Ledger, tag: str) -> None:
        try:
            for i in range(40):
                append(ledger, [f"runs/{tag}{i}a", f"runs/{tag}{i}b"])
                if i % 3 == 0:
                    ledger.sign_now()
                else:
                    ledger.checkpointer.tick()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(ledger, tag)) for ledger, tag in ((a, "a"), (b, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert a.checkpointer.alarm is None and b.checkpointer.alarm is None

    with a._engine.connect() as connection:
        stored = list(a.rows.all(connection))
    assert [s.index for s in stored] == list(range(160))
    assert len({s.record_name for s in stored}) == 160
    hashes = [s.leaf_hash for s in stored]
    final = a.sign_now()
    assert b.sign_now().note == final.note  # both replicas sign the one tree the same way
    entries = [parse_signed(note) for _, note in a.checkpointer.checkpoints.entries()]
    assert len(entries) > 2
    for entry in entries:
        verifier.verify_checkpoint(entry.note)
        assert entry.checkpoint.root == merkle.root_of(hashes[: entry.checkpoint.size])


def test_one_append_numbers_its_leaves_in_order_after_those_already_there(
    shared: tuple[str, LedgerSettings, NoteVerifier],
) -> None:
    ledger = replica(shared)
    append(ledger, ["runs/first"])
    with ledger._engine.begin() as connection:
        placed = ledger.place(connection, [leaf(f"runs/{n}") for n in ("c", "a", "b")])
    assert {name: position.leaf_index for name, position in placed.items()} == {
        "runs/c": 1,
        "runs/a": 2,
        "runs/b": 3,
    }
    with ledger._engine.connect() as connection:
        assert [(s.index, s.record_name) for s in ledger.rows.all(connection)] == [
            (0, "runs/first"),
            (1, "runs/c"),
            (2, "runs/a"),
            (3, "runs/b"),
        ]
