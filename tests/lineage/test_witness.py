"""Witnessing: lineage keeps the latest checkpoint of runs that it has checked, signed by runs' own key and
consistent with the one it kept before; a rewritten history is refused, kept as evidence, and never replaces it."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy.exc import DBAPIError

from custody.lineage.v1 import lineage_pb2 as pb
from services.cli.state import StateLayout
from services.common.ledger import merkle
from services.common.ledger.note import Checkpoint, NoteSigner, generate_note_key
from services.lineage import ledger_audit, tables
from services.lineage.config import LineageSettings
from tests.lineage.conftest import Client, rpc_error
from tests.support import tamper

ORIGIN = "localhost/custody/runs"


class RunsLedger:
    """A runs ledger in miniature: leaf hashes, and checkpoints signed with the runs key `custody init` wrote."""

    def __init__(self, layout: StateLayout, signer: NoteSigner | None = None) -> None:
        self.signer = signer or NoteSigner(layout.ledger_key("runs").read_text().strip())
        self.hashes: list[bytes] = []

    def grow(self, count: int, tag: str = "") -> None:
        start = len(self.hashes)
        self.hashes += [merkle.leaf_hash(f"{tag}leaf {start + i}".encode()) for i in range(count)]

    def note(self, size: int | None = None) -> str:
        size = len(self.hashes) if size is None else size
        return self.signer.sign(Checkpoint(self.signer.name, size, merkle.root_of(self.hashes[:size])).body())

    def proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = len(self.hashes) if new is None else new
        return merkle.consistency_proof(old, new, lambda a, b: merkle.root_of(self.hashes[a:b]))


def present(client: Client, note: str, old_size: int, proof: list[bytes]) -> pb.WitnessedCheckpoint:
    request = pb.WitnessCheckpointRequest(note=note, old_size=old_size, consistency_proof=proof)
    return client.stub.WitnessCheckpoint(request, metadata=client.runs, timeout=30)


def refusal(client: Client, note: str, old_size: int, proof: list[bytes], metadata: object = None) -> object:
    request = pb.WitnessCheckpointRequest(note=note, old_size=old_size, consistency_proof=proof)
    return rpc_error(client.stub.WitnessCheckpoint, request, client.runs if metadata is None else metadata)  # type: ignore[arg-type]


def kept(client: Client) -> list[pb.WitnessedCheckpoint]:
    return list(
        client.stub.ListWitnessedCheckpoints(pb.ListWitnessedCheckpointsRequest(), metadata=client.operator).checkpoints
    )


def refusals(client: Client) -> int:
    engine = client.harness.running.service.engine  # type: ignore[union-attr]
    with engine.connect() as connection:
        return len(connection.execute(tables.witness_refusals.select()).all())


def test_the_first_checkpoint_is_kept_and_recorded_in_lineages_own_ledger(client: Client, layout: StateLayout) -> None:
    runs = RunsLedger(layout)
    runs.grow(5)
    witnessed = present(client, runs.note(), 0, [])
    assert (witnessed.origin, witnessed.tree_size, witnessed.root_hash) == (ORIGIN, 5, merkle.root_of(runs.hashes))
    assert witnessed.ledger.origin == "localhost/custody/lineage"
    assert [k.tree_size for k in kept(client)] == [5]


def test_a_consistent_extension_replaces_the_kept_checkpoint(client: Client, layout: StateLayout) -> None:
    runs = RunsLedger(layout)
    runs.grow(5)
    present(client, runs.note(), 0, [])
    runs.grow(8)
    assert present(client, runs.note(), 5, runs.proof(5)).tree_size == 13
    assert [k.tree_size for k in kept(client)] == [13]


def test_presenting_the_kept_checkpoint_again_changes_nothing(client: Client, layout: StateLayout) -> None:
    runs = RunsLedger(layout)
    runs.grow(3)
    first = present(client, runs.note(), 0, [])
    again = present(client, runs.note(), 3, [])
    assert again.ledger == first.ledger and again.tree_size == 3


def test_an_old_size_other_than_the_kept_one_is_told_the_kept_size(client: Client, layout: StateLayout) -> None:
    runs = RunsLedger(layout)
    runs.grow(4)
    present(client, runs.note(), 0, [])
    runs.grow(4)
    error = refusal(client, runs.note(), 0, [])
    assert (error.code, error.reason, error.metadata["witnessed_size"]) == (  # type: ignore[attr-defined]
        grpc.StatusCode.FAILED_PRECONDITION,
        "WITNESS_SIZE_MISMATCH",
        "4",
    )


def test_a_rewritten_history_is_refused_kept_as_evidence_and_never_replaces_the_kept_one(
    client: Client, layout: StateLayout
) -> None:
    honest = RunsLedger(layout)
    honest.grow(6)
    present(client, honest.note(), 0, [])
    rewritten = RunsLedger(layout)
    rewritten.grow(6, tag="forged ")
    rewritten.grow(4)
    error = refusal(client, rewritten.note(), 6, rewritten.proof(6))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CHECKPOINT_INCONSISTENT")  # type: ignore[attr-defined]
    assert [k.tree_size for k in kept(client)] == [6]
    assert refusals(client) == 1


def test_a_smaller_tree_than_the_kept_one_is_inconsistent(client: Client, layout: StateLayout) -> None:
    runs = RunsLedger(layout)
    runs.grow(9)
    present(client, runs.note(), 0, [])
    error = refusal(client, runs.note(5), 9, [])
    assert error.reason == "CHECKPOINT_INCONSISTENT"  # type: ignore[attr-defined]


@pytest.mark.parametrize("who", ["attacker", "lineage"])
def test_a_checkpoint_not_signed_by_runs_own_key_is_refused(client: Client, layout: StateLayout, who: str) -> None:
    if who == "attacker":  # a key named like runs' origin, but not runs' key
        signer = NoteSigner(generate_note_key(ORIGIN)[0])
    else:
        signer = NoteSigner(layout.ledger_key("lineage").read_text().strip())
    forged = RunsLedger(layout, signer)
    forged.grow(3)
    error = refusal(client, forged.note(), 0, [])
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CHECKPOINT_SIGNATURE_INVALID")  # type: ignore[attr-defined]
    assert kept(client) == []


def test_a_flipped_byte_in_the_note_is_refused(client: Client, layout: StateLayout) -> None:
    runs = RunsLedger(layout)
    runs.grow(3)
    note = runs.note()
    flipped = note.replace("\n3\n", "\n4\n", 1)
    assert refusal(client, flipped, 0, []).reason == "CHECKPOINT_SIGNATURE_INVALID"  # type: ignore[attr-defined]


def test_only_an_authority_may_present_checkpoints(client: Client, layout: StateLayout) -> None:
    runs = RunsLedger(layout)
    runs.grow(2)
    for caller in (client.art_studio, client.operator):
        error = refusal(client, runs.note(), 0, [], caller)
        assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_NOT_ALLOWED")  # type: ignore[attr-defined]


def test_without_runs_verifier_key_nothing_is_kept(client: Client, layout: StateLayout) -> None:
    layout.ledger_verifier_key("runs").unlink()
    runs = RunsLedger(layout)
    runs.grow(2)
    error = refusal(client, runs.note(), 0, [])
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PEER_KEY_UNKNOWN")  # type: ignore[attr-defined]


def test_witnessed_checkpoints_and_refusals_are_records_the_audit_checks(client: Client, layout: StateLayout) -> None:
    runs = RunsLedger(layout)
    runs.grow(3)
    present(client, runs.note(), 0, [])
    forged = RunsLedger(layout)
    forged.grow(5, tag="x")
    refusal(client, forged.note(), 3, forged.proof(3))
    settings = client.harness.settings
    assert isinstance(settings, LineageSettings)
    report = ledger_audit.audit(settings)
    assert report.ok, report.findings
    engine = client.harness.running.service.engine  # type: ignore[union-attr]
    with tamper.triggers_dropped(engine, "lineage_witnessed") as connection:
        connection.execute(tables.witnessed.update().values(tree_size=2))
    assert [f.where for f in ledger_audit.audit(settings).findings] == [f"witness/{ORIGIN}"]


@pytest.mark.parametrize("table", ["lineage_witness_history", "lineage_witness_refusals"])
def test_kept_and_refused_checkpoints_cannot_be_deleted_or_changed(
    client: Client, layout: StateLayout, table: str
) -> None:
    runs = RunsLedger(layout)
    runs.grow(3)
    present(client, runs.note(), 0, [])
    forged = RunsLedger(layout)
    forged.grow(5, tag="x")
    refusal(client, forged.note(), 3, forged.proof(3))
    engine = client.harness.running.service.engine  # type: ignore[union-attr]
    for statement in (f"DELETE FROM {table}", f"UPDATE {table} SET note = 'forged'"):
        with pytest.raises(DBAPIError, match="immutable"), engine.begin() as connection:
            connection.exec_driver_sql(statement)
