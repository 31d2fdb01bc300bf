"""GenerateImage: the governed path of domain/pipeline.py for images (pure domain logic, no grpc).

validate (bad input writes nothing) -> replay a repeated request_id -> rate limit and budget reservation (the
price of `count` images of the size; no tokens) -> input safety check of the prompt -> provider attempts under
the text rules -> the provider's revised prompt, if any, through the same input rules (a block names direction
"revised_prompt"; no image leaves) -> price per image -> audit (image digests, never bytes) and the replay claim.

The replay cache keeps a successful call's images, base64 in a JSON document in the same `content` column and
for the same retention as text answers (purged with them); the audit record never holds them.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal

from services.ai_gateway.budgets import Reservation
from services.ai_gateway.domain import safety
from services.ai_gateway.domain.audit import annotate
from services.ai_gateway.domain.calls import CallState
from services.ai_gateway.domain.model import GeneratedImage, ImageRequest, ImageResult, Outcome, PreparedImage
from services.ai_gateway.domain.pipeline import Pipeline
from services.ai_gateway.domain.replay import log_replayed
from services.ai_gateway.domain.validation import Validator
from services.ai_gateway.store import ReplayEntry
from services.ai_gateway.transport.base import ImagePrompt, ImageProvider, Provider, ProviderImages
from services.ai_gateway.transport.png import png_dimensions
from services.common.hashing import sha256_bytes

ImageCall = CallState[PreparedImage]
RPC = "GenerateImage"


class ImageCalls:
    def __init__(self, pipeline: Pipeline, validator: Validator) -> None:
        self._pipeline = pipeline
        self._validator = validator

    async def generate(self, request: ImageRequest) -> ImageResult:
        prepared = self._validator.prepare_image(request)
        pipeline = self._pipeline
        caller, fingerprint, replay = await pipeline.claim(request)
        if replay is not None:
            return replayed_images(replay)
        try:
            return await self._generate(pipeline.begin(prepared, caller, fingerprint, RPC))
        finally:
            pipeline.release(caller, request)

    async def _generate(self, call: ImageCall) -> ImageResult:
        pipeline, policy = self._pipeline, self._pipeline.policy
        reservation = await self._admit(call)
        try:
            with pipeline.tracer.start_as_current_span("ai_gateway.generate_image") as span:
                await safety.check_input(policy, call)
                answer = await pipeline.attempt(call, lambda provider, timeout_s: self._send(call, provider, timeout_s))
                call.answer_model = answer.model or call.model
                call.images = tuple(_image(index, data) for index, data in enumerate(answer.images))
                call.revised_prompt = answer.revised_prompt or None
                if call.revised_prompt is not None:
                    await safety.check_revised_prompt(policy, call, call.revised_prompt)
                record = await pipeline.audit.record(call, Outcome.SUCCEEDED)
                annotate(span, call, record)
                content = replay_content(call.images, call.revised_prompt or "")
                stored = await pipeline.audit.save(call, record, content)
            if stored.holder is not None:
                return replayed_images(stored.holder)
            return ImageResult(call.images, call.revised_prompt or "", record, stored.ledger)
        except BaseException as exc:
            await pipeline.audit.record_failure(call, exc)
            raise
        finally:
            await pipeline.settle(call, reservation)

    async def _send(self, call: ImageCall, provider: Provider, timeout_s: float) -> ProviderImages:
        prepared = call.prepared
        width, height = prepared.width_height
        prompt = ImagePrompt(call.model, prepared.raw.prompt, width, height, prepared.count, prepared.raw.variant_seed)
        images: ImageProvider = provider  # type: ignore[assignment]  # every configured provider makes images
        return await images.generate_images(prompt, timeout_s)

    async def _admit(self, call: ImageCall) -> Reservation:
        def worst_case() -> tuple[int, Decimal | None]:
            prepared = call.prepared
            price = self._pipeline.prices.image_price(prepared.provider, prepared.model, prepared.size)
            return 0, None if price is None else price * prepared.count

        return await self._pipeline.admit(call, worst_case)


def _image(index: int, data: bytes) -> GeneratedImage:
    width, height = png_dimensions(data)
    return GeneratedImage(index, data, sha256_bytes(data), width, height)


def replay_content(images: tuple[GeneratedImage, ...], revised_prompt: str) -> str:
    """What the replay cache keeps of a successful image call (its `content`)."""
    return json.dumps(
        {"revised_prompt": revised_prompt, "images": [base64.b64encode(image.data).decode() for image in images]}
    )


def replayed_images(entry: ReplayEntry) -> ImageResult:
    """The stored result of a repeated request_id, checked against the digests its audit record holds."""
    log_replayed(entry)
    document = json.loads(entry.content)
    images = tuple(_image(i, base64.b64decode(data)) for i, data in enumerate(document["images"]))
    if tuple(image.sha256 for image in images) != entry.record.envelope.image_sha256:
        raise ValueError(f"the replay cache of {entry.record.envelope.call} does not match its audited digests")
    return ImageResult(images, document["revised_prompt"], entry.record.replayed(), entry.ledger)
