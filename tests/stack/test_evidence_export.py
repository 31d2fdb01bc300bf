"""`custody evidence export`: bundles of real records, gathered over real gRPC from the four services (served in
process, checkpointing every 50 ms), verify offline with `custody evidence verify` and with securesystemslib;
a flipped byte is named; what cannot be exported is refused with a message saying why.

One module-wide flow mints what the tests export, as `custody demo` does: a brief (the operator), three
candidates through the real gateway's local provider (art_studio attaches each call's envelope to the design
session), the first candidate bound (a verdict minted by runs and recorded in lineage), and the chain approved.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.signer import SSlibKey
from typer.testing import CliRunner

from custody.art_studio.v1 import art_studio_pb2, art_studio_pb2_grpc
from custody.lineage.v1 import lineage_pb2, lineage_pb2_grpc
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.cli import evidence_export
from services.cli.evidence_export import Exporter, ExportError
from services.cli.main import app
from services.cli.state import StateLayout, save_endpoints
from services.common.clients import ServiceClients
from services.common.evidence import bundle, statement
from services.common.evidence.keys import EvidencePublicKey
from services.common.hashing import canonical_json, sha256_canonical
from services.common.protomap import dict_to_struct
from tests.runs.conftest import run_input
from tests.support.harness import ServiceHarness, bearer, operator_token, second_reviewer_token, state_layout
from tests.support.tamper import triggers_dropped

FAST_CHECKPOINTS = {"ledger_checkpoint_interval_s": "0.05"}
DELIVERY_POLLS = 600  # x 50 ms


@dataclass
class Minted:
    layout: StateLayout
    auth: tuple[tuple[str, str], ...]
    runs: Any
    lineage: Any
    brief: str
    session: str  # art_studio's design session: nine attachments, three AI call envelopes
    verdict: runs_pb2.Run  # the bound candidate's verdict, recorded in lineage
    candidate: str  # its svg_candidate version
    approved: str  # its feasibility_run version, approved after its candidate and brief
    unapproved: str  # the second candidate's version, never decided


@pytest.fixture(scope="module")
def minted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Minted]:
    layout = state_layout(tmp_path_factory.mktemp("evidence") / "var")
    auth = bearer(operator_token(layout))
    reviewer = bearer(second_reviewer_token(layout))  # four eyes: the operator created and requested everything
    with ExitStack() as stack:
        gateway = stack.enter_context(ServiceHarness("ai_gateway", layout, settings=FAST_CHECKPOINTS))
        lineage = stack.enter_context(ServiceHarness("lineage", layout, settings=FAST_CHECKPOINTS))
        peers = {"ai_gateway_address": gateway.address, "lineage_address": lineage.address}
        runs = stack.enter_context(ServiceHarness("runs", layout, settings={**FAST_CHECKPOINTS, **peers}))
        studio = stack.enter_context(
            ServiceHarness("art_studio", layout, settings={**peers, "runs_address": runs.address})
        )
        save_endpoints(layout, {h.service: h.address for h in (gateway, lineage, runs, studio)})
        lineage_stub = lineage_pb2_grpc.LineageServiceStub(lineage.channel())
        runs_stub = runs_pb2_grpc.RunsServiceStub(runs.channel())
        brief = lineage_stub.CreateVersion(
            lineage_pb2.CreateVersionRequest(
                parent="projects/evidence/artifacts/design_brief/brief",
                data=dict_to_struct({"prompt": "a rosette with 12 petals"}),
                metadata=lineage_pb2.VersionMetadata(
                    intent="a rosette", rationale="the customer's request", confidence=1.0, source=2
                ),
            ),
            metadata=auth,
        ).version.name
        answer = art_studio_pb2_grpc.ArtStudioServiceStub(studio.channel()).GenerateCandidates(
            art_studio_pb2.GenerateCandidatesRequest(
                prompt="a rosette with 12 petals and a rope band",
                diameter_mm=100,
                count=3,
                new_session=True,
                lineage_parent=brief,
                provider="local",
            ),
            metadata=auth,
            timeout=60,
        )
        assert answer.succeeded == 3, answer
        first, second = answer.candidates[0], answer.candidates[1]
        bound = runs_stub.BindCandidate(
            runs_pb2.BindCandidateRequest(
                run=answer.run,
                attachments=[first.svg_attachment, first.spec_attachment, first.envelope_attachment],
                lineage_candidate=first.lineage_version,
            ),
            metadata=auth,
        ).run
        verdict = _delivered(runs_stub, bound.name, auth)
        for name in (brief, first.lineage_version, verdict.lineage.version):
            lineage_stub.Approve(
                lineage_pb2.ApproveRequest(name=name, rationale="checked for the test"), metadata=reviewer
            )
        yield Minted(
            layout,
            auth,
            runs_stub,
            lineage_stub,
            brief,
            answer.run,
            verdict,
            first.lineage_version,
            verdict.lineage.version,
            second.lineage_version,
        )


def _delivered(runs: Any, name: str, auth: tuple[tuple[str, str], ...]) -> runs_pb2.Run:
    for _ in range(DELIVERY_POLLS):
        run: runs_pb2.Run = runs.GetRun(runs_pb2.GetRunRequest(name=name), metadata=auth)
        if run.lineage.state == "DELIVERED":
            return run
        time.sleep(0.05)
    raise AssertionError(f"{name} was never recorded in lineage: {run.lineage}")


def _custody(layout: StateLayout, *args: str) -> tuple[int, str]:
    # The state directory's operator token, and lines wide enough that no message is wrapped.
    env = {"CUSTODY_TOKEN": None, "COLUMNS": "400"}
    result = CliRunner().invoke(app, [*args, "--state-dir", str(layout.root)], env=env)
    return result.exit_code, result.output


def _export(minted: Minted, record: str, directory: Path, *options: str) -> tuple[int, str]:
    return _custody(minted.layout, "evidence", "export", record, str(directory), *options)


def _verify(minted: Minted, directory: Path) -> tuple[int, str]:
    return _custody(minted.layout, "evidence", "verify", str(directory))


def _exported(minted: Minted, record: str, directory: Path) -> dict[str, Any]:
    """Exports `record` (which must succeed) and returns the signed statement."""
    code, output = _export(minted, record, directory)
    assert code == 0, output
    envelope = json.loads((directory / bundle.STATEMENT_FILE).read_text())
    claims: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return claims


def _ledger_kinds(directory: Path) -> list[tuple[str, str]]:
    return [(r.service, r.kind) for r in bundle.read_ledger(directory).records]


# ---- runs --------------------------------------------------------------------------------------------------------


def test_an_exported_verdict_verifies_offline_with_its_attachments_lineage_and_ai_call(
    minted: Minted, tmp_path: Path
) -> None:
    run = minted.verdict
    claims = _exported(minted, run.name, tmp_path / "b")
    code, output = _verify(minted, tmp_path / "b")
    assert code == 0, output
    attachments = minted.runs.ListAttachments(runs_pb2.ListAttachmentsRequest(run=run.name), metadata=minted.auth)
    by_name = {f"{a.name}/{a.filename}": a.digest.sha256 for a in attachments.attachments}
    assert claims["subject"][0] == {"name": run.name, "digest": {"sha256": run.artifact_sha256}}
    assert {s["name"]: s["digest"]["sha256"] for s in claims["subject"][1:]} == by_name
    assert sorted(bundle.read_subject_files(tmp_path / "b")) == sorted(by_name.values())
    dependencies = claims["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert [(d["uri"], d["annotations"]["ledgerKind"]) for d in dependencies[:2]] == [
        (minted.candidate, "version"),
        (minted.approved, "version"),
    ]
    (call,) = dependencies[2:]
    envelope = next(a for a in attachments.attachments if a.kind == "ai_provenance_json")
    attached = json.loads(_read(minted, envelope.name))
    assert call["uri"] == attached["call"]
    assert call["annotations"] | {"ledgerKind": "call"} == {
        "ledgerKind": "call",
        "model": attached["model"],
        "provider": "local",
        "requestId": attached["request_id"],
    }
    engine = claims["predicate"]["buildDefinition"]["internalParameters"]["feasibilityEngine"]
    assert engine == {"id": run.tool_id, "version": run.engine_version} and run.engine_version
    assert _ledger_kinds(tmp_path / "b") == [
        ("runs", "run"),
        *[("runs", "attachment")] * 3,
        ("lineage", "version"),
        ("lineage", "version"),
        ("ai_gateway", "call"),
    ]


def test_export_prints_what_it_wrote(minted: Minted, tmp_path: Path) -> None:
    code, output = _export(minted, minted.verdict.name, tmp_path / "b")
    assert code == 0, output
    assert f"exported {minted.verdict.name} to {tmp_path / 'b'}:" in output
    assert "statement.dsse.json  in-toto Statement v1 (https://slsa.dev/provenance/v1), 4 subject(s)" in output
    assert "ledger.json  7 record(s) with inclusion proofs and signed checkpoints: ai_gateway 1, lineage 2, runs 4" in (
        output
    )
    assert "subjects/  3 subject file(s)" in output
    assert f"custody evidence verify {tmp_path / 'b'}" in output


def test_export_json_lists_the_records_and_files(minted: Minted, tmp_path: Path) -> None:
    code, output = _export(minted, minted.approved, tmp_path / "b", "--json")
    assert code == 0, output
    report = json.loads(output)
    assert (report["record"], report["predicate_type"]) == (minted.approved, statement.VERIFICATION_SUMMARY)
    assert [(r["service"], r["kind"]) for r in report["ledger_records"]] == _ledger_kinds(tmp_path / "b")
    assert all(r["leaf_index"] < r["tree_size"] for r in report["ledger_records"])
    assert report["subject_files"] == [] and report["notes"] == []


def test_a_design_session_names_every_attachment_on_every_page_and_each_ai_call(
    minted: Minted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evidence_export, "ATTACHMENT_PAGE", 2)
    claims = _exported(minted, minted.session, tmp_path / "b")
    assert _verify(minted, tmp_path / "b")[0] == 0
    assert len(claims["subject"]) == 1 + 9
    calls = claims["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert len({c["uri"] for c in calls}) == 3 and all(c["annotations"]["ledgerKind"] == "call" for c in calls)
    session = minted.runs.GetRun(runs_pb2.GetRunRequest(name=minted.session), metadata=minted.auth)
    engine = claims["predicate"]["buildDefinition"]["internalParameters"]["feasibilityEngine"]
    assert engine == {"id": "art_studio", "version": session.engine_version}  # the compiler that made the session


def test_securesystemslib_verifies_the_exported_envelope_with_the_state_directorys_key(
    minted: Minted, tmp_path: Path
) -> None:
    claims = _exported(minted, minted.verdict.name, tmp_path / "b")
    envelope = SslibEnvelope.from_dict(json.loads((tmp_path / "b" / bundle.STATEMENT_FILE).read_text()))
    pem = minted.layout.evidence_public_key.read_bytes()
    key = SSlibKey.from_crypto(load_pem_public_key(pem), keyid=EvidencePublicKey.from_pem(pem).keyid)
    assert list(envelope.verify([key], 1)) == [key.keyid]
    assert envelope.payload_type == "application/vnd.in-toto+json"
    assert envelope.payload == statement.payload(claims)


def test_a_flipped_byte_in_a_subject_file_is_named(minted: Minted, tmp_path: Path) -> None:
    _exported(minted, minted.verdict.name, tmp_path / "b")
    path = next((tmp_path / "b" / bundle.SUBJECTS_DIR).iterdir())
    path.write_bytes(_flip(path.read_bytes(), 10))
    code, output = _verify(minted, tmp_path / "b")
    assert code == 1
    assert f"FAILED subjects/{path.name}: subject.digest" in output
    assert "1 failure(s)" in output


def test_a_flipped_byte_in_the_statement_is_named(minted: Minted, tmp_path: Path) -> None:
    _exported(minted, minted.verdict.name, tmp_path / "b")
    path = tmp_path / "b" / bundle.STATEMENT_FILE
    envelope = json.loads(path.read_text())
    payload = base64.b64decode(envelope["payload"])
    envelope["payload"] = base64.b64encode(payload.replace(b'"mode":"', b'"mode":"X', 1)).decode()
    path.write_text(json.dumps(envelope))
    code, output = _verify(minted, tmp_path / "b")
    assert code == 1
    assert "FAILED statement.dsse.json: dsse.signature" in output


def test_an_envelope_naming_a_call_the_gateway_does_not_have_is_refused(minted: Minted, tmp_path: Path) -> None:
    run = _run_with_envelope(minted, {"call": "calls/call_" + "0" * 32, "provider": "local"})
    code, output = _export(minted, run, tmp_path / "b")
    assert code == 1
    assert "names the AI call calls/call_" in output and "which ai_gateway does not have (CALL_NOT_FOUND" in output
    assert not (tmp_path / "b").exists()


def test_an_envelope_that_disagrees_with_the_gateways_record_is_refused(minted: Minted, tmp_path: Path) -> None:
    attachments = minted.runs.ListAttachments(
        runs_pb2.ListAttachmentsRequest(run=minted.session, kind="ai_provenance_json"), metadata=minted.auth
    ).attachments
    envelope = json.loads(_read(minted, attachments[0].name))
    run = _run_with_envelope(minted, envelope | {"model": "a-better-model"})
    code, output = _export(minted, run, tmp_path / "b")
    assert code == 1
    assert f"says model 'a-better-model' for {envelope['call']}" in output
    assert f"ai_gateway's record of the call says {envelope['model']!r}" in output


def test_an_ai_provenance_attachment_naming_no_call_is_a_subject_that_resolves_no_call(
    minted: Minted, tmp_path: Path
) -> None:
    run = _run_with_envelope(minted, b"not an envelope")
    code, output = _export(minted, run, tmp_path / "b")
    assert code == 0, output
    assert "(envelope.json) is not a gateway envelope naming its call" in output
    claims = json.loads(base64.b64decode(json.loads((tmp_path / "b" / bundle.STATEMENT_FILE).read_text())["payload"]))
    assert len(claims["subject"]) == 2 and claims["predicate"]["buildDefinition"]["resolvedDependencies"] == []
    assert _verify(minted, tmp_path / "b")[0] == 0


def test_a_run_rewritten_with_its_digest_is_not_exported(minted: Minted, tmp_path: Path) -> None:
    """The issue's attack: the record and its artifact_sha256 rewritten together, so VerifyRun finds nothing. The
    leaf still holds the digest the run was minted with: the bundle would not verify, so none is written."""
    run = minted.runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()), metadata=minted.auth).name
    engine = sa.create_engine(f"sqlite:///{minted.layout.root / 'runs.db'}")
    with triggers_dropped(engine, "runs") as connection:
        row = connection.execute(
            sa.text("SELECT artifact_json FROM runs WHERE id = :id"), {"id": run.removeprefix("runs/")}
        ).one()
        forged = json.loads(row.artifact_json) | {"tool_id": "forged-tool"}
        connection.execute(
            sa.text("UPDATE runs SET artifact_json = :json, artifact_sha256 = :sha, tool_id = :tool WHERE id = :id"),
            {
                "json": canonical_json(forged).decode(),
                "sha": sha256_canonical(forged),
                "tool": "forged-tool",
                "id": run.removeprefix("runs/"),
            },
        )
    engine.dispose()
    assert minted.runs.VerifyRun(runs_pb2.VerifyRunRequest(name=run), metadata=minted.auth).ok
    code, output = _export(minted, run, tmp_path / "b")
    assert code == 1
    assert "FAILED statement.dsse.json subject[0]: ledger.claim: the statement says digests.artifact_sha256" in output
    assert f"nothing was written to {tmp_path / 'b'}" in output
    assert list(tmp_path.iterdir()) == []


# ---- approvals ---------------------------------------------------------------------------------------------------


def test_an_exported_approval_verifies_offline_naming_reviewer_policy_and_upstream(
    minted: Minted, tmp_path: Path
) -> None:
    claims = _exported(minted, minted.approved, tmp_path / "b")
    code, output = _verify(minted, tmp_path / "b")
    assert code == 0, output
    version = lineage_version(minted, minted.approved)
    candidate = lineage_version(minted, minted.candidate)
    assert claims["subject"] == [{"name": minted.approved, "digest": {"sha256": version.snapshot_sha256}}]
    predicate = claims["predicate"]
    assert predicate["verifier"]["id"] == "https://custody.dev/reviewers/human:rita"
    assert predicate["policy"]["uri"] == f"types/feasibility_run@{version.metadata.schema_version}"
    extension = predicate[statement.APPROVAL_EXTENSION]
    assert extension["approval"]["name"] == f"{minted.approved}/status/{version.status.revision}"
    assert (extension["rationale"], extension["requestId"]) == ("checked for the test", version.status.request_id)
    assert [(u["uri"], u["digest"]["sha256"]) for u in extension["upstream"]] == [
        (minted.candidate, candidate.snapshot_sha256)
    ]
    assert _ledger_kinds(tmp_path / "b") == [
        ("lineage", "version"),
        ("lineage", "status"),
        ("lineage", "type"),
        ("lineage", "version"),
    ]


def test_a_version_not_approved_is_not_exported(minted: Minted, tmp_path: Path) -> None:
    code, output = _export(minted, minted.unapproved, tmp_path / "b")
    assert code == 1
    assert f"{minted.unapproved} is not approved (its status is STATUS_DRAFT at revision 1)" in output
    assert not (tmp_path / "b").exists()


# ---- what cannot be exported -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("runs/run_" + "0" * 32, "error: NOT_FOUND RUN_NOT_FOUND"),
        ("projects/evidence/artifacts/design_brief/brief/versions/99", "error: NOT_FOUND VERSION_NOT_FOUND"),
        ("runs/run_1/attachments/att_2", "is an attachment: export its run (runs/run_1)"),
        ("calls/call_1", "is an AI call: export the run that relies on it"),
        ("brief", "'brief' is not a record Custody exports: name a run (runs/<id>) or an approved lineage version"),
    ],
)
def test_an_unknown_record_is_refused_with_a_precise_message(
    minted: Minted, tmp_path: Path, record: str, message: str
) -> None:
    code, output = _export(minted, record, tmp_path / "b")
    assert code == 1
    assert message in output
    assert not (tmp_path / "b").exists()


def test_a_directory_that_is_not_empty_is_refused(minted: Minted, tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "old.txt").write_text("from another export")
    code, output = _export(minted, minted.verdict.name, tmp_path / "b")
    assert code == 2
    assert "is not an empty directory" in output
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["old.txt"]


def test_another_signing_key_can_be_named(minted: Minted, tmp_path: Path) -> None:
    code, output = _export(minted, minted.verdict.name, tmp_path / "b", "--key", str(tmp_path / "missing.key"))
    assert code == 2 and "no evidence signing key at" in output


# ---- records newer than their ledger's last checkpoint ------------------------------------------------------------


@pytest.fixture
def slow_runs(tmp_path: Path) -> Iterator[tuple[StateLayout, ServiceHarness]]:
    """runs alone, signing a checkpoint only every hour or every 4 leaves: a new run waits for its checkpoint."""
    layout = state_layout(tmp_path / "slow")
    settings = {"ledger_checkpoint_interval_s": "3600", "ledger_checkpoint_leaves": "4"}
    with ServiceHarness("runs", layout, settings=settings) as harness:
        save_endpoints(layout, {"runs": harness.address})
        yield layout, harness


def _create_run(harness: ServiceHarness, layout: StateLayout) -> str:
    stub = runs_pb2_grpc.RunsServiceStub(harness.channel())
    return str(stub.CreateRun(runs_pb2.CreateRunRequest(run=run_input()), metadata=bearer(operator_token(layout))).name)


def test_export_waits_as_retry_info_says_for_the_checkpoint_covering_a_new_record(
    slow_runs: tuple[StateLayout, ServiceHarness],
) -> None:
    layout, harness = slow_runs
    run = _create_run(harness, layout)
    asked: list[float] = []

    async def sleep(delay: float) -> None:
        if not asked:  # three more runs: four unsigned leaves, so the next checkpoint is due now
            for _ in range(3):
                _create_run(harness, layout)
        asked.append(delay)
        await asyncio.sleep(0.05)

    exported = asyncio.run(_export_with(layout, harness, run, wait_s=30, sleep=sleep))
    assert asked and 29 < asked[0] <= 30  # RetryInfo says an hour; the export waits at most its --wait
    (record,) = exported.ledger_records
    assert record.record_name == run and record.tree_size >= 4  # the checkpoint those leaves made due


def test_export_gives_up_after_its_wait_naming_the_record(slow_runs: tuple[StateLayout, ServiceHarness]) -> None:
    layout, harness = slow_runs
    run = _create_run(harness, layout)
    now = [0.0]
    asked: list[float] = []

    async def sleep(delay: float) -> None:
        asked.append(delay)
        now[0] += delay

    with pytest.raises(ExportError) as raised:
        asyncio.run(_export_with(layout, harness, run, wait_s=2.5, sleep=sleep, clock=lambda: now[0]))
    assert asked == [2.5]
    assert str(raised.value).startswith(f"runs has not signed a checkpoint covering {run} after 2.5 s")
    code, output = _custody(layout, "evidence", "export", run, str(layout.root / "b"), "--wait", "0")
    assert code == 1 and f"runs has not signed a checkpoint covering {run} after 0 s" in output


def test_a_run_whose_stored_record_was_rewritten_is_not_exported(slow_runs: tuple[StateLayout, ServiceHarness]) -> None:
    """Its leaf holds the artifact's digest only: the fields the statement repeats must still hash to it."""
    layout, harness = slow_runs
    run = _create_run(harness, layout)
    engine = sa.create_engine(f"sqlite:///{layout.root / 'runs.db'}")
    with triggers_dropped(engine, "runs") as connection:
        connection.execute(
            sa.text("UPDATE runs SET artifact_json = replace(artifact_json, :was, :forged) WHERE id = :id"),
            {"was": '"router-0.5mm"', "forged": '"forged-tool"', "id": run.removeprefix("runs/")},
        )
    engine.dispose()
    code, output = _custody(layout, "evidence", "export", run, str(layout.root / "b"))
    assert code == 1
    assert f"{run} fails VerifyRun, so its record cannot be vouched for: artifact: ARTIFACT_HASH_MISMATCH" in output
    assert not (layout.root / "b").exists()


async def _export_with(layout: StateLayout, harness: ServiceHarness, record: str, **options: Any) -> Any:
    clients = ServiceClients({"runs": harness.address}, operator_token(layout))
    try:
        return await Exporter(clients.stub, **options).export(record)
    finally:
        await clients.close()


# ---- helpers -----------------------------------------------------------------------------------------------------


def lineage_version(minted: Minted, name: str) -> lineage_pb2.Version:
    version: lineage_pb2.Version = minted.lineage.GetVersion(
        lineage_pb2.GetVersionRequest(name=name), metadata=minted.auth
    )
    return version


def _read(minted: Minted, attachment: str) -> bytes:
    return b"".join(
        m.chunk
        for m in minted.runs.ReadAttachment(runs_pb2.ReadAttachmentRequest(name=attachment), metadata=minted.auth)
    )


def _run_with_envelope(minted: Minted, envelope: dict[str, Any] | bytes) -> str:
    """A run whose ai_provenance_json attachment is `envelope` (as canonical JSON, or these bytes)."""
    run = minted.runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()), metadata=minted.auth)
    data = envelope if isinstance(envelope, bytes) else canonical_json(envelope)
    minted.runs.BatchCreateAttachments(
        runs_pb2.BatchCreateAttachmentsRequest(
            run=run.name,
            attachments=[
                runs_pb2.NewAttachment(
                    kind="ai_provenance_json", filename="envelope.json", content_type="application/json", data=data
                )
            ],
        ),
        metadata=minted.auth,
    )
    return str(run.name)


def _flip(data: bytes, at: int) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 0x01
    return bytes(changed)
