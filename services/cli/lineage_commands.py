"""`custody lineage ...`: versions, approvals, staleness and plans, as the operator (a human reviewer)."""

from __future__ import annotations

import json
import uuid
from operator import methodcaller
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf.json_format import MessageToDict

from custody.lineage.v1 import lineage_pb2 as pb
from services.cli.calls import as_dict, call, print_json, print_record, print_rows
from services.cli.options import IdempotencyKey, JsonFlag, StateDir, json_object_argument
from services.cli.output import err, fail
from services.cli.state import DEFAULT_STATE_DIR

app = typer.Typer(
    name="lineage",
    help="Versioned artifacts: create, inspect, diff, approve, flag, reject; staleness, lineage and plans.",
    no_args_is_help=True,
)

SOURCES = {"ai": pb.SOURCE_AI, "human": pb.SOURCE_HUMAN, "hybrid": pb.SOURCE_HYBRID}
HEALTHS = {"needs_revision": pb.HEALTH_NEEDS_REVISION, "confirmed_valid": pb.HEALTH_CONFIRMED_VALID}
STATUSES = {
    "draft": pb.STATUS_DRAFT,
    "approved": pb.STATUS_APPROVED,
    "flagged_for_review": pb.STATUS_FLAGGED_FOR_REVIEW,
    "rejected": pb.STATUS_REJECTED,
}
# The review queue: versions a reviewer can still approve or reject.
AWAITING_DECISION = ["draft", "flagged_for_review"]
StatusFilter = Annotated[
    list[str] | None,
    typer.Option(
        "--status",
        help="Only versions whose current status is this: draft, approved, flagged_for_review or rejected "
        "(repeatable).",
    ),
]
Rationale = Annotated[str, typer.Option(help="Why (recorded with your identity and the time).")]


def _new_request_id() -> str:
    return f"cli-{uuid.uuid4().hex}"


def _row(version: pb.Version) -> dict[str, Any]:
    return {
        "name": version.name,
        "status": pb.Status.Name(version.status.status).removeprefix("STATUS_"),
        "health": pb.Health.Name(version.health.health).removeprefix("HEALTH_").lower(),
        "latest": version.latest,
        "created_by": f"{version.created_by.id} ({_kind(version.created_by.kind)})",
        "requested_by": (
            f"{version.requested_by.id} ({_kind(version.requested_by.kind)})"
            if version.HasField("requested_by")
            else ""
        ),
        "decided_by": f"{version.status.actor.id} ({_kind(version.status.actor.kind)})",
        "health_by": f"{version.health.actor.id} ({_kind(version.health.actor.kind)})",
        "cause": version.health.cause,
        "created": version.create_time,
    }


def _kind(kind: int) -> str:
    return {1: "service", 2: "human", 3: "system"}.get(kind, "unknown")


def _show(version: pb.Version, as_json: bool) -> None:
    if as_json:
        print_json(as_dict(version))
        return
    columns = ["name", "created_by", "requested_by", "status", "health", "latest", "decided_by", "cause"]
    print_rows([_row(version)], columns, False)
    print_json({"data": MessageToDict(version.data), "upstream": list(version.upstream)})


@app.command()
def create(
    parent: Annotated[str, typer.Argument(help="projects/{project}/artifacts/{type}/{entity}")],
    data: Annotated[str, typer.Option(help="The data: a JSON object, or @file.json.")],
    intent: Annotated[str, typer.Option(help="What the artifact is meant to accomplish.")],
    rationale: Rationale,
    confidence: Annotated[float, typer.Option(min=0.0, max=1.0, help="0..1")] = 1.0,
    source: Annotated[str, typer.Option(help="ai, human or hybrid.")] = "human",
    upstream: Annotated[list[str] | None, typer.Option(help="Exact upstream version name (repeatable).")] = None,
    alternative: Annotated[list[str] | None, typer.Option(help="An alternative considered (repeatable).")] = None,
    producing_module: str = "",
    producing_role: str = "",
    schema_version: Annotated[str, typer.Option(help="Default: the type's latest.")] = "",
    request_id: IdempotencyKey = "",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Create the next version of an entity (marks everything downstream of its earlier versions stale)."""
    if source not in SOURCES:
        raise typer.BadParameter("source must be ai, human or hybrid")
    request = pb.CreateVersionRequest(
        parent=parent,
        metadata=pb.VersionMetadata(
            intent=intent,
            rationale=rationale,
            confidence=confidence,
            source=SOURCES[source],
            alternatives_considered=alternative or [],
            producing_module=producing_module,
            producing_role=producing_role,
            schema_version=schema_version,
        ),
        upstream=upstream or [],
        request_id=request_id or _new_request_id(),
    )
    request.data.update(json_object_argument(data))
    response = call(state_dir, "lineage", lambda stub: stub.CreateVersion(request))
    if as_json:
        print_json(as_dict(response))
        return
    print_rows([_row(response.version)], ["name", "created_by", "status", "health", "latest"], False)
    typer.echo(f"marked stale: {response.marked_stale}" + (" (replayed)" if response.replayed else ""))


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="A version name.")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """One version with its status and health (JSON: with full histories)."""
    _show(call(state_dir, "lineage", lambda stub: stub.GetVersion(pb.GetVersionRequest(name=name))), as_json)


def _statuses(names: list[str]) -> list[pb.Status.ValueType]:
    unknown = [name for name in names if name not in STATUSES]
    if unknown:
        raise typer.BadParameter(
            f"unknown status {', '.join(unknown)}: use {', '.join(STATUSES)}", param_hint="--status"
        )
    return [STATUSES[name] for name in names]


def _list_versions(parent: str, statuses: list[str], page_size: int, state_dir: Path) -> list[pb.Version]:
    """Every page of ListVersions."""
    wanted = _statuses(statuses)
    found: list[pb.Version] = []
    token = ""
    while True:
        request = pb.ListVersionsRequest(parent=parent, page_size=page_size, page_token=token, statuses=wanted)
        page = call(state_dir, "lineage", methodcaller("ListVersions", request))
        found.extend(page.versions)
        token = page.next_page_token
        if not token:
            if not found:
                _require_project(parent, state_dir)
            return found


def _require_project(parent: str, state_dir: Path) -> None:
    """An empty listing of a project that holds no version at all is a mistyped name, not "nothing there": exit 1
    (NOT_FOUND) rather than print an empty table. The service answers such a listing with an empty page (a
    pipeline lists its project before the first version), so the CLI asks whether the project holds anything."""
    project = parent.split("/")[1] if parent.startswith("projects/") else ""
    if not project or project == "-":
        return
    probe = pb.ListVersionsRequest(parent=f"projects/{project}", page_size=1)
    if not call(state_dir, "lineage", methodcaller("ListVersions", probe)).versions:
        fail(
            err,
            f"no project {project!r} holds a version",
            code="NOT_FOUND",
            reason="PROJECT_NOT_FOUND",
            hint="`custody lineage projects` lists the projects that hold versions",
        )


@app.command()
def versions(
    parent: Annotated[
        str, typer.Argument(help="projects/{p}, projects/{p}/artifacts/{t}, an entity name, or projects/- (all).")
    ],
    status: StatusFilter = None,
    page_size: int = 100,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Every version under a project, type or entity (or of every project), oldest first (all pages)."""
    found = _list_versions(parent, status or [], page_size, state_dir)
    if as_json:
        print_json([as_dict(v) for v in found])
    else:
        print_rows([_row(v) for v in found], ["name", "created_by", "status", "health", "latest", "created"], False)


@app.command()
def queue(
    project: Annotated[str, typer.Argument(help="A project id or projects/{project}; default: every project.")] = "",
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help="Only this status: draft, approved, flagged_for_review or rejected (repeatable); default: draft "
            "and flagged_for_review.",
        ),
    ] = None,
    page_size: int = 100,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """The review queue: versions awaiting a decision (draft or flagged for review), oldest first."""
    parent = "projects/-" if not project else project if project.startswith("projects/") else f"projects/{project}"
    found = _list_versions(parent, status or AWAITING_DECISION, page_size, state_dir)
    if as_json:
        print_json([as_dict(v) for v in found])
        return
    columns = ["name", "created_by", "requested_by", "status", "health", "latest", "created"]
    print_rows([_row(v) for v in found], columns, False, title=f"awaiting review ({len(found)})")


@app.command()
def diff(
    base: Annotated[str, typer.Argument(help="Base version name.")],
    target: Annotated[str, typer.Argument(help="Target version name.")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """RFC 6902 JSON Patch from base's data to target's, and the changed paths."""
    response = call(
        state_dir, "lineage", lambda stub: stub.DiffVersions(pb.DiffVersionsRequest(base=base, target=target))
    )
    if as_json:
        print_json({**as_dict(response), "patch": json.loads(response.patch_json)})
        return
    if response.identical:
        typer.echo("identical data")
        return
    print_json(json.loads(response.patch_json))
    typer.echo(f"changed paths: {', '.join(response.changed_paths)}")


def _decide(method: str, message: Any, state_dir: Path, as_json: bool) -> None:
    version = call(state_dir, "lineage", lambda stub: getattr(stub, method)(message))
    _show(version, as_json)


@app.command()
def approve(
    name: Annotated[str, typer.Argument(help="A version name.")],
    rationale: Rationale,
    request_id: IdempotencyKey = "",
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Run every check of the approval and change nothing (validate_only): exit 1 listing "
            "every violation, or 0 if it would be approved.",
        ),
    ] = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Approve a version: refused, listing every violation, unless its lineage is complete, approved and fresh."""
    # A dry run records no request id, so it needs none of its own; one given is checked as the approval would.
    key = request_id or ("" if dry_run else _new_request_id())
    request = pb.ApproveRequest(name=name, rationale=rationale, request_id=key, validate_only=dry_run)
    _decide("Approve", request, state_dir, as_json)
    if dry_run and not as_json:
        typer.echo("dry run: the approval would succeed; nothing was changed")


@app.command()
def flag(
    name: Annotated[str, typer.Argument(help="A version name.")],
    rationale: Rationale,
    request_id: IdempotencyKey = "",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Flag a draft for review."""
    request = pb.FlagRequest(name=name, rationale=rationale, request_id=request_id or _new_request_id())
    _decide("Flag", request, state_dir, as_json)


@app.command()
def reject(
    name: Annotated[str, typer.Argument(help="A version name.")],
    rationale: Rationale,
    request_id: IdempotencyKey = "",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Reject a draft or flagged version (final)."""
    request = pb.RejectRequest(name=name, rationale=rationale, request_id=request_id or _new_request_id())
    _decide("Reject", request, state_dir, as_json)


@app.command()
def assess(
    name: Annotated[str, typer.Argument(help="A version name.")],
    health: Annotated[str, typer.Argument(help="needs_revision or confirmed_valid.")],
    rationale: Rationale,
    expected_revision: Annotated[int, typer.Option(help="Health revision you saw (0: do not check).")] = 0,
    request_id: IdempotencyKey = "",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Record a reviewer's health assessment of a (typically stale) version."""
    if health not in HEALTHS:
        raise typer.BadParameter("health must be needs_revision or confirmed_valid")
    request = pb.AssessHealthRequest(
        name=name,
        health=HEALTHS[health],
        rationale=rationale,
        expected_revision=expected_revision,
        request_id=request_id or _new_request_id(),
    )
    _decide("AssessHealth", request, state_dir, as_json)


@app.command()
def stale(
    project: Annotated[str, typer.Argument(help="A project id or projects/{project}.")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Stale versions of a project, with the upstream change that caused each."""
    parent = project if project.startswith("projects/") else f"projects/{project}"
    found: list[pb.Version] = []
    token = ""
    while True:
        request = pb.ListStaleRequest(parent=parent, page_size=1000, page_token=token)
        page = call(state_dir, "lineage", methodcaller("ListStale", request))
        found.extend(page.versions)
        token = page.next_page_token
        if not token:
            break
    if not found:
        _require_project(parent, state_dir)
    if as_json:
        print_json([as_dict(v) for v in found])
    else:
        print_rows(
            [_row(v) for v in found], ["name", "created_by", "status", "cause", "health_by"], False, title="stale"
        )


def _closure(
    method: str,
    request_type: Any,
    name: str,
    max_depth: int,
    page_size: int,
    all_pages: bool,
    state_dir: Path,
    as_json: bool,
) -> None:
    nodes: list[dict[str, Any]] = []
    token, truncated, total = "", False, 0
    while True:
        request = request_type(name=name, max_depth=max_depth, page_size=page_size, page_token=token)
        page = call(state_dir, "lineage", methodcaller(method, request))
        total = page.total_size
        nodes.extend(
            {
                "depth": n.depth,
                "name": n.name,
                "status": pb.Status.Name(n.status).removeprefix("STATUS_"),
                "health": pb.Health.Name(n.health).removeprefix("HEALTH_").lower(),
                "latest": n.latest,
                "created_by": f"{n.created_by.id} ({_kind(n.created_by.kind)})",
            }
            for n in page.nodes
        )
        token, truncated = page.next_page_token, page.truncated
        if not (all_pages and truncated):
            break
    if as_json:
        print_json({"root": name, "nodes": nodes, "truncated": truncated, "next_page_token": token, "total": total})
        return
    print_rows(nodes, ["depth", "name", "created_by", "status", "health", "latest"], False)
    typer.echo(
        f"{len(nodes)} of {total}" + ("; truncated (limit reached): --all fetches every page" if truncated else "")
    )


@app.command()
def upstream(
    name: Annotated[str, typer.Argument(help="A version name.")],
    max_depth: Annotated[int, typer.Option(help="Levels per page (0: no limit).")] = 0,
    page_size: int = 1000,
    all_pages: Annotated[bool, typer.Option("--all", help="Fetch every page.")] = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Everything a version was derived from, breadth first."""
    _closure("GetUpstream", pb.GetUpstreamRequest, name, max_depth, page_size, all_pages, state_dir, as_json)


@app.command()
def downstream(
    name: Annotated[str, typer.Argument(help="A version name.")],
    max_depth: Annotated[int, typer.Option(help="Levels per page (0: no limit).")] = 0,
    page_size: int = 1000,
    all_pages: Annotated[bool, typer.Option("--all", help="Fetch every page.")] = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Everything derived from a version, breadth first."""
    _closure("GetDownstream", pb.GetDownstreamRequest, name, max_depth, page_size, all_pages, state_dir, as_json)


@app.command()
def plan(
    policy: Annotated[str, typer.Argument(help="Policy name, e.g. marketing.")],
    jobs: Annotated[list[str], typer.Argument(help="Selected job types.")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """The job DAG for the selected job types, and each artifact type's required upstream types."""
    request = pb.BuildPlanRequest(policy=policy, selected_jobs=jobs)
    response = call(state_dir, "lineage", lambda stub: stub.BuildPlan(request))
    if as_json:
        print_json(as_dict(response))
        return
    print_rows(
        [{"job": j.id, "produces": j.artifact_type, "depends_on": ", ".join(j.depends_on)} for j in response.jobs],
        ["job", "produces", "depends_on"],
        False,
        title=f"plan ({policy})",
    )
    print_rows(
        [{"type": r.artifact_type, "requires": ", ".join(r.required_upstream_types)} for r in response.requirements],
        ["type", "requires"],
        False,
        title="required lineage",
    )
    for warning in response.warnings:
        typer.echo(f"warning: {warning}")


@app.command()
def policy(
    name: Annotated[str, typer.Argument(help="Policy name.")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """A policy's types, rules and job groups."""
    print_record(call(state_dir, "lineage", lambda stub: stub.GetPolicy(pb.GetPolicyRequest(name=name))), as_json)


@app.command()
def policies(state_dir: StateDir = DEFAULT_STATE_DIR, as_json: JsonFlag = False) -> None:
    """Every policy (policy files' and RegisterType's), with its types; `custody lineage policy NAME` shows one."""
    response = call(state_dir, "lineage", lambda stub: stub.ListPolicies(pb.ListPoliciesRequest()))
    if as_json:
        print_json([as_dict(p) for p in response.policies])
        return
    rows = [
        {
            "name": p.name,
            "source": p.source,
            "types": ", ".join(t.name for t in p.types),
            "description": p.description,
        }
        for p in response.policies
    ]
    print_rows(rows, ["name", "source", "types", "description"], False)


@app.command()
def projects(page_size: int = 100, state_dir: StateDir = DEFAULT_STATE_DIR, as_json: JsonFlag = False) -> None:
    """Every project that holds versions (all pages), with its version count and latest creation."""

    async def fetch(stub: Any) -> list[pb.Project]:
        found: list[pb.Project] = []
        token = ""
        while True:
            page = await stub.ListProjects(pb.ListProjectsRequest(page_size=page_size, page_token=token))
            found.extend(page.projects)
            token = page.next_page_token
            if not token:
                return found

    found = call(state_dir, "lineage", fetch)
    if as_json:
        print_json([as_dict(p) for p in found])
        return
    rows = [
        {"name": p.name, "versions": p.version_count, "latest": p.latest_create_time.ToDatetime().isoformat()}
        for p in found
    ]
    print_rows(rows, ["name", "versions", "latest"], False)
