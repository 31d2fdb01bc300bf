"""ArtStudioService: translates between proto and the studio, nothing else."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf import json_format

from custody.art_studio.v1 import art_studio_pb2, art_studio_pb2_grpc
from custody.common.v1 import common_pb2
from services.art_studio.studio import CandidateResult, GenerateRequest, Studio, compile_document
from services.common.errors import FieldViolation, InvalidArgument
from services.common.hashing import sha256_bytes
from services.common.json_limits import loads_json
from services.common.protomap import service_info
from services.rosette.spec import SpecInvalid
from services.rosette.svg_validator import validate_svg


def _candidate(result: CandidateResult) -> art_studio_pb2.Candidate:
    names = dict(zip(("svg", "spec", "envelope"), result.attachments, strict=False))
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
    )
    if result.envelope:
        json_format.ParseDict(result.envelope, candidate.envelope, ignore_unknown_fields=True)
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


class ArtStudioServicer(art_studio_pb2_grpc.ArtStudioServiceServicer):
    def __init__(self, studio: Studio) -> None:
        self._studio = studio

    async def GetServiceInfo(
        self, request: art_studio_pb2.GetServiceInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> common_pb2.ServiceInfo:
        return service_info("art_studio")

    async def GenerateCandidates(
        self, request: art_studio_pb2.GenerateCandidatesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> art_studio_pb2.GenerateCandidatesResponse:
        results = await self._studio.generate(
            GenerateRequest(
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
            )
        )
        succeeded = sum(1 for r in results.candidates if r.ok)
        return art_studio_pb2.GenerateCandidatesResponse(
            candidates=[_candidate(r) for r in results.candidates],
            succeeded=succeeded,
            failed=len(results.candidates) - succeeded,
            run=results.run,
        )

    async def CompileSpec(
        self, request: art_studio_pb2.CompileSpecRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> art_studio_pb2.CompileSpecResponse:
        try:
            document = loads_json(request.spec_json, "spec_json")
        except ValueError as exc:
            raise InvalidArgument(
                "SPEC_INVALID",
                f"spec_json is not JSON: {exc}",
                violations=[FieldViolation("spec_json", "must be JSON")],
            ) from None
        try:
            compiled = await asyncio.to_thread(compile_document, document)
        except SpecInvalid as exc:
            raise InvalidArgument(
                "SPEC_INVALID", f"the spec has {len(exc.violations)} problem(s)", violations=exc.violations
            ) from None
        return art_studio_pb2.CompileSpecResponse(
            svg=compiled.svg,
            svg_sha256=compiled.svg_sha256,
            spec_json=compiled.spec_json,
            spec_sha256=compiled.spec_sha256,
        )

    async def ValidateSvg(
        self, request: art_studio_pb2.ValidateSvgRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> art_studio_pb2.ValidateSvgResponse:
        if not request.svg:
            raise InvalidArgument("REQUEST_INVALID", "svg is empty", violations=[FieldViolation("svg", "required")])
        violations = await asyncio.to_thread(validate_svg, request.svg)
        return art_studio_pb2.ValidateSvgResponse(
            valid=not violations,
            violations=[
                art_studio_pb2.SvgViolation(rule=v.rule, location=v.location, detail=v.detail) for v in violations
            ],
            svg_sha256=sha256_bytes(request.svg),
        )
