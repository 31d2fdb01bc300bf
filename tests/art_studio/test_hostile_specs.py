"""CompileSpec's spec_json is held to the shared JSON limits: too deep or non-finite is refused with its reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from custody.art_studio.v1 import art_studio_pb2, art_studio_pb2_grpc
from services.common import status
from tests.support.harness import ServiceHarness, bearer, operator_token, state_layout


@pytest.fixture
def compile_spec(tmp_path: Path) -> Iterator[object]:
    layout = state_layout(tmp_path / "var")
    with ServiceHarness("art_studio", layout) as studio:  # CompileSpec calls no peer
        stub = art_studio_pb2_grpc.ArtStudioServiceStub(studio.channel())

        def call(spec_json: str) -> status.DecodedError:
            with pytest.raises(grpc.RpcError) as raised:
                stub.CompileSpec(
                    art_studio_pb2.CompileSpecRequest(spec_json=spec_json),
                    metadata=bearer(operator_token(layout)),
                    timeout=10,
                )
            return status.decode(raised.value)

        yield call


def test_spec_json_nested_deeper_than_json_parses_is_json_too_deep(compile_spec: object) -> None:
    error = compile_spec('{"shapes": ' + "[" * 100_000 + "]" * 100_000 + "}")  # type: ignore[operator]
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "JSON_TOO_DEEP")
    assert error.violations[0].field == "spec_json"


def test_spec_json_with_a_nan_literal_is_json_not_finite(compile_spec: object) -> None:
    error = compile_spec('{"canvas": {"diameter_mm": NaN}, "shapes": []}')  # type: ignore[operator]
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "JSON_NOT_FINITE")


def test_a_title_with_a_character_xml_cannot_carry_is_spec_invalid(compile_spec: object) -> None:
    """Found by fuzzing (bench/fuzz spec_compiler): the compiled SVG did not parse, and CompileSpec was INTERNAL."""
    spec = '{"canvas": {"diameter_mm": 100}, "title": "a\\u0001b", "shapes": [{"kind": "circle", "r": 10}]}'
    error = compile_spec(spec)  # type: ignore[operator]
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "SPEC_INVALID")
    assert [v.field for v in error.violations] == ["title"]
