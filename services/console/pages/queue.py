"""The review queue: every version awaiting a decision (draft or flagged), across projects, oldest first."""

from __future__ import annotations

from dataclasses import dataclass

from custody.lineage.v1 import lineage_pb2
from services.console.pages.formatting import age, enum_label
from services.console.pages.graph import version_label
from services.console.upstream import PersonCalls

AWAITING = (lineage_pb2.STATUS_DRAFT, lineage_pb2.STATUS_FLAGGED_FOR_REVIEW)
ALL_PROJECTS = "projects/-"
PAGE_SIZE = 50


@dataclass(frozen=True)
class QueueItem:
    name: str
    project: str
    artifact_type: str
    entity: str
    version: int
    status: str
    created_by: str
    age: str
    create_time: str
    stale: bool
    stale_cause: str
    stale_cause_label: str
    health: str
    latest: bool


@dataclass(frozen=True)
class QueuePage:
    items: list[QueueItem]
    next_page_token: str


def queue_item(version: lineage_pb2.Version) -> QueueItem:
    health = version.health.health
    return QueueItem(
        name=version.name,
        project=version.project,
        artifact_type=version.artifact_type,
        entity=version.entity,
        version=version.version,
        status=enum_label(lineage_pb2.Status.Name(version.status.status), "STATUS_"),
        created_by=version.created_by.id,
        age=age(version.create_time),
        create_time=version.create_time,
        stale=health == lineage_pb2.HEALTH_STALE,
        stale_cause=version.health.cause,
        stale_cause_label=_cause_label(version.health.cause),
        health=enum_label(lineage_pb2.Health.Name(health), "HEALTH_"),
        latest=version.latest,
    )


async def review_queue(calls: PersonCalls, page_token: str = "") -> QueuePage:
    response = await calls.call(
        "lineage",
        "ListVersions",
        lineage_pb2.ListVersionsRequest(
            parent=ALL_PROJECTS, statuses=AWAITING, page_size=PAGE_SIZE, page_token=page_token
        ),
    )
    return QueuePage([queue_item(v) for v in response.versions], response.next_page_token)


def _cause_label(cause: str) -> str:
    """`brief (design_brief v2)`: short enough for a table cell; the link keeps the full name."""
    if not cause:
        return ""
    label, entity = version_label(cause)
    return f"{entity} ({label})" if entity else label
