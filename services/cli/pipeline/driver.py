"""The recipe driver: runs a validated recipe's stages in dependency order and saves every output as a lineage
version (with audit metadata and exact upstream references) through the lineage service.

Per stage: resolve inputs from the stages it needs -> skip if its outputs exist, are healthy and were built from
these same inputs (unless --force) -> run the module -> validate every output against its declared schema -> save
them all. A stage that fails (module error, invalid output, refused save) saves nothing more, is recorded with
its error, and every stage that needs it is `blocked`; independent stages still run. The run directory holds
run_state.json (rewritten atomically after each stage) and pipeline_events.jsonl (appended).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from custody.common.v1 import common_pb2
from custody.lineage.v1 import lineage_pb2 as pb
from services.cli.pipeline.contract import InputArtifact, ModuleContext, ModuleResult, Output
from services.cli.pipeline.recipe import ValidatedRecipe, descendants
from services.common import status as grpc_status
from services.common.hashing import sha256_canonical
from services.common.json_schemas import data_violations

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
SOURCES = {"ai": pb.SOURCE_AI, "human": pb.SOURCE_HUMAN, "hybrid": pb.SOURCE_HYBRID}
HEALTHY = (pb.HEALTH_VALID, pb.HEALTH_CONFIRMED_VALID)


class DriverError(Exception):
    """The run cannot start (bad run id or --start-from, a module type that conflicts with a registered one)."""


@dataclass
class StageState:
    status: str = "pending"  # pending, running, done, skipped, reused, failed, blocked
    module: str = ""
    refs: list[str] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    duration_ms: float = 0.0
    cost_usd: float = 0.0
    unpriced_outputs: int = 0
    marked_stale: int = 0
    error: str = ""


@dataclass
class RunResult:
    run_id: str
    recipe_id: str
    status: str
    run_dir: Path | None
    order: tuple[str, ...]
    stages: dict[str, StageState]
    dry_run: bool = False

    @property
    def cost_usd(self) -> float:
        return round(sum(s.cost_usd for s in self.stages.values()), 10)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Driver:
    """`stub` is a LineageService stub on a grpc.aio channel (the CLI's client factory provides one)."""

    def __init__(self, stub: Any, runs_root: Path, say: Callable[[str], None] = lambda _: None) -> None:
        self.stub = stub
        self.runs_root = runs_root
        self.say = say

    async def run(
        self,
        validated: ValidatedRecipe,
        run_id: str,
        *,
        dry_run: bool = False,
        start_from: str | None = None,
        force: bool = False,
    ) -> RunResult:
        recipe = validated.recipe
        if not RUN_ID.fullmatch(run_id):
            raise DriverError(f"run id must match {RUN_ID.pattern} (got {run_id!r})")
        if start_from is not None and start_from not in validated.order:
            raise DriverError(f"--start-from {start_from!r} is not a stage of {recipe.recipe_id}")
        rerun = descendants(recipe, start_from) if start_from else set(validated.order)
        stages = {s: StageState(module=recipe.stage(s).module) for s in validated.order}
        self._stage_states = stages
        result = RunResult(run_id, recipe.recipe_id, "planned", None, validated.order, stages, dry_run)
        if dry_run:
            for stage_id in validated.order:
                stages[stage_id].status = "planned" if stage_id in rerun else "reuse"
            return result
        run_dir = self.runs_root / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        result.run_dir = run_dir
        self._events = run_dir / "pipeline_events.jsonl"
        started = _now()
        self._event(
            "run_started", recipe_id=recipe.recipe_id, order=list(validated.order), force=force, start_from=start_from
        )
        await self._register_types(validated)
        outputs: dict[str, list[tuple[str, str, Mapping[str, Any]]]] = {}
        for stage_id in validated.order:
            state = stages[stage_id]
            stage = recipe.stage(stage_id)
            bad_needs = [n for n in stage.needs if stages[n].status in ("failed", "blocked")]
            if bad_needs:
                state.status, state.error = "blocked", f"needs {', '.join(bad_needs)}, which did not succeed"
                self._event("stage_blocked", stage=stage_id, needs=bad_needs)
            else:
                await self._stage(validated, stage_id, run_id, run_dir, stage_id not in rerun, force, outputs)
            self._save_state(result, started)
        result.status = "failed" if any(s.status in ("failed", "blocked") for s in stages.values()) else "succeeded"
        self._event(
            "run_finished",
            status=result.status,
            cost_usd=result.cost_usd,
            unpriced_outputs=sum(s.unpriced_outputs for s in stages.values()),
            marked_stale=sum(s.marked_stale for s in stages.values()),
        )
        self._save_state(result, started, finished=True)
        return result

    # ---- one stage -------------------------------------------------------------------------------------------

    async def _stage(
        self,
        validated: ValidatedRecipe,
        stage_id: str,
        run_id: str,
        run_dir: Path,
        reuse: bool,
        force: bool,
        outputs: dict[str, list[tuple[str, str, Mapping[str, Any]]]],
    ) -> None:
        recipe = validated.recipe
        stage = recipe.stage(stage_id)
        module = validated.modules[stage.module]
        expected = [(o.type, o.entity or stage_id) for o in module.manifest.outputs]
        inputs = {
            f"{need}/{artifact_type}": InputArtifact(name, artifact_type, need, data)
            for need in stage.needs
            for artifact_type, name, data in outputs.get(need, [])
        }
        input_names = sorted(i.name for i in inputs.values())
        parameters = sha256_canonical({"module": module.id, "params": stage.params})

        def entity(artifact_type: str, name: str) -> str:
            return f"projects/{recipe.project}/artifacts/{artifact_type}/{name}"

        state_of = self._stage_states[stage_id]
        state_of.started_at = _now()
        clock = time.perf_counter()
        saved: list[pb.Version] = []
        try:
            existing = [await self._latest(entity(t, e)) for t, e in expected]
            if reuse:
                missing = [entity(t, e) for (t, e), v in zip(expected, existing, strict=True) if v is None]
                if missing:
                    raise _StageFailure(f"nothing to reuse before --start-from: {', '.join(missing)} has no version")
                self._done(stage_id, "reused", existing, outputs, clock)
                self._event("stage_reused", stage=stage_id, refs=state_of.refs)
                return
            if not force and all(
                v is not None
                and v.health.health in HEALTHY
                and v.status.status != pb.STATUS_REJECTED
                and v.metadata.producing_module == module.id
                and v.metadata.parameters_sha256 == parameters
                and sorted(v.upstream) == input_names
                for v in existing
            ):
                self._done(stage_id, "skipped", existing, outputs, clock)
                self._event(
                    "stage_skipped",
                    stage=stage_id,
                    reason="outputs exist, are valid, and were made by this module from these inputs and params",
                    refs=state_of.refs,
                )
                return
            state_of.status = "running"
            self._event("stage_started", stage=stage_id, module=module.id, inputs=input_names)
            context = ModuleContext(run_id, recipe.recipe_id, stage_id, recipe.project, run_dir)
            try:
                produced = module.load()(inputs, dict(stage.params), context)
            except Exception as exc:  # a module's failure is the stage's failure, recorded, never fatal to the run
                raise _StageFailure(f"module {module.id} raised {type(exc).__name__}: {exc}") from exc
            checked = self._check_outputs(produced, module, stage_id)
            for warning in getattr(produced, "warnings", ()):
                self._event("warning", stage=stage_id, message=str(warning))
            for output in checked:
                saved.append(
                    await self._save(recipe.project, run_id, stage_id, module.id, parameters, output, input_names)
                )
            self._done(stage_id, "done", saved, outputs, clock)
            for output in checked:
                cost = output.cost or {}
                if output.cost is not None and cost.get("estimate_usd") is None:
                    state_of.unpriced_outputs += 1
                state_of.cost_usd += float(cost.get("estimate_usd") or 0.0)
            self._event(
                "stage_finished",
                stage=stage_id,
                refs=state_of.refs,
                cost_usd=state_of.cost_usd,
                marked_stale=state_of.marked_stale,
                duration_ms=state_of.duration_ms,
            )
        except _StageFailure as failure:
            state_of.status, state_of.error = "failed", str(failure)
            state_of.refs = [v.name for v in saved]  # only if lineage refused a save after earlier ones succeeded
            state_of.finished_at = _now()
            state_of.duration_ms = round((time.perf_counter() - clock) * 1000, 3)
            self._event("stage_failed", stage=stage_id, error=str(failure), saved_refs=state_of.refs)

    def _check_outputs(self, produced: Any, module: Any, stage_id: str) -> list[Output]:
        """Exactly the declared outputs, each valid against its schema; otherwise the stage fails, saving nothing."""
        if not isinstance(produced, ModuleResult):
            raise _StageFailure(f"module {module.id} returned {type(produced).__name__}, not a ModuleResult")
        declared = {(o.type, o.entity or stage_id): o for o in module.manifest.outputs}
        problems, seen = [], []
        for output in produced.outputs:
            key = (output.artifact_type, output.entity or stage_id)
            spec = declared.get(key)
            if spec is None:
                problems.append(f"undeclared output {key[0]}/{key[1]}")
                continue
            seen.append(key)
            problems += [f"{key[0]}: {v.field}: {v.description}" for v in data_violations(spec.schema_, output.data)]
            if output.source not in SOURCES:
                problems.append(f"{key[0]}: source must be ai, human or hybrid")
        problems += [f"missing output {t}/{e}" for t, e in declared if (t, e) not in seen]
        problems += [f"output {t}/{e} returned twice" for t, e in set(seen) if seen.count((t, e)) > 1]
        if problems:
            raise _StageFailure(f"module {module.id} returned invalid outputs: " + "; ".join(problems))
        return list(produced.outputs)

    async def _save(
        self,
        project: str,
        run_id: str,
        stage_id: str,
        module_id: str,
        parameters: str,
        output: Output,
        upstream: list[str],
    ) -> pb.Version:
        request = pb.CreateVersionRequest(
            parent=f"projects/{project}/artifacts/{output.artifact_type}/{output.entity or stage_id}",
            metadata=pb.VersionMetadata(
                intent=output.intent,
                rationale=output.rationale,
                confidence=output.confidence,
                source=SOURCES[output.source],
                alternatives_considered=list(output.alternatives_considered),
                producing_module=module_id,
                producing_role=output.producing_role,
                parameters_sha256=parameters,
            ),
            upstream=upstream,
        )
        request.data.update(dict(output.data))
        if output.cost is not None:
            request.metadata.cost.CopyFrom(json_format.ParseDict(dict(output.cost), common_pb2.CostRecord()))
        # Same run, stage and content -> same key: a retried save returns the version already created.
        digest = sha256_canonical({"parent": request.parent, "data": dict(output.data), "upstream": upstream})
        request.request_id = f"{run_id}.{stage_id}.{digest[:24]}"
        try:
            response = await self.stub.CreateVersion(request)
        except grpc.RpcError as exc:
            error = grpc_status.decode(exc)
            detail = "; ".join(f"{v.field}: {v.description}" for v in error.violations)
            raise _StageFailure(
                f"saving {request.parent} failed: {error.code.name} {error.reason}: {error.message}"
                + (f" ({detail})" if detail else "")
            ) from None
        self._stage_states[stage_id].marked_stale += response.marked_stale
        version: pb.Version = response.version
        return version

    async def _latest(self, entity: str) -> pb.Version | None:
        token, last = "", None
        while True:
            try:
                page = await self.stub.ListVersions(
                    pb.ListVersionsRequest(parent=entity, page_size=1000, page_token=token)
                )
            except grpc.RpcError as exc:
                error = grpc_status.decode(exc)
                raise _StageFailure(
                    f"listing {entity} failed: {error.code.name} {error.reason}: {error.message}"
                ) from None
            if page.versions:
                last = page.versions[-1]
            token = page.next_page_token
            if not token:
                return last

    async def _register_types(self, validated: ValidatedRecipe) -> None:
        """Registers every module output type (identical registrations are no-ops); a conflict stops the run."""
        for module in validated.modules.values():
            for output in module.manifest.outputs:
                request = pb.RegisterTypeRequest(
                    name=output.type, policy=validated.recipe.policy, schema_version=output.schema_version
                )
                request.schema.update(output.schema_)
                try:
                    await self.stub.RegisterType(request)
                except grpc.RpcError as exc:
                    error = grpc_status.decode(exc)
                    self._event("run_aborted", error=f"{error.code.name} {error.reason}: {error.message}")
                    raise DriverError(
                        f"cannot register output type {output.type!r} of module {module.id}: "
                        f"{error.code.name} {error.reason}: {error.message}"
                    ) from None

    # ---- bookkeeping -----------------------------------------------------------------------------------------

    def _done(
        self,
        stage_id: str,
        status: str,
        versions: list[Any],
        outputs: dict[str, list[tuple[str, str, Mapping[str, Any]]]],
        clock: float,
    ) -> None:
        state = self._stage_states[stage_id]
        state.status = status
        state.refs = [v.name for v in versions]
        state.finished_at = _now()
        state.duration_ms = round((time.perf_counter() - clock) * 1000, 3)
        outputs[stage_id] = [(v.artifact_type, v.name, json_format.MessageToDict(v.data)) for v in versions]

    def _event(self, event: str, **fields: Any) -> None:
        line = {"ts": _now(), "event": event, **fields}
        with self._events.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")
        self.say(f"{event} " + " ".join(f"{k}={v}" for k, v in fields.items() if k in ("stage", "status", "error")))

    def _save_state(self, result: RunResult, started: str, finished: bool = False) -> None:
        assert result.run_dir is not None
        document = {
            "run_id": result.run_id,
            "recipe_id": result.recipe_id,
            "status": result.status if finished else "running",
            "started_at": started,
            "finished_at": _now() if finished else "",
            "order": list(result.order),
            "stages": {k: asdict(v) for k, v in result.stages.items()},
            "cost": {
                "total_usd": result.cost_usd,
                "unpriced_outputs": sum(s.unpriced_outputs for s in result.stages.values()),
            },
            "marked_stale": sum(s.marked_stale for s in result.stages.values()),
        }
        _write_atomic(result.run_dir / "run_state.json", json.dumps(document, indent=2) + "\n")


class _StageFailure(Exception):
    pass
