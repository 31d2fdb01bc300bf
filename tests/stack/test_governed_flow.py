"""The four services as one system, in real processes: the operator's demo, lineage records that survive a
lineage outage, and one trace (and one request id) across every service."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from bench.harness import RunningService, service_process
from custody.art_studio.v1 import art_studio_pb2, art_studio_pb2_grpc
from custody.common.v1 import ledger_pb2
from custody.lineage.v1 import lineage_pb2, lineage_pb2_grpc
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.common import status
from services.common.ledger import merkle
from services.common.ledger.note import NoteVerifier
from tests.support.harness import bearer, second_reviewer_token, state_layout
from tests.support.processes import clean_environment, custody, free_port, running_stack

pytestmark = pytest.mark.stack

VERSION = re.compile(r"^projects/[^/]+/artifacts/[a-z_]+/[^/]+/versions/\d+$")


def test_the_demo_holds_every_governance_expectation(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        result = custody("demo", "--json", "--state-dir", str(stack.state_dir), env=clean_environment(), timeout=180)
        stack.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert [s["ok"] for s in report["steps"]] == [True] * 15, report["steps"]
    assert len(report["request_ids"]) == len(report["trace_ids"]) == 15
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in report["trace_ids"])
    assert VERSION.match(report["brief"])
    assert len(report["runs"]) == 3 and all(r.startswith("runs/run_") for r in report["runs"])
    assert len(report["stale_after_revision"]) == 2
    assert report["approval_refused_reasons"] and all(":" in r for r in report["approval_refused_reasons"])
    assert report["verified"] == len(report["runs"]) + 2  # the verdicts and both design sessions
    steps = {s["name"]: s["detail"] for s in report["steps"]}
    assert "PERMISSION_DENIED" in steps["a service cannot approve"]
    assert "kind system" in steps["explain the run (GREEN: system auto-approval)"]
    credentials = steps["content credentials on the SVG and concept image"]
    assert "image/svg+xml algorithmicMedia" in credentials and "image/png trainedAlgorithmicMedia" in credentials
    # Four eyes: a second person, added while the stack runs, approves what the operator wrote and requested.
    reviewer = report["reviewer"]
    assert re.fullmatch(r"human:reviewer-[0-9a-f]{4}", reviewer)
    (entry,) = [
        p for p in json.loads((stack.state_dir / "credentials").read_text())["principals"] if p["id"] == reviewer
    ]
    assert (entry["kind"], entry["roles"]) == ("human", ["reviewer"])
    own, requested = report["self_approval_refusals"]
    assert own.startswith("SELF_APPROVAL: human:operator created ") and report["brief"] in own
    assert requested.startswith("SELF_APPROVAL: human:operator requested ") and "/feasibility_run/" in requested
    assert steps["the operator cannot approve their own work"].count("FAILED_PRECONDITION SELF_APPROVAL") == 2
    assert steps["approve the chain as the second reviewer"].startswith(f"approved by {reviewer}: ")
    assert steps["approve the new chain"].startswith(f"approved by {reviewer}: ")


class Services:
    """The four services as separate `custody serve` processes sharing one state directory."""

    def __init__(self, tmp_path: Path, lineage_port: int, **telemetry: str) -> None:
        self.state = tmp_path / "var"
        self.lineage_port = lineage_port
        self.telemetry = telemetry
        self._stack = ExitStack()
        self.lineage: RunningService | None = None

    def _settings(self, service: str) -> dict[str, str]:
        if not self.telemetry:
            return {}
        return {"telemetry_exporter": "file", "telemetry_file": str(self.state / "traces" / f"{service}.jsonl")}

    def start_lineage(self) -> RunningService:
        self._lineage_stack = ExitStack()
        self.lineage = self._lineage_stack.enter_context(
            service_process("lineage", self.state, port=self.lineage_port, **self._settings("lineage"))
        )
        return self.lineage

    def stop_lineage(self) -> None:
        self._lineage_stack.close()
        self.lineage = None

    def __enter__(self) -> Services:
        lineage_address = f"127.0.0.1:{self.lineage_port}"
        # A second person, reviewer only, in the credentials before any service reads them: four eyes.
        self.reviewer = bearer(second_reviewer_token(state_layout(self.state)))
        self.gateway = self._stack.enter_context(
            service_process("ai_gateway", self.state, **self._settings("ai_gateway"))
        )
        self.runs = self._stack.enter_context(
            service_process(
                "runs",
                self.state,
                ai_gateway_address=self.gateway.address,
                lineage_address=lineage_address,
                **self._settings("runs"),
            )
        )
        self.start_lineage()
        self.studio = self._stack.enter_context(
            service_process(
                "art_studio",
                self.state,
                ai_gateway_address=self.gateway.address,
                runs_address=self.runs.address,
                lineage_address=lineage_address,
                **self._settings("art_studio"),
            )
        )
        self.auth = (("authorization", f"Bearer {self.runs.layout.operator_token.read_text().strip()}"),)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.lineage is not None:
            self.stop_lineage()
        self._stack.close()

    def channel(self, address: str) -> grpc.Channel:
        return self._stack.enter_context(grpc.insecure_channel(address))

    def brief(self, project: str, metadata: tuple[tuple[str, str], ...] = ()) -> str:
        data = struct_pb2.Struct()
        data.update({"prompt": "12 petals and a rope band"})
        stub = lineage_pb2_grpc.LineageServiceStub(self.channel(f"127.0.0.1:{self.lineage_port}"))
        response = stub.CreateVersion(
            lineage_pb2.CreateVersionRequest(
                parent=f"projects/{project}/artifacts/design_brief/brief",
                data=data,
                metadata=lineage_pb2.VersionMetadata(
                    intent="a rosette", rationale="test", confidence=1.0, source=lineage_pb2.SOURCE_HUMAN
                ),
            ),
            metadata=self.auth + metadata,
        )
        return str(response.version.name)

    def generate(
        self, brief: str, metadata: tuple[tuple[str, str], ...] = ()
    ) -> art_studio_pb2.GenerateCandidatesResponse:
        """Three candidates in a new design session (art_studio creates and owns it; `.run` names it)."""
        return art_studio_pb2_grpc.ArtStudioServiceStub(self.channel(self.studio.address)).GenerateCandidates(
            art_studio_pb2.GenerateCandidatesRequest(
                prompt="a rosette with 12 petals and a rope band",
                diameter_mm=100,
                count=3,
                new_session=True,
                lineage_parent=brief,
            ),
            metadata=self.auth + metadata,
            timeout=60,
        )


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    with Services(tmp_path, free_port()) as running:
        yield running


def test_generated_candidates_are_attached_and_hash_to_the_returned_digests(services: Services) -> None:
    answer = services.generate(services.brief("flow"))
    session = answer.run
    assert answer.succeeded == 3
    runs = runs_pb2_grpc.RunsServiceStub(services.channel(services.runs.address))
    stored = {
        a.name: a.digest.sha256
        for a in runs.ListAttachments(runs_pb2.ListAttachmentsRequest(run=session), metadata=services.auth).attachments
    }
    for candidate in answer.candidates:
        assert stored[candidate.svg_attachment] == candidate.svg_sha256
        assert stored[candidate.spec_attachment] == candidate.spec_sha256
        assert VERSION.match(candidate.lineage_version)


def test_binding_while_lineage_is_down_mints_nothing_and_each_verdict_is_recorded_once_it_is_back(
    services: Services,
) -> None:
    answer = services.generate(services.brief("outage"))
    session, candidates = answer.run, answer.candidates
    runs = runs_pb2_grpc.RunsServiceStub(services.channel(services.runs.address))

    def bind(candidate: art_studio_pb2.Candidate) -> runs_pb2.Run:
        request = runs_pb2.BindCandidateRequest(
            run=session,
            attachments=[candidate.svg_attachment, candidate.spec_attachment],
            lineage_candidate=candidate.lineage_version,
        )
        return runs.BindCandidate(request, metadata=services.auth).run

    services.stop_lineage()
    with pytest.raises(grpc.RpcError) as raised:
        bind(candidates[0])
    assert status.decode(raised.value).reason == "LINEAGE_UNAVAILABLE"
    assert [r.name for r in runs.ListRuns(runs_pb2.ListRunsRequest(), metadata=services.auth).runs] == [session]
    services.start_lineage()
    minted = [_once_reachable(lambda c=c: bind(c)) for c in candidates]
    deadline = time.monotonic() + 60
    while True:
        current = [runs.GetRun(runs_pb2.GetRunRequest(name=r.name), metadata=services.auth) for r in minted]
        if all(r.lineage.state == "DELIVERED" for r in current) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert [r.lineage.state for r in current] == ["DELIVERED"] * 3
    lineage = lineage_pb2_grpc.LineageServiceStub(services.channel(f"127.0.0.1:{services.lineage_port}"))
    for run, candidate in zip(current, candidates, strict=True):
        entity = run.lineage.version.rsplit("/versions/", 1)[0]
        versions = lineage.ListVersions(lineage_pb2.ListVersionsRequest(parent=entity), metadata=services.auth).versions
        assert [v.name for v in versions] == [run.lineage.version]  # exactly one record per mint
        assert list(versions[0].upstream) == [candidate.lineage_version]
        assert versions[0].data["run"] == run.name
        assert versions[0].data["svg_sha256"] == candidate.svg_sha256
        assert versions[0].data["spec_sha256"] == candidate.spec_sha256
        assert versions[0].created_by.id == "service:runs"


def _once_reachable(call: Callable[[], runs_pb2.Run], timeout_s: float = 30) -> runs_pb2.Run:
    """Retries while runs' channel to a restarted lineage is still reconnecting (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            if status.decode(exc).reason != "LINEAGE_UNAVAILABLE" or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_one_generation_is_one_trace_and_one_request_id_across_all_four_services(tmp_path: Path) -> None:
    with Services(tmp_path, free_port(), telemetry="file") as services:
        brief = services.brief("trace")
        answer = services.generate(brief, metadata=(("x-request-id", "req-one-trace-1"),))
        session = answer.run
        runs = runs_pb2_grpc.RunsServiceStub(services.channel(services.runs.address))
        attachments = runs.ListAttachments(
            runs_pb2.ListAttachmentsRequest(run=session), metadata=services.auth
        ).attachments
        lineage = lineage_pb2_grpc.LineageServiceStub(services.channel(f"127.0.0.1:{services.lineage_port}"))
        versions = [
            lineage.GetVersion(lineage_pb2.GetVersionRequest(name=c.lineage_version), metadata=services.auth)
            for c in answer.candidates
        ]
    assert {c.envelope.request_id for c in answer.candidates} == {"req-one-trace-1"}
    assert {a.request_id for a in attachments} == {"req-one-trace-1"}
    assert {v.request_id for v in versions} == {"req-one-trace-1"}
    trace_ids = {c.envelope.trace_id for c in answer.candidates}
    assert len(trace_ids) == 1
    (trace_id,) = trace_ids
    spans_by_service = {}
    for service in ("art_studio", "ai_gateway", "runs", "lineage"):
        path = services.state / "traces" / f"{service}.jsonl"
        spans = [json.loads(line) for line in path.read_text().splitlines()]
        spans_by_service[service] = [s for s in spans if s["context"]["trace_id"] == f"0x{trace_id}"]
    assert {service for service, spans in spans_by_service.items() if spans} == {
        "art_studio",
        "ai_gateway",
        "runs",
        "lineage",
    }


def test_runs_hands_its_checkpoints_to_lineage_with_its_deliveries(services: Services) -> None:
    """Witnessing across real processes: after a delivery, lineage holds a runs checkpoint signed with runs' key
    that runs' own latest checkpoint provably extends."""
    answer = services.generate(services.brief("witness"))
    runs = runs_pb2_grpc.RunsServiceStub(services.channel(services.runs.address))
    candidate = answer.candidates[0]
    request = runs_pb2.BindCandidateRequest(
        run=answer.run,
        attachments=[candidate.svg_attachment, candidate.spec_attachment],
        lineage_candidate=candidate.lineage_version,
    )
    runs.BindCandidate(request, metadata=services.auth)
    lineage = lineage_pb2_grpc.LineageServiceStub(services.channel(f"127.0.0.1:{services.lineage_port}"))
    deadline = time.monotonic() + 60
    while True:
        kept = lineage.ListWitnessedCheckpoints(lineage_pb2.ListWitnessedCheckpointsRequest(), metadata=services.auth)
        if kept.checkpoints or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    (witnessed,) = kept.checkpoints
    assert witnessed.origin == "localhost/custody/runs" and witnessed.tree_size > 0
    runs_key = (services.state / "keys" / "runs.ledger.vkey").read_text().strip()
    assert NoteVerifier(runs_key).verify_checkpoint(witnessed.note).size == witnessed.tree_size
    latest = runs.GetCheckpoint(ledger_pb2.GetCheckpointRequest(), metadata=services.auth)
    proof = runs.GetConsistencyProof(
        ledger_pb2.GetConsistencyProofRequest(old_size=witnessed.tree_size, new_size=latest.tree_size),
        metadata=services.auth,
    )
    merkle.verify_consistency(
        witnessed.tree_size, latest.tree_size, witnessed.root_hash, latest.root_hash, list(proof.hashes)
    )


def _approve(lineage: Any, name: str, metadata: tuple[tuple[str, str], ...]) -> lineage_pb2.Version:
    request = lineage_pb2.ApproveRequest(name=name, rationale="reviewed for the four-eyes test")
    version: lineage_pb2.Version = lineage.Approve(request, metadata=metadata, timeout=30)
    return version


def _refusal(call: Callable[[], object]) -> status.DecodedError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return status.decode(raised.value)


def test_who_requested_a_binding_cannot_approve_its_verdict_and_another_reviewer_can(services: Services) -> None:
    """Four eyes across real processes: the operator writes the brief, asks art_studio for candidates and runs for
    the binding; lineage records each request, so the operator can approve none of it and the second reviewer can."""
    brief = services.brief("four-eyes")
    answer = services.generate(brief)
    candidate = answer.candidates[0]
    runs = runs_pb2_grpc.RunsServiceStub(services.channel(services.runs.address))
    request = runs_pb2.BindCandidateRequest(
        run=answer.run,
        attachments=[candidate.svg_attachment, candidate.spec_attachment],
        lineage_candidate=candidate.lineage_version,
    )
    bound = runs.BindCandidate(request, metadata=services.auth).run
    deadline = time.monotonic() + 60
    while (run := runs.GetRun(runs_pb2.GetRunRequest(name=bound.name), metadata=services.auth)).lineage.state != (
        "DELIVERED"
    ) and time.monotonic() < deadline:
        time.sleep(0.3)
    lineage = lineage_pb2_grpc.LineageServiceStub(services.channel(f"127.0.0.1:{services.lineage_port}"))
    verdict = lineage.GetVersion(lineage_pb2.GetVersionRequest(name=run.lineage.version), metadata=services.auth)
    assert (verdict.created_by.id, verdict.requested_by.id) == ("service:runs", "human:operator")
    recorded = lineage.GetVersion(lineage_pb2.GetVersionRequest(name=candidate.lineage_version), metadata=services.auth)
    assert (recorded.created_by.id, recorded.requested_by.id) == ("service:art_studio", "human:operator")

    for name, field in ((brief, "created_by"), (candidate.lineage_version, "requested_by")):
        refused = _refusal(lambda name=name: _approve(lineage, name, services.auth))
        assert (refused.code, refused.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SELF_APPROVAL")
        assert [v.field for v in refused.violations] == [field]
        assert _approve(lineage, name, services.reviewer).status.actor.id == "human:rita"
    refused = _refusal(lambda: _approve(lineage, verdict.name, services.auth))
    assert (refused.reason, [v.field for v in refused.violations]) == ("SELF_APPROVAL", ["requested_by"])
    unchanged = lineage.GetVersion(lineage_pb2.GetVersionRequest(name=verdict.name), metadata=services.auth)
    assert unchanged.status.status == lineage_pb2.STATUS_DRAFT
    approved = _approve(lineage, verdict.name, services.reviewer)
    assert (approved.status.status, approved.status.actor.id) == (lineage_pb2.STATUS_APPROVED, "human:rita")
