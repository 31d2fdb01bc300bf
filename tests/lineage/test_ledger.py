"""Lineage's ledger over real gRPC on SQLite and PostgreSQL: every record's response names its leaf, its proof
verifies offline from the verifier key alone, replays and refusals append nothing, and the audit finds a clean
database clean."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from custody.common.v1 import ledger_pb2
from custody.lineage.v1 import lineage_pb2 as pb
from services.cli.main import app
from services.cli.state import StateLayout
from services.common import status
from services.common.db import create_engine
from services.common.ledger import merkle
from services.common.ledger.note import Checkpoint, NoteVerifier
from services.lineage import ledger_audit, tables
from services.lineage.config import LineageSettings
from tests.lineage.conftest import Client, create, rpc_error, start_client
from tests.lineage.test_witness import RunsLedger, present, refusal
from tests.support import tamper

P = "projects/acme/artifacts"
INTAKE = {"client": "acme", "objectives": ["grow"]}
ORIGIN = "localhost/custody/lineage"
T = TypeVar("T")


@pytest.fixture
def client(layout: StateLayout, database_url: str) -> Iterator[Client]:
    """The service signing a checkpoint as soon as a leaf is unsigned (polled every 20 ms)."""
    yield from start_client(layout, database_url, ledger_checkpoint_leaves="1", ledger_checkpoint_interval_s="0.02")


def verifier(client: Client) -> NoteVerifier:
    """The verifier key `custody init` wrote beside the signing key: all an outsider needs."""
    return NoteVerifier(client.harness.layout.ledger_verifier_key("lineage").read_text(encoding="utf-8").strip())


def once_checkpointed(work: Callable[[], T]) -> T:
    """`work` retried while the leaf it asks about waits for its first checkpoint (signed in the background)."""
    for _ in range(500):
        try:
            return work()
        except grpc.RpcError as exc:
            if status.decode(exc).reason != "NOT_YET_CHECKPOINTED":
                raise
            time.sleep(0.02)
    raise AssertionError("no checkpoint was signed")


def proof(client: Client, record_name: str = "", leaf_index: int | None = None, size: int = 0) -> Any:
    request = ledger_pb2.GetInclusionProofRequest(tree_size=size)
    if leaf_index is None:
        request.record_name = record_name
    else:
        request.leaf_index = leaf_index
    return once_checkpointed(lambda: client.stub.GetInclusionProof(request, metadata=client.operator, timeout=10))


def verified_leaf(client: Client, record_name: str) -> dict[str, Any]:
    """Proves the record's inclusion with nothing but the verifier key and returns its leaf."""
    found = proof(client, record_name)
    checkpoint: Checkpoint = verifier(client).verify_checkpoint(found.checkpoint.note)
    assert (checkpoint.origin, checkpoint.size, checkpoint.root) == (
        ORIGIN,
        found.checkpoint.tree_size,
        found.checkpoint.root_hash,
    )
    merkle.verify_inclusion(
        merkle.leaf_hash(found.leaf), found.leaf_index, checkpoint.size, list(found.hashes), checkpoint.root
    )
    leaf: dict[str, Any] = json.loads(found.leaf)
    assert (leaf["name"], found.record_name, found.kind) == (record_name, record_name, leaf["kind"])
    return {**leaf, "leaf_index": found.leaf_index}


def get(client: Client, name: str) -> pb.Version:
    return client.stub.GetVersion(pb.GetVersionRequest(name=name), metadata=client.operator, timeout=10)


def approve(client: Client, name: str, request_id: str = "") -> pb.Version:
    request = pb.ApproveRequest(name=name, rationale="checked", request_id=request_id)
    return client.stub.Approve(request, metadata=client.reviewer, timeout=10)


def leaf_count(client: Client) -> int:
    engine = create_engine(lineage_settings(client).resolved_database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(tables.ledger)).scalar_one())
    finally:
        engine.dispose()


def lineage_settings(client: Client) -> LineageSettings:
    settings = client.harness.settings
    assert isinstance(settings, LineageSettings)
    return settings


# ---- records carry their leaves -----------------------------------------------------------------------------------


def test_a_new_version_carries_the_leaves_of_its_snapshot_its_status_and_its_health(client: Client) -> None:
    version = create(client, f"{P}/intake/brief", INTAKE).version
    entries = [version.ledger, version.status.ledger, version.health.ledger]
    assert [e.origin for e in entries] == [ORIGIN] * 3
    assert len({e.leaf_index for e in entries}) == 3
    assert get(client, version.name).ledger == version.ledger


def test_a_versions_proof_verifies_offline_and_its_leaf_names_the_snapshot(client: Client) -> None:
    intake = create(client, f"{P}/intake/brief", INTAKE).version
    strategy = create(client, f"{P}/strategy/main", {"summary": "s"}, [intake.name]).version
    leaf = verified_leaf(client, strategy.name)
    assert leaf["leaf_index"] == strategy.ledger.leaf_index
    assert leaf["kind"] == "version"
    assert leaf["principal"] == "human:operator"
    assert leaf["request_id"] == strategy.request_id
    assert (leaf["digests"]["snapshot_sha256"], leaf["digests"]["data_sha256"]) == (
        strategy.snapshot_sha256,
        strategy.data_sha256,
    )


def test_an_approval_is_a_record_of_its_own_naming_the_reviewer(client: Client) -> None:
    intake = create(client, f"{P}/intake/brief", INTAKE).version
    approved = approve(client, intake.name)
    assert approved.status.ledger.leaf_index > intake.status.ledger.leaf_index
    leaf = verified_leaf(client, f"{intake.name}/status/2")
    assert (leaf["kind"], leaf["principal"], leaf["leaf_index"]) == (
        "status",
        "human:rita",
        approved.status.ledger.leaf_index,
    )
    history = get(client, intake.name).status_history
    assert [h.ledger.leaf_index for h in history] == [
        intake.status.ledger.leaf_index,
        approved.status.ledger.leaf_index,
    ]


def test_a_health_assessment_is_a_record_of_its_own(client: Client) -> None:
    intake = create(client, f"{P}/intake/brief", INTAKE).version
    request = pb.AssessHealthRequest(name=intake.name, health=pb.HEALTH_NEEDS_REVISION, rationale="redo")
    assessed = client.stub.AssessHealth(request, metadata=client.reviewer, timeout=10)
    leaf = verified_leaf(client, f"{intake.name}/health/2")
    assert (leaf["kind"], leaf["principal"], leaf["leaf_index"]) == (
        "health",
        "human:rita",
        assessed.health.ledger.leaf_index,
    )


def test_a_staleness_propagation_is_one_record_that_every_version_it_marked_points_to(client: Client) -> None:
    intake = create(client, f"{P}/intake/brief", INTAKE).version
    strategy = create(client, f"{P}/strategy/main", {"summary": "s"}, [intake.name]).version
    execution = create(client, f"{P}/execution/q1", {"selected_jobs": ["content_calendar"]}, [strategy.name]).version
    revised = create(client, f"{P}/intake/brief", {**INTAKE, "audience": "new"})
    assert revised.marked_stale == 2
    assert revised.staleness.origin == ORIGIN
    leaf = verified_leaf(client, f"{revised.version.name}/staleness")
    assert (leaf["kind"], leaf["leaf_index"]) == ("staleness", revised.staleness.leaf_index)
    for name in (strategy.name, execution.name):
        assert get(client, name).health.ledger == revised.staleness


def test_a_registered_type_carries_its_leaf(client: Client) -> None:
    request = pb.RegisterTypeRequest(name="note", policy="notes", schema_version="1")
    request.schema.update({"type": "object"})
    registered = client.stub.RegisterType(request, metadata=client.operator, timeout=10)
    assert registered.ledger.origin == ORIGIN
    leaf = verified_leaf(client, "types/note@1")
    assert (leaf["kind"], leaf["digests"]["definition_sha256"]) == ("type", registered.definition_sha256)
    policy = client.stub.GetPolicy(pb.GetPolicyRequest(name="notes"), metadata=client.operator, timeout=10)
    assert policy.types[0].ledger == registered.ledger


def test_consistency_proofs_between_signed_checkpoints_verify_offline(client: Client) -> None:
    create(client, f"{P}/intake/brief", INTAKE)
    old = proof(client, f"{P}/intake/brief/versions/1").checkpoint
    create(client, f"{P}/intake/other", INTAKE)
    new = proof(client, f"{P}/intake/other/versions/1").checkpoint
    assert new.tree_size > old.tree_size
    request = ledger_pb2.GetConsistencyProofRequest(old_size=old.tree_size, new_size=new.tree_size)
    found = client.stub.GetConsistencyProof(request, metadata=client.operator, timeout=10)
    key = verifier(client)
    before, after = key.verify_checkpoint(found.old_checkpoint.note), key.verify_checkpoint(found.new_checkpoint.note)
    assert (before.size, after.size) == (old.tree_size, new.tree_size)
    merkle.verify_consistency(before.size, after.size, before.root, after.root, list(found.hashes))


# ---- nothing unrecorded, nothing recorded twice -------------------------------------------------------------------


def test_an_idempotent_replay_appends_no_leaf(client: Client) -> None:
    first = create(client, f"{P}/intake/brief", INTAKE, request_id="create-1")
    approve(client, first.version.name, request_id="approve-1")
    before = leaf_count(client)
    replayed = create(client, f"{P}/intake/brief", INTAKE, request_id="create-1")
    again = approve(client, first.version.name, request_id="approve-1")
    assert replayed.replayed
    assert leaf_count(client) == before
    assert replayed.version.ledger == first.version.ledger
    assert again.status.ledger.leaf_index == before - 2  # the approval, then its request id


def test_a_refused_decision_appends_no_leaf(client: Client) -> None:
    intake = create(client, f"{P}/intake/brief", INTAKE).version
    strategy = create(client, f"{P}/strategy/main", {"summary": "s"}, [intake.name]).version
    before = leaf_count(client)
    error = rpc_error(client.stub.Approve, pb.ApproveRequest(name=strategy.name, rationale="no"), client.reviewer)
    assert error.reason == "UPSTREAM_NOT_APPROVED"
    assert leaf_count(client) == before


def test_every_request_id_kept_for_replay_is_a_record(client: Client) -> None:
    version = create(client, f"{P}/intake/brief", INTAKE, request_id="create-7").version
    leaf = verified_leaf(client, "requests/human:operator/create-7")
    assert leaf["kind"] == "request"
    assert leaf["leaf_index"] == version.health.ledger.leaf_index + 1


def test_the_audit_of_the_served_database_finds_it_clean(client: Client) -> None:
    intake = create(client, f"{P}/intake/brief", INTAKE, request_id="a").version
    strategy = create(client, f"{P}/strategy/main", {"summary": "s"}, [intake.name]).version
    approve(client, intake.name, request_id="b")
    create(client, f"{P}/intake/brief", INTAKE)
    request = pb.AssessHealthRequest(name=strategy.name, health=pb.HEALTH_CONFIRMED_VALID, rationale="holds")
    client.stub.AssessHealth(request, metadata=client.reviewer, timeout=10)
    last = create(client, f"{P}/intake/brief", INTAKE).version
    proof(client, last.name)  # a checkpoint covers every leaf
    report = ledger_audit.audit(lineage_settings(client))
    assert report.findings == []
    assert report.leaves == report.records == leaf_count(client)
    assert report.checkpoints >= 1


# ---- the three RPCs' errors ---------------------------------------------------------------------------------------


def test_an_inclusion_proof_needs_a_record_name_or_a_leaf_index(client: Client) -> None:
    error = rpc_error(client.stub.GetInclusionProof, ledger_pb2.GetInclusionProofRequest(), client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "LEAF_NOT_NAMED")


def test_an_unknown_record_or_leaf_is_not_found(client: Client) -> None:
    create(client, f"{P}/intake/brief", INTAKE)
    proof(client, f"{P}/intake/brief/versions/1")
    unknown = ledger_pb2.GetInclusionProofRequest(record_name=f"{P}/intake/brief/versions/9")
    error = rpc_error(client.stub.GetInclusionProof, unknown, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "LEDGER_RECORD_NOT_FOUND")
    beyond = ledger_pb2.GetInclusionProofRequest(leaf_index=10_000)
    error = rpc_error(client.stub.GetInclusionProof, beyond, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "LEAF_INDEX_OUT_OF_RANGE")
    negative = ledger_pb2.GetInclusionProofRequest(leaf_index=-1)
    error = rpc_error(client.stub.GetInclusionProof, negative, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "LEAF_INDEX_OUT_OF_RANGE")


def test_proofs_against_a_size_never_signed_are_refused(client: Client) -> None:
    create(client, f"{P}/intake/brief", INTAKE)
    signed = proof(client, f"{P}/intake/brief/versions/1").checkpoint.tree_size
    request = ledger_pb2.GetInclusionProofRequest(leaf_index=0, tree_size=signed + 1000)
    error = rpc_error(client.stub.GetInclusionProof, request, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "TREE_SIZE_NOT_CHECKPOINTED")
    consistency = ledger_pb2.GetConsistencyProofRequest(old_size=signed + 1000, new_size=signed)
    error = rpc_error(client.stub.GetConsistencyProof, consistency, client.operator)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "OLD_SIZE_AFTER_NEW_SIZE")


def test_a_person_without_a_role_may_not_read_the_ledger(client: Client) -> None:
    error = rpc_error(client.stub.GetCheckpoint, ledger_pb2.GetCheckpointRequest(), client.human_without_review)
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_NOT_ALLOWED")


def test_callers_of_lineage_may_read_its_ledger(client: Client) -> None:
    for caller in (client.runs, client.art_studio, client.reviewer):
        checkpoint = once_checkpointed(
            lambda caller=caller: client.stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(), metadata=caller)
        )
        assert checkpoint.origin == ORIGIN


def test_a_disabled_ledger_records_nothing_and_says_so(layout: StateLayout, database_url: str) -> None:
    for client in start_client(layout, database_url, ledger_enabled="false"):
        version = create(client, f"{P}/intake/brief", INTAKE).version
        assert not version.HasField("ledger") and not version.status.HasField("ledger")
        for call, request in (
            (client.stub.GetCheckpoint, ledger_pb2.GetCheckpointRequest()),
            (client.stub.GetInclusionProof, ledger_pb2.GetInclusionProofRequest(leaf_index=0)),
            (client.stub.GetConsistencyProof, ledger_pb2.GetConsistencyProofRequest()),
        ):
            error = rpc_error(call, request, client.operator)
            assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "LEDGER_DISABLED")
        assert leaf_count(client) == 0


def test_records_written_before_the_ledger_existed_are_adopted_when_it_starts(
    layout: StateLayout, database_url: str
) -> None:
    for client in start_client(layout, database_url, ledger_enabled="false"):
        old = create(client, f"{P}/intake/brief", INTAKE, request_id="old").version
    for client in start_client(layout, database_url, ledger_checkpoint_interval_s="0.02"):
        assert get(client, old.name).ledger.origin == ORIGIN
        verified_leaf(client, old.name)
        verified_leaf(client, "requests/human:operator/old")
        create(client, f"{P}/intake/brief", INTAKE)
        proof(client, f"{P}/intake/brief/versions/2")
        assert ledger_audit.audit(lineage_settings(client)).findings == []


# ---- tampering ----------------------------------------------------------------------------------------------------

TAMPERED_TABLES = (*tables.IMMUTABLE_TABLES, "lineage_status", "lineage_health", "lineage_witnessed")
# lineage_witnessed holds one row per peer, and runs is lineage's only peer: there are no two rows to swap.
IMPOSSIBLE = {"lineage_witnessed.reorder"}


def populate(client: Client) -> None:
    """Records of every kind: types, versions with edges, approvals, a flag, a rejection, assessments, two
    staleness propagations of several versions, request ids."""
    request = pb.RegisterTypeRequest(name="note", policy="notes", schema_version="1", request_id="type-1")
    request.schema.update({"type": "object"})
    client.stub.RegisterType(request, metadata=client.operator, timeout=10)
    intake = create(client, f"{P}/intake/brief", INTAKE, request_id="c1").version.name
    strategy = create(client, f"{P}/strategy/main", {"summary": "s"}, [intake]).version.name
    for n in range(3):
        create(client, f"{P}/execution/e{n}", {"selected_jobs": ["content_calendar"]}, [strategy])
    approve(client, intake, request_id="a1")
    create(client, f"{P}/intake/brief", INTAKE)  # marks strategy and the three executions stale
    assess = pb.AssessHealthRequest(name=strategy, health=pb.HEALTH_CONFIRMED_VALID, rationale="holds")
    client.stub.AssessHealth(assess, metadata=client.reviewer, timeout=10)
    flag = pb.FlagRequest(name=f"{P}/execution/e0/versions/1", rationale="odd", request_id="f1")
    client.stub.Flag(flag, metadata=client.operator, timeout=10)
    reject = pb.RejectRequest(name=f"{P}/execution/e1/versions/1", rationale="wrong")
    client.stub.Reject(reject, metadata=client.reviewer, timeout=10)
    create(client, f"{P}/intake/brief", INTAKE)  # marks strategy stale again
    create(client, f"{P}/strategy/main", {"summary": "t"}, [f"{P}/intake/brief/versions/3"])
    witness_runs(client)


def witness_runs(client: Client) -> None:
    """Two checkpoints of runs kept (one extending the other) and two refused as rewritten histories."""
    runs = RunsLedger(client.harness.layout)
    runs.grow(4)
    present(client, runs.note(), 0, [])
    runs.grow(3)
    present(client, runs.note(), 4, runs.proof(4))
    for tag in ("forged ", "again "):
        forged = RunsLedger(client.harness.layout)
        forged.grow(9, tag=tag)
        refusal(client, forged.note(), 7, forged.proof(7))


def settled(client: Client) -> LineageSettings:
    """Waits for a checkpoint covering every leaf, then stops the service: the audit works offline."""
    size = leaf_count(client)
    for _ in range(500):
        checkpoint = once_checkpointed(
            lambda: client.stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest(), metadata=client.operator)
        )
        if checkpoint.tree_size >= size:
            break
        time.sleep(0.02)
    client.harness.stop()
    return lineage_settings(client)


def test_the_audit_passes_on_an_untouched_database_holding_every_kind_of_record(client: Client) -> None:
    populate(client)
    report = ledger_audit.audit(settled(client))
    assert report.ok, report.findings
    assert report.leaves == report.records
    kinds = {json.loads(leaf)["kind"] for leaf in leaves_json(client)}
    assert kinds == {"type", "version", "status", "health", "staleness", "request", "witnessed", "witness_refusal"}


def leaves_json(client: Client) -> list[str]:
    engine = create_engine(lineage_settings(client).resolved_database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.select(tables.ledger.c.leaf_json)).scalars())
    finally:
        engine.dispose()


def test_every_single_row_tampering_of_every_recorded_table_is_detected(client: Client) -> None:
    populate(client)
    settings = settled(client)
    engine = create_engine(settings.resolved_database_url)
    try:
        trials = tamper.try_every(engine, tables.metadata, TAMPERED_TABLES, lambda: ledger_audit.audit(settings).ok, 6)
    finally:
        engine.dispose()
    assert not trials.missed, f"undetected: {trials.missed}"
    untried = trials.untried(TAMPERED_TABLES)
    assert sorted(untried) == sorted(IMPOSSIBLE), f"tampering the test could not apply: {untried}"
    assert sum(trials.tried.values()) == 6 * (len(TAMPERED_TABLES) * len(tamper.KINDS) - len(IMPOSSIBLE))


def test_rewriting_who_approved_a_version_is_named_by_the_audit(client: Client) -> None:
    """Drop the triggers, make an approval look like another reviewer's (history and current row), restore them."""
    intake = create(client, f"{P}/intake/brief", INTAKE).version
    approved = approve(client, intake.name)
    settings = settled(client)
    engine = create_engine(settings.resolved_database_url)
    try:
        version_id = sa.select(tables.versions.c.id).where(tables.versions.c.name == intake.name).scalar_subquery()
        with tamper.triggers_dropped(engine, "lineage_status_history") as connection:
            connection.execute(
                tables.status_history.update()
                .where(tables.status_history.c.version_id == version_id, tables.status_history.c.revision == 2)
                .values(actor_id="human:mallory")
            )
            connection.execute(
                tables.status.update().where(tables.status.c.version_id == version_id).values(actor_id="human:mallory")
            )
    finally:
        engine.dispose()
    report = ledger_audit.audit(settings)
    assert [str(f) for f in report.findings] == [
        f"leaf {approved.status.ledger.leaf_index} ({intake.name}/status/2): the record no longer matches its leaf: "
        "principal, digests.row_sha256 changed"
    ]


def test_a_current_state_that_is_not_the_last_of_its_history_is_reported(client: Client) -> None:
    """The mutable rows are not ledgered; the audit holds them to their (ledgered) history."""
    intake = create(client, f"{P}/intake/brief", INTAKE).version
    settings = settled(client)
    engine = create_engine(settings.resolved_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(tables.health.update().values(health="confirmed_valid"))
    finally:
        engine.dispose()
    (finding,) = ledger_audit.audit(settings).findings
    assert finding.where == f"{intake.name} (health)"
    assert "health differ" in finding.problem


def test_custody_ledger_audit_lineage_passes_then_names_a_rewritten_rationale(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    intake = create(client, f"{P}/intake/brief", INTAKE).version
    approved = approve(client, intake.name)
    settings = settled(client)
    monkeypatch.setenv("CUSTODY_LINEAGE_DATABASE_URL", settings.resolved_database_url)
    command = ["ledger", "audit", "lineage", "--state-dir", str(client.harness.layout.root)]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    engine = create_engine(settings.resolved_database_url)
    try:
        with tamper.triggers_dropped(engine, "lineage_status_history") as connection:
            connection.execute(
                tables.status_history.update().where(tables.status_history.c.revision == 2).values(rationale="none")
            )
    finally:
        engine.dispose()
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1
    output = " ".join(result.output.split())  # the console wraps long lines
    assert f"first bad entry: leaf {approved.status.ledger.leaf_index} ({intake.name}/status/2)" in output
