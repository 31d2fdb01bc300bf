"""`custody studio compile|validate|generate` as an operator runs them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from custody.art_studio.v1 import art_studio_pb2, art_studio_pb2_grpc
from services.art_studio.access import ACCESS
from services.cli.state import StateLayout, save_endpoints
from services.common.config import ServiceSettings
from services.common.hashing import sha256_bytes
from services.common.server import Service
from tests.art_studio.specs import simple
from tests.art_studio.test_generate_candidates import spec_for
from tests.support.fake_gateway import ScriptedGateway, fake_gateway
from tests.support.harness import ServiceHarness, state_layout
from tests.support.processes import clean_environment, custody


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Any]:
    layout: StateLayout = state_layout(tmp_path / "var")
    gateway = ServiceHarness("ai_gateway", layout, factory=fake_gateway(ScriptedGateway(answer=spec_for)))  # type: ignore[arg-type]
    with gateway, ServiceHarness("art_studio", layout, settings={"ai_gateway_address": gateway.address}) as studio:
        save_endpoints(layout, {"art_studio": studio.address})

        def run_cli(*args: str, expect: int = 0) -> Any:
            result = custody("studio", *args, "--state-dir", str(layout.root), env=clean_environment())
            assert result.returncode == expect, result.stdout + result.stderr
            return result

        yield run_cli


def test_compile_writes_the_svg_next_to_the_spec(cli: Any, tmp_path: Path) -> None:
    spec = tmp_path / "mine.json"
    spec.write_text(json.dumps(simple()))
    report = json.loads(cli("compile", str(spec), "--json").stdout)
    assert Path(report["svg"]).read_bytes().startswith(b"<svg")


def test_compile_out_writes_exactly_the_bytes_whose_digest_it_prints(cli: Any, tmp_path: Path) -> None:
    spec = tmp_path / "mine.json"
    spec.write_text(json.dumps(simple()))
    target = tmp_path / "elsewhere" / "out.svg"
    target.parent.mkdir()
    printed = cli("compile", str(spec), "--out", str(target)).stdout
    assert f"svg_sha256 {sha256_bytes(target.read_bytes())}" in printed


class LyingStudio(art_studio_pb2_grpc.ArtStudioServiceServicer):
    """Answers CompileSpec with bytes that are not the ones its digest names."""

    async def CompileSpec(
        self, request: art_studio_pb2.CompileSpecRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> art_studio_pb2.CompileSpecResponse:
        return art_studio_pb2.CompileSpecResponse(svg=b"<svg/>", svg_sha256=sha256_bytes(b"<svg></svg>"))


def lying_studio(settings: ServiceSettings, tracer_provider: object) -> Service:
    servicer = LyingStudio()
    return Service(
        full_name="custody.art_studio.v1.ArtStudioService",
        register=lambda server: art_studio_pb2_grpc.add_ArtStudioServiceServicer_to_server(servicer, server),
        access=ACCESS,
    )


def test_compile_writes_nothing_when_the_bytes_are_not_the_ones_named(tmp_path: Path) -> None:
    layout: StateLayout = state_layout(tmp_path / "var")
    spec = tmp_path / "mine.json"
    spec.write_text(json.dumps(simple()))
    with ServiceHarness("art_studio", layout, factory=lying_studio) as studio:  # type: ignore[arg-type]
        save_endpoints(layout, {"art_studio": studio.address})
        result = custody("studio", "compile", str(spec), "--state-dir", str(layout.root), env=clean_environment())
    assert result.returncode == 1 and "not the" in result.stderr
    assert not spec.with_suffix(".svg").exists()


def test_validate_reports_every_violation_in_words_beside_a_doctype(cli: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.svg"
    bad.write_text('<!DOCTYPE svg><svg xmlns="http://www.w3.org/2000/svg"><script/><circle onload="x"/></svg>')
    rows = json.loads(cli("validate", str(bad), "--json", expect=1).stdout)["violations"]
    assert {row["rule"] for row in rows} == {"DOCTYPE_OR_ENTITY", "ELEMENT_NOT_ALLOWED", "EVENT_HANDLER"}
    assert all("Forbidden(" not in row["detail"] for row in rows)


def test_validate_exits_1_and_lists_violations(cli: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.svg"
    bad.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script/><circle onload="x"/></svg>')
    result = cli("validate", str(bad), expect=1)
    assert "ELEMENT_NOT_ALLOWED" in result.stdout and "EVENT_HANDLER" in result.stdout


def test_generate_writes_each_candidate(cli: Any, tmp_path: Path) -> None:
    cli("generate", "--prompt", "eight petals", "--count", "2", "--out", str(tmp_path / "out"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "candidate-0.spec.json",
        "candidate-0.svg",
        "candidate-1.spec.json",
        "candidate-1.svg",
    ]
