"""Prompt -> spec -> SVG (and, when asked, a concept image) -> attached with content credentials and recorded, one
variant at a time; no grpc here.

The studio reaches AI only through ai_gateway and stores only through runs and lineage (the `Peers` it is given).
A variant that fails (unsafe prompt, invalid spec, refused attach) is reported with its reason and field problems;
the other variants go on. Only request-level problems (bad input, a missing run or parent, a peer that cannot be
reached at all) fail the whole call.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from services.common.errors import FieldViolation, InvalidArgument
from services.common.hashing import canonical_json, sha256_bytes, sha256_text
from services.common.idempotency import validate_request_id
from services.common.json_limits import loads_json
from services.common.resource_names import RUN_NAME, VERSION_NAME
from services.rosette.compiler import COMPILER_VERSION, compile_svg
from services.rosette.spec import RosetteSpec, SpecInvalid, parse_spec, spec_json_schema
from services.rosette.svg_validator import SvgViolation, validate_svg

OPERATION = "prompt_to_svg_spec"
CATEGORY = "ROSETTE_DESIGN"
MIN_PROMPT, MAX_PROMPT = 3, 2000
MAX_COUNT = 10
MAX_DIAMETER_MM = 1000.0
SYSTEM_PROMPT = (
    "You design rosettes for guitar soundholes. Answer with ONE JSON object and nothing else: no prose, no "
    "markdown, no code fences. The object must satisfy the JSON Schema you are given (schema_version "
    '"rosette.v1", canvas.diameter_mm equal to the requested diameter, every shape inside the canvas, '
    "inner_r < outer_r, 3..64 petals). Units are millimetres; shapes are concentric around the centre."
)
MAX_CONCURRENT_VARIANTS = 4
IMAGE_OPERATION = "concept_image"
IMAGE_SIZE = "512x512"
# The concept image illustrates the brief (the spec's JSON would crowd the image model's prompt limit).
IMAGE_PROMPT = "A concept rendering of a guitar soundhole rosette, {diameter:g} mm across. Brief: {brief}"


class VariantFailed(Exception):
    """One variant could not be produced; the others are unaffected."""

    def __init__(self, reason: str, message: str, problems: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.problems = problems or []


@dataclass(frozen=True)
class GatewayAnswer:
    content: str
    # The provenance envelope as JSON (proto field names); attached and returned as is.
    envelope: dict[str, Any]
    # The cost record as JSON, for lineage metadata.
    cost: dict[str, Any]
    # The call's leaf in the gateway ledger (None when the gateway runs without one).
    ledger_leaf_index: int | None = None


@dataclass(frozen=True)
class ImageAnswer:
    """One generated image, its bytes already checked against the digest the gateway's envelope names."""

    png: bytes
    sha256: str
    envelope: dict[str, Any]
    cost: dict[str, Any]
    ledger_leaf_index: int | None = None


@dataclass(frozen=True)
class AssetCredentials:
    """What runs is asked to state in a generated asset's content credentials (runs signs them)."""

    compiled: bool  # True: compiled by software from a model's output (the SVG); False: a model's output as is
    provider: str
    model: str
    ai_call: str
    ai_request_id: str
    ai_ledger_leaf_index: int | None

    @staticmethod
    def of(envelope: dict[str, Any], leaf_index: int | None, *, compiled: bool) -> AssetCredentials:
        return AssetCredentials(
            compiled=compiled,
            provider=str(envelope.get("provider", "")),
            model=str(envelope.get("model", "")),
            ai_call=str(envelope.get("call", "")),
            ai_request_id=str(envelope.get("request_id", "")),
            ai_ledger_leaf_index=leaf_index,
        )


class Peers(Protocol):
    """The services the studio calls. Adapters raise VariantFailed for per-variant problems and
    services.common.errors for request-level ones."""

    async def generate_spec(
        self, prompt: str, seed: str, provider: str, model: str, schema: str, request_id: str
    ) -> GatewayAnswer: ...

    async def generate_image(self, prompt: str, seed: str, request_id: str) -> ImageAnswer: ...

    async def require_run(self, run: str) -> None: ...

    async def create_session(self, summary: dict[str, Any], request_id: str) -> str: ...

    async def require_version(self, version: str) -> None: ...

    async def attach(self, run: str, files: list[CandidateFile], request_id: str) -> list[str]: ...

    async def record_candidate(
        self, parent: str, entity_suffix: str, data: dict[str, Any], cost: dict[str, Any], request_id: str
    ) -> str: ...


@dataclass(frozen=True)
class CandidateFile:
    kind: str
    filename: str
    content_type: str
    data: bytes
    # Set for generated images: runs signs these content credentials into them.
    credentials: AssetCredentials | None = None


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    diameter_mm: float
    count: int
    provider: str = ""
    model: str = ""
    variant_seed: str = ""
    run: str = ""
    lineage_parent: str = ""
    request_id: str = ""
    new_session: bool = False
    # Also ask the gateway for a concept image per candidate (attached next to the SVG; needs a run).
    concept_image: bool = False


@dataclass
class CandidateResult:
    index: int
    variant_seed: str
    spec_json: str = ""
    spec_sha256: str = ""
    svg: bytes = b""
    svg_sha256: str = ""
    envelope: dict[str, Any] = field(default_factory=dict)
    attachments: list[str] = field(default_factory=list)
    concept_image_sha256: str = ""
    concept_image_envelope: dict[str, Any] = field(default_factory=dict)
    lineage_version: str = ""
    failure: VariantFailed | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class Generated:
    # The run the candidates were attached to ("" when none was asked for).
    run: str
    candidates: list[CandidateResult]


@dataclass(frozen=True)
class Compiled:
    spec: RosetteSpec
    spec_json: str
    spec_sha256: str
    svg: bytes
    svg_sha256: str


def compile_document(document: Any) -> Compiled:
    """Validates, compiles and checks the output; raises SpecInvalid or VariantFailed(SVG_INVALID)."""
    spec = parse_spec(document)
    canonical = canonical_json(spec.model_dump(mode="json"))
    svg = compile_svg(spec)
    violations = validate_svg(svg)
    if violations:  # the compiler only emits allowed elements; this guards against its own regressions
        raise VariantFailed(
            "SVG_INVALID",
            f"compiled SVG broke {len(violations)} allowlist rule(s)",
            [FieldViolation(v.location, f"{v.rule}: {v.detail}") for v in violations],
        )
    return Compiled(spec, canonical.decode(), sha256_bytes(canonical), svg, sha256_bytes(svg))


def compile_spec(spec_json: str) -> Compiled:
    """CompileSpec: a spec someone brings as JSON text, compiled; SPEC_INVALID for anything that is not a spec."""
    try:
        document = loads_json(spec_json, "spec_json")
    except ValueError as exc:
        raise InvalidArgument(
            "SPEC_INVALID",
            f"spec_json is not JSON: {exc}",
            violations=[FieldViolation("spec_json", "must be JSON")],
        ) from None
    try:
        return compile_document(document)
    except SpecInvalid as exc:
        raise InvalidArgument(
            "SPEC_INVALID", f"the spec has {len(exc.violations)} problem(s)", violations=exc.violations
        ) from None


def check_svg(svg: bytes) -> list[SvgViolation]:
    """ValidateSvg: every allowlist violation of an SVG from elsewhere (an invalid SVG is an answer, not an error)."""
    if not svg:
        raise InvalidArgument("REQUEST_INVALID", "svg is empty", violations=[FieldViolation("svg", "required")])
    return validate_svg(svg)


def parse_model_output(content: str) -> Any:
    """Strict: the model's whole answer must be one JSON object. Markdown fences or prose are refused."""
    text = content.strip()
    if text.startswith("```"):
        raise VariantFailed(
            "SPEC_NOT_JSON", "the model wrapped its answer in a markdown code fence; strict JSON is required"
        )
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise VariantFailed("SPEC_NOT_JSON", f"the model's answer is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise VariantFailed("SPEC_NOT_JSON", "the model's answer is JSON but not an object")
    return document


def validate_request(request: GenerateRequest) -> None:
    problems = []
    if not MIN_PROMPT <= len(request.prompt.strip()) <= MAX_PROMPT:
        problems.append(FieldViolation("prompt", f"{MIN_PROMPT}..{MAX_PROMPT} characters"))
    if not 0 < request.diameter_mm <= MAX_DIAMETER_MM:  # also refuses NaN
        problems.append(FieldViolation("diameter_mm", f"in (0, {MAX_DIAMETER_MM:g}] millimetres"))
    if not 1 <= request.count <= MAX_COUNT:
        problems.append(FieldViolation("count", f"1..{MAX_COUNT}"))
    if request.run and not RUN_NAME.fullmatch(request.run):
        problems.append(FieldViolation("run", "runs/run_<32 hex>"))
    if request.run and request.new_session:
        problems.append(FieldViolation("new_session", "give either run or new_session, not both"))
    if request.concept_image and not (request.run or request.new_session):
        problems.append(
            FieldViolation("concept_image", "concept images are attached to a run: give run or new_session")
        )
    if request.lineage_parent and not VERSION_NAME.fullmatch(request.lineage_parent):
        problems.append(FieldViolation("lineage_parent", "projects/{p}/artifacts/{type}/{entity}/versions/{n}"))
    if len(request.variant_seed) > 64:
        problems.append(FieldViolation("variant_seed", "at most 64 characters"))
    if len(request.provider) > 64 or len(request.model) > 128:
        problems.append(FieldViolation("provider", "provider at most 64, model at most 128 characters"))
    if problems:
        raise InvalidArgument("REQUEST_INVALID", f"{len(problems)} invalid field(s)", violations=problems)
    validate_request_id(request.request_id)


class _Session:
    """A new design session, created when the first candidate is ready to be attached to it, not before: when
    ai_gateway is down, or every variant fails, no empty session run is left behind (the call fails, or reports
    every failure, with `run` empty). Later candidates wait for and share the one session."""

    def __init__(self, peers: Peers, request: GenerateRequest) -> None:
        self._peers = peers
        self._request = request
        self._lock = asyncio.Lock()
        self.name = ""

    async def create(self) -> str:
        async with self._lock:
            if not self.name:
                request = self._request
                self.name = await self._peers.create_session(
                    {
                        "prompt_sha256": sha256_text(request.prompt.strip()),
                        "diameter_mm": request.diameter_mm,
                        "count": request.count,
                        "lineage_parent": request.lineage_parent,
                    },
                    f"{request.request_id}:session" if request.request_id else "",
                )
        return self.name


class Studio:
    def __init__(self, peers: Peers) -> None:
        self._peers = peers

    async def generate(self, request: GenerateRequest) -> Generated:
        validate_request(request)
        if request.run:
            await self._peers.require_run(request.run)
        if request.lineage_parent:
            await self._peers.require_version(request.lineage_parent)
        session = _Session(self._peers, request) if request.new_session else None
        schema = json.dumps(spec_json_schema(), sort_keys=True)
        limit = asyncio.Semaphore(MAX_CONCURRENT_VARIANTS)

        async def bounded(index: int) -> CandidateResult:
            async with limit:
                return await self._variant(request, index, schema, session)

        candidates = list(await asyncio.gather(*(bounded(i) for i in range(request.count))))
        return Generated(request.run or (session.name if session is not None else ""), candidates)

    async def _variant(
        self, request: GenerateRequest, index: int, schema: str, session: _Session | None
    ) -> CandidateResult:
        seed = f"{request.variant_seed or 'seed'}:{index}"
        result = CandidateResult(index=index, variant_seed=seed)
        key = f"{request.request_id}:{index}" if request.request_id else ""
        try:
            prompt = f"{request.prompt.strip()}\nDiameter: {request.diameter_mm:g} mm."
            answer = await self._peers.generate_spec(prompt, seed, request.provider, request.model, schema, key)
            result.envelope = answer.envelope
            document = parse_model_output(answer.content)
            compiled = self._compile_for(document, request.diameter_mm)
            result.spec_json, result.spec_sha256 = compiled.spec_json, compiled.spec_sha256
            result.svg, result.svg_sha256 = compiled.svg, compiled.svg_sha256
            files = self._files(compiled, answer, index)
            image = None
            if request.concept_image:
                image = await self._concept_image(request, seed, key)
                result.concept_image_sha256, result.concept_image_envelope = image.sha256, image.envelope
                files += self._concept_files(image, index)
            if session is not None:
                request = replace(request, run=await session.create())
            if request.run:
                result.attachments = await self._peers.attach(request.run, files, key)
            if request.lineage_parent:
                data = {
                    "svg_sha256": compiled.svg_sha256,
                    "spec_sha256": compiled.spec_sha256,
                    "variant_seed": seed,
                    "compiler_version": COMPILER_VERSION,
                    "run": request.run,
                    "attachments": result.attachments,
                    "gateway_call": answer.envelope.get("call", ""),
                }
                if image is not None:
                    data["concept_image_sha256"] = image.sha256
                    data["concept_image_call"] = image.envelope.get("call", "")
                result.lineage_version = await self._peers.record_candidate(
                    request.lineage_parent, f"candidate-{index}", data, answer.cost, key
                )
        except VariantFailed as failure:
            result.failure = failure
        return result

    @staticmethod
    def _compile_for(document: Any, diameter_mm: float) -> Compiled:
        try:
            compiled = compile_document(document)
        except SpecInvalid as exc:
            raise VariantFailed(
                "SPEC_INVALID", f"the spec has {len(exc.violations)} problem(s)", exc.violations
            ) from None
        if abs(compiled.spec.canvas.diameter_mm - diameter_mm) > 1e-9:
            raise VariantFailed(
                "SPEC_INVALID",
                "the spec is for another diameter than the one requested",
                [FieldViolation("canvas.diameter_mm", f"must equal the requested {diameter_mm:g} mm")],
            )
        return compiled

    async def _concept_image(self, request: GenerateRequest, seed: str, key: str) -> ImageAnswer:
        prompt = IMAGE_PROMPT.format(brief=request.prompt.strip(), diameter=request.diameter_mm)
        return await self._peers.generate_image(prompt, seed, f"{key}:image" if key else "")

    @staticmethod
    def _concept_files(image: ImageAnswer, index: int) -> list[CandidateFile]:
        credentials = AssetCredentials.of(image.envelope, image.ledger_leaf_index, compiled=False)
        return [
            CandidateFile("concept_image", f"concept-{index}.png", "image/png", image.png, credentials),
            CandidateFile(
                "ai_provenance_json",
                f"concept-{index}.envelope.json",
                "application/json",
                canonical_json(image.envelope),
            ),
        ]

    @staticmethod
    def _files(compiled: Compiled, answer: GatewayAnswer, index: int) -> list[CandidateFile]:
        credentials = AssetCredentials.of(answer.envelope, answer.ledger_leaf_index, compiled=True)
        return [
            CandidateFile("geometry_svg", f"candidate-{index}.svg", "image/svg+xml", compiled.svg, credentials),
            CandidateFile(
                "geometry_spec_json", f"candidate-{index}.spec.json", "application/json", compiled.spec_json.encode()
            ),
            CandidateFile(
                "ai_provenance_json",
                f"candidate-{index}.envelope.json",
                "application/json",
                canonical_json(answer.envelope),
            ),
        ]
