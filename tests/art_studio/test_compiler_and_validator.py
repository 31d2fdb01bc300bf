"""The compiler is deterministic and emits only allowlisted SVG; the validator refuses every hostile SVG."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.art_studio.studio import compile_document
from services.rosette.compiler import compile_svg, number
from services.rosette.spec import SpecInvalid, parse_spec
from services.rosette.svg_validator import MAX_DEPTH, css_problems, plainly_safe, validate_svg
from tests.art_studio.specs import CLASSIC

COMPILE_IN_A_NEW_PROCESS = (
    "import sys, json; from services.rosette.spec import parse_spec; "
    "from services.rosette.compiler import compile_svg; "
    "sys.stdout.buffer.write(compile_svg(parse_spec(json.loads(sys.argv[1]))))"
)


def test_the_same_spec_compiles_to_identical_bytes_in_separate_processes() -> None:
    import json

    outputs = {
        subprocess.run(
            [sys.executable, "-c", COMPILE_IN_A_NEW_PROCESS, json.dumps(CLASSIC)],
            capture_output=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": ""},
        ).stdout
        for seed in (1, 2)
    }
    assert len(outputs) == 1
    assert outputs == {compile_svg(parse_spec(CLASSIC))}


def test_key_order_of_the_spec_does_not_change_the_svg() -> None:
    reordered = dict(reversed(list(CLASSIC.items())))
    assert compile_svg(parse_spec(reordered)) == compile_svg(parse_spec(CLASSIC))


def test_numbers_are_fixed_point_without_noise() -> None:
    assert [number(v) for v in (1.0, -0.0, 0.0004, 2.5, 1e-9, -1e-9, 123.45678, 1e6)] == [
        "1",
        "0",
        "0",
        "2.5",
        "0",
        "0",
        "123.457",
        "1000000",
    ]


def test_the_svg_is_in_millimetres_and_centred() -> None:
    svg = compile_svg(parse_spec(CLASSIC)).decode()
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="100mm" height="100mm"')
    assert 'viewBox="-50 -50 100 100"' in svg


def test_the_64_petal_rosette_has_every_petal() -> None:
    svg = compile_svg(parse_spec(CLASSIC)).decode()
    assert svg.count("<ellipse") == 64
    assert svg.count("<polygon") == 8 + 16


def test_compiled_svg_uses_only_cnc_safe_allowlisted_elements() -> None:
    svg = compile_svg(parse_spec(CLASSIC))
    assert validate_svg(svg) == []
    assert b"<path" not in svg and b"<text" not in svg


def test_spec_and_svg_hashes_are_over_canonical_json_and_bytes() -> None:
    import hashlib

    from services.common.hashing import canonical_json

    compiled = compile_document(CLASSIC)
    assert (
        compiled.spec_sha256 == hashlib.sha256(canonical_json(parse_spec(CLASSIC).model_dump(mode="json"))).hexdigest()
    )
    assert compiled.svg_sha256 == hashlib.sha256(compiled.svg).hexdigest()


SVG = '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">{}</svg>'
HOSTILE = {
    "script": (SVG.format("<script>alert(1)</script>"), "ELEMENT_NOT_ALLOWED"),
    "onload": (SVG.format('<circle r="1" onload="alert(1)"/>'), "EVENT_HANDLER"),
    "javascript_href": (SVG.format('<use href="javascript:alert(1)"/>'), "EXTERNAL_REFERENCE"),
    "data_href": (SVG.format('<use xlink:href="data:image/svg+xml;base64,AAAA"/>'), "EXTERNAL_REFERENCE"),
    "foreign_object": (SVG.format("<foreignObject><p>x</p></foreignObject>"), "ELEMENT_NOT_ALLOWED"),
    "external_use": (SVG.format('<use href="https://evil.example/a.svg#x"/>'), "EXTERNAL_REFERENCE"),
    "external_image": (SVG.format('<image href="https://evil.example/a.png"/>'), "ELEMENT_NOT_ALLOWED"),
    "style_url": (SVG.format('<circle r="1" fill="url(https://evil.example/p)"/>'), "EXTERNAL_REFERENCE"),
    "style_attribute": (SVG.format('<circle r="1" style="fill:red"/>'), "ATTRIBUTE_NOT_ALLOWED"),
    "entity_bomb": (
        '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        "<svg>&b;</svg>",
        "DOCTYPE_OR_ENTITY",
    ),
    "external_entity": ('<!DOCTYPE svg SYSTEM "http://evil.example/x.dtd"><svg/>', "DOCTYPE_OR_ENTITY"),
    "not_svg": ("<html><body/></html>", "NOT_SVG"),
    "unparseable": ("<svg><circle></svg>", "UNPARSEABLE"),
    "too_deep": (SVG.format("<g>" * (MAX_DEPTH + 2) + "</g>" * (MAX_DEPTH + 2)), "TOO_DEEP"),
    "too_large": (SVG.format("<circle r='1'/>" * 200_000), "TOO_LARGE"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_svg_is_refused_with_its_rule(case: str) -> None:
    document, rule = HOSTILE[case]
    assert rule in {v.rule for v in validate_svg(document.encode())}


def test_every_violation_is_reported_with_where_it_is() -> None:
    document = SVG.format('<g><script/><circle r="1" onclick="x"/><use href="http://x/y#z"/></g>').encode()
    found = {(v.rule, v.location) for v in validate_svg(document)}
    assert found == {
        ("ELEMENT_NOT_ALLOWED", "svg/g[1]/script[1]"),
        ("EVENT_HANDLER", "svg/g[1]/circle[1]"),
        ("EXTERNAL_REFERENCE", "svg/g[1]/use[1]"),
    }


def test_fragment_links_are_allowed() -> None:
    assert validate_svg(SVG.format('<defs><circle id="c" r="1"/></defs><use href="#c"/>').encode()) == []


# ---- what the parsed tree alone would miss ---------------------------------------------------------------------

_NS = b'<svg xmlns="http://www.w3.org/2000/svg">'


@pytest.mark.parametrize(
    "document",
    [
        b'<?xml-stylesheet href="x.css"?>' + _NS + b"</svg>",
        b'<?xml version="1.0"?>' + _NS + b"<?php x ?></svg>",
        _NS + b"<!-- <?xml-stylesheet href='x.css'?> --></svg>",
    ],
)
def test_processing_instructions_are_refused_at_the_byte_level(document: bytes) -> None:
    rules = [(v.rule, v.location) for v in validate_svg(document)]
    assert rules and all(rule == "PROCESSING_INSTRUCTION" and location.startswith("byte ") for rule, location in rules)


def test_an_xml_declaration_alone_is_allowed() -> None:
    assert validate_svg(b'<?xml version="1.0" encoding="UTF-8"?>\n' + _NS + b"</svg>") == []


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("url(https://x/y)", "EXTERNAL_REFERENCE"),
        ("\\75 rl(https://x/y)", "EXTERNAL_REFERENCE"),
        ("u\\72l(https://x/y)", "EXTERNAL_REFERENCE"),
        ("\\000075rl(x)", "EXTERNAL_REFERENCE"),
        ("expression(alert(1))", "CSS_NOT_ALLOWED"),
        ("expr/**/ession(alert(1))", "CSS_NOT_ALLOWED"),
        ("EXPRESSION(1)", "CSS_NOT_ALLOWED"),
        ("red @import 'x'", "CSS_NOT_ALLOWED"),
        ("rotate(1) var(--x)", "CSS_NOT_ALLOWED"),
    ],
)
def test_attribute_values_are_read_as_css_after_unescaping(value: str, rule: str) -> None:
    document = _NS + f'<circle r="1" fill="{value}"/></svg>'.encode()
    found = {(v.rule, v.location) for v in validate_svg(document)}
    assert (rule, "svg/circle[1]@fill") in found, found


def test_transforms_and_colours_stay_allowed() -> None:
    document = _NS + b'<g transform="translate(1 2) rotate(30) scale(2)" fill="rgb(1,2,3)" stroke="#000"/></svg>'
    assert validate_svg(document) == []


def test_only_utf8_documents_are_read() -> None:
    assert [v.rule for v in validate_svg((_NS + b"</svg>").decode().encode("utf-16"))] == ["NOT_UTF8"]
    assert [v.rule for v in validate_svg(b'<?xml version="1.0" encoding="latin-1"?>' + _NS + b"</svg>")] == ["NOT_UTF8"]


def test_every_spec_compiles_within_the_validators_limits() -> None:
    ring = {"kind": "segmented_ring", "inner_r": 30, "outer_r": 45, "segments": 360, "gap_deg": 0.5}
    with pytest.raises(SpecInvalid) as raised:
        parse_spec({"canvas": {"diameter_mm": 100}, "shapes": [ring] * 8})
    assert "SVG elements" in str(raised.value)


_CSS_ALPHABET = st.sampled_from(
    list("rotate(scale)url u r l @import /* */ \\ 7 5 e 1 2 . , - + ( ) ; : # RGB skewX matrix")
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(_CSS_ALPHABET, max_size=12).map("".join))
def test_the_css_fast_path_passes_only_what_the_tokeniser_passes(value: str) -> None:
    if plainly_safe(value):
        assert css_problems(value) == [], value


@pytest.mark.parametrize(
    "value", ["1.5", "#000000", "none", "rotate(30 1.5 -2)", "translate(1 2) rotate(-3)", "0,1 2,3"]
)
def test_the_css_fast_path_takes_what_the_compiler_writes(value: str) -> None:
    assert plainly_safe(value) and css_problems(value) == []


@pytest.mark.parametrize("value", ["url(x)", "\\75 rl(x)", "@import", "a/**/b", "var(--x)", "rotate(url(x))"])
def test_the_css_fast_path_sends_anything_else_to_the_tokeniser(value: str) -> None:
    assert not plainly_safe(value)
