"""Specs used by the art_studio tests."""

from __future__ import annotations

import json
from typing import Any

CLASSIC: dict[str, Any] = {
    "schema_version": "rosette.v1",
    "title": "Classic 64",
    "canvas": {"diameter_mm": 100},
    "stroke_mm": 0.3,
    "shapes": [
        {"kind": "ring", "inner_r": 46, "outer_r": 48},
        {"kind": "segmented_ring", "inner_r": 40, "outer_r": 44, "segments": 48, "gap_deg": 1.5},
        {"kind": "rope_band", "inner_r": 34, "outer_r": 38, "strands": 72, "pattern": "herringbone", "slant_deg": 35},
        {"kind": "radial_petals", "inner_r": 10, "outer_r": 30, "count": 64, "petal_width_deg": 4.5},
        {
            "kind": "radial_petals",
            "inner_r": 4,
            "outer_r": 9,
            "count": 8,
            "petal_width_deg": 20,
            "petal_shape": "pointed",
        },
        {
            "kind": "group",
            "rotation_deg": 22.5,
            "shapes": [
                {
                    "kind": "radial_petals",
                    "inner_r": 31,
                    "outer_r": 33,
                    "count": 16,
                    "petal_width_deg": 6,
                    "petal_shape": "teardrop",
                }
            ],
        },
        {"kind": "circle", "r": 2},
    ],
}


def spec_text(spec: dict[str, Any] | None = None, **overrides: Any) -> str:
    return json.dumps({**(spec or CLASSIC), **overrides})


def simple(diameter: float = 100, petals: int = 12) -> dict[str, Any]:
    return {
        "canvas": {"diameter_mm": diameter},
        "shapes": [
            {"kind": "ring", "inner_r": diameter * 0.44, "outer_r": diameter * 0.48},
            {
                "kind": "radial_petals",
                "inner_r": diameter * 0.08,
                "outer_r": diameter * 0.3,
                "count": petals,
                "petal_width_deg": 12,
            },
        ],
    }
