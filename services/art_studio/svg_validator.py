"""SVG allowlist validation with a hardened parser: no DTD, no entities, no network, bounded size and depth.

Anything not explicitly allowed is a violation, and every violation is reported (not just the first), each with
where it is and why. Used on every compiled SVG and exposed as ValidateSvg for SVGs from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
XLINK_NAMESPACE = "http://www.w3.org/1999/xlink"
MAX_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 32
MAX_ELEMENTS = 20_000

PRESENTATION = frozenset(
    {"id", "fill", "stroke", "stroke-width", "stroke-linecap", "stroke-linejoin", "fill-rule", "opacity", "transform"}
)
ALLOWED: dict[str, frozenset[str]] = {
    "svg": PRESENTATION | {"xmlns", "version", "width", "height", "viewBox", "preserveAspectRatio"},
    "g": PRESENTATION,
    "title": frozenset({"id"}),
    "desc": frozenset({"id"}),
    "defs": frozenset({"id"}),
    "circle": PRESENTATION | {"cx", "cy", "r"},
    "ellipse": PRESENTATION | {"cx", "cy", "rx", "ry"},
    "line": PRESENTATION | {"x1", "y1", "x2", "y2"},
    "polyline": PRESENTATION | {"points"},
    "polygon": PRESENTATION | {"points"},
    "rect": PRESENTATION | {"x", "y", "width", "height", "rx", "ry"},
    "path": PRESENTATION | {"d"},
    "use": PRESENTATION | {"href", "x", "y"},
}


@dataclass(frozen=True)
class SvgViolation:
    rule: str
    location: str
    detail: str


def _split(name: str) -> tuple[str, str]:
    if name.startswith("{"):
        namespace, _, local = name[1:].partition("}")
        return namespace, local
    return "", name


def validate_svg(data: bytes) -> list[SvgViolation]:
    """Every way `data` breaks the allowlist; empty when it is a safe SVG."""
    if len(data) > MAX_BYTES:
        return [SvgViolation("TOO_LARGE", "document", f"{len(data)} bytes; at most {MAX_BYTES}")]
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        return [SvgViolation("DOCTYPE_OR_ENTITY", "document", f"DOCTYPE and entity declarations are refused ({exc})")]
    except (ParseError, ValueError) as exc:
        return [SvgViolation("UNPARSEABLE", "document", str(exc))]
    violations: list[SvgViolation] = []
    namespace, local = _split(root.tag)
    if local != "svg" or namespace not in ("", SVG_NAMESPACE):
        violations.append(SvgViolation("NOT_SVG", local, "the root element must be <svg> in the SVG namespace"))
    count = 0

    def walk(element: Element, path: str, depth: int) -> None:
        nonlocal count
        count += 1
        if count == MAX_ELEMENTS + 1:
            violations.append(SvgViolation("TOO_MANY_ELEMENTS", path, f"more than {MAX_ELEMENTS} elements"))
        if depth > MAX_DEPTH:
            violations.append(SvgViolation("TOO_DEEP", path, f"nested deeper than {MAX_DEPTH}"))
            return
        element_namespace, name = _split(element.tag)
        if name not in ALLOWED or element_namespace not in ("", SVG_NAMESPACE):
            violations.append(SvgViolation("ELEMENT_NOT_ALLOWED", path, f"<{name}> is not on the allowlist"))
        allowed = ALLOWED.get(name, frozenset())
        for attribute, value in element.attrib.items():
            attribute_namespace, attribute_name = _split(attribute)
            if attribute_name.lower().startswith("on"):
                violations.append(SvgViolation("EVENT_HANDLER", path, f"{attribute_name} runs script"))
            elif attribute_name == "href":
                if attribute_namespace not in ("", XLINK_NAMESPACE):
                    violations.append(
                        SvgViolation("ATTRIBUTE_NOT_ALLOWED", path, f"href in namespace {attribute_namespace}")
                    )
                elif not value.startswith("#") or len(value) < 2:
                    violations.append(
                        SvgViolation(
                            "EXTERNAL_REFERENCE", path, f"href {value[:80]!r}: only #fragment links are allowed"
                        )
                    )
                elif "href" not in allowed:
                    violations.append(SvgViolation("ATTRIBUTE_NOT_ALLOWED", path, f"href on <{name}>"))
            elif attribute_namespace or attribute_name not in allowed:
                violations.append(SvgViolation("ATTRIBUTE_NOT_ALLOWED", path, f"{attribute_name} on <{name}>"))
            elif "url(" in value.replace(" ", "").lower():
                violations.append(SvgViolation("EXTERNAL_REFERENCE", path, f"{attribute_name} uses url()"))
        seen: dict[str, int] = {}
        for child in element:
            _, child_name = _split(child.tag)
            seen[child_name] = seen.get(child_name, 0) + 1
            walk(child, f"{path}/{child_name}[{seen[child_name]}]", depth + 1)

    walk(root, local, 1)
    return violations
