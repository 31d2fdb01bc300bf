"""Recipes: YAML lists of stages (id, module, params, needs), validated completely before anything runs.

Validation reports every problem at once: unknown modules, needs that resolve to no stage, dependency cycles
(named: "a -> b -> a"), params that violate the module's parameter schema, and stages whose inputs no needed stage
can provide (schema compatibility: a module's required input type must be an output type of a stage it needs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.cli.pipeline.discovery import Module
from services.common.graphs import find_cycle
from services.common.json_schemas import data_violations
from services.common.resource_names import PROJECT

STAGE_ID = r"^[a-z][a-z0-9_-]{0,62}$"
RECIPE_ID = r"^[a-z][a-z0-9_-]{0,62}$"


class RecipeError(Exception):
    """The recipe cannot run; `problems` lists every reason."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stage(_Strict):
    id: str = Field(pattern=STAGE_ID)
    module: str
    params: dict[str, Any] = {}
    needs: list[str] = []


class Recipe(_Strict):
    recipe_id: str = Field(pattern=RECIPE_ID)
    description: str = ""
    project: str = Field(default="default", pattern=rf"^{PROJECT}$")
    # Policy the modules' output types are registered under.
    policy: str = Field(default="pipeline", pattern=r"^[a-z][a-z0-9_]{0,62}$")
    stages: list[Stage] = Field(min_length=1)

    def stage(self, stage_id: str) -> Stage:
        return next(s for s in self.stages if s.id == stage_id)


@dataclass(frozen=True)
class ValidatedRecipe:
    recipe: Recipe
    order: tuple[str, ...]
    modules: Mapping[str, Module]


def load_recipe(path: Path) -> Recipe:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(str(path), [f"unreadable: {exc}"]) from None
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(
            str(path), [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()]
        ) from None


def validate(recipe: Recipe, modules: Mapping[str, Module], source: str = "recipe") -> ValidatedRecipe:
    problems: list[str] = []
    ids = [s.id for s in recipe.stages]
    for duplicate in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"stage id {duplicate!r} is used more than once")
    known = set(ids)
    for stage in recipe.stages:
        module = modules.get(stage.module)
        if module is None:
            problems.append(
                f"stage {stage.id!r}: unknown module {stage.module!r} (known: {', '.join(sorted(modules))})"
            )
        for need in stage.needs:
            if need not in known:
                problems.append(f"stage {stage.id!r}: needs unknown stage {need!r}")
            elif need == stage.id:
                problems.append(f"stage {stage.id!r}: needs itself")
        if module is None:
            continue
        problems += [
            f"stage {stage.id!r}: params{v.field.removeprefix('data')}: {v.description}"
            for v in data_violations(module.manifest.parameters, stage.params)
        ]
        provided = {o.type for need in stage.needs if need in known for o in _outputs(recipe.stage(need), modules)}
        for wanted in module.manifest.inputs:
            if wanted.required and wanted.type not in provided:
                problems.append(
                    f"stage {stage.id!r}: module {module.id} requires an input of type {wanted.type!r}, which no "
                    f"needed stage produces (they produce: {', '.join(sorted(provided)) or 'nothing'})"
                )
        accepted = {i.type for i in module.manifest.inputs}
        for need in stage.needs:
            if need not in known or need == stage.id:
                continue
            produced = {o.type for o in _outputs(recipe.stage(need), modules)}
            if produced and not produced & accepted:
                problems.append(
                    f"stage {stage.id!r}: needs {need!r}, whose outputs ({', '.join(sorted(produced))}) module "
                    f"{module.id} does not accept (accepts: {', '.join(sorted(accepted)) or 'no inputs'})"
                )
    graph = {s.id: [n for n in s.needs if n in known] for s in recipe.stages}
    cycle = find_cycle(graph)
    if cycle:
        problems.append("dependency cycle: " + " -> ".join(reversed(cycle)))
    if problems:
        raise RecipeError(source, problems)
    return ValidatedRecipe(recipe, topological_order(recipe), {s.module: modules[s.module] for s in recipe.stages})


def _outputs(stage: Stage, modules: Mapping[str, Module]) -> list[Any]:
    module = modules.get(stage.module)
    return list(module.manifest.outputs) if module else []


def topological_order(recipe: Recipe) -> tuple[str, ...]:
    """Stages in dependency order, stable in recipe order (Kahn); assumes validation found no cycle."""
    done: list[str] = []
    pending = [s for s in recipe.stages]
    while pending:
        ready = [s for s in pending if all(n in done for n in s.needs)]
        if not ready:
            raise RecipeError("recipe", ["dependency cycle among: " + ", ".join(s.id for s in pending)])
        done.extend(s.id for s in ready)
        pending = [s for s in pending if s.id not in done]
    return tuple(done)


def descendants(recipe: Recipe, stage_id: str) -> set[str]:
    """The stage and every stage that (transitively) needs it."""
    found = {stage_id}
    changed = True
    while changed:
        changed = False
        for stage in recipe.stages:
            if stage.id not in found and found.intersection(stage.needs):
                found.add(stage.id)
                changed = True
    return found
