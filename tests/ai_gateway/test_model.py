"""The gateway's domain records."""

from __future__ import annotations

from dataclasses import asdict, fields, replace

from services.ai_gateway.domain.model import CallRecord, Envelope, ImageRequest, TextRequest
from tests.ai_gateway.records import record


def test_a_requests_fingerprint_covers_every_field_but_its_idempotency_key() -> None:
    request = TextRequest(
        operation="general_text",
        category="GENERAL",
        provider="openai",
        model="gpt-4o-mini",
        prompt="p",
        system_prompt="s",
        temperature=0.5,
        max_tokens=10,
        variant_seed="v",
        response_json_schema="{}",
        request_id="req-1",
    )
    expected = {k: v for k, v in asdict(request).items() if k != "request_id"}
    assert request.fingerprint_fields() == expected
    assert set(expected) == {f.name for f in fields(TextRequest)} - {"request_id"}


def test_an_image_requests_fingerprint_covers_every_field_and_names_its_rpc() -> None:
    request = ImageRequest("concept_image", "GENERAL", "local", "m", "p", "256x256", 2, "v", "req-1")
    expected = {k: v for k, v in asdict(request).items() if k != "request_id"}
    assert request.fingerprint_fields() == {"rpc": "GenerateImage", **expected}
    assert set(expected) == {f.name for f in fields(ImageRequest)} - {"request_id"}


def test_a_record_stored_before_images_reads_with_empty_image_digests() -> None:
    stored = record(key="k1").to_dict()
    del stored["envelope"]["image_sha256"], stored["envelope"]["revised_prompt_sha256"]
    old = CallRecord.from_dict(stored)
    assert (old.envelope.image_sha256, old.envelope.revised_prompt_sha256) == ((), "")


def test_image_digests_survive_the_round_trip() -> None:
    envelope = replace(record().envelope, image_sha256=("a" * 64, "b" * 64), revised_prompt_sha256="c" * 64)
    again = Envelope.from_dict(envelope.to_dict())
    assert again == envelope
