"""The fuzz targets that take documents: one function of bytes each, returning for an accepted input or an expected
refusal and raising for anything else (a crash). Each docstring says exactly which outcomes are refusals.

Oracles go beyond "no exception": a valid spec must compile to an SVG the validator accepts and re-parse to the
same canonical spec; the hasher's fast path must equal the reference RFC 8785 implementation and what it accepts
must hash identically once read back; the CSS fast path must agree with the tokeniser.
"""

from __future__ import annotations

import json
import math
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rfc8785

from services.art_studio.studio import compile_spec
from services.cli import legacy
from services.common.call_context import is_valid_request_id
from services.common.errors import InvalidArgument
from services.common.hashing import canonical_json, is_sha256_hex, loads_canonical, sha256_bytes, sha256_canonical
from services.rosette.spec import parse_spec
from services.rosette.svg_validator import SvgViolation, css_problems, plainly_safe, validate_svg


class OracleFailed(AssertionError):
    """The code under test answered, but not what it promises: as much a crash as an exception."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise OracleFailed(message)


# ---- the SVG allowlist validator --------------------------------------------------------------------------------


def svg_validator(data: bytes) -> None:
    """validate_svg on any bytes. No refusals: every input gets a list of violations (an unsafe or unparseable
    document is an answer, not an error); any exception is a crash. Oracles: the answer is a list of SvgViolation
    with text fields, and no document is reported with more than MAX_REPORTED processing instructions."""
    found = validate_svg(data)
    _expect(isinstance(found, list), "validate_svg did not return a list")
    for violation in found:
        _expect(isinstance(violation, SvgViolation), f"not an SvgViolation: {violation!r}")
        _expect(all(isinstance(v, str) for v in (violation.rule, violation.location, violation.detail)), "non-text")
    _expect(sum(v.rule == "PROCESSING_INSTRUCTION" for v in found) <= 100, "more findings reported than the cap")


def css_fast_path(data: bytes) -> None:
    """The validator's fast path for attribute values against the CSS tokeniser it skips: whenever plainly_safe
    says a value is safe, css_problems must find nothing. No refusals (bytes that are not UTF-8 are decoded with
    replacement characters, as any attribute value is text)."""
    value = data.decode("utf-8", "replace")
    problems = css_problems(value)
    _expect(not (plainly_safe(value) and problems), f"fast path passed {value!r}, the tokeniser found {problems}")


# ---- the rosette spec: parser and compiler ----------------------------------------------------------------------


def spec_compiler(data: bytes) -> None:
    """CompileSpec's whole path on JSON text: loads_json, parse_spec, compile_svg, validate_svg, canonical JSON.

    Expected refusal: InvalidArgument (SPEC_INVALID, JSON_TOO_DEEP, JSON_NOT_FINITE), what the RPC answers as
    INVALID_ARGUMENT. Bytes that are not UTF-8 are skipped (spec_json is a proto string: it cannot carry them).
    Anything else escaping compile_spec is a crash (the RPC would answer INTERNAL). Oracles for an accepted spec:
    the compiled SVG passes the allowlist (compile_spec checks that itself and raises otherwise), the digests are
    of the bytes returned, and the canonical spec parses back to the same canonical spec and the same SVG."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        compiled = compile_spec(text)
    except InvalidArgument:
        return
    _expect(compiled.svg_sha256 == sha256_bytes(compiled.svg), "svg_sha256 is not the SVG's digest")
    _expect(compiled.spec_sha256 == sha256_bytes(compiled.spec_json.encode()), "spec_sha256 is not the spec's digest")
    again = compile_spec(compiled.spec_json)
    _expect(again.spec_json == compiled.spec_json, "the canonical spec does not parse back to itself")
    _expect(again.svg == compiled.svg, "the canonical spec compiles to another SVG")


def spec_parser(data: bytes) -> None:
    """parse_spec on any decoded JSON document (json.loads, not the request limits, so the parser itself meets deep
    and odd documents). Expected refusals: json.loads failing (ValueError: not JSON or not UTF-8; RecursionError:
    nested beyond Python's recursion limit, which request paths refuse earlier with JSON_TOO_DEEP) and SpecInvalid.
    Anything else is a crash; an accepted spec must dump to JSON that parses to an equal spec."""
    from services.rosette.spec import SpecInvalid

    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return
    try:
        spec = parse_spec(document)
    except SpecInvalid:
        return
    _expect(parse_spec(json.loads(json.dumps(spec.model_dump(mode="json")))) == spec, "the spec does not round-trip")


# ---- the canonical JSON hasher ----------------------------------------------------------------------------------


def canonical_hasher(data: bytes) -> None:
    """canonical_json (the fast path) against rfc8785.dumps (the reference) on values decoded from the input: JSON
    text when the first byte is even, else a structured encoding that reaches what JSON text cannot (lone
    surrogates, astral keys, integers beyond 2**53, every float bit pattern, tuples).

    Expected refusals: the input is not JSON (ValueError, RecursionError from json.loads), or the reference refuses
    the value (CanonicalizationError; UnicodeEncodeError for a lone surrogate in a key, which rfc8785 raises
    unwrapped); the fast path must then raise the same exception type. A crash is any other exception, the two
    disagreeing on bytes or on refusing, or an accepted value whose canonical JSON, read back with loads_canonical,
    does not hash identically."""
    if not data:
        return
    if data[0] % 2 == 0:
        try:
            value = json.loads(data[1:])
        except (ValueError, RecursionError):
            return
    else:
        value = _Values(data[1:]).value(0)
    try:
        reference = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError) as refused:
        try:
            canonical_json(value)
        except type(refused):
            return
        raise OracleFailed(f"the reference refuses {value!r} ({refused!r}); the fast path does not") from None
    fast = canonical_json(value)
    _expect(fast == reference, f"fast path {fast!r} != reference {reference!r} for {value!r}")
    _expect(sha256_canonical(value) == sha256_bytes(reference), "sha256_canonical is not the digest of the bytes")
    _expect(canonical_json(loads_canonical(fast)) == fast, f"{fast!r} does not re-hash identically once read back")


class _Values:
    """Reads a JSON-like Python value from bytes: one tag byte per value, then its payload. Deterministic, so a
    reproducer replays without atheris."""

    MAX_DEPTH = 12

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def _take(self, n: int) -> bytes:
        chunk = self._data[self._at : self._at + n]
        self._at += n
        return chunk.ljust(n, b"\0")

    def _byte(self) -> int:
        return self._take(1)[0]

    def _text(self) -> str:
        kind, length = self._byte(), self._byte() % 24
        if kind % 3 == 0:  # any code point, surrogates included
            return "".join(chr(int.from_bytes(self._take(3), "big") % 0x110000) for _ in range(length))
        if kind % 3 == 1:
            return self._take(length).decode("utf-8", "surrogateescape")
        return self._take(length).decode("latin-1")

    def value(self, depth: int) -> Any:
        tag = self._byte() % (9 if depth < self.MAX_DEPTH else 6)
        if tag == 0:
            return None
        if tag == 1:
            return bool(self._byte() % 2)
        if tag == 2:
            width = 1 + self._byte() % 9
            return int.from_bytes(self._take(width), "big", signed=True)
        if tag == 3:
            return struct.unpack(">d", self._take(8))[0]
        if tag == 4:  # a float near the fast path's edges (1e-4, 2**53, integral values)
            edge = (1e-4, 1e-7, 2.0**53, 1e21, 5e-324, 1.0)[self._byte() % 6]
            return math.nextafter(edge, math.inf if self._byte() % 2 else -math.inf) * (-1 if self._byte() % 2 else 1)
        if tag == 5:
            return self._text()
        count = self._byte() % 6
        if tag == 6:
            return [self.value(depth + 1) for _ in range(count)]
        if tag == 7:
            return tuple(self.value(depth + 1) for _ in range(count))
        return {self._text(): self.value(depth + 1) for _ in range(count)}


# ---- the legacy run reader --------------------------------------------------------------------------------------

SIDE_FILES = b"\n--\n"


def legacy_reader(data: bytes) -> None:
    """`custody runs migrate`'s reader (services.cli.legacy.scan) on a store written from the input: when the first
    byte is even the rest is `runs.json` (a map of legacy id to artifact), else a date partition whose core file,
    advisory side file and explanation side file are the rest split at "\\n--\\n".

    Expected refusals: none escape; scan reports every file or record it cannot use as a LegacyProblem. Any
    exception from scan is a crash (the migration would stop halfway). Oracles for every record read: its
    idempotency key is a valid request id, its artifact digest is a sha256, and its RunInput serialises."""
    if not data:
        return
    with tempfile.TemporaryDirectory(prefix="fuzz-legacy-") as root:
        store = Path(root)
        if data[0] % 2 == 0:
            (store / legacy.MAP_FILE).write_bytes(data[1:])
        else:
            partition = store / "2024-01-02"
            partition.mkdir()
            names = ("run_a1.json", "run_a1_advisory_x1.json", "run_a1_explanation.json")
            for name, part in zip(names, data[1:].split(SIDE_FILES), strict=False):
                (partition / name).write_bytes(part)
        found = legacy.scan(store)
    for run in found.runs:
        _expect(is_valid_request_id(run.idempotency_key), f"idempotency key {run.idempotency_key!r} is not valid")
        _expect(is_sha256_hex(run.artifact_sha256), "artifact_sha256 is not a sha256")
        run.run.SerializeToString()


TARGETS: dict[str, Callable[[bytes], None]] = {
    "svg_validator": svg_validator,
    "css_fast_path": css_fast_path,
    "spec_parser": spec_parser,
    "spec_compiler": spec_compiler,
    "canonical_hasher": canonical_hasher,
    "legacy_reader": legacy_reader,
}
