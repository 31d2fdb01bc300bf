"""Module discovery: every directory holding a module.yaml under the module roots, each with its main.py."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.common.json_schemas import schema_violations
from services.common.resource_names import ENTITY, SCHEMA_VERSION, TYPE

SHIPPED_MODULES = Path(__file__).resolve().parent / "modules"
MODULE_ID = r"^[a-z][a-z0-9_]{0,62}$"


class ModuleError(Exception):
    """A module directory is invalid; the message names it and every problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    name: str
    type: str = Field(pattern=rf"^{TYPE}$")
    required: bool = True


class OutputSpec(_Strict):
    type: str = Field(pattern=rf"^{TYPE}$")
    schema_version: str = Field(pattern=SCHEMA_VERSION.pattern)
    schema_: dict[str, Any] = Field(alias="schema")
    # Entity the output is saved under; None = the stage id.
    entity: str | None = Field(default=None, pattern=rf"^{ENTITY}$")


class Manifest(_Strict):
    module_id: str = Field(pattern=MODULE_ID)
    stage: str
    description: str
    inputs: list[InputSpec] = []
    outputs: list[OutputSpec] = Field(min_length=1)
    parameters: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True)
class Module:
    manifest: Manifest
    directory: Path

    @property
    def id(self) -> str:
        return self.manifest.module_id

    def load(self) -> Callable[..., Any]:
        """Imports main.py from the module directory (by path: modules are not packages) and returns run_module."""
        path = self.directory / "main.py"
        spec = importlib.util.spec_from_file_location(f"custody_pipeline_module_{self.id}", path)
        if spec is None or spec.loader is None:
            raise ModuleError(f"module {self.id}: cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        run = getattr(module, "run_module", None)
        if not callable(run):
            raise ModuleError(f"module {self.id}: {path} defines no run_module(inputs, params, context)")
        return run  # type: ignore[no-any-return]


def load_manifest(path: Path) -> Manifest:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        manifest = Manifest.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise ModuleError(f"{path}: unreadable: {exc}") from None
    except ValidationError as exc:
        described = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise ModuleError(f"{path}: {described}") from None
    problems = [
        f"parameters{v.field.removeprefix('schema')}: {v.description}" for v in schema_violations(manifest.parameters)
    ]
    for output in manifest.outputs:
        problems += [f"outputs[{output.type}].schema: {v.description}" for v in schema_violations(output.schema_)]
    if not (path.parent / "main.py").is_file():
        problems.append("main.py is missing")
    if problems:
        raise ModuleError(f"{path}: " + "; ".join(problems))
    return manifest


def discover(roots: Iterable[Path]) -> Mapping[str, Module]:
    """module_id -> Module for every module.yaml under the roots; a duplicate id is an error."""
    found: dict[str, Module] = {}
    for root in roots:
        if not root.is_dir():
            raise ModuleError(f"module directory {root} does not exist")
        for manifest_path in sorted(root.rglob("module.yaml")):
            manifest = load_manifest(manifest_path)
            if manifest.module_id in found:
                raise ModuleError(
                    f"module id {manifest.module_id!r} is defined twice: {found[manifest.module_id].directory} and "
                    f"{manifest_path.parent}"
                )
            found[manifest.module_id] = Module(manifest, manifest_path.parent)
    return found
