"""The gateway's domain records."""

from __future__ import annotations

from dataclasses import asdict, fields

from services.ai_gateway.domain.model import TextRequest


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
