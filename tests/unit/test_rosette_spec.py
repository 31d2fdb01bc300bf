"""The rosette spec contract: strict, bounded, and every problem reported with the path of its field."""

from __future__ import annotations

from typing import Any

import pytest

from services.rosette.spec import MAX_SHAPES, SpecInvalid, parse_spec, spec_json_schema


def spec(*shapes: dict[str, Any], diameter: float = 100) -> dict[str, Any]:
    return {"canvas": {"diameter_mm": diameter}, "shapes": list(shapes)}


def violations(document: Any) -> dict[str, str]:
    with pytest.raises(SpecInvalid) as raised:
        parse_spec(document)
    return {v.field: v.description for v in raised.value.violations}


def test_a_classic_rosette_is_valid() -> None:
    parsed = parse_spec(
        spec(
            {"kind": "ring", "inner_r": 44, "outer_r": 48},
            {"kind": "segmented_ring", "inner_r": 38, "outer_r": 42, "segments": 48},
            {"kind": "rope_band", "inner_r": 33, "outer_r": 36, "strands": 60, "pattern": "herringbone"},
            {"kind": "radial_petals", "inner_r": 8, "outer_r": 30, "count": 12, "petal_width_deg": 18},
            {"kind": "group", "rotation_deg": 15, "shapes": [{"kind": "circle", "r": 4}]},
        )
    )
    assert [s.kind for s in parsed.shapes] == ["ring", "segmented_ring", "rope_band", "radial_petals", "group"]


def test_inner_radius_must_be_below_outer() -> None:
    assert "inner_r" in violations(spec({"kind": "ring", "inner_r": 30, "outer_r": 30}))["shapes[0]"]


@pytest.mark.parametrize("number", [float("nan"), float("inf"), 1e308])
def test_non_finite_or_huge_numbers_are_refused(number: float) -> None:
    assert "shapes[0].r" in violations(spec({"kind": "circle", "r": number}))


@pytest.mark.parametrize("count", [2, 65])
def test_petal_count_is_3_to_64(count: int) -> None:
    shape = {"kind": "radial_petals", "inner_r": 5, "outer_r": 20, "count": count, "petal_width_deg": 5}
    assert "shapes[0].count" in violations(spec(shape))


def test_shapes_must_stay_inside_the_canvas() -> None:
    assert "outside the canvas" in violations(spec({"kind": "circle", "r": 30, "cx": 25}))["spec"]


def test_a_million_shapes_are_refused_without_validating_each() -> None:
    assert violations(spec(*[{"kind": "circle", "r": 1}] * 1_000_000)) == {
        "shapes": f"at most {MAX_SHAPES} shapes are allowed"
    }


def test_nesting_is_capped() -> None:
    shape: dict[str, Any] = {"kind": "circle", "r": 1}
    for _ in range(5):
        shape = {"kind": "group", "shapes": [shape]}
    assert "nest" in violations(spec(shape))["spec"]


def test_unknown_fields_and_kinds_are_refused() -> None:
    assert "shapes[0].colour" in violations(spec({"kind": "circle", "r": 1, "colour": "red"}))
    assert "shapes[0]" in violations(spec({"kind": "hexagon", "r": 1}))


def test_every_problem_is_reported_at_once() -> None:
    found = violations(spec({"kind": "circle", "r": -1}, {"kind": "circle", "r": float("nan")}))
    assert {"shapes[0].r", "shapes[1].r"} <= set(found)


def test_json_schema_names_every_shape_kind() -> None:
    text = str(spec_json_schema())
    for kind in ("circle", "ring", "radial_petals", "segmented_ring", "rope_band", "group"):
        assert kind in text
