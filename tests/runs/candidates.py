"""Candidate documents for binding tests: a clean rosette spec and the SVG the compiler makes of it, and hostile or
infeasible variants, grouped by the way each one tries to get an SVG past the engine."""

from __future__ import annotations

import json
from typing import Any

from services.rosette.compiler import compile_svg
from services.rosette.spec import parse_spec


def spec(*shapes: dict[str, Any], diameter: float = 100) -> bytes:
    return json.dumps({"canvas": {"diameter_mm": diameter}, "shapes": list(shapes)}).encode()


def compiled(spec_bytes: bytes) -> bytes:
    return compile_svg(parse_spec(json.loads(spec_bytes)))


CLEAN_SPEC = spec(
    {"kind": "ring", "inner_r": 44, "outer_r": 48},
    {"kind": "radial_petals", "inner_r": 8, "outer_r": 30, "count": 12, "petal_width_deg": 18},
)
CLEAN_SVG = compiled(CLEAN_SPEC)
# Everything the compiler writes before the closing tags: hostile content is spliced in there.
_CLEAN_BODY, _CLOSING = CLEAN_SVG.rsplit(b"</g>", 1)


def clean_with(fragment: bytes) -> bytes:
    """The clean SVG with `fragment` inside its drawing group: everything else is the compiler's."""
    return _CLEAN_BODY + fragment + b"\n</g>" + _CLOSING


def svg_with(body: bytes) -> bytes:
    return b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">' + body + b"</svg>"


# family -> payloads; every one must be BLOCKed with an SVG_* reason (the allowlist, or SVG_NOT_FROM_SPEC).
HOSTILE_SVGS: dict[str, list[bytes]] = {
    "active_content": [
        clean_with(b"<script>alert(1)</script>"),
        clean_with(b"<SCRIPT>alert(1)</SCRIPT>"),
        clean_with(b'<svg:script xmlns:svg="http://www.w3.org/2000/svg">alert(1)</svg:script>'),
        clean_with(b'<circle r="4" onload="alert(1)"/>'),
        clean_with(b'<circle r="4" ONCLICK="alert(1)"/>'),
        clean_with(b"<foreignObject><div xmlns='http://www.w3.org/1999/xhtml'>x</div></foreignObject>"),
        clean_with(b'<image href="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4="/>'),
        clean_with(b'<a href="javascript:alert(1)"><circle r="2"/></a>'),
    ],
    "smil_animation": [
        clean_with(b'<use href="#a"><set attributeName="href" to="javascript:alert(1)"/></use>'),
        clean_with(b'<animate attributeName="href" values="javascript:alert(1)"/>'),
        clean_with(b'<circle r="3"><animateTransform attributeName="transform" type="scale" to="99"/></circle>'),
        clean_with(b'<set xlink:href="#x" xmlns:xlink="http://www.w3.org/1999/xlink" attributeName="r" to="0"/>'),
    ],
    "css": [
        clean_with(b"<style>@import url(https://evil.example/x.css);</style>"),
        clean_with(b'<circle r="3" style="fill:url(https://evil.example/x)"/>'),
        clean_with(b'<circle r="3" fill="url(https://evil.example/x#p)"/>'),
        clean_with(b'<circle r="3" fill="\\75 rl(https://evil.example/x)"/>'),
        clean_with(b'<circle r="3" fill="u\\72l(https://evil.example/x)"/>'),
        clean_with(b'<g transform="expr/**/ession(alert(1))"/>'),
        clean_with(b'<g transform="rotate(1) @import x"/>'),
    ],
    "processing_instruction": [
        b'<?xml-stylesheet href="https://evil.example/x.css"?>\n' + CLEAN_SVG,
        b'<?xml version="1.0" encoding="UTF-8"?><?xml-stylesheet type="text/css" href="x.css"?>' + CLEAN_SVG,
        clean_with(b"<?php system('id'); ?>"),
        clean_with(b"<!-- <?xml-stylesheet href='x.css'?> -->"),
    ],
    "markup_tricks": [
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaa">]><svg>&a;</svg>',
        b'<?xml version="1.0" encoding="UTF-16"?>' + CLEAN_SVG,
        CLEAN_SVG.decode().encode("utf-16"),
        clean_with(b'<use xlink:href="http://evil.example/x.svg#a" xmlns:xlink="http://www.w3.org/1999/xlink"/>'),
    ],
    # Safe markup, but not the geometry the spec describes (and so not what the spec's checks were about).
    "geometry_not_the_specs": [
        clean_with(b'<circle cx="0" cy="0" r="0.01"/>'),
        clean_with(b'<circle cx="500" cy="0" r="10"/>'),
        CLEAN_SVG.replace(b'r="48"', b'r="480"'),
        compiled(spec({"kind": "ring", "inner_r": 40, "outer_r": 40.01})),
        CLEAN_SVG + b"\n",
        CLEAN_SVG.replace(b"\n", b"\r\n"),
    ],
}
