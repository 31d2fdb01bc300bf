"""`custody studio compile|validate|generate` as an operator runs them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.cli.state import StateLayout, save_endpoints
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
