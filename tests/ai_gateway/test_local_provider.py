"""The offline `local` provider: valid rosette specs from prompt words, deterministic answers, real-looking usage."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from services.ai_gateway.transport.base import Message, ProviderRequest, StreamFinished, TextDelta
from services.ai_gateway.transport.local import LocalProvider, answer, rosette_spec
from services.rosette.spec import parse_spec


def request(prompt: str, operation: str = "prompt_to_svg_spec", **fields: object) -> ProviderRequest:
    return ProviderRequest(operation, "custody-local-1", (Message("user", prompt),), 0.4, 800, **fields)  # type: ignore[arg-type]


def shapes(spec: dict, kind: str) -> list[dict]:
    return [s for s in spec["shapes"] if s["kind"] == kind]


def test_the_prompt_sets_diameter_petals_rings_and_petal_shape() -> None:
    spec = rosette_spec("A 90 mm rosette with 12 pointed petals and 3 rings")
    assert spec["canvas"]["diameter_mm"] == 90
    (petals,) = shapes(spec, "radial_petals")
    assert (petals["count"], petals["petal_shape"]) == (12, "pointed")
    assert len(shapes(spec, "ring")) == 3


@pytest.mark.parametrize(
    ("prompt", "diameter"),
    [("Diameter_mm=120\nUser_prompt=simple", 120), ("a 4 inch rosette", 101.6), ("10 cm wide", 100), ("plain", 100)],
)
def test_diameter_units_are_read(prompt: str, diameter: float) -> None:
    assert rosette_spec(prompt)["canvas"]["diameter_mm"] == pytest.approx(diameter)


@pytest.mark.parametrize(
    ("word", "kind", "extra"),
    [("herringbone", "rope_band", ("pattern", "herringbone")), ("twisted rope", "rope_band", ("pattern", "rope")),
     ("mosaic tiles", "segmented_ring", None)],
)  # fmt: skip
def test_style_words_add_their_band(word: str, kind: str, extra: tuple[str, str] | None) -> None:
    (band,) = shapes(rosette_spec(f"rosette with {word}"), kind)
    if extra:
        assert band[extra[0]] == extra[1]


def test_number_words_count_petals() -> None:
    assert shapes(rosette_spec("twelve petals"), "radial_petals")[0]["count"] == 12


def test_the_same_prompt_gives_the_same_spec_and_the_seed_only_turns_the_petals() -> None:
    prompt = "16 petals, 2 rings"
    assert rosette_spec(prompt, "s1") == rosette_spec(prompt, "s1")
    a, b = rosette_spec(prompt, "s1"), rosette_spec(prompt, "s2")
    assert shapes(a, "radial_petals")[0]["rotation_deg"] != shapes(b, "radial_petals")[0]["rotation_deg"]
    a["shapes"] = [s for s in a["shapes"] if s["kind"] != "radial_petals"]
    b["shapes"] = [s for s in b["shapes"] if s["kind"] != "radial_petals"]
    assert a == b


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300), st.text(max_size=20))
def test_any_prompt_gives_a_spec_the_compiler_accepts(prompt: str, seed: str) -> None:
    parse_spec(json.loads(answer(request(prompt, variant_seed=seed))))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 5000), st.integers(0, 500), st.integers(0, 50), st.sampled_from(["mm", "cm", "inch"]))
def test_extreme_numbers_are_clamped_into_a_valid_spec(diameter: int, petals: int, rings: int, unit: str) -> None:
    parse_spec(rosette_spec(f"{diameter} {unit}, {petals} petals, {rings} rings, herringbone mosaic"))


def test_other_operations_get_a_deterministic_text_that_does_not_echo_the_prompt() -> None:
    prompt = "Explain run 42: spindle overload at 18000 rpm"
    first = answer(request(prompt, operation="explain_run_decision"))
    assert first == answer(request(prompt, operation="explain_run_decision"))
    assert prompt not in first and first.startswith("Local deterministic answer for explain_run_decision")


def test_with_a_schema_the_answer_satisfies_it() -> None:
    schema = {
        "type": "object",
        "required": ["title", "scores", "level"],
        "properties": {
            "title": {"type": "string", "minLength": 2},
            "scores": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2},
            "level": {"enum": ["low", "high"]},
        },
    }
    document = json.loads(answer(request("anything", operation="general_text", response_schema=schema)))
    assert list(Draft202012Validator(schema).iter_errors(document)) == []


def test_usage_is_reported_like_a_provider() -> None:
    provider = LocalProvider("custody-local-1")
    response = asyncio.run(provider.complete(request("x" * 40), 1.0))
    assert response.usage is not None
    assert response.usage.input_tokens == 10 and response.usage.output_tokens >= 1
    assert response.finish_reason == "stop"


def test_the_stream_reassembles_to_the_complete_answer_and_then_finishes() -> None:
    provider = LocalProvider("custody-local-1")

    async def collect() -> list[object]:
        return [event async for event in provider.stream(request("8 petals"), 1.0)]

    events = asyncio.run(collect())
    assert isinstance(events[-1], StreamFinished)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == asyncio.run(provider.complete(request("8 petals"), 1.0)).content
