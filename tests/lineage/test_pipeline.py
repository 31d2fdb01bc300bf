"""The recipe driver: validation before anything runs, then stages in order through the lineage service."""

from __future__ import annotations

import asyncio
import json
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from custody.lineage.v1 import lineage_pb2 as pb
from services.cli.pipeline.discovery import SHIPPED_MODULES, ModuleError, discover
from services.cli.pipeline.driver import Driver, DriverError, RunResult
from services.cli.pipeline.recipe import Recipe, RecipeError, load_recipe, validate
from services.cli.state import StateLayout
from services.common.clients import ServiceClients
from tests.lineage.conftest import Client, start_client
from tests.support.harness import operator_token

RECIPES = Path(__file__).resolve().parents[2] / "services" / "cli" / "pipeline" / "recipes"
TEST_RECIPE = RECIPES / "recipe-test-echo.yaml"
MODULES = discover([SHIPPED_MODULES])


def recipe(stages: list[dict[str, Any]], **fields: Any) -> Recipe:
    return Recipe.model_validate({"recipe_id": "t", "project": "demo", "stages": stages, **fields})


# ---- validation (no service needed) -------------------------------------------------------------------------------


def test_the_shipped_test_recipe_is_valid_and_ordered() -> None:
    validated = validate(load_recipe(TEST_RECIPE), MODULES)
    assert validated.order == ("greet", "left", "right", "join")


def test_every_recipe_problem_is_reported_at_once() -> None:
    bad = recipe(
        [
            {"id": "a", "module": "nosuch"},
            {"id": "b", "module": "echo_v1", "needs": ["ghost"], "params": {"volume": 11}},
        ]
    )
    with pytest.raises(RecipeError) as raised:
        validate(bad, MODULES)
    problems = "\n".join(raised.value.problems)
    assert "unknown module 'nosuch'" in problems
    assert "needs unknown stage 'ghost'" in problems
    assert "params" in problems and "volume" in problems


def test_a_cycle_is_reported_with_the_cycle_named() -> None:
    bad = recipe(
        [
            {"id": "a", "module": "echo_v1", "needs": ["c"]},
            {"id": "b", "module": "echo_v1", "needs": ["a"]},
            {"id": "c", "module": "echo_v1", "needs": ["b"]},
        ]
    )
    with pytest.raises(RecipeError) as raised:
        validate(bad, MODULES)
    assert any("dependency cycle: " in p and "a -> b -> c -> a" in p for p in raised.value.problems), raised.value


def write_module(root: Path, module_id: str, inputs: str, output_type: str) -> None:
    directory = root / module_id
    directory.mkdir(parents=True)
    (directory / "module.yaml").write_text(
        textwrap.dedent(
            f"""
            module_id: {module_id}
            stage: test
            description: test module
            inputs: {inputs}
            outputs:
              - type: {output_type}
                schema_version: "1"
                schema: {{type: object}}
            """
        )
    )
    (directory / "main.py").write_text("def run_module(inputs, params, context):\n    raise RuntimeError('unused')\n")


def test_incompatible_schemas_between_connected_stages_are_reported(tmp_path: Path) -> None:
    write_module(tmp_path, "makes_images", "[]", "image")
    write_module(tmp_path, "needs_text", "[{name: text, type: text_doc}]", "summary")
    modules = discover([tmp_path])
    bad = recipe([{"id": "img", "module": "makes_images"}, {"id": "sum", "module": "needs_text", "needs": ["img"]}])
    with pytest.raises(RecipeError) as raised:
        validate(bad, modules)
    problems = "\n".join(raised.value.problems)
    assert "requires an input of type 'text_doc'" in problems
    assert "does not accept" in problems


def test_a_module_without_main_py_is_refused(tmp_path: Path) -> None:
    write_module(tmp_path, "broken", "[]", "thing")
    (tmp_path / "broken" / "main.py").unlink()
    with pytest.raises(ModuleError, match=r"main\.py is missing"):
        discover([tmp_path])


# ---- runs against the service -------------------------------------------------------------------------------------


@pytest.fixture
def lineage_client(layout: StateLayout, database_url: str) -> Iterator[Client]:
    yield from start_client(layout, database_url)


def run(
    client: Client, layout: StateLayout, out: Path, run_id: str, source: Recipe | Path = TEST_RECIPE, **options: Any
) -> RunResult:
    validated = validate(load_recipe(source) if isinstance(source, Path) else source, MODULES)

    async def go() -> RunResult:
        clients = ServiceClients({"lineage": client.harness.address}, operator_token(layout))
        try:
            return await Driver(clients.stub("lineage"), out).run(validated, run_id, **options)
        finally:
            await clients.close()

    return asyncio.run(go())


def events(out: Path, run_id: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / run_id / "pipeline_events.jsonl").read_text().splitlines()]


def test_a_run_saves_each_output_with_metadata_and_lineage(
    lineage_client: Client, layout: StateLayout, tmp_path: Path
) -> None:
    result = run(lineage_client, layout, tmp_path, "run-1")
    assert result.status == "succeeded"
    assert [s.status for s in result.stages.values()] == ["done"] * 4
    join = lineage_client.stub.GetVersion(
        pb.GetVersionRequest(name=result.stages["join"].refs[0]), metadata=lineage_client.operator
    )
    assert sorted(join.upstream) == sorted(result.stages["left"].refs + result.stages["right"].refs)
    assert join.metadata.producing_module == "echo_v1"
    assert dict(join.data)["message"] == "hello | hello"


def test_run_state_and_events_record_status_refs_timing_and_cost(
    lineage_client: Client, layout: StateLayout, tmp_path: Path
) -> None:
    run(lineage_client, layout, tmp_path, "run-1")
    state = json.loads((tmp_path / "run-1" / "run_state.json").read_text())
    assert state["status"] == "succeeded"
    assert state["cost"]["total_usd"] == pytest.approx(0.003)
    assert state["stages"]["greet"]["refs"] == ["projects/demo/artifacts/echo_record/greet/versions/1"]
    assert state["stages"]["greet"]["duration_ms"] > 0
    kinds = [e["event"] for e in events(tmp_path, "run-1")]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("stage_finished") == 4
    assert events(tmp_path, "run-1")[-1]["cost_usd"] == pytest.approx(0.003)


def test_a_second_run_skips_stages_whose_outputs_exist_and_are_valid(
    lineage_client: Client, layout: StateLayout, tmp_path: Path
) -> None:
    first = run(lineage_client, layout, tmp_path, "run-1")
    second = run(lineage_client, layout, tmp_path, "run-2")
    assert [s.status for s in second.stages.values()] == ["skipped"] * 4
    assert second.stages["join"].refs == first.stages["join"].refs


def test_force_reruns_every_stage_and_creates_new_versions(
    lineage_client: Client, layout: StateLayout, tmp_path: Path
) -> None:
    run(lineage_client, layout, tmp_path, "run-1")
    forced = run(lineage_client, layout, tmp_path, "run-2", force=True)
    assert [s.status for s in forced.stages.values()] == ["done"] * 4
    assert forced.stages["greet"].refs == ["projects/demo/artifacts/echo_record/greet/versions/2"]
    assert forced.stages["greet"].marked_stale == 3


def test_start_from_reuses_earlier_stages_and_reruns_the_rest(
    lineage_client: Client, layout: StateLayout, tmp_path: Path
) -> None:
    first = run(lineage_client, layout, tmp_path, "run-1")
    again = run(lineage_client, layout, tmp_path, "run-2", start_from="right", force=True)
    statuses = {k: v.status for k, v in again.stages.items()}
    assert statuses == {"greet": "reused", "left": "reused", "right": "done", "join": "done"}
    assert again.stages["greet"].refs == first.stages["greet"].refs
    assert again.stages["right"].refs[0].endswith("/versions/2")


def test_a_failing_stage_saves_nothing_and_blocks_its_dependents(
    lineage_client: Client, layout: StateLayout, tmp_path: Path
) -> None:
    failing = recipe(
        [
            {"id": "root", "module": "echo_v1", "params": {"message": "m"}},
            {"id": "bad", "module": "echo_v1", "needs": ["root"], "params": {"fail": True}},
            {"id": "after", "module": "echo_v1", "needs": ["bad"]},
            {"id": "side", "module": "echo_v1", "needs": ["root"]},
        ]
    )
    result = run(lineage_client, layout, tmp_path, "run-f", failing)
    statuses = {k: v.status for k, v in result.stages.items()}
    assert statuses == {"root": "done", "bad": "failed", "after": "blocked", "side": "done"}
    assert result.status == "failed"
    assert "asked to fail" in result.stages["bad"].error
    listed = lineage_client.stub.ListVersions(
        pb.ListVersionsRequest(parent="projects/demo"), metadata=lineage_client.operator
    )
    assert sorted(v.entity for v in listed.versions) == ["root", "side"]
    failed = [e for e in events(tmp_path, "run-f") if e["event"] == "stage_failed"]
    assert failed[0]["stage"] == "bad" and failed[0]["saved_refs"] == []


def test_an_output_violating_its_schema_fails_the_stage_before_saving(
    lineage_client: Client, layout: StateLayout, tmp_path: Path
) -> None:
    result = run(
        lineage_client,
        layout,
        tmp_path,
        "run-i",
        recipe([{"id": "only", "module": "echo_v1", "params": {"invalid_output": True}}]),
    )
    assert result.stages["only"].status == "failed"
    assert "invalid outputs" in result.stages["only"].error
    listed = lineage_client.stub.ListVersions(
        pb.ListVersionsRequest(parent="projects/demo"), metadata=lineage_client.operator
    )
    assert list(listed.versions) == []


def test_a_dry_run_runs_nothing_and_writes_nothing(lineage_client: Client, layout: StateLayout, tmp_path: Path) -> None:
    result = run(lineage_client, layout, tmp_path, "run-d", dry_run=True)
    assert [s.status for s in result.stages.values()] == ["planned"] * 4
    assert not (tmp_path / "run-d").exists()
    listed = lineage_client.stub.ListVersions(
        pb.ListVersionsRequest(parent="projects/demo"), metadata=lineage_client.operator
    )
    assert list(listed.versions) == []


@pytest.mark.parametrize("run_id", ["../escape", "a/b", "", "x" * 65])
def test_a_run_id_that_could_escape_the_output_directory_is_refused(
    lineage_client: Client, layout: StateLayout, tmp_path: Path, run_id: str
) -> None:
    with pytest.raises(DriverError, match="run id"):
        run(lineage_client, layout, tmp_path / "runs", run_id)
    assert not (tmp_path / "runs").exists()


def test_an_unknown_start_from_stage_is_refused(lineage_client: Client, layout: StateLayout, tmp_path: Path) -> None:
    with pytest.raises(DriverError, match="not a stage"):
        run(lineage_client, layout, tmp_path, "run-s", start_from="nosuch")


def test_a_copied_module_tree_is_discovered(tmp_path: Path) -> None:
    shutil.copytree(SHIPPED_MODULES, tmp_path / "mods")
    assert set(discover([tmp_path / "mods"])) == {"echo_v1"}


def test_changed_params_rerun_a_stage_whose_outputs_otherwise_exist(
    lineage_client: Client, layout: StateLayout, tmp_path: Path
) -> None:
    one = [{"id": "only", "module": "echo_v1", "params": {"message": "first"}}]
    run(lineage_client, layout, tmp_path, "run-1", recipe(one))
    same = run(lineage_client, layout, tmp_path, "run-2", recipe(one))
    changed = run(lineage_client, layout, tmp_path, "run-3", recipe([{**one[0], "params": {"message": "second"}}]))
    assert same.stages["only"].status == "skipped"
    assert changed.stages["only"].status == "done"
    assert changed.stages["only"].refs == ["projects/demo/artifacts/echo_record/only/versions/2"]
