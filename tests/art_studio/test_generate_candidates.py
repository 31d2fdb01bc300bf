"""GenerateCandidates over real gRPC: art_studio -> (scripted) ai_gateway, and -> a real runs service."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from custody.ai_gateway.v1 import gateway_pb2
from custody.art_studio.v1 import art_studio_pb2, art_studio_pb2_grpc
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.cli.state import StateLayout
from services.common import status
from tests.art_studio.specs import simple
from tests.runs.conftest import run_input
from tests.support.fake_gateway import ScriptedGateway, fake_gateway
from tests.support.harness import ServiceHarness, bearer, operator_token, state_layout


def spec_for(request: gateway_pb2.GenerateTextRequest) -> str:
    """Like the local provider: a valid spec for the requested diameter, petals varying with the seed."""
    diameter = float(request.prompt.rsplit("Diameter: ", 1)[1].split(" mm")[0])
    variant = int(request.variant_seed.rsplit(":", 1)[1])
    return json.dumps(simple(diameter, petals=8 + variant))


@pytest.fixture
def layout(tmp_path: Path) -> StateLayout:
    return state_layout(tmp_path / "var")


@pytest.fixture
def script() -> ScriptedGateway:
    return ScriptedGateway(answer=spec_for)


class Stack:
    def __init__(self, studio: ServiceHarness, runs: ServiceHarness, layout: StateLayout) -> None:
        self.studio = art_studio_pb2_grpc.ArtStudioServiceStub(studio.channel())
        self.runs = runs_pb2_grpc.RunsServiceStub(runs.channel())
        self.auth = bearer(operator_token(layout))
        self.layout = layout

    def generate(self, **fields: Any) -> art_studio_pb2.GenerateCandidatesResponse:
        request = art_studio_pb2.GenerateCandidatesRequest(
            **{"prompt": "a 12 petal rosette", "diameter_mm": 100, "count": 3, **fields}
        )
        return self.studio.GenerateCandidates(request, metadata=self.auth, timeout=30)

    def new_run(self) -> runs_pb2.Run:
        return self.runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(mode="design_session")), metadata=self.auth)

    def session_runs(self) -> list[str]:
        """The design sessions art_studio created."""
        listed = self.runs.ListRuns(runs_pb2.ListRunsRequest(created_by="service:art_studio"), metadata=self.auth)
        return [run.name for run in listed.runs]

    def attachments(self, run: str) -> list[runs_pb2.Attachment]:
        return list(self.runs.ListAttachments(runs_pb2.ListAttachmentsRequest(run=run), metadata=self.auth).attachments)


def _stack(layout: StateLayout, script: ScriptedGateway, tmp_path: Path, **runs_settings: str) -> Iterator[Stack]:
    with ServiceHarness("ai_gateway", layout, factory=fake_gateway(script)) as gateway:  # type: ignore[arg-type]
        settings = {
            "database_url": f"sqlite:///{tmp_path}/runs.db",
            "blob_dir": str(tmp_path / "blobs"),
            **runs_settings,
        }
        with ServiceHarness("runs", layout, settings=settings) as runs:
            studio_settings = {"ai_gateway_address": gateway.address, "runs_address": runs.address}
            with ServiceHarness("art_studio", layout, settings=studio_settings) as studio:
                yield Stack(studio, runs, layout)


@pytest.fixture
def stack(layout: StateLayout, script: ScriptedGateway, tmp_path: Path) -> Iterator[Stack]:
    yield from _stack(layout, script, tmp_path)


def test_three_candidates_are_generated_compiled_and_hashed(stack: Stack, script: ScriptedGateway) -> None:
    answer = stack.generate()
    assert (answer.succeeded, answer.failed) == (3, 0)
    for candidate in answer.candidates:
        assert candidate.ok and candidate.svg.startswith(b"<svg")
        assert candidate.svg_sha256 == hashlib.sha256(candidate.svg).hexdigest()
        assert candidate.spec_sha256 == hashlib.sha256(candidate.spec_json.encode()).hexdigest()
        assert candidate.envelope.provider == "local"
    assert sorted(r.variant_seed for r in script.requests) == ["seed:0", "seed:1", "seed:2"]


def test_each_variant_asks_the_gateway_for_strict_json_with_the_spec_schema(
    stack: Stack, script: ScriptedGateway
) -> None:
    stack.generate(count=1, variant_seed="s42")
    (request,) = script.requests
    assert (request.operation, request.category, request.variant_seed) == (
        "prompt_to_svg_spec",
        "ROSETTE_DESIGN",
        "s42:0",
    )
    assert "radial_petals" in request.response_json_schema
    assert "no code fences" in request.system_prompt


def test_candidates_are_attached_to_a_new_session_and_hash_to_the_returned_digests(stack: Stack) -> None:
    answer = stack.generate(new_session=True)
    session = stack.runs.GetRun(runs_pb2.GetRunRequest(name=answer.run), metadata=stack.auth)
    assert (session.mode, session.created_by.id) == ("design_session", "service:art_studio")
    stored = {a.name: a for a in stack.attachments(answer.run)}
    assert len(stored) == 9
    for candidate in answer.candidates:
        assert stored[candidate.svg_attachment].digest.sha256 == candidate.svg_sha256
        assert stored[candidate.spec_attachment].digest.sha256 == candidate.spec_sha256
        assert stored[candidate.envelope_attachment].kind == "ai_provenance_json"


def test_one_bad_variant_fails_alone_with_field_problems(stack: Stack, script: ScriptedGateway) -> None:
    def second_is_invalid(request: gateway_pb2.GenerateTextRequest) -> str:
        if request.variant_seed.endswith(":1"):
            return json.dumps(
                {"canvas": {"diameter_mm": 100}, "shapes": [{"kind": "ring", "inner_r": 9, "outer_r": 3}]}
            )
        return spec_for(request)

    script.answer = second_is_invalid
    answer = stack.generate()
    assert (answer.succeeded, answer.failed) == (2, 1)
    failed = answer.candidates[1]
    assert not failed.ok and failed.failure.reason == "SPEC_INVALID"
    assert [p.field for p in failed.failure.problems] == ["shapes[0]"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("```json\n{}\n```", "SPEC_NOT_JSON"),
        ("Here is your rosette: a ring.", "SPEC_NOT_JSON"),
        ("[1, 2, 3]", "SPEC_NOT_JSON"),
        ('{"canvas": {"diameter_mm": 100}, "shapes": [{"kind": "circle", "r": 1e308}]}', "SPEC_INVALID"),
        (
            json.dumps({"canvas": {"diameter_mm": 100}, "shapes": [{"kind": "circle", "r": 1}] * 100_000}),
            "SPEC_INVALID",
        ),
        (json.dumps(simple(80)), "SPEC_INVALID"),
    ],
    ids=["markdown_fence", "prose", "not_an_object", "huge_number", "100k_shapes", "wrong_diameter"],
)
def test_unusable_model_output_fails_the_variant(
    stack: Stack, script: ScriptedGateway, content: str, reason: str
) -> None:
    script.answer = lambda request: content
    (candidate,) = stack.generate(count=1).candidates
    assert not candidate.ok and candidate.failure.reason == reason


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"prompt": "ab"}, "prompt"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"diameter_mm": 0}, "diameter_mm"),
        ({"diameter_mm": 1000.5}, "diameter_mm"),
        ({"diameter_mm": float("nan")}, "diameter_mm"),
        ({"count": 0}, "count"),
        ({"count": 11}, "count"),
        ({"run": "runs/../x"}, "run"),
        ({"lineage_parent": "projects/p/../x"}, "lineage_parent"),
    ],
)
def test_bad_requests_are_invalid_argument_and_call_nobody(
    stack: Stack, script: ScriptedGateway, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stack.generate(**fields)
    error = status.decode(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_INVALID")
    assert field in {v.field for v in error.violations}
    assert script.requests == []


def test_an_unknown_run_is_not_found_before_any_generation(stack: Stack, script: ScriptedGateway) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stack.generate(run="runs/run_" + "0" * 32)
    assert status.decode(raised.value).reason == "RUN_NOT_FOUND"
    assert script.requests == []


def test_a_safety_block_fails_the_variant_with_the_gateways_reason(stack: Stack, script: ScriptedGateway) -> None:
    from services.common.errors import FailedPrecondition

    script.fail_with = FailedPrecondition(
        "SAFETY_BLOCKED", "prompt matched rule secret_detector", metadata={"rule_id": "secret"}
    )
    (candidate,) = stack.generate(count=1).candidates
    assert candidate.failure.reason == "SAFETY_BLOCKED"
    assert "error_info.rule_id" in {p.field for p in candidate.failure.problems}


def test_attach_failure_leaves_no_attachment_behind(
    layout: StateLayout, script: ScriptedGateway, tmp_path: Path
) -> None:
    for stack in _stack(layout, script, tmp_path, max_attachment_bytes="500"):
        answer = stack.generate(count=1, new_session=True)
        (candidate,) = answer.candidates
        assert candidate.failure.reason == "ATTACH_FAILED"
        assert "none of them was stored" in candidate.failure.message
        assert stack.attachments(answer.run) == []


def test_a_run_art_studio_did_not_create_is_refused_before_any_generation(
    stack: Stack, script: ScriptedGateway
) -> None:
    operators_run = stack.new_run()
    with pytest.raises(grpc.RpcError) as raised:
        stack.generate(run=operators_run.name)
    error = status.decode(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "RUN_NOT_OWNED")
    assert script.requests == [] and stack.attachments(operators_run.name) == []


def test_a_session_art_studio_created_takes_more_candidates(stack: Stack) -> None:
    first = stack.generate(count=1, new_session=True)
    again = stack.generate(count=1, run=first.run)
    assert again.run == first.run and len(stack.attachments(first.run)) == 6


def test_run_and_new_session_together_are_refused(stack: Stack) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stack.generate(run=stack.new_run().name, new_session=True)
    error = status.decode(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_INVALID")
    assert [v.field for v in error.violations] == ["new_session"]


def test_compile_spec_returns_the_deterministic_svg(stack: Stack) -> None:
    request = art_studio_pb2.CompileSpecRequest(spec_json=json.dumps(simple()))
    first = stack.studio.CompileSpec(request, metadata=stack.auth)
    assert first == stack.studio.CompileSpec(request, metadata=stack.auth)
    assert first.svg_sha256 == hashlib.sha256(first.svg).hexdigest()


def test_compile_spec_names_every_bad_field(stack: Stack) -> None:
    bad = {"canvas": {"diameter_mm": 100}, "shapes": [{"kind": "circle", "r": -1}, {"kind": "ring", "inner_r": 5}]}
    with pytest.raises(grpc.RpcError) as raised:
        stack.studio.CompileSpec(art_studio_pb2.CompileSpecRequest(spec_json=json.dumps(bad)), metadata=stack.auth)
    error = status.decode(raised.value)
    assert error.reason == "SPEC_INVALID"
    assert {"shapes[0].r", "shapes[1].outer_r"} <= {v.field for v in error.violations}


def test_validate_svg_reports_violations_as_an_answer(stack: Stack) -> None:
    answer = stack.studio.ValidateSvg(
        art_studio_pb2.ValidateSvgRequest(svg=b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>'),
        metadata=stack.auth,
    )
    assert not answer.valid and [v.rule for v in answer.violations] == ["ELEMENT_NOT_ALLOWED"]
