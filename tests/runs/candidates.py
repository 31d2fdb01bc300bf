"""Candidate documents for binding tests: a clean rosette SVG and spec, and hostile or infeasible variants."""

from __future__ import annotations

import json
from typing import Any

CLEAN_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="100mm" height="100mm" viewBox="-50 -50 100 100">'
    b'<g fill="none" stroke="black" stroke-width="0.3">'
    b'<circle r="48"/><circle r="44"/>'
    b'<ellipse cx="0" cy="-19" rx="3" ry="11" transform="rotate(30)"/>'
    b'<line x1="0" y1="-38" x2="0" y2="-42"/>'
    b"</g></svg>"
)


def spec(*shapes: dict[str, Any], diameter: float = 100) -> bytes:
    return json.dumps({"canvas": {"diameter_mm": diameter}, "shapes": list(shapes)}).encode()


CLEAN_SPEC = spec(
    {"kind": "ring", "inner_r": 44, "outer_r": 48},
    {"kind": "radial_petals", "inner_r": 8, "outer_r": 30, "count": 12, "petal_width_deg": 18},
)


def svg_with(body: bytes) -> bytes:
    return b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">' + body + b"</svg>"


HOSTILE_SVGS = {
    "script": svg_with(b"<script>alert(1)</script>"),
    "foreign_object": svg_with(b"<foreignObject><div/></foreignObject>"),
    "image": svg_with(b'<image href="#x"/>'),
    "external_href": svg_with(b'<use xlink:href="http://evil.example/x.svg#a"/>'),
    "event_attribute": svg_with(b'<circle r="4" onload="alert(1)"/>'),
    "doctype_or_entities": b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaa">]><svg>&a;</svg>',
    "path_elements": svg_with(b'<path d="M0 0 L10 10"/>'),
    "text_elements": svg_with(b"<text>hi</text>"),
}
