"""Policies: artifact types with their JSON Schemas and required-lineage rules, and job groups for plans.

Policies ship as YAML (services/lineage/policies/) and are validated completely at start-up: a policy with an
unknown type in a rule, a job type nobody defines (the seed's `confnote` typo), a requirement cycle or an invalid
JSON Schema stops the process with a message naming the file and the field. The same rule checks apply to types
registered at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpointer
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument
from services.common.graphs import find_cycle
from services.common.json_schemas import schema_violations
from services.common.resource_names import SCHEMA_VERSION
from services.lineage.domain.creators import creator_problems
from services.lineage.domain.model import Conditional, TypeDefinition
from services.lineage.domain.names import POLICY_NAME, TYPE_NAME

POLICY_SUFFIXES = (".yaml", ".yml")


class PolicyError(Exception):
    """A policy file is invalid; the message names the file and every problem."""


@dataclass(frozen=True)
class JobGroup:
    name: str
    artifact_type: str
    job_types: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    name: str
    description: str
    source: str
    types: tuple[TypeDefinition, ...]
    job_groups: tuple[JobGroup, ...] = ()

    def type(self, name: str) -> TypeDefinition | None:
        return next((t for t in self.types if t.name == name), None)

    def group_of_job(self, job_type: str) -> JobGroup | None:
        return next((g for g in self.job_groups if job_type in g.job_types), None)

    @property
    def job_types(self) -> tuple[str, ...]:
        return tuple(j for g in self.job_groups for j in g.job_types)


# ---- the YAML format ------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ConditionalDoc(_Strict):
    requires: list[str] = Field(min_length=1)
    when_any_selected: list[str] = Field(min_length=1)


class _TypeDoc(_Strict):
    schema_version: str
    schema_: dict[str, Any] = Field(alias="schema")
    requires: list[str] = []
    conditional: list[_ConditionalDoc] = []
    selection_field: str = ""
    # Who may create versions (domain/creators.py); left out, people only.
    creators: list[str] = []
    # Four eyes (domain/four_eyes.py): false lets a version's creator or requester approve it. Left out, required.
    four_eyes: bool = True


class _GroupDoc(_Strict):
    name: str
    artifact_type: str
    job_types: list[str] = Field(min_length=1)


class _PolicyDoc(_Strict):
    policy: str
    description: str = ""
    types: dict[str, _TypeDoc] = Field(min_length=1)
    job_groups: list[_GroupDoc] = []


def load_policy_file(path: Path) -> Policy:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"policy {path}: unreadable: {exc}") from None
    if isinstance(raw, dict):
        # Top-level "x-" keys hold YAML anchors (shared job lists) and are not part of the policy.
        raw = {k: v for k, v in raw.items() if not str(k).startswith("x-")}
    try:
        doc = _PolicyDoc.model_validate(raw)
    except ValidationError as exc:
        described = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise PolicyError(f"policy {path}: {described}") from None
    source = f"file:{path.name}"
    types = tuple(
        TypeDefinition(
            name=name,
            policy=doc.policy,
            schema_version=t.schema_version,
            schema=t.schema_,
            requires=tuple(t.requires),
            conditional=tuple(Conditional(tuple(c.requires), tuple(c.when_any_selected)) for c in t.conditional),
            selection_field=t.selection_field,
            creators=tuple(t.creators),
            four_eyes=t.four_eyes,
            source=source,
        )
        for name, t in doc.types.items()
    )
    groups = tuple(JobGroup(g.name, g.artifact_type, tuple(g.job_types)) for g in doc.job_groups)
    policy = Policy(doc.policy, doc.description, source, types, groups)
    problems = policy_problems(policy)
    if problems:
        raise PolicyError(f"policy {path}: " + "; ".join(f"{v.field}: {v.description}" for v in problems))
    return policy


def load_policies(directory: Path) -> dict[str, Policy]:
    """Every policy file in `directory`; names and type names must be unique across them."""
    if not directory.is_dir():
        raise PolicyError(f"policy directory {directory} does not exist")
    policies: dict[str, Policy] = {}
    owners: dict[str, str] = {}
    for path in sorted(p for p in directory.iterdir() if p.suffix in POLICY_SUFFIXES):
        policy = load_policy_file(path)
        if policy.name in policies:
            raise PolicyError(
                f"policy {path}: policy {policy.name!r} is already defined by {policies[policy.name].source}"
            )
        for t in policy.types:
            if t.name in owners:
                raise PolicyError(f"policy {path}: type {t.name!r} is already defined by policy {owners[t.name]!r}")
            owners[t.name] = policy.name
        policies[policy.name] = policy
    return policies


# ---- validation (files and RegisterType alike) ----------------------------------------------------------------


def type_problems(
    definition: TypeDefinition, known_types: Iterable[str], job_types: Iterable[str] | None
) -> list[FieldViolation]:
    """Problems with one definition. `known_types`: types a rule may name; `job_types`: the job types conditions
    may name (None when the policy defines no job groups: any name, read from the data's selection field)."""
    prefix = f"types.{definition.name}"
    problems: list[FieldViolation] = []
    known = set(known_types)
    if not TYPE_NAME.fullmatch(definition.name):
        problems.append(FieldViolation(prefix, "type name must match [a-z][a-z0-9_]{0,62}"))
    if not POLICY_NAME.fullmatch(definition.policy):
        problems.append(FieldViolation("policy", "policy name must match [a-z][a-z0-9_]{0,62}"))
    if not SCHEMA_VERSION.fullmatch(definition.schema_version):
        problems.append(FieldViolation(f"{prefix}.schema_version", "must match [A-Za-z0-9][A-Za-z0-9._-]{0,31}"))
    problems.extend(
        FieldViolation(f"{prefix}.schema{v.field.removeprefix('schema')}", v.description)
        for v in schema_violations(definition.schema)
    )
    required = [*definition.requires, *(r for c in definition.conditional for r in c.requires)]
    for name in required:
        if name == definition.name:
            problems.append(FieldViolation(f"{prefix}.requires", f"{name!r} cannot require itself"))
        elif name not in known:
            problems.append(FieldViolation(f"{prefix}.requires", f"unknown type {name!r}"))
    if len(set(definition.requires)) != len(definition.requires):
        problems.append(FieldViolation(f"{prefix}.requires", "lists a type twice"))
    allowed_jobs = None if job_types is None else set(job_types)
    for i, condition in enumerate(definition.conditional):
        if not condition.requires or not condition.when_any_selected:
            problems.append(FieldViolation(f"{prefix}.conditional[{i}]", "needs requires and when_any_selected"))
        if allowed_jobs is not None:
            for job in condition.when_any_selected:
                if job not in allowed_jobs:
                    problems.append(FieldViolation(f"{prefix}.conditional[{i}]", f"unknown job type {job!r}"))
    if definition.conditional and not definition.selection_field:
        problems.append(
            FieldViolation(f"{prefix}.selection_field", "required with conditional rules: where the data lists jobs")
        )
    problems.extend(creator_problems(definition.creators, f"{prefix}.creators"))
    if definition.selection_field:
        try:
            jsonpointer.JsonPointer(definition.selection_field)
        except jsonpointer.JsonPointerException:
            problems.append(
                FieldViolation(f"{prefix}.selection_field", "must be a JSON Pointer such as /selected_jobs")
            )
    return problems


def policy_problems(policy: Policy) -> list[FieldViolation]:
    problems: list[FieldViolation] = []
    if not POLICY_NAME.fullmatch(policy.name):
        problems.append(FieldViolation("policy", "must match [a-z][a-z0-9_]{0,62}"))
    names = [t.name for t in policy.types]
    job_types = policy.job_types if policy.job_groups else None
    for definition in policy.types:
        problems.extend(type_problems(definition, names, job_types))
    seen_jobs: set[str] = set()
    for i, group in enumerate(policy.job_groups):
        if group.artifact_type not in names:
            problems.append(FieldViolation(f"job_groups[{i}].artifact_type", f"unknown type {group.artifact_type!r}"))
        for job in group.job_types:
            if job in seen_jobs:
                problems.append(FieldViolation(f"job_groups[{i}].job_types", f"job type {job!r} is listed twice"))
            seen_jobs.add(job)
    if len({g.name for g in policy.job_groups}) != len(policy.job_groups):
        problems.append(FieldViolation("job_groups", "group names must be unique"))
    cycle = find_cycle({t.name: all_requirements(t) for t in policy.types})
    if cycle:
        problems.append(FieldViolation("types", "requirement cycle: " + " -> ".join(cycle)))
    return problems


def all_requirements(definition: TypeDefinition) -> tuple[str, ...]:
    return (*definition.requires, *(r for c in definition.conditional for r in c.requires))


def validate_registration(definition: TypeDefinition, registered: Iterable[str]) -> None:
    """RegisterType's checks: INVALID_ARGUMENT for a malformed definition (one entry per problem)."""
    problems = type_problems(definition, [*registered, definition.name], None)
    unknown = [p for p in problems if p.description.startswith("unknown type")]
    problems = [p for p in problems if p not in unknown]
    if problems:
        reason = "RULE_INVALID"
        fields = {p.field for p in problems}
        if any(f.startswith(f"types.{definition.name}.schema") and not f.endswith("schema_version") for f in fields):
            reason = "SCHEMA_INVALID"
        if any(f.endswith("schema_version") for f in fields):
            reason = "SCHEMA_VERSION_INVALID"
        if any(p.field == "policy" for p in problems):
            reason = "POLICY_NAME_INVALID"
        if any(p.field == f"types.{definition.name}" for p in problems):
            reason = "TYPE_NAME_INVALID"
        raise InvalidArgument(reason, f"type definition {definition.name!r} is invalid", violations=problems)
    if unknown:
        raise FailedPrecondition(
            "REQUIRED_TYPE_NOT_REGISTERED",
            "a rule names a type that is not registered; register it first",
            violations=unknown,
        )


# ---- rules -----------------------------------------------------------------------------------------------------


def selection_in(definition: TypeDefinition, data: Mapping[str, Any]) -> frozenset[str]:
    """The job types a version's data says were selected (an execution artifact lists its jobs)."""
    if not definition.selection_field:
        return frozenset()
    try:
        found = jsonpointer.resolve_pointer(data, definition.selection_field)
    except jsonpointer.JsonPointerException:
        return frozenset()
    if not isinstance(found, list):
        return frozenset()
    return frozenset(str(j) for j in found if isinstance(j, str))


def required_types(definition: TypeDefinition, selection: Iterable[str]) -> tuple[str, ...]:
    """Upstream types a version must reference: the unconditional ones, plus each conditional rule whose job
    types intersect the selection (execution requires creatives only for creative-dependent jobs)."""
    selected = set(selection)
    required = list(definition.requires)
    for condition in definition.conditional:
        if selected.intersection(condition.when_any_selected):
            required.extend(r for r in condition.requires if r not in required)
    return tuple(required)
