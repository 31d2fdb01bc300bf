"""BuildPlan: the job DAG for a selection of job types, derived from the policy's rules.

A job depends on the selected jobs of every group whose artifact type its own type requires *for that job*: an
execution job depends on the strategy jobs always and on the creative jobs only when it is creative-dependent.
So the plan and the approval gate read the same rules and cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument
from services.lineage.domain.policy import Policy, required_types


@dataclass(frozen=True)
class Job:
    id: str
    job_type: str
    group: str
    artifact_type: str
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    policy: str
    jobs: tuple[Job, ...]
    requirements: tuple[tuple[str, tuple[str, ...]], ...]
    warnings: tuple[str, ...]


def build_plan(policy: Policy, selected: Sequence[str]) -> Plan:
    if not policy.job_groups:
        raise FailedPrecondition("POLICY_HAS_NO_JOBS", f"policy {policy.name!r} defines no job groups to plan")
    if not selected:
        raise InvalidArgument(
            "JOBS_REQUIRED", "select at least one job type", violations=[FieldViolation("selected_jobs", "empty")]
        )
    unknown = [
        FieldViolation(f"selected_jobs[{i}]", f"unknown job type {job!r}; known: {', '.join(policy.job_types)}")
        for i, job in enumerate(selected)
        if policy.group_of_job(job) is None
    ]
    if unknown:
        raise InvalidArgument("JOB_TYPE_UNKNOWN", f"{len(unknown)} unknown job type(s)", violations=unknown)
    chosen = set(selected)
    # Deterministic order: groups as the policy lists them, jobs as each group lists them.
    ordered = [(g, j) for g in policy.job_groups for j in g.job_types if j in chosen]
    by_type: dict[str, list[str]] = {}
    for group, job in ordered:
        by_type.setdefault(group.artifact_type, []).append(f"{group.name}:{job}")
    jobs: list[Job] = []
    warnings: list[str] = []
    produced_by_groups = {g.artifact_type for g in policy.job_groups}
    for group, job in ordered:
        definition = policy.type(group.artifact_type)
        assert definition is not None  # policy validation guarantees it
        needs = required_types(definition, {job})
        depends = tuple(dep for t in needs for dep in by_type.get(t, ()))
        jobs.append(Job(f"{group.name}:{job}", job, group.name, group.artifact_type, depends))
        for t in needs:
            if t in produced_by_groups and t not in by_type:
                warnings.append(
                    f"{group.name}:{job} requires a {t} artifact but no {t} job is selected: "
                    f"an approved {t} version must already exist"
                )
    requirements = tuple((t.name, required_types(t, chosen)) for t in policy.types)
    return Plan(policy.name, tuple(_topological(jobs)), requirements, tuple(warnings))


def _topological(jobs: list[Job]) -> list[Job]:
    """Kahn's algorithm, stable in the given order (rules are acyclic, so every job is placed)."""
    placed: list[Job] = []
    done: set[str] = set()
    pending = list(jobs)
    while pending:
        ready = [j for j in pending if all(d in done for d in j.depends_on)]
        for job in ready:
            placed.append(job)
            done.add(job.id)
        pending = [j for j in pending if j.id not in done]
        if not ready:  # unreachable for validated policies; never loop forever
            raise FailedPrecondition("PLAN_CYCLE", "job dependencies form a cycle: " + ", ".join(j.id for j in pending))
    return placed
