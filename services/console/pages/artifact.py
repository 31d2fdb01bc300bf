"""The artifact page: one version and everything a reviewer needs to decide on it, fetched fresh on every view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from custody.lineage.v1 import lineage_pb2
from services.console.pages.decision import DECIDABLE, GateView, RefusalView, approval_gate
from services.console.pages.diff import ApprovedDiff, approved_diff
from services.console.pages.evidence import (
    CandidateEvidence,
    candidate_evidence,
    candidate_for,
    data_of,
    verdicts_on,
)
from services.console.pages.formatting import age, enum_label, pretty_json
from services.console.pages.graph import LineageGraph, lineage_graph
from services.console.upstream import PersonCalls
from services.rosette.lineage_types import FEASIBILITY_RUN


@dataclass(frozen=True)
class HistoryEntry:
    what: str
    revision: int
    time: str
    actor: str
    rationale: str
    cause: str


@dataclass(frozen=True)
class VersionView:
    name: str
    project: str
    artifact_type: str
    entity: str
    number: int
    status: str
    health: str
    stale: bool
    stale_cause: str
    latest: bool
    created_by: str
    requested_by: str
    create_time: str
    age: str
    data_sha256: str
    snapshot_sha256: str
    ledger_index: int | None
    intent: str
    rationale: str
    confidence: float | None
    source: str
    upstream: list[str]
    data_json: str
    history: list[HistoryEntry]
    decidable: bool


@dataclass(frozen=True)
class ArtifactPage:
    version: VersionView
    candidate: CandidateEvidence | None
    graph: LineageGraph
    diff: ApprovedDiff
    gate: GateView
    # The digests the decision is about, in the order the form lists them.
    digests: list[tuple[str, str]]
    refusal: RefusalView | None = None
    decided: str = ""


def version_view(version: lineage_pb2.Version) -> VersionView:
    history = [
        HistoryEntry(
            what=enum_label(lineage_pb2.Status.Name(r.status), "STATUS_"),
            revision=r.revision,
            time=r.update_time,
            actor=r.actor.id,
            rationale=r.rationale,
            cause="",
        )
        for r in version.status_history
    ] + [
        HistoryEntry(
            what=enum_label(lineage_pb2.Health.Name(r.health), "HEALTH_"),
            revision=r.revision,
            time=r.update_time,
            actor=r.actor.id,
            rationale=r.rationale,
            cause=r.cause,
        )
        for r in version.health_history
    ]
    history.sort(key=lambda entry: entry.time)
    metadata = version.metadata
    return VersionView(
        name=version.name,
        project=version.project,
        artifact_type=version.artifact_type,
        entity=version.entity,
        number=version.version,
        status=enum_label(lineage_pb2.Status.Name(version.status.status), "STATUS_"),
        health=enum_label(lineage_pb2.Health.Name(version.health.health), "HEALTH_"),
        stale=version.health.health == lineage_pb2.HEALTH_STALE,
        stale_cause=version.health.cause,
        latest=version.latest,
        created_by=version.created_by.id,
        requested_by=version.requested_by.id if version.HasField("requested_by") else "",
        create_time=version.create_time,
        age=age(version.create_time),
        data_sha256=version.data_sha256,
        snapshot_sha256=version.snapshot_sha256,
        ledger_index=version.ledger.leaf_index if version.HasField("ledger") else None,
        intent=metadata.intent,
        rationale=metadata.rationale,
        confidence=metadata.confidence if metadata.HasField("confidence") else None,
        source=enum_label(lineage_pb2.Source.Name(metadata.source), "SOURCE_"),
        upstream=list(version.upstream),
        data_json=pretty_json(data_of(version)),
        history=history,
        decidable=version.status.status in DECIDABLE,
    )


async def artifact_page(
    calls: PersonCalls, name: str, *, refusal: RefusalView | None = None, decided: str = ""
) -> ArtifactPage:
    version = await calls.call("lineage", "GetVersion", lineage_pb2.GetVersionRequest(name=name))
    graph = await lineage_graph(calls, version)
    candidate = await candidate_for(calls, version)
    evidence = None
    if candidate is not None:
        evidence = await candidate_evidence(calls, candidate)
        feasibility = [n.name for n in graph.nodes if _type_of(n.name) == FEASIBILITY_RUN]
        if version.artifact_type == FEASIBILITY_RUN:
            feasibility = [version.name]
        evidence.verdicts = await verdicts_on(calls, candidate.name, feasibility)
    return ArtifactPage(
        version=version_view(version),
        candidate=evidence,
        graph=graph,
        diff=await approved_diff(calls, version),
        gate=await approval_gate(calls, version),
        digests=_digests(version, data_of(version)),
        refusal=refusal,
        decided=decided,
    )


def _digests(version: lineage_pb2.Version, data: dict[str, Any]) -> list[tuple[str, str]]:
    digests = [("snapshot_sha256", version.snapshot_sha256), ("data_sha256", version.data_sha256)]
    digests.extend((key, str(data[key])) for key in ("svg_sha256", "spec_sha256") if key in data)
    return digests


def _type_of(name: str) -> str:
    parts = name.split("/")
    return parts[3] if len(parts) > 3 else ""
