"""Reading versions: one version with or without its history, keyset pages of a scope, upstream states."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from services.common.clock import from_us
from services.lineage import tables as t
from services.lineage.domain.model import (
    Health,
    HealthRecord,
    ProjectSummary,
    Status,
    StatusRecord,
    UpstreamState,
    Version,
)
from services.lineage.domain.names import ListScope, VersionName, parse_version_name
from services.lineage.ledger_records import health_state_record, status_record
from services.lineage.store.rows import not_found, principal, version_from_row, version_query
from services.lineage.store.transactions import Transactions


def version_id(connection: sa.Connection, name: VersionName) -> int:
    found = connection.execute(sa.select(t.versions.c.id).where(t.versions.c.name == str(name))).scalar_one_or_none()
    if found is None:
        raise not_found(name)
    return int(found)


def find_version(connection: sa.Connection, name: VersionName, history: bool) -> Version | None:
    row = connection.execute(version_query().where(t.versions.c.name == str(name))).first()
    if row is None:
        return None
    version = version_from_row(row)
    if not history:
        return version
    cause = sa.alias(t.versions, "cause")
    statuses = connection.execute(
        sa.select(t.status_history).where(t.status_history.c.version_id == row.id).order_by(t.status_history.c.revision)
    ).all()
    healths = connection.execute(
        sa.select(t.health_history, cause.c.name.label("cause_name"))
        .outerjoin(cause, cause.c.id == t.health_history.c.cause_id)
        .where(t.health_history.c.version_id == row.id)
        .order_by(t.health_history.c.revision)
    ).all()
    return replace(
        version,
        status_history=tuple(
            StatusRecord(
                Status(s.status),
                s.revision,
                from_us(s.at_us),
                principal(s.actor_id, s.actor_kind, s.actor_roles),
                s.rationale,
                s.request_id,
            )
            for s in statuses
        ),
        health_history=tuple(
            HealthRecord(
                Health(h.health),
                h.revision,
                from_us(h.at_us),
                principal(h.actor_id, h.actor_kind, h.actor_roles),
                h.rationale,
                h.cause_name or "",
                h.request_id,
            )
            for h in healths
        ),
    )


def upstream_states(connection: sa.Connection, upstream: Sequence[VersionName]) -> dict[VersionName, UpstreamState]:
    if not upstream:
        return {}
    rows = connection.execute(version_query().where(t.versions.c.name.in_([str(u) for u in upstream]))).all()
    states = {}
    for row in rows:
        name = parse_version_name(row.name)
        states[name] = UpstreamState(
            name, Status(row.status), Health(row.health), row.cause_name or "", int(row.latest_number)
        )
    return states


def with_ledger(tx: Transactions, connection: sa.Connection, versions: Sequence[Version]) -> list[Version]:
    """The versions with the ledger leaves of their snapshots and of the status and health states they show, all
    looked up in one query (unchanged without a ledger)."""
    if tx.ledger is None or not versions:
        return list(versions)

    def status_name(version: Version, record: StatusRecord) -> str:
        return status_record(str(version.name), record.revision)

    def health_name(version: Version, record: HealthRecord) -> str:
        return health_state_record(str(version.name), record.revision, record.cause)

    names: set[str] = set()
    for version in versions:
        names.add(str(version.name))
        names.update(status_name(version, s) for s in (version.status, *version.status_history))
        names.update(health_name(version, h) for h in (version.health, *version.health_history))
    found = tx.positions(connection, sorted(names))

    def filled(version: Version) -> Version:
        def status(record: StatusRecord) -> StatusRecord:
            return replace(record, ledger=found.get(status_name(version, record)))

        def health(record: HealthRecord) -> HealthRecord:
            return replace(record, ledger=found.get(health_name(version, record)))

        return replace(
            version,
            ledger=found.get(str(version.name)),
            status=status(version.status),
            health=health(version.health),
            status_history=tuple(status(s) for s in version.status_history),
            health_history=tuple(health(h) for h in version.health_history),
        )

    return [filled(version) for version in versions]


class VersionReads:
    def __init__(self, tx: Transactions) -> None:
        self._tx = tx

    def get_version(self, name: VersionName, history: bool = True) -> Version:
        with self._tx.read() as connection:
            version = find_version(connection, name, history)
            if version is None:
                raise not_found(name)
            return with_ledger(self._tx, connection, [version])[0]

    def list_versions(
        self, scope: ListScope, after_id: int, limit: int, statuses: frozenset[Status] = frozenset()
    ) -> tuple[list[Version], int | None]:
        """A scope's versions after `after_id` in id order; with `statuses`, only those whose current status is one
        of them, which the planner can find by ix_lineage_status_status_version: the review queue then costs what it
        holds after the cursor, not what was ever decided. (The cursor is repeated on the status row so that index
        is searched from it, as PostgreSQL does not carry a range across the join.)"""
        query = version_query().where(t.versions.c.id > after_id)
        if scope.project is not None:
            query = query.where(t.versions.c.project == scope.project)
        if statuses:
            query = query.where(
                t.status.c.status.in_(sorted(s.value for s in statuses)), t.status.c.version_id > after_id
            )
        if scope.artifact_type:
            query = query.where(t.versions.c.artifact_type == scope.artifact_type)
        if scope.entity:
            query = query.where(t.versions.c.entity == scope.entity)
        return self._page(query, limit)

    def list_projects(self, after: str, limit: int) -> tuple[list[ProjectSummary], str | None]:
        """Projects after `after` by name, each with its version count and latest creation time."""
        query = (
            sa.select(t.versions.c.project, sa.func.count(), sa.func.max(t.versions.c.created_at_us))
            .where(t.versions.c.project > after)
            .group_by(t.versions.c.project)
            .order_by(t.versions.c.project)
            .limit(limit + 1)
        )
        with self._tx.read() as connection:
            rows = connection.execute(query).all()
        projects = [ProjectSummary(str(p), int(n), from_us(int(latest))) for p, n, latest in rows[:limit]]
        return projects, (projects[-1].project if len(rows) > limit else None)

    def list_stale(self, project: str, after_id: int, limit: int) -> tuple[list[Version], int | None]:
        query = version_query().where(
            t.versions.c.project == project, t.versions.c.id > after_id, t.health.c.health == Health.STALE.value
        )
        return self._page(query, limit)

    def _page(self, query: sa.Select[Any], limit: int) -> tuple[list[Version], int | None]:
        with self._tx.read() as connection:
            rows = connection.execute(query.order_by(t.versions.c.id).limit(limit + 1)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            versions = with_ledger(self._tx, connection, [version_from_row(r) for r in rows])
        return versions, (int(rows[-1].id) if more else None)
