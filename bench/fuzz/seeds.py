"""Seed corpora, generated at run time from real valid inputs: specs of every shape kind and the SVGs the compiler
makes of them, a few hostile SVGs, legacy artifacts as the legacy store wrote them, and for every RPC its empty
request and one with every field set (built from the descriptor, so new fields are seeded too)."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from bench.fuzz.requests import SERVICERS, ServiceTarget, service_target
from bench.fuzz.targets import SIDE_FILES
from services.rosette.compiler import compile_svg
from services.rosette.spec import parse_spec
from tests.support.legacy import legacy_artifact as legacy_fixture

SHAPES: list[dict[str, Any]] = [
    {"kind": "circle", "r": 10},
    {"kind": "ring", "inner_r": 44, "outer_r": 48},
    {"kind": "radial_petals", "inner_r": 8, "outer_r": 30, "count": 12, "petal_width_deg": 18},
    {"kind": "radial_petals", "inner_r": 8, "outer_r": 30, "count": 7, "petal_width_deg": 30, "petal_shape": "pointed"},
    {"kind": "segmented_ring", "inner_r": 32, "outer_r": 36, "segments": 24, "gap_deg": 2, "rotation_deg": 7.5},
    {"kind": "rope_band", "inner_r": 38, "outer_r": 42, "strands": 40, "pattern": "herringbone"},
    {"kind": "group", "rotation_deg": 15, "shapes": [{"kind": "circle", "r": 3, "cx": 5}]},
]


def specs() -> list[dict[str, Any]]:
    return [
        {"canvas": {"diameter_mm": 100}, "shapes": SHAPES},
        {"schema_version": "rosette.v1", "title": "Soundhole <rosette> & co", "canvas": {"diameter_mm": 100},
         "stroke_mm": 0.25, "shapes": SHAPES[1:3]},
        *({"canvas": {"diameter_mm": 100}, "shapes": [shape]} for shape in SHAPES),
    ]  # fmt: skip


def svgs() -> list[bytes]:
    compiled = [compile_svg(parse_spec(spec)) for spec in specs()]
    body, closing = compiled[0].rsplit(b"</g>", 1)
    hostile = [
        b'<circle r="3" fill="\\75 rl(https://evil.example/x)"/>',
        b'<use href="#a" x="1"/><script>alert(1)</script>',
        b'<g transform="rotate(1) scale(2)" style="fill:red"/>',
        b"<!-- <?xml-stylesheet href='x.css'?> --><![CDATA[x]]>",
    ]
    return [
        *compiled,
        *(body + fragment + b"\n</g>" + closing for fragment in hostile),
        b'<?xml version="1.0" encoding="UTF-8"?>\n' + compiled[1],
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaa">]><svg>&a;</svg>',
    ]


def legacy_artifact(legacy_id: str) -> dict[str, Any]:
    """A legacy artifact with every optional part filled in (warnings, an advisory, an explanation, meta)."""
    return legacy_fixture(
        legacy_id,
        decision={"risk_level": "low", "score": 0.9, "block_reason": None, "warnings": ["tight"]},
        advisory_inputs=[{"advisory_id": "adv_0", "kind": "note", "created_at_utc": "2025-12-17T10:01:00"}],
        explanation_status="READY",
        explanation_summary="clamp the blank",
        meta={"operator": "ana"},
    )


def legacy_stores() -> list[bytes]:
    advisory = {"advisory_id": "adv_001", "kind": "explanation", "engine_id": "e", "engine_version": "1"}
    explanation = {"explanation_status": "READY", "explanation_summary": "clamp the blank"}
    blocked = {**legacy_artifact("run_b2"), "status": "BLOCKED", "decision": {"risk_level": "HIGH", "score": 0.1}}
    partition = SIDE_FILES.join(json.dumps(d).encode() for d in (legacy_artifact("run_a1"), advisory, explanation))
    return [
        b"\x00" + json.dumps({"run_a1": legacy_artifact("run_a1"), "run_b2": blocked}).encode(),
        b"\x00" + json.dumps({"run_c3": {**legacy_artifact("run_c3"), "status": "ERROR"}}).encode(),
        b"\x01" + partition,
    ]


def hasher_values() -> list[bytes]:
    documents = [
        *specs()[:2],
        legacy_artifact("run_a1"),
        {"\U0001f980": 1, "\uffff": [1e-5, 2.5, -0.0, 1e21, 9007199254740993, None, True]},
    ]
    structured = [
        b"\x08\x03\x05\x01\x02ab\x03" + bytes(8) + b"\x06\x02\x02\x01\x7f\x04\x00\x01",
        b"\x05\x00\x02\x00\xd8\x00\x01\xf9\x80",
    ]
    return [b"\x00" + json.dumps(d).encode() for d in documents] + [b"\x01" + s for s in structured]


def css_values() -> list[bytes]:
    return [
        b"rotate(30 1 2)",
        b"#000000",
        b"rgb(1, 2, 3)",
        b"url(x)",
        b"\\75 rl(x)",
        b"translate(1,2) scale(0.5)",
        b"expr/**/ession(1)",
    ]


def example(descriptor: Descriptor, depth: int = 0) -> dict[str, Any]:
    """A value for every field of a message (one member of each oneof), as keyword arguments."""
    values: dict[str, Any] = {}
    chosen_oneofs: set[str] = set()
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and not field.name.startswith("_") and oneof.name in chosen_oneofs:
            continue
        value = _field_value(field, depth)
        if value is None:
            continue
        if oneof is not None:
            chosen_oneofs.add(oneof.name)
        values[field.name] = [value] if field.is_repeated and not _is_map(field) else value
    return values


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _field_value(field: FieldDescriptor, depth: int) -> Any:
    if _is_map(field):
        return {"k": "v"} if field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_STRING else {}
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name == "google.protobuf.Struct":
            data = struct_pb2.Struct()
            data.update({"prompt": "a rosette", "n": 1})
            return data
        if field.message_type.full_name == "google.protobuf.Timestamp":
            return timestamp_pb2.Timestamp(seconds=1_700_000_000)
        if depth > 3 or field.message_type.full_name.startswith("google.protobuf."):
            return None
        return example(field.message_type, depth + 1)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.values[-1].number
    if field.type == FieldDescriptor.TYPE_BOOL:
        return True
    if field.type == FieldDescriptor.TYPE_STRING:
        return _string_for(field.name)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return b"<svg/>"
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return 0.5 if "confidence" in field.name or "score" in field.name else 100.0
    return 1


def _string_for(name: str) -> str:
    if name == "spec_json":
        return json.dumps(specs()[0])
    if "sha256" in name:
        return "ab" * 32
    if name in ("name", "parent", "base", "target", "lineage_candidate", "lineage_parent"):
        return "projects/demo/artifacts/design_brief/brief/versions/1"
    if name in ("run", "left", "right") or name.endswith("run"):
        return "runs/run_" + "0" * 32
    if name == "request_id":
        return "req-1"
    return "fuzz"


def requests(target: ServiceTarget) -> list[bytes]:
    found = []
    for index, method in enumerate(target.methods):
        message_class = target.request_class(method)
        messages: list[Message] = [message_class(), message_class(**example(message_class.DESCRIPTOR))]
        for message in messages:
            payload = message.SerializeToString()
            if method.client_streaming:  # a header message, then a chunk (frames of at most 255 bytes)
                payload = bytes([len(payload[:255])]) + payload[:255] + b"\x03\x12\x01x"
            found.append(bytes([index]) + payload)
    return found


def corpus(target: str) -> list[bytes]:
    fixed = {
        "svg_validator": svgs,
        "css_fast_path": css_values,
        "spec_parser": lambda: [json.dumps(spec).encode() for spec in specs()],
        "spec_compiler": lambda: [json.dumps(spec).encode() for spec in specs()],
        "canonical_hasher": hasher_values,
        "legacy_reader": legacy_stores,
    }
    if target in fixed:
        return fixed[target]()
    service = target.removeprefix("requests_")
    return requests(service_target(service)) if service in SERVICERS else []


_JSON_TOKENS = [b"\\u0001", b"\\u0000", b"\\ud800", b"\\udfff", b"\\ufffe", b"\\ud83e\\udd80", b"1e308", b"-0.0",
                b"5e-324", b"1e-7", b"9007199254740993", b"NaN", b"Infinity", b"null", b"[[[[", b"{\"a\":"]  # fmt: skip
_SPEC_TOKENS = [b'"kind"', b'"shapes"', b'"canvas"', b'"diameter_mm"', b'"title"', b'"inner_r"', b'"outer_r"',
                b'"count"', b'"group"', b'"ring"', b'"circle"', b'"radial_petals"', b'"segmented_ring"',
                b'"rope_band"', b'"petal_shape"', b'"teardrop"', b'"rotation_deg"', b'"gap_deg"', b'"strands"',
                b'"cx"', b'"stroke_mm"', b'"schema_version"']  # fmt: skip
_LEGACY_TOKENS = [b'"status"', b'"decision"', b'"risk_level"', b'"advisory_inputs"', b'"explanation_status"',
                  b'"created_at_utc"', b'"run_id"', b'"advisory_id"', b'"hashes"', b'"outputs"', b'"meta"',
                  b'"BLOCKED"', b'"PENDING"', b'"2025-13-45T99:00:00Z"', SIDE_FILES]  # fmt: skip
_SVG_TOKENS = [b"<?", b"<?xml-stylesheet", b"<!DOCTYPE svg [", b"<!ENTITY", b"&#x0;", b"&#1;", b"<![CDATA[", b"-->",
               b"xlink:href", b' href="#', b"url(", b"\\75 rl(", b"/*", b"@import", b"<script", b"onload", b"xmlns:",
               b'encoding="UTF-16"', b"\xef\xbb\xbf", b"<use", b"<g", b"transform=", b"expression("]  # fmt: skip


def dictionary(target: str) -> list[bytes]:
    """libFuzzer dictionary tokens for a target: the words its inputs are made of, which mutation alone finds late."""
    return {
        "svg_validator": _SVG_TOKENS,
        "css_fast_path": [b"url(", b"\\", b"/*", b"@", b"rotate(", b"rgb(", b"(", b"\\75 "],
        "spec_parser": _JSON_TOKENS + _SPEC_TOKENS,
        "spec_compiler": _JSON_TOKENS + _SPEC_TOKENS,
        "canonical_hasher": _JSON_TOKENS,
        "legacy_reader": _JSON_TOKENS + _LEGACY_TOKENS,
    }.get(target, [])


def dictionary_file(tokens: list[bytes]) -> str:
    """The tokens in libFuzzer's dictionary syntax: one quoted entry a line, bytes outside printable ASCII as \\xNN."""

    def quoted(token: bytes) -> str:
        return "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}" for b in token)

    return "".join(f'"{quoted(token)}"\n' for token in tokens)
