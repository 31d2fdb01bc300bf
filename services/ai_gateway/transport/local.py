"""The `local` provider: deterministic, offline, free, and the default when no provider key is set.

For `prompt_to_svg_spec` it reads the prompt (diameter, petal count, rings, style words) and writes a rosette spec
that `services.rosette.spec.parse_spec` accepts; with a JSON schema it answers the schema's smallest
instance; otherwise a short deterministic text. The same request always gets the same answer (the variant seed
rotates the rosette), and usage is reported like a real provider's (about four characters per token). Its images
are deterministic PNG rosettes (transport/local_images.py); it never revises a prompt.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from services.ai_gateway.domain.tokens import approx_tokens
from services.ai_gateway.transport.base import (
    ImagePrompt,
    ProviderImages,
    ProviderRequest,
    ProviderResponse,
    StreamEvent,
    StreamFinished,
    TextDelta,
    Usage,
)
from services.ai_gateway.transport.local_images import render
from services.common.hashing import sha256_text
from services.rosette.spec import MAX_DIAMETER_MM, MAX_PETALS, MIN_PETALS, SPEC_SCHEMA_VERSION, parse_spec

ROSETTE_OPERATION = "prompt_to_svg_spec"
STREAM_CHUNK_CHARS = 24
DEFAULT_DIAMETER_MM = 100.0

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "eighteen": 18, "twenty": 20, "twenty-four": 24, "thirty-two": 32, "thirty-six": 36, "forty-eight": 48,
    "single": 1, "double": 2, "triple": 3,
}  # fmt: skip
_NUMBER = r"(\d{1,3}|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")"
_PETALS = re.compile(
    _NUMBER + r"[\s\-]{0,3}(?:pointed\s|teardrop\s|elliptical\s|round\s)?(?:petals?|leaves|lobes)", re.I
)
_RINGS = re.compile(_NUMBER + r"[\s\-]{0,3}(?:thin\s|thick\s|concentric\s|outer\s|inner\s){0,2}(?:rings?|bands?)", re.I)
_DIAMETER_KEY = re.compile(
    r"diameter(?:_mm)?\s{0,3}[=:]?\s{0,3}(\d{1,4}(?:\.\d{1,3})?)\s{0,2}(mm|cm|in(?:ch(?:es)?)?|\")?", re.I
)
_LENGTH = re.compile(
    r"(\d{1,4}(?:\.\d{1,3})?)\s{0,2}(mm|millimet(?:er|re)s?|cm|centimet(?:er|re)s?|inch(?:es)?|\")", re.I
)
_WORD = re.compile(r"[A-Za-z]{4,20}")


class LocalProvider:
    name = "local"

    def __init__(self, model: str) -> None:
        self.default_model = model

    async def complete(self, request: ProviderRequest, timeout_s: float) -> ProviderResponse:
        content = answer(request)
        return ProviderResponse(content, request.model or self.default_model, _usage(request, content), "stop")

    async def stream(self, request: ProviderRequest, timeout_s: float) -> AsyncIterator[StreamEvent]:
        content = answer(request)
        for start in range(0, len(content), STREAM_CHUNK_CHARS):
            yield TextDelta(content[start : start + STREAM_CHUNK_CHARS])
        yield StreamFinished(request.model or self.default_model, _usage(request, content), "stop")

    async def generate_images(self, request: ImagePrompt, timeout_s: float) -> ProviderImages:
        images = [
            await asyncio.to_thread(render, request.prompt, request.variant_seed, request.width, request.height, i)
            for i in range(request.count)
        ]
        return ProviderImages(tuple(images), request.model)

    async def close(self) -> None:
        return None


def _usage(request: ProviderRequest, content: str) -> Usage:
    return Usage(sum(approx_tokens(m.content) for m in request.messages), 0, approx_tokens(content))


def answer(request: ProviderRequest) -> str:
    if request.operation == ROSETTE_OPERATION:
        return json.dumps(rosette_spec(request.prompt, request.variant_seed), separators=(",", ":"))
    if request.response_schema is not None:
        return json.dumps(smallest_instance(request.response_schema))
    words = _WORD.findall(request.prompt.lower())
    common = [w for w, _ in sorted(Counter(words).items(), key=lambda item: (-item[1], item[0]))[:5]]
    digest = sha256_text(request.prompt)[:12]
    return (
        f"Local deterministic answer for {request.operation}: {len(request.prompt.split())} words received "
        f"(digest {digest}). Key terms: {', '.join(common) or 'none'}."
    )


# --- rosette ------------------------------------------------------------------------------------------------------


def _number(text: str) -> int:
    return int(text) if text.isdigit() else _NUMBER_WORDS[text.lower()]


def _diameter_mm(prompt: str) -> float:
    match = _DIAMETER_KEY.search(prompt) or _LENGTH.search(prompt)
    if not match:
        return DEFAULT_DIAMETER_MM
    value, unit = float(match.group(1)), (match.group(2) or "mm").lower()
    if unit.startswith("c"):
        value *= 10
    elif unit.startswith("in") or unit == '"':
        value *= 25.4
    return min(max(value, 10.0), MAX_DIAMETER_MM)


def rosette_spec(prompt: str, variant_seed: str = "") -> dict[str, Any]:
    """A valid rosette spec from the words of `prompt`; the variant seed turns the petals, nothing else."""
    text = prompt.lower()
    diameter = round(_diameter_mm(prompt), 3)
    radius = diameter / 2
    petals_match = _PETALS.search(prompt)
    petals = min(max(_number(petals_match.group(1)), MIN_PETALS), MAX_PETALS) if petals_match else 8
    rings_match = _RINGS.search(prompt)
    rings = min(_number(rings_match.group(1)), 8) if rings_match else 2
    shape = "pointed" if re.search(r"point|star|sharp|spike", text) else "ellipse"
    if re.search(r"teardrop|tear-drop|droplet", text):
        shape = "teardrop"
    bands: list[dict[str, Any]] = [{"kind": "ring"} for _ in range(rings)]
    style = []
    if "herringbone" in text:
        bands.insert(len(bands) // 2, {"kind": "rope_band", "pattern": "herringbone", "strands": 72, "slant_deg": 35.0})
        style.append("herringbone")
    elif re.search(r"\brope|twist|braid", text):
        bands.insert(len(bands) // 2, {"kind": "rope_band", "pattern": "rope", "strands": 60, "slant_deg": 30.0})
        style.append("rope")
    if re.search(r"mosaic|tile|segment", text):
        bands.insert(len(bands) // 2, {"kind": "segmented_ring", "segments": max(12, petals * 3), "gap_deg": 1.0})
        style.append("mosaic")

    # Bands share the outer part of the disc, outside in; petals fill the middle; a small circle marks the centre.
    band_inner, band_outer = 0.62 * radius, 0.97 * radius
    slot = (band_outer - band_inner) / max(1, len(bands))
    shapes: list[dict[str, Any]] = []
    for index, band in enumerate(bands):
        outer = band_outer - index * slot
        inner = outer - 0.8 * slot
        shapes.append({**band, "inner_r": round(inner, 3), "outer_r": round(outer, 3)})
    rotation = (int(sha256_text(variant_seed)[:8], 16) % 3600) / 10 % (360 / petals) if variant_seed else 0.0
    shapes.append(
        {
            "kind": "radial_petals",
            "count": petals,
            "inner_r": round(0.16 * radius, 3),
            "outer_r": round(0.58 * radius, 3),
            "petal_width_deg": round(min(120.0, 0.7 * 360 / petals), 3),
            "petal_shape": shape,
            "rotation_deg": round(rotation, 3),
        }
    )
    shapes.append({"kind": "circle", "r": round(0.1 * radius, 3)})
    words = [f"{petals} {shape} petals", f"{rings} rings", *style]
    spec = {
        "schema_version": SPEC_SCHEMA_VERSION,
        "title": f"Rosette {diameter:g} mm: {', '.join(words)}"[:200],
        "canvas": {"diameter_mm": diameter},
        "stroke_mm": 0.3,
        "shapes": shapes,
    }
    parse_spec(spec)  # the contract: never hand out a spec the compiler would refuse
    return spec


# --- JSON schema --------------------------------------------------------------------------------------------------


def smallest_instance(schema: Any, depth: int = 0) -> Any:
    """A small value satisfying simple schemas (types, required properties, enums, bounds); best effort."""
    if not isinstance(schema, dict) or depth > 16:
        return None
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return smallest_instance(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties", {})
        return {name: smallest_instance(properties.get(name, {}), depth + 1) for name in schema.get("required", [])}
    if kind == "array":
        return [smallest_instance(schema.get("items", {}), depth + 1) for _ in range(int(schema.get("minItems", 0)))]
    if kind == "string":
        return "x" * int(schema.get("minLength", 0))
    if kind in ("integer", "number"):
        value = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1 if "exclusiveMinimum" in schema else 0)
        return math.ceil(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    return None
