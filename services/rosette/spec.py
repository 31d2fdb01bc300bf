"""The rosette design spec: the JSON contract between the AI (through ai_gateway), the compiler and the runs
feasibility engine.

Geometry is in millimetres in a frame centred on the rosette: every shape is concentric around (cx, cy), which
default to the centre. Strict: unknown fields, non-finite numbers, inner >= outer radii, shapes outside the
canvas, too many shapes or too deep nesting are all errors with a path to the offending field.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.common.errors import FieldViolation

SPEC_SCHEMA_VERSION: Literal["rosette.v1"] = "rosette.v1"
MAX_SHAPES = 64
MAX_DEPTH = 4
MIN_PETALS, MAX_PETALS = 3, 64
MAX_DIAMETER_MM = 1000.0
# Every spec compiles to an SVG the allowlist validator accepts (its element and size limits), so a valid spec is
# never refused for its size at bind time: the compiler draws at most this many elements for one spec.
MAX_ELEMENTS = 5000
# The title is written into the SVG's <title>: characters XML 1.0 cannot carry (C0 controls other than tab, line
# feed and carriage return; lone surrogates, which UTF-8 cannot encode either; U+FFFE and U+FFFF) would make the
# compiled SVG unparseable, or unencodable, so a spec holding one is refused here rather than failing to compile.
NOT_XML_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

Mm = Annotated[float, Field(ge=0, le=MAX_DIAMETER_MM, allow_inf_nan=False)]
Offset = Annotated[float, Field(ge=-MAX_DIAMETER_MM, le=MAX_DIAMETER_MM, allow_inf_nan=False)]
Degrees = Annotated[float, Field(ge=-360, le=360, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class _Centred(_Strict):
    cx: Offset = 0.0
    cy: Offset = 0.0

    def extent(self) -> float:
        """Farthest distance from the canvas centre this shape reaches."""
        return math.hypot(self.cx, self.cy) + self.outer_radius()

    def outer_radius(self) -> float:
        raise NotImplementedError

    def element_count(self) -> int:
        """How many SVG elements the compiler draws this shape with."""
        raise NotImplementedError


class _Band(_Centred):
    inner_r: Mm
    outer_r: Mm

    @model_validator(mode="after")
    def _inner_below_outer(self) -> _Band:
        if self.inner_r >= self.outer_r:
            raise ValueError(f"inner_r ({self.inner_r}) must be smaller than outer_r ({self.outer_r})")
        return self

    def outer_radius(self) -> float:
        return self.outer_r


class Circle(_Centred):
    kind: Literal["circle"]
    r: Annotated[float, Field(gt=0, le=MAX_DIAMETER_MM, allow_inf_nan=False)]

    def outer_radius(self) -> float:
        return self.r

    def element_count(self) -> int:
        return 1


class Ring(_Band):
    """An annulus between two concentric circles."""

    kind: Literal["ring"]

    def element_count(self) -> int:
        return 2


class RadialPetals(_Band):
    """`count` petals radiating between inner_r and outer_r, each `petal_width_deg` wide at its widest."""

    kind: Literal["radial_petals"]
    count: Annotated[int, Field(ge=MIN_PETALS, le=MAX_PETALS)]
    petal_width_deg: Annotated[float, Field(gt=0, le=120, allow_inf_nan=False)]
    petal_shape: Literal["ellipse", "pointed", "teardrop"] = "ellipse"
    rotation_deg: Degrees = 0.0

    def element_count(self) -> int:
        return self.count


class SegmentedRing(_Band):
    """A ring cut into `segments` tiles separated by `gap_deg` (the classic mosaic rosette band)."""

    kind: Literal["segmented_ring"]
    segments: Annotated[int, Field(ge=3, le=360)]
    gap_deg: Annotated[float, Field(ge=0, lt=60, allow_inf_nan=False)] = 1.0
    rotation_deg: Degrees = 0.0

    def element_count(self) -> int:
        return 2 + self.segments * (1 if self.gap_deg == 0 else 2)

    @model_validator(mode="after")
    def _gaps_leave_tiles(self) -> SegmentedRing:
        if self.segments * self.gap_deg >= 360:
            raise ValueError(f"{self.segments} gaps of {self.gap_deg} degrees leave no room for tiles")
        return self


class RopeBand(_Band):
    """A band of slanted strands: `rope` twists one way, `herringbone` alternates direction."""

    kind: Literal["rope_band"]
    strands: Annotated[int, Field(ge=4, le=360)]
    pattern: Literal["rope", "herringbone"] = "rope"
    slant_deg: Annotated[float, Field(ge=-75, le=75, allow_inf_nan=False)] = 30.0

    def element_count(self) -> int:
        return 2 + self.strands


class Group(_Centred):
    """Shapes rotated together; nesting is capped at MAX_DEPTH."""

    kind: Literal["group"]
    rotation_deg: Degrees = 0.0
    shapes: list[Shape] = Field(min_length=1, max_length=MAX_SHAPES)

    def outer_radius(self) -> float:
        return max(shape.extent() for shape in self.shapes)

    def element_count(self) -> int:
        return 1 + sum(shape.element_count() for shape in self.shapes)


Shape = Annotated[Circle | Ring | RadialPetals | SegmentedRing | RopeBand | Group, Field(discriminator="kind")]
Group.model_rebuild()


class Canvas(_Strict):
    diameter_mm: Annotated[float, Field(gt=1, le=MAX_DIAMETER_MM, allow_inf_nan=False)]


class RosetteSpec(_Strict):
    schema_version: Literal["rosette.v1"] = SPEC_SCHEMA_VERSION
    title: Annotated[str, Field(max_length=200)] = ""
    canvas: Canvas
    stroke_mm: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)] = 0.3
    shapes: list[Shape] = Field(min_length=1, max_length=MAX_SHAPES)

    @field_validator("title")
    @classmethod
    def _title_is_xml_text(cls, title: str) -> str:
        bad = NOT_XML_TEXT.search(title)
        if bad:
            raise ValueError(f"U+{ord(bad.group()):04X} at position {bad.start()} cannot be written in an SVG title")
        return title

    @model_validator(mode="after")
    def _bounded(self) -> RosetteSpec:
        total, depth = _count(self.shapes, 1)
        if total > MAX_SHAPES:
            raise ValueError(f"the spec has {total} shapes in all; at most {MAX_SHAPES} are allowed")
        if depth > MAX_DEPTH:
            raise ValueError(f"groups nest {depth} deep; at most {MAX_DEPTH} levels are allowed")
        elements = sum(shape.element_count() for shape in self.shapes)
        if elements > MAX_ELEMENTS:
            raise ValueError(f"the spec draws {elements} SVG elements; at most {MAX_ELEMENTS} are allowed")
        radius = self.canvas.diameter_mm / 2
        for index, shape in enumerate(self.shapes):
            if shape.extent() > radius + 1e-9:
                raise ValueError(
                    f"shapes[{index}] reaches {shape.extent():.3f} mm from the centre, outside the canvas "
                    f"radius of {radius:.3f} mm"
                )
        return self


def _count(shapes: list[Any], depth: int) -> tuple[int, int]:
    total, deepest = 0, depth
    for shape in shapes:
        total += 1
        if isinstance(shape, Group):
            inner_total, inner_depth = _count(shape.shapes, depth + 1)
            total += inner_total
            deepest = max(deepest, inner_depth)
    return total, deepest


class SpecInvalid(Exception):
    """The document is not a valid rosette spec; `violations` has one entry per problem, with its field path."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))
        self.violations = violations


def parse_spec(document: Any) -> RosetteSpec:
    """Validates a decoded JSON document; raises SpecInvalid listing every problem."""
    oversized = _oversized_list(document, "shapes", 0)
    if oversized:  # refuse before validating a million items one by one
        raise SpecInvalid([FieldViolation(oversized, f"at most {MAX_SHAPES} shapes are allowed")])
    try:
        return RosetteSpec.model_validate(document)
    except ValidationError as exc:
        raise SpecInvalid(
            [FieldViolation(_path(error["loc"]) or "spec", error["msg"]) for error in exc.errors()]
        ) from None


def _oversized_list(node: Any, path: str, depth: int) -> str | None:
    if depth > MAX_DEPTH + 1 or not isinstance(node, dict):
        return None
    shapes = node.get("shapes")
    if not isinstance(shapes, list):
        return None
    if len(shapes) > MAX_SHAPES:
        return path
    for index, child in enumerate(shapes):
        found = _oversized_list(child, f"{path}[{index}].shapes", depth + 1)
        if found:
            return found
    return None


_SHAPE_KINDS = {"circle", "ring", "radial_petals", "segmented_ring", "rope_band", "group"}


def _path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for index, part in enumerate(loc):
        if part in _SHAPE_KINDS and index > 0 and isinstance(loc[index - 1], int):
            continue  # pydantic puts the union's tag in the location; the user never wrote it
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema of the spec, given to the AI as the required response format."""
    return RosetteSpec.model_json_schema()
