"""Content credentials and concept images from GenerateCandidates: every attached SVG carries a C2PA manifest runs
signed (compiled from a model's spec, naming the gateway call), and with concept_image each candidate gets a
concept image from GenerateImage, attached in the same batch with its envelope and credentialed as a model's
output. A refused or lying image call fails its variant and attaches nothing."""

from __future__ import annotations

import grpc
import pytest

from custody.art_studio.v1 import art_studio_pb2
from custody.runs.v1 import runs_pb2
from services.common import status
from services.common.content_credentials import CredentialReport, SourceType, read_credentials
from services.common.content_credentials.layout import anchors_file
from services.common.errors import FailedPrecondition
from tests.art_studio.test_generate_candidates import Stack, layout, script, stack
from tests.support.fake_gateway import ScriptedGateway

__all__ = ["layout", "script", "stack"]  # fixtures


def credentials_of(stack: Stack, attachment: str, media_type: str) -> CredentialReport:
    answers = stack.runs.ReadAttachment(
        runs_pb2.ReadAttachmentRequest(name=attachment, signed=True), metadata=stack.auth
    )
    signed = b"".join(a.chunk for a in answers)
    return read_credentials(signed, media_type, anchors_file(stack.layout.root).read_bytes())


def test_every_attached_svg_carries_credentials_naming_its_spec_call(stack: Stack) -> None:
    answer = stack.generate(new_session=True, count=2)
    for candidate in answer.candidates:
        report = credentials_of(stack, candidate.svg_attachment, "image/svg+xml")
        assert report.trusted, report.problems
        assert report.source_type == SourceType.ALGORITHMIC_MEDIA.value
        assert report.assertion is not None
        assert report.assertion.unsigned_sha256 == candidate.svg_sha256
        assert report.assertion.ai_call == candidate.envelope.call
        assert report.assertion.run == answer.run
        assert report.assertion.ai_ledger_leaf_index is not None


def test_concept_images_are_attached_next_to_each_svg_with_their_envelope(stack: Stack) -> None:
    answer = stack.generate(new_session=True, count=2, concept_image=True)
    assert (answer.succeeded, answer.failed) == (2, 0)
    stored = {a.name: a for a in stack.attachments(answer.run)}
    assert len(stored) == 2 * 5
    for candidate in answer.candidates:
        image = stored[candidate.concept_image_attachment]
        assert (image.kind, image.content_type) == ("concept_image", "image/png")
        assert image.digest.sha256 == candidate.concept_image_sha256
        assert list(candidate.concept_image_envelope.image_sha256) == [candidate.concept_image_sha256]
        assert stored[candidate.concept_image_envelope_attachment].kind == "ai_provenance_json"


def test_a_concept_image_is_credentialed_as_a_models_output_naming_its_image_call(stack: Stack) -> None:
    answer = stack.generate(new_session=True, count=1, concept_image=True)
    (candidate,) = answer.candidates
    report = credentials_of(stack, candidate.concept_image_attachment, "image/png")
    assert report.trusted, report.problems
    assert report.source_type == SourceType.TRAINED_ALGORITHMIC_MEDIA.value
    assert report.assertion is not None
    assert report.assertion.ai_call == candidate.concept_image_envelope.call != candidate.envelope.call
    assert report.assertion.kind == "concept_image"


def test_the_image_call_carries_the_variant_seed_and_its_own_idempotency_key(
    stack: Stack, script: ScriptedGateway
) -> None:
    stack.generate(new_session=True, count=1, concept_image=True, request_id="brief-7")
    (request,) = script.image_requests
    assert (request.operation, request.category, request.seed, request.request_id) == (
        "concept_image",
        "ROSETTE_DESIGN",
        "seed:0",
        "brief-7:0:image",
    )
    assert "a 12 petal rosette" in request.prompt


def test_concept_images_without_a_run_are_refused_before_any_call(stack: Stack, script: ScriptedGateway) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stack.generate(concept_image=True)
    error = status.decode(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_INVALID")
    assert [v.field for v in error.violations] == ["concept_image"]
    assert script.requests == [] and script.image_requests == []


def test_a_refused_image_fails_its_variant_and_attaches_nothing(stack: Stack, script: ScriptedGateway) -> None:
    script.image_fail_with = FailedPrecondition("SAFETY_BLOCKED", "the prompt broke input.pattern.weapons")
    answer = stack.generate(new_session=True, count=2, concept_image=True)
    assert (answer.succeeded, answer.failed) == (0, 2)
    assert {c.failure.reason for c in answer.candidates} == {"SAFETY_BLOCKED"}
    assert answer.run == ""  # no variant got as far as attaching: no session, nothing attached
    assert stack.session_runs() == []


def test_an_image_unlike_the_digest_the_gateway_announced_is_refused(stack: Stack, script: ScriptedGateway) -> None:
    script.image_claimed_sha256 = "0" * 64
    answer = stack.generate(new_session=True, count=1, concept_image=True)
    (candidate,) = answer.candidates
    assert not candidate.ok and candidate.failure.reason == "IMAGE_FAILED"
    assert answer.run == "" and stack.session_runs() == []


def test_the_response_names_no_concept_image_when_none_was_asked_for(stack: Stack) -> None:
    candidate: art_studio_pb2.Candidate = stack.generate(new_session=True, count=1).candidates[0]
    assert (candidate.concept_image_attachment, candidate.concept_image_sha256) == ("", "")
    assert not candidate.HasField("concept_image_envelope")
