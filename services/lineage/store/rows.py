"""Row <-> domain mapping shared by the store's parts: principals, decision columns, versions and types."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.common.clock import from_us
from services.common.errors import NotFound
from services.common.hashing import loads_canonical
from services.common.identity import Principal, PrincipalKind
from services.lineage import tables as t
from services.lineage.domain.model import (
    Conditional,
    Health,
    HealthRecord,
    Metadata,
    Status,
    StatusRecord,
    TypeDefinition,
    Version,
)
from services.lineage.domain.names import EntityKey, VersionName, parse_version_name


@dataclass(frozen=True)
class Decision:
    """A status or health change as recorded: who, when, why."""

    actor: Principal
    rationale: str
    request_id: str
    at: datetime


def principal(id_: str, kind: str, roles: str = "") -> Principal:
    return Principal(id_, PrincipalKind(kind), frozenset(r for r in roles.split(",") if r))


def roles(actor: Principal) -> str:
    return ",".join(sorted(actor.roles))


def decision_columns(decision: Decision) -> dict[str, str]:
    """Who decided, why and under which request: the columns status and health rows and their histories share."""
    return {
        "actor_id": decision.actor.id,
        "actor_kind": decision.actor.kind.value,
        "actor_roles": roles(decision.actor),
        "rationale": decision.rationale,
        "request_id": decision.request_id,
    }


def entity_filter(entity: EntityKey) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        t.versions.c.project == entity.project,
        t.versions.c.artifact_type == entity.artifact_type,
        t.versions.c.entity == entity.entity,
    )


def not_found(name: VersionName) -> NotFound:
    return NotFound("VERSION_NOT_FOUND", f"{name} does not exist", metadata={"name": str(name)})


def version_query(with_data: bool = True) -> sa.Select[Any]:
    cause = sa.alias(t.versions, "cause")
    newest = sa.alias(t.versions, "newest")
    latest_number = (
        sa.select(sa.func.max(newest.c.number))
        .where(
            newest.c.project == t.versions.c.project,
            newest.c.artifact_type == t.versions.c.artifact_type,
            newest.c.entity == t.versions.c.entity,
        )
        .scalar_subquery()
        .label("latest_number")
    )
    columns: list[Any] = [
        t.versions.c.id,
        t.versions.c.name,
        t.versions.c.number,
        t.versions.c.upstream_json,
        t.status.c.status,
        t.health.c.health,
        cause.c.name.label("cause_name"),
        latest_number,
        t.versions.c.created_by_id,
        t.versions.c.created_by_kind,
    ]
    if with_data:
        columns += [t.versions.c.requested_by_id, t.versions.c.requested_by_kind]
        columns += [
            t.versions.c.data_json,
            t.versions.c.data_sha256,
            t.versions.c.metadata_json,
            t.versions.c.snapshot_sha256,
            t.versions.c.created_at_us,
            t.versions.c.request_id,
            t.status.c.revision.label("s_revision"),
            t.status.c.updated_at_us.label("s_at"),
            t.status.c.actor_id.label("s_actor_id"),
            t.status.c.actor_kind.label("s_actor_kind"),
            t.status.c.actor_roles.label("s_actor_roles"),
            t.status.c.rationale.label("s_rationale"),
            t.status.c.request_id.label("s_request_id"),
            t.health.c.revision.label("h_revision"),
            t.health.c.updated_at_us.label("h_at"),
            t.health.c.actor_id.label("h_actor_id"),
            t.health.c.actor_kind.label("h_actor_kind"),
            t.health.c.actor_roles.label("h_actor_roles"),
            t.health.c.rationale.label("h_rationale"),
            t.health.c.request_id.label("h_request_id"),
        ]
    return (
        sa.select(*columns)
        .join(t.status, t.status.c.version_id == t.versions.c.id)
        .join(t.health, t.health.c.version_id == t.versions.c.id)
        .outerjoin(cause, cause.c.id == t.health.c.cause_id)
    )


def version_from_row(row: Any) -> Version:
    return Version(
        name=parse_version_name(row.name),
        data=json.loads(row.data_json),
        metadata=Metadata.from_json(json.loads(row.metadata_json)),
        upstream=tuple(parse_version_name(u) for u in json.loads(row.upstream_json)),
        data_sha256=row.data_sha256,
        snapshot_sha256=row.snapshot_sha256,
        created_at=from_us(row.created_at_us),
        created_by=principal(row.created_by_id, row.created_by_kind),
        request_id=row.request_id,
        status=StatusRecord(
            Status(row.status),
            row.s_revision,
            from_us(row.s_at),
            principal(row.s_actor_id, row.s_actor_kind, row.s_actor_roles),
            row.s_rationale,
            row.s_request_id,
        ),
        health=HealthRecord(
            Health(row.health),
            row.h_revision,
            from_us(row.h_at),
            principal(row.h_actor_id, row.h_actor_kind, row.h_actor_roles),
            row.h_rationale,
            row.cause_name or "",
            row.h_request_id,
        ),
        latest=int(row.latest_number) == int(row.number),
        requested_by=None if row.requested_by_id is None else principal(row.requested_by_id, row.requested_by_kind),
    )


def type_from_row(row: Any) -> TypeDefinition:
    document = loads_canonical(row.definition_json)
    return TypeDefinition(
        name=document["name"],
        policy=document["policy"],
        schema_version=document["schema_version"],
        schema=document["schema"],
        requires=tuple(document["requires"]),
        conditional=tuple(
            Conditional(tuple(c["requires"]), tuple(c["when_any_selected"])) for c in document["conditional"]
        ),
        selection_field=document["selection_field"],
        creators=tuple(document.get("creators", ())),
        four_eyes=document.get("four_eyes", True),
        source=row.source,
        registered_at=from_us(row.registered_at_us),
        registered_by=principal(row.registered_by_id, row.registered_by_kind),
    )
