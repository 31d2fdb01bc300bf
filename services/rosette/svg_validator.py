"""SVG allowlist validation with a hardened parser: no DTD, no entities, no network, bounded size and depth.

Anything not explicitly allowed is a violation, and every violation is reported (not just the first), each with
where it is and why. art_studio runs it on every SVG it compiles and exposes it as ValidateSvg; runs runs it on
every SVG it binds.

Two things the parsed tree cannot show are checked on the bytes and tokens instead: processing instructions
(ElementTree drops them, yet `<?xml-stylesheet?>` loads CSS in a browser), and CSS hidden in attribute values
(`\\75 rl(...)` is `url(...)` once CSS unescapes it). Attribute values are tokenised as CSS (tinycss2, which
applies CSS's own escape and comment rules) and may call only the transform and colour functions below.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

import tinycss2
from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
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
# The only CSS functions an attribute value may call: transforms and colours. url(), expression(), image(),
# var() and the rest can fetch, run or hide content.
CSS_FUNCTIONS = frozenset({"matrix", "translate", "scale", "rotate", "skewx", "skewy", "rgb", "rgba", "hsl", "hsla"})
# An XML declaration is the one `<?` allowed, and only as the document's first bytes.
XML_DECLARATION = re.compile(rb"\A(?:\xef\xbb\xbf)?<\?xml[ \t\r\n][^<>?]*\?>")
UTF8_ENCODING = re.compile(rb"""encoding\s*=\s*["']utf-?8["']""", re.IGNORECASE)
# A hostile document can repeat a finding endlessly; the report names this many and says how many there were.
MAX_REPORTED = 100


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


def _doctype(exc: DTDForbidden) -> str:
    external = f'SYSTEM "{exc.sysid}"' if exc.sysid else f'PUBLIC "{exc.pubid}"' if exc.pubid else ""
    return " ".join(part for part in (str(exc.name), external) if part)


def _declaration_violation(exc: DefusedXmlException) -> SvgViolation:
    """What defusedxml refused, in words (its exceptions print as Python reprs)."""
    if isinstance(exc, EntitiesForbidden):
        detail = f"the document declares the entity {exc.name!s}; entity declarations are refused"
    elif isinstance(exc, ExternalReferenceForbidden):
        detail = f"the document refers to an external resource ({exc.sysid or exc.pubid}); remove the reference"
    else:
        detail = "the document declares a DOCTYPE or entity, which is refused; remove it"
    return SvgViolation("DOCTYPE_OR_ENTITY", "document", detail)


def validate_svg(data: bytes) -> list[SvgViolation]:
    """Every way `data` breaks the allowlist; empty when it is a safe SVG."""
    if len(data) > MAX_BYTES:
        return [SvgViolation("TOO_LARGE", "document", f"{len(data)} bytes; at most {MAX_BYTES}")]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Only UTF-8 is accepted, so the byte-level checks below see every character as it will be parsed.
        return [SvgViolation("NOT_UTF8", f"byte {exc.start}", "the SVG must be UTF-8")]
    instructions = _processing_instructions(data)
    if instructions:
        return instructions
    violations: list[SvgViolation] = []
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DTDForbidden as exc:
        # Refused, and the rest is still checked: a DOCTYPE without entity declarations cannot change what the
        # parser reads, so the person fixing the file sees every other violation at once.
        violations.append(
            SvgViolation(
                "DOCTYPE_OR_ENTITY", "document", f"the document declares a DOCTYPE ({_doctype(exc)}); remove it"
            )
        )
        try:
            root = fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
        except DefusedXmlException as inner:
            return [*violations, _declaration_violation(inner)]
        except (ParseError, ValueError) as inner:
            return [*violations, SvgViolation("UNPARSEABLE", "document", str(inner))]
    except DefusedXmlException as exc:
        return [_declaration_violation(exc)]
    except (ParseError, ValueError) as exc:
        return [SvgViolation("UNPARSEABLE", "document", str(exc))]
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
            else:
                violations.extend(
                    SvgViolation(rule, f"{path}@{attribute_name}", detail) for rule, detail in _css_problems(value)
                )
        seen: dict[str, int] = {}
        for child in element:
            _, child_name = _split(child.tag)
            seen[child_name] = seen.get(child_name, 0) + 1
            walk(child, f"{path}/{child_name}[{seen[child_name]}]", depth + 1)

    walk(root, local, 1)
    return violations


def _processing_instructions(data: bytes) -> list[SvgViolation]:
    """Every `<?` after the optional XML declaration, wherever it stands (comments and CDATA included: an
    allowlist does not need to know which of them a browser would act on)."""
    declaration = XML_DECLARATION.match(data)
    if declaration and b"encoding" in declaration.group() and not UTF8_ENCODING.search(declaration.group()):
        return [SvgViolation("NOT_UTF8", "document", "the XML declaration names an encoding other than UTF-8")]
    start = declaration.end() if declaration else 0
    found = [m.start() + start for m in re.finditer(rb"<\?", data[start:])]
    return [
        SvgViolation("PROCESSING_INSTRUCTION", f"byte {offset}", "processing instructions are refused")
        for offset in found[:MAX_REPORTED]
    ]


# Fast path for the attribute values a compiled SVG is made of (numbers, colours, `rotate(30 1 2)`): a value with no
# `\\`, `@` or `/*` and no `(`, or whose every `(` opens an allowed function of plain numbers, cannot hold an escape,
# an at-rule, a comment, a url or another function, so tokenising it would find nothing. The property test in
# tests/art_studio/test_compiler_and_validator.py checks it against the tokeniser on generated values.
_PLAIN_CALLS = re.compile(r"(?:\s*(?:" + "|".join(sorted(CSS_FUNCTIONS)) + r")\([0-9eE.,+\- ]*\))*\s*", re.IGNORECASE)
_PLAIN_VALUE = re.compile(r"[^\\@(/]*")


def plainly_safe(value: str) -> bool:
    """True only for values the CSS check would pass without tokenising them."""
    if "/*" in value or "\\" in value or "@" in value:
        return False
    return _PLAIN_VALUE.fullmatch(value) is not None or _PLAIN_CALLS.fullmatch(value) is not None


def _css_problems(value: str) -> Iterable[tuple[str, str]]:
    if plainly_safe(value):
        return ()
    return css_problems(value)


def css_problems(value: str) -> list[tuple[str, str]]:
    """What CSS would read in `value` that can fetch or run something: url tokens, functions outside
    CSS_FUNCTIONS (named after unescaping), at-rules such as @import, and comments, which can split a name."""
    found: list[tuple[str, str]] = []
    if "/*" in value:
        found.append(("CSS_NOT_ALLOWED", "CSS comments are not allowed in attribute values"))
    pending = list(tinycss2.parse_component_value_list(value))
    while pending:
        token = pending.pop()
        if token.type == "url":
            found.append(("EXTERNAL_REFERENCE", "url() is not allowed"))
        elif token.type == "function":
            if token.lower_name == "url":
                found.append(("EXTERNAL_REFERENCE", "url() is not allowed"))
            elif token.lower_name not in CSS_FUNCTIONS:
                found.append(("CSS_NOT_ALLOWED", f"the CSS function {token.lower_name[:40]}() is not allowed"))
            pending.extend(token.arguments)
        elif token.type == "at-keyword":
            found.append(("CSS_NOT_ALLOWED", f"@{token.lower_value[:40]} is not allowed"))
        elif token.type in ("() block", "[] block", "{} block"):
            pending.extend(token.content)
    return found
