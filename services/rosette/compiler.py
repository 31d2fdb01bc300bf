"""Spec -> SVG, deterministically: the same spec gives byte-identical SVG on any machine.

Every number is rounded to 3 decimals (micrometres) and printed without exponent or trailing zeros, attributes are
written in a fixed order, one element per line, UTF-8, millimetre units. Only CNC-safe primitives are emitted
(circle, ellipse, line, polygon, g): petals that are not ellipses are polygons, never paths.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

from services.rosette.spec import (
    Circle,
    Group,
    RadialPetals,
    Ring,
    RopeBand,
    RosetteSpec,
    SegmentedRing,
)

COMPILER_VERSION = "custody-rosette-svg/1.0.0"
TEARDROP_POINTS = 12


def number(value: float) -> str:
    """Fixed, locale-free formatting: 3 decimals, no trailing zeros, never '-0'."""
    text = f"{round(value, 3):.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _attrs(pairs: list[tuple[str, str]]) -> str:
    return "".join(f' {name}="{escape(value, {chr(34): "&quot;"})}"' for name, value in pairs)


def _polar(radius: float, degrees: float) -> tuple[float, float]:
    """SVG y points down; 0 degrees is 12 o'clock, angles grow clockwise."""
    radians = math.radians(degrees)
    return radius * math.sin(radians), -radius * math.cos(radians)


def compile_svg(spec: RosetteSpec) -> bytes:
    radius = spec.canvas.diameter_mm / 2
    size = number(spec.canvas.diameter_mm)
    lines = [
        '<svg xmlns="http://www.w3.org/2000/svg" version="1.1"'
        + _attrs(
            [
                ("width", f"{size}mm"),
                ("height", f"{size}mm"),
                ("viewBox", f"{number(-radius)} {number(-radius)} {size} {size}"),
            ]
        )
        + ">",
    ]
    if spec.title:
        lines.append(f"<title>{escape(spec.title)}</title>")
    lines.append(
        "<g" + _attrs([("fill", "none"), ("stroke", "#000000"), ("stroke-width", number(spec.stroke_mm))]) + ">"
    )
    for shape in spec.shapes:
        lines.extend(_shape(shape))
    lines.append("</g>")
    lines.append("</svg>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _shape(shape: object) -> list[str]:
    if isinstance(shape, Group):
        transform = f"translate({number(shape.cx)} {number(shape.cy)}) rotate({number(shape.rotation_deg)})"
        inner = [line for child in shape.shapes for line in _shape(child)]
        return ["<g" + _attrs([("transform", transform)]) + ">", *inner, "</g>"]
    if isinstance(shape, Circle):
        return [_circle(shape.cx, shape.cy, shape.r)]
    if isinstance(shape, Ring):
        return [_circle(shape.cx, shape.cy, shape.outer_r), _circle(shape.cx, shape.cy, shape.inner_r)]
    if isinstance(shape, RadialPetals):
        return _petals(shape)
    if isinstance(shape, SegmentedRing):
        return _segments(shape)
    if isinstance(shape, RopeBand):
        return _rope(shape)
    raise TypeError(f"no compiler for {type(shape).__name__}")


def _circle(cx: float, cy: float, r: float) -> str:
    return "<circle" + _attrs([("cx", number(cx)), ("cy", number(cy)), ("r", number(r))]) + "/>"


def _line(cx: float, cy: float, start: tuple[float, float], end: tuple[float, float]) -> str:
    return (
        "<line"
        + _attrs(
            [
                ("x1", number(cx + start[0])),
                ("y1", number(cy + start[1])),
                ("x2", number(cx + end[0])),
                ("y2", number(cy + end[1])),
            ]
        )
        + "/>"
    )


def _petals(shape: RadialPetals) -> list[str]:
    mid = (shape.inner_r + shape.outer_r) / 2
    half_length = (shape.outer_r - shape.inner_r) / 2
    half_width = mid * math.sin(math.radians(shape.petal_width_deg) / 2)
    elements = []
    for index in range(shape.count):
        angle = shape.rotation_deg + index * 360 / shape.count
        if shape.petal_shape == "ellipse":
            x, y = _polar(mid, angle)
            elements.append(
                "<ellipse"
                + _attrs(
                    [
                        ("cx", number(shape.cx + x)),
                        ("cy", number(shape.cy + y)),
                        ("rx", number(half_width)),
                        ("ry", number(half_length)),
                        ("transform", f"rotate({number(angle)} {number(shape.cx + x)} {number(shape.cy + y)})"),
                    ]
                )
                + "/>"
            )
        else:
            elements.append(_petal_polygon(shape, angle, mid, half_width))
    return elements


def _petal_polygon(shape: RadialPetals, angle: float, mid: float, half_width: float) -> str:
    """Pointed petals are rhombi; teardrops widen towards the rim. Both stay within the petal's angular width."""
    half_angle = math.degrees(math.asin(min(1.0, half_width / mid)))
    if shape.petal_shape == "pointed":
        outline = [(shape.inner_r, angle), (mid, angle + half_angle), (shape.outer_r, angle), (mid, angle - half_angle)]
    else:
        span = shape.outer_r - shape.inner_r
        steps = [i / TEARDROP_POINTS for i in range(TEARDROP_POINTS + 1)]
        left = [(shape.inner_r + span * t, angle + half_angle * math.sin(math.pi * t) * (0.5 + 0.5 * t)) for t in steps]
        right = [(r, angle - (a - angle)) for r, a in reversed(left[1:-1])]
        outline = left + right
    points = " ".join(f"{number(shape.cx + x)},{number(shape.cy + y)}" for x, y in (_polar(r, a) for r, a in outline))
    return "<polygon" + _attrs([("points", points)]) + "/>"


def _segments(shape: SegmentedRing) -> list[str]:
    elements = [_circle(shape.cx, shape.cy, shape.outer_r), _circle(shape.cx, shape.cy, shape.inner_r)]
    step = 360 / shape.segments
    offsets = [0.0] if shape.gap_deg == 0 else [-shape.gap_deg / 2, shape.gap_deg / 2]
    for index in range(shape.segments):
        for offset in offsets:
            angle = shape.rotation_deg + index * step + offset
            elements.append(_line(shape.cx, shape.cy, _polar(shape.inner_r, angle), _polar(shape.outer_r, angle)))
    return elements


def _rope(shape: RopeBand) -> list[str]:
    elements = [_circle(shape.cx, shape.cy, shape.outer_r), _circle(shape.cx, shape.cy, shape.inner_r)]
    step = 360 / shape.strands
    # The slant turns into an angular offset across the band's width, measured at its mid radius.
    mid = (shape.inner_r + shape.outer_r) / 2
    twist = math.degrees(math.tan(math.radians(shape.slant_deg)) * (shape.outer_r - shape.inner_r) / mid)
    for index in range(shape.strands):
        angle = index * step
        direction = -1 if shape.pattern == "herringbone" and index % 2 else 1
        elements.append(
            _line(shape.cx, shape.cy, _polar(shape.inner_r, angle), _polar(shape.outer_r, angle + direction * twist))
        )
    return elements
