"""The gateway's domain records."""

from __future__ import annotations

from dataclasses import asdict, fields, replace

from services.ai_gateway.domain.model import CallRecord, Envelope, ImageRequest, TextRequest
from services.common import idempotency
from services.common.hashing import canonical_json, sha256_bytes
from services.common.identity import Principal, PrincipalKind
from tests.ai_gateway.records import record

OPERATOR = Principal("human:operator", PrincipalKind.HUMAN)
# What the gateway wrote before on_behalf_of existed (computed with that code): records and requests without a
# person must keep these exact digests, or stored records stop verifying and stored request_ids stop replaying.
RECORD_SHA256_BEFORE_ON_BEHALF_OF = "09edcfd8d5df9ba97e0b29914675547665267904fa247ed53717d3acccc14cdb"
TEXT_FINGERPRINT_BEFORE_ON_BEHALF_OF = "0e8b59e6a144e6bb164b86a46115e1b5f76bffaead745434d479f06f8b2a7b60"
IMAGE_FINGERPRINT_BEFORE_ON_BEHALF_OF = "663dd36d5b82e92e13d79e56001d94b5379a32a162256c055add79d518c82431"


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
        on_behalf_of=OPERATOR,
    )
    expected = {k: v for k, v in asdict(request).items() if k != "request_id"}
    expected["on_behalf_of"] = {"id": "human:operator", "kind": "human"}
    assert request.fingerprint_fields() == expected
    assert set(expected) == {f.name for f in fields(TextRequest)} - {"request_id"}


def test_an_image_requests_fingerprint_covers_every_field_and_names_its_rpc() -> None:
    request = ImageRequest("concept_image", "GENERAL", "local", "m", "p", "256x256", 2, "v", "req-1", OPERATOR)
    expected = {k: v for k, v in asdict(request).items() if k != "request_id"}
    expected["on_behalf_of"] = {"id": "human:operator", "kind": "human"}
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


def test_a_request_without_a_person_keeps_the_fingerprint_it_had_before_on_behalf_of() -> None:
    text = idempotency.fingerprint(TextRequest("general_text", prompt="p").fingerprint_fields())
    image = idempotency.fingerprint(ImageRequest("concept_image", prompt="p").fingerprint_fields())
    assert (text, image) == (TEXT_FINGERPRINT_BEFORE_ON_BEHALF_OF, IMAGE_FINGERPRINT_BEFORE_ON_BEHALF_OF)


def test_a_record_without_a_person_keeps_the_canonical_json_it_had_before_on_behalf_of() -> None:
    old = record(key="k1")
    old = replace(old, envelope=replace(old.envelope, call="calls/call_" + "0" * 32))
    document = old.to_dict()
    assert "on_behalf_of" not in document["envelope"]
    assert sha256_bytes(canonical_json(document)) == RECORD_SHA256_BEFORE_ON_BEHALF_OF
    assert CallRecord.from_dict(document).envelope.on_behalf_of is None


def test_the_person_survives_the_round_trip_without_roles() -> None:
    envelope = replace(record().envelope, on_behalf_of=OPERATOR)
    assert envelope.to_dict()["on_behalf_of"] == {"id": "human:operator", "kind": "human"}
    assert Envelope.from_dict(envelope.to_dict()) == envelope
