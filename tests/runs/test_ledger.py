"""The runs ledger: every record gets a leaf in its own transaction, proofs verify offline from the verifier key
alone, and a database rewritten out of band is caught by the audit, by the signer and by the proof server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from custody.common.v1 import ledger_pb2
from custody.runs.v1 import runs_pb2
from services.cli.state import StateLayout
from services.common import status
from services.common.db import create_engine
from services.common.ledger import merkle
from services.common.ledger.note import NoteVerifier, parse_checkpoint
from services.common.run_rules import MIGRATION_BATCH_MODE
from services.runs import ledger_audit, tables
from services.runs.config import RunsSettings
from tests.runs.candidates import CLEAN_SPEC, CLEAN_SVG
from tests.runs.conftest import RunsClient, error_of, run_input, struct
from tests.runs.test_content_credentials import png
from tests.support import tamper
from tests.support.fake_gateway import ScriptedGateway, fake_gateway
from tests.support.harness import ServiceHarness, bearer, second_reviewer_token

CONCEPT_PNG = png()
FAST = {"ledger_checkpoint_interval_s": "0.05", "ledger_checkpoint_leaves": "1000"}


@pytest.fixture
def reviewer(layout: StateLayout) -> tuple[tuple[str, str], ...]:
    """A second person, a reviewer only (human:rita), to review explanations the operator asked for."""
    return bearer(second_reviewer_token(layout))


@pytest.fixture
def ledger_harness(
    layout: StateLayout, reviewer: tuple[tuple[str, str], ...], database_url: str, tmp_path: Path
) -> Iterator[ServiceHarness]:
    with ServiceHarness("ai_gateway", layout, factory=fake_gateway(ScriptedGateway())) as gateway:  # type: ignore[arg-type]
        settings = {
            "database_url": database_url,
            "blob_backend": "database",
            "blob_dir": str(tmp_path / "blobs"),
            "ai_gateway_address": gateway.address,
            **FAST,
        }
        with ServiceHarness("runs", layout, settings=settings) as harness:
            yield harness


@pytest.fixture
def runs(ledger_harness: ServiceHarness, layout: StateLayout) -> RunsClient:
    return RunsClient(ledger_harness, layout)


def verifier(layout: StateLayout) -> NoteVerifier:
    return NoteVerifier(layout.ledger_verifier_key("runs").read_text())


def checkpoint_covering(runs: RunsClient, size: int) -> ledger_pb2.SignedCheckpoint:
    """The latest checkpoint once it covers `size` leaves (the signer runs every 50 ms here)."""
    for _ in range(200):
        checkpoint = runs.GetCheckpoint(ledger_pb2.GetCheckpointRequest())
        if checkpoint.tree_size >= size:
            return checkpoint
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint covered {size} leaves")


def prove(runs: RunsClient, name: str, layout: StateLayout) -> ledger_pb2.InclusionProof:
    """An inclusion proof for `name`, checked the way an outsider would: signature, then audit path."""
    proof = runs.GetInclusionProof(ledger_pb2.GetInclusionProofRequest(record_name=name))
    body = verifier(layout).verify(proof.checkpoint.note)
    checkpoint = parse_checkpoint(body)
    assert (checkpoint.size, checkpoint.root) == (proof.checkpoint.tree_size, proof.checkpoint.root_hash)
    merkle.verify_inclusion(
        merkle.leaf_hash(proof.leaf), proof.leaf_index, checkpoint.size, list(proof.hashes), checkpoint.root
    )
    return proof


def mint(runs: RunsClient, **fields: object) -> runs_pb2.Run:
    return runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(**fields)))


def attach(runs: RunsClient, run: str, kind: str, data: bytes, **fields: object) -> runs_pb2.Attachment:
    items = [runs_pb2.NewAttachment(kind=kind, filename="f.bin", data=data, **fields)]  # type: ignore[arg-type]
    request = runs_pb2.BatchCreateAttachmentsRequest(run=run, attachments=items)
    return runs.BatchCreateAttachments(request).attachments[0]


def leaf_count(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(tables.ledger)).scalar_one())
    finally:
        engine.dispose()


def test_a_minted_run_carries_its_leaf_and_its_proof_verifies_offline(runs: RunsClient, layout: StateLayout) -> None:
    run = mint(runs)
    assert run.ledger.origin == "localhost/custody/runs"
    checkpoint_covering(runs, run.ledger.leaf_index + 1)
    proof = prove(runs, run.name, layout)
    assert (proof.leaf_index, proof.kind) == (run.ledger.leaf_index, "run")
    assert f'"artifact_sha256":"{run.artifact_sha256}"'.encode() in proof.leaf


def test_get_run_reports_the_same_leaf_as_the_mint(runs: RunsClient) -> None:
    run = mint(runs)
    assert runs.GetRun(runs_pb2.GetRunRequest(name=run.name)).ledger == run.ledger


def test_an_attachment_and_its_new_blob_each_get_a_leaf_once(
    runs: RunsClient, layout: StateLayout, database_url: str
) -> None:
    run = mint(runs, mode="design_session")
    before = leaf_count(database_url)
    first = attach(runs, run.name, "other", b"same bytes")
    second = attach(runs, run.name, "other", b"same bytes")
    assert leaf_count(database_url) == before + 3  # two attachments, one blob
    assert first.ledger.leaf_index != second.ledger.leaf_index
    checkpoint_covering(runs, leaf_count(database_url))
    assert prove(runs, f"blobs/{first.digest.sha256}", layout).kind == "blob"
    assert prove(runs, second.name, layout).kind == "attachment"


def test_an_idempotent_replay_appends_no_leaf(runs: RunsClient, database_url: str) -> None:
    request = runs_pb2.CreateRunRequest(run=run_input(), request_id="mint-once")
    first = runs.CreateRun(request)
    count = leaf_count(database_url)
    assert runs.CreateRun(request).ledger == first.ledger
    assert leaf_count(database_url) == count


def test_a_refused_write_appends_no_leaf(runs: RunsClient, database_url: str) -> None:
    count = leaf_count(database_url)
    error_of(lambda: mint(runs, mode=""))
    assert leaf_count(database_url) == count


def test_consecutive_checkpoints_are_consistent(runs: RunsClient, layout: StateLayout) -> None:
    old = checkpoint_covering(runs, mint(runs).ledger.leaf_index + 1)
    new = checkpoint_covering(runs, mint(runs).ledger.leaf_index + 1)
    proof = runs.GetConsistencyProof(ledger_pb2.GetConsistencyProofRequest(old_size=old.tree_size))
    assert proof.new_checkpoint.tree_size == new.tree_size > old.tree_size
    for signed in (proof.old_checkpoint, proof.new_checkpoint):
        verifier(layout).verify(signed.note)
    merkle.verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, list(proof.hashes))


@pytest.mark.parametrize(
    ("request_", "code", "reason"),
    [
        (ledger_pb2.GetInclusionProofRequest(), grpc.StatusCode.INVALID_ARGUMENT, "LEAF_NOT_NAMED"),
        (
            ledger_pb2.GetInclusionProofRequest(record_name="runs/nope"),
            grpc.StatusCode.NOT_FOUND,
            "LEDGER_RECORD_NOT_FOUND",
        ),
        (
            ledger_pb2.GetInclusionProofRequest(leaf_index=-1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "LEAF_INDEX_OUT_OF_RANGE",
        ),
        (ledger_pb2.GetInclusionProofRequest(leaf_index=10**9), grpc.StatusCode.NOT_FOUND, "LEAF_INDEX_OUT_OF_RANGE"),
        (
            ledger_pb2.GetInclusionProofRequest(leaf_index=0, tree_size=999_999),
            grpc.StatusCode.INVALID_ARGUMENT,
            "TREE_SIZE_NOT_CHECKPOINTED",
        ),
    ],
)
def test_inclusion_proof_errors(
    runs: RunsClient, request_: ledger_pb2.GetInclusionProofRequest, code: grpc.StatusCode, reason: str
) -> None:
    checkpoint_covering(runs, mint(runs).ledger.leaf_index + 1)
    error = status.decode(error_of(lambda: runs.GetInclusionProof(request_)))
    assert (error.code, error.reason) == (code, reason)


def test_consistency_proof_errors(runs: RunsClient) -> None:
    checkpoint = checkpoint_covering(runs, mint(runs).ledger.leaf_index + 1)
    backwards = ledger_pb2.GetConsistencyProofRequest(old_size=checkpoint.tree_size + 5, new_size=checkpoint.tree_size)
    unsigned = ledger_pb2.GetConsistencyProofRequest(old_size=0, new_size=999_999)
    for request, reason in ((backwards, "OLD_SIZE_AFTER_NEW_SIZE"), (unsigned, "TREE_SIZE_NOT_CHECKPOINTED")):
        error = status.decode(error_of(lambda request=request: runs.GetConsistencyProof(request)))
        assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, reason)


def test_a_leaf_newer_than_the_checkpoint_asked_for_is_not_yet_provable(runs: RunsClient) -> None:
    first = checkpoint_covering(runs, mint(runs).ledger.leaf_index + 1)
    later = mint(runs)
    request = ledger_pb2.GetInclusionProofRequest(record_name=later.name, tree_size=first.tree_size)
    error = status.decode(error_of(lambda: runs.GetInclusionProof(request)))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_YET_CHECKPOINTED")
    assert error.retry_after_s is not None


# ---- tampering -------------------------------------------------------------------------------------------------


def migrate_and_withdraw(runs: RunsClient, legacy_id: str, reason: str) -> None:
    """A legacy record migrated and its batch recorded under one request id (as one `custody runs migrate`), then
    the batch withdrawn: two withdrawal rows."""
    command = (*runs.operator, ("x-request-id", f"migrate-{legacy_id}"))
    record = run_input(meta=struct({"legacy": {"run_id": legacy_id}}))
    runs.CreateRun(runs_pb2.CreateRunRequest(run=record, legacy_migration=True), metadata=command)
    batch = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(mode=MIGRATION_BATCH_MODE)), metadata=command)
    runs.WithdrawMigrationBatch(runs_pb2.WithdrawMigrationBatchRequest(batch=batch.name, reason=reason))


def populate(runs: RunsClient, reviewer: tuple[tuple[str, str], ...]) -> None:
    """Records of every kind: runs, blobs and attachments (one with a signed asset), an advisory, explanation
    history (an explanation reviewed, one rejected, one awaiting review, one GREEN), a seal, withdrawals (of two
    migrations)."""
    for _ in range(3):
        mint(runs)
    red = runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_RED, score=0.1, block_reason="feature too thin")
    for decision in (runs_pb2.REVIEW_DECISION_APPROVE, runs_pb2.REVIEW_DECISION_REJECT, None, "green"):
        fields = {} if decision == "green" else {"status": runs_pb2.RUN_STATUS_BLOCKED, "decision": red}
        run = runs.SuggestExplanation(runs_pb2.SuggestExplanationRequest(name=mint(runs, **fields).name))
        if isinstance(decision, int):
            request = runs_pb2.ReviewExplanationRequest(
                run=run.name, decision=decision, rationale="checked", expected_version=run.explanation.version
            )
            runs.ReviewExplanation(request, metadata=reviewer)
    session = mint(runs, mode="design_session").name
    attach(runs, session, "geometry_svg", CLEAN_SVG)
    attach(runs, session, "geometry_spec_json", CLEAN_SPEC)
    attach(runs, session, "other", b"\x00\x01" * 3000)
    credentials = runs_pb2.ContentCredentialsRequest(
        source=runs_pb2.ASSET_SOURCE_MODEL_OUTPUT, provider="local", model="local-image-1"
    )
    attach(runs, session, "concept_image", CONCEPT_PNG, content_type="image/png", content_credentials=credentials)
    for advisory_id in ("adv-1", "adv-2"):
        runs.AttachAdvisory(
            runs_pb2.AttachAdvisoryRequest(
                run=session,
                advisory_id=advisory_id,
                kind=runs_pb2.ADVISORY_KIND_ADVISORY,
                engine_id="cam",
                summary="ok",
            )
        )
    runs.BindCandidate(runs_pb2.BindCandidateRequest(run=session))
    migrate_and_withdraw(runs, "run_legacy1", "mapped the wrong tool")
    migrate_and_withdraw(runs, "run_legacy2", "source was a stale copy")


def settled(runs: RunsClient, harness: ServiceHarness, database_url: str) -> RunsSettings:
    """Waits for a checkpoint covering every leaf, then stops the service: the audit works offline."""
    checkpoint_covering(runs, leaf_count(database_url))
    harness.stop()
    assert isinstance(harness.settings, RunsSettings)
    return harness.settings


def test_the_audit_passes_on_an_untouched_database(
    runs: RunsClient, ledger_harness: ServiceHarness, database_url: str, reviewer: tuple[tuple[str, str], ...]
) -> None:
    populate(runs, reviewer)
    report = ledger_audit.audit(settled(runs, ledger_harness, database_url))
    assert report.ok, report.findings
    assert report.leaves == report.records > 10 and report.checkpoints >= 1


def test_every_single_row_tampering_of_every_immutable_table_is_detected(
    runs: RunsClient, ledger_harness: ServiceHarness, database_url: str, reviewer: tuple[tuple[str, str], ...]
) -> None:
    populate(runs, reviewer)
    settings = settled(runs, ledger_harness, database_url)
    engine = create_engine(database_url)
    try:
        trials = tamper.try_every(
            engine, tables.metadata, tables.IMMUTABLE_TABLES, lambda: ledger_audit.audit(settings).ok, 3
        )
    finally:
        engine.dispose()
    assert not trials.missed, f"undetected: {trials.missed}"
    assert not trials.untried(tables.IMMUTABLE_TABLES), "every table takes every kind of change"
    assert sum(trials.tried.values()) == 3 * len(tables.IMMUTABLE_TABLES) * len(tamper.KINDS)


def test_rewriting_a_run_and_its_hash_is_named_by_the_audit(
    runs: RunsClient, ledger_harness: ServiceHarness, database_url: str
) -> None:
    """The issue's attack: drop the trigger, rewrite a run and its artifact_sha256, restore the trigger."""
    run = mint(runs)
    settings = settled(runs, ledger_harness, database_url)
    engine = create_engine(database_url)
    try:
        with tamper.triggers_dropped(engine, "runs") as connection:
            connection.execute(
                tables.runs.update().where(tables.runs.c.id == run.name.split("/")[1]).values(artifact_sha256="0" * 64)
            )
    finally:
        engine.dispose()
    report = ledger_audit.audit(settings)
    assert not report.ok
    assert report.findings[0].where == f"leaf {run.ledger.leaf_index} ({run.name})"
    assert "digests.artifact_sha256" in report.findings[0].problem


def test_a_service_restarted_on_a_rewritten_ledger_refuses_to_sign_or_prove(
    runs: RunsClient, ledger_harness: ServiceHarness, layout: StateLayout, database_url: str, tmp_path: Path
) -> None:
    run = mint(runs)
    settled(runs, ledger_harness, database_url)
    engine = create_engine(database_url)
    try:
        with tamper.triggers_dropped(engine, "ledger_leaves") as connection:
            connection.execute(
                tables.ledger.update()
                .where(tables.ledger.c.leaf_index == run.ledger.leaf_index)
                .values(leaf_sha256="0" * 64)
            )
    finally:
        engine.dispose()
    settings = {"database_url": database_url, "blob_backend": "database", "blob_dir": str(tmp_path / "blobs"), **FAST}
    with ServiceHarness("runs", layout, settings=settings) as restarted:
        client = RunsClient(restarted, layout)
        for call in (
            lambda: client.GetCheckpoint(ledger_pb2.GetCheckpointRequest()),
            lambda: client.GetInclusionProof(ledger_pb2.GetInclusionProofRequest(record_name=run.name)),
        ):
            error = status.decode(error_of(call))
            assert (error.code, error.reason) == (grpc.StatusCode.DATA_LOSS, "LEDGER_INCONSISTENT")
        mint(RunsClient(restarted, layout))  # records are still taken: only signing stops
