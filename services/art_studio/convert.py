"""Proto <-> studio values for ArtStudioService."""

from __future__ import annotations

from google.protobuf import json_format

from custody.art_studio.v1 import art_studio_pb2
from services.art_studio.studio import CandidateResult, Compiled, Generated, GenerateRequest
from services.common.hashing import sha256_bytes
from services.rosette.svg_validator import SvgViolation


def generate_request(request: art_studio_pb2.GenerateCandidatesRequest) -> GenerateRequest:
    return GenerateRequest(
        prompt=request.prompt,
        diameter_mm=request.diameter_mm,
        count=request.count,
        provider=request.provider,
        model=request.model,
        variant_seed=request.variant_seed,
        run=request.run,
        lineage_parent=request.lineage_parent,
        request_id=request.request_id,
        new_session=request.new_session,
        concept_image=request.concept_image,
    )


def generated_to_proto(generated: Generated) -> art_studio_pb2.GenerateCandidatesResponse:
    succeeded = sum(1 for r in generated.candidates if r.ok)
    return art_studio_pb2.GenerateCandidatesResponse(
        candidates=[candidate_to_proto(r) for r in generated.candidates],
        succeeded=succeeded,
        failed=len(generated.candidates) - succeeded,
        run=generated.run,
    )


def candidate_to_proto(result: CandidateResult) -> art_studio_pb2.Candidate:
    # The batch's order (studio.Studio._files, then _concept_files).
    names = dict(zip(("svg", "spec", "envelope", "image", "image_envelope"), result.attachments, strict=False))
    candidate = art_studio_pb2.Candidate(
        index=result.index,
        variant_seed=result.variant_seed,
        ok=result.ok,
        spec_json=result.spec_json,
        spec_sha256=result.spec_sha256,
        svg=result.svg,
        svg_sha256=result.svg_sha256,
        svg_attachment=names.get("svg", ""),
        spec_attachment=names.get("spec", ""),
        envelope_attachment=names.get("envelope", ""),
        lineage_version=result.lineage_version,
        concept_image_attachment=names.get("image", ""),
        concept_image_sha256=result.concept_image_sha256,
        concept_image_envelope_attachment=names.get("image_envelope", ""),
    )
    if result.envelope:
        json_format.ParseDict(result.envelope, candidate.envelope, ignore_unknown_fields=True)
    if result.concept_image_envelope:
        json_format.ParseDict(
            result.concept_image_envelope, candidate.concept_image_envelope, ignore_unknown_fields=True
        )
    if result.failure is not None:
        candidate.failure.CopyFrom(
            art_studio_pb2.CandidateFailure(
                reason=result.failure.reason,
                message=result.failure.message,
                problems=[
                    art_studio_pb2.FieldProblem(field=p.field, description=p.description)
                    for p in result.failure.problems
                ],
            )
        )
    return candidate


def compiled_to_proto(compiled: Compiled) -> art_studio_pb2.CompileSpecResponse:
    return art_studio_pb2.CompileSpecResponse(
        svg=compiled.svg,
        svg_sha256=compiled.svg_sha256,
        spec_json=compiled.spec_json,
        spec_sha256=compiled.spec_sha256,
    )


def validation_to_proto(svg: bytes, violations: list[SvgViolation]) -> art_studio_pb2.ValidateSvgResponse:
    return art_studio_pb2.ValidateSvgResponse(
        valid=not violations,
        violations=[art_studio_pb2.SvgViolation(rule=v.rule, location=v.location, detail=v.detail) for v in violations],
        svg_sha256=sha256_bytes(svg),
    )
