"""The only module that touches the lineage database.

Writes run in one transaction each, serialized per project (a PostgreSQL advisory transaction lock; SQLite's
write lock via BEGIN IMMEDIATE), so a check and the write it guards cannot interleave with another write: an
approval cannot slip past a concurrent revision of its upstream, and staleness marking cannot miss a version being
created. Version numbers are max+1 under a unique (project, type, entity, number) constraint; a conflict retries
the whole transaction. Staleness propagation is one recursive CTE (UNION, so cycle-safe and each version once)
whose result is written set-wise: the health rows by compare-and-set on their state, one history row each.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from services.common.errors import Aborted, AlreadyExists, FailedPrecondition, FieldViolation, NotFound
from services.common.hashing import sha256_text
from services.common.idempotency import ensure_same_request
from services.common.identity import Principal, PrincipalKind
from services.lineage import tables as t
from services.lineage.domain.graph import bfs_depths
from services.lineage.domain.model import (
    STALEABLE,
    Conditional,
    Health,
    HealthRecord,
    Idempotency,
    LineageNodeInfo,
    Metadata,
    Status,
    StatusRecord,
    TypeDefinition,
    UpstreamState,
    Version,
    canonical_text,
    snapshot_sha256,
)
from services.lineage.domain.names import EntityKey, ListScope, VersionName, parse_version_name

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
CREATE_ATTEMPTS = 8
TYPE_LOCK = "lineage-types"


def to_us(moment: datetime) -> int:
    return (moment - EPOCH) // MICROSECOND


def from_us(value: int) -> datetime:
    return EPOCH + value * MICROSECOND


def _lock_id(key: str) -> int:
    """A 63-bit advisory lock id derived from `key` (stable across processes and replicas)."""
    return int(sha256_text(f"custody-lineage:{key}")[:15], 16)


def _principal(id_: str, kind: str, roles: str = "") -> Principal:
    return Principal(id_, PrincipalKind(kind), frozenset(r for r in roles.split(",") if r))


def _roles(principal: Principal) -> str:
    return ",".join(sorted(principal.roles))


@dataclass(frozen=True)
class NewVersion:
    """A validated version to create; the store assigns the number and does everything else atomically."""

    entity: EntityKey
    data_json: str
    data_sha256: str
    metadata: Metadata
    upstream: tuple[VersionName, ...]
    actor: Principal
    request_id: str
    at: datetime


@dataclass(frozen=True)
class CreateOutcome:
    name: VersionName
    marked_stale: int
    replayed: bool


@dataclass(frozen=True)
class Decision:
    """A status or health change as recorded: who, when, why."""

    actor: Principal
    rationale: str
    request_id: str
    at: datetime


def _decision_columns(decision: Decision) -> dict[str, str]:
    """Who decided, why and under which request: the columns status and health rows and their histories share."""
    return {
        "actor_id": decision.actor.id,
        "actor_kind": decision.actor.kind.value,
        "actor_roles": _roles(decision.actor),
        "rationale": decision.rationale,
        "request_id": decision.request_id,
    }


@dataclass
class _Adjacency:
    """One project's "derived from" graph in memory (version ids), complete up to `watermark`."""

    children: dict[int, list[int]] = field(default_factory=dict)
    parents: dict[int, list[int]] = field(default_factory=dict)
    watermark: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class LineageStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._graphs: dict[str, _Adjacency] = {}
        self._graphs_lock = threading.Lock()

    # ---- transactions ----------------------------------------------------------------------------------------

    @contextmanager
    def _write(self, lock: str) -> Iterator[sa.Connection]:
        with self.engine.connect() as connection:
            if self.dialect == "sqlite":
                # Take the write lock up front: a deferred transaction that reads first and writes later can fail
                # with SQLITE_BUSY instead of waiting for the other writer.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_id(lock)})
            try:
                yield connection
                connection.commit()
            except BaseException:
                connection.rollback()
                raise

    def _retrying(self, work: Callable[[], Any]) -> Any:
        """Re-runs a write transaction that lost a uniqueness race (or SQLite's busy timeout)."""
        for attempt in range(CREATE_ATTEMPTS):
            try:
                return work()
            except (IntegrityError, OperationalError) as exc:
                if isinstance(exc, OperationalError) and "locked" not in str(exc).lower():
                    raise
                if attempt == CREATE_ATTEMPTS - 1:
                    raise Aborted(
                        "VERSION_CONFLICT",
                        "the version number could not be assigned after repeated conflicts; retry the request",
                        retry_after_s=0.1,
                    ) from exc
                time.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
        raise AssertionError("unreachable")

    def _replay(self, connection: sa.Connection, idem: Idempotency | None) -> str | None:
        if idem is None:
            return None
        row = connection.execute(
            sa.select(t.idempotency.c.fingerprint, t.idempotency.c.result).where(
                t.idempotency.c.principal_id == idem.principal_id, t.idempotency.c.request_id == idem.request_id
            )
        ).first()
        if row is None:
            return None
        ensure_same_request(idem.request_id, row.fingerprint, idem.fingerprint)
        return str(row.result)

    def _remember(self, connection: sa.Connection, idem: Idempotency | None, result: str, at: datetime) -> None:
        if idem is not None:
            connection.execute(
                t.idempotency.insert().values(
                    principal_id=idem.principal_id,
                    request_id=idem.request_id,
                    method=idem.method,
                    fingerprint=idem.fingerprint,
                    result=result,
                    created_at_us=to_us(at),
                )
            )

    # ---- types -----------------------------------------------------------------------------------------------

    def register_type(
        self, definition: TypeDefinition, actor: Principal, at: datetime, idem: Idempotency | None
    ) -> tuple[TypeDefinition, bool]:
        """Creates (type, schema_version), or returns it when the identical definition exists: (definition,
        created). A different definition under the same schema version, or another policy's type, is refused."""

        def work() -> tuple[TypeDefinition, bool]:
            with self._write(TYPE_LOCK) as connection:
                replayed = self._replay(connection, idem)
                if replayed is not None:
                    name, _, version = replayed.partition("@")
                    found = self._type(connection, name, version)
                    assert found is not None
                    return found, False
                created = self._insert_type(connection, definition, actor, at)
                self._remember(connection, idem, f"{definition.name}@{definition.schema_version}", at)
                stored = self._type(connection, definition.name, definition.schema_version)
                assert stored is not None
                return stored, created

        return self._retrying(work)  # type: ignore[no-any-return]

    def ensure_types(self, definitions: Sequence[TypeDefinition], actor: Principal, at: datetime) -> int:
        """Registers a policy file's types at start-up; returns how many were new. Raises on any conflict."""
        with self._write(TYPE_LOCK) as connection:
            return sum(self._insert_type(connection, d, actor, at) for d in definitions)

    def _insert_type(
        self, connection: sa.Connection, definition: TypeDefinition, actor: Principal, at: datetime
    ) -> bool:
        owner = connection.execute(
            sa.select(t.types.c.policy).where(t.types.c.artifact_type == definition.name).limit(1)
        ).scalar_one_or_none()
        if owner is not None and owner != definition.policy:
            raise FailedPrecondition(
                "TYPE_IN_OTHER_POLICY",
                f"type {definition.name!r} belongs to policy {owner!r}, not {definition.policy!r}",
                violations=[FieldViolation("policy", f"must be {owner!r} for type {definition.name!r}")],
            )
        existing = connection.execute(
            sa.select(t.types.c.definition_sha256).where(
                t.types.c.artifact_type == definition.name, t.types.c.schema_version == definition.schema_version
            )
        ).scalar_one_or_none()
        if existing is not None:
            if existing != definition.definition_sha256:
                raise AlreadyExists(
                    "TYPE_VERSION_EXISTS",
                    f"type {definition.name!r} schema version {definition.schema_version!r} is registered with a "
                    "different definition; registrations are immutable: use a new schema_version",
                    metadata={"type": definition.name, "schema_version": definition.schema_version},
                )
            return False
        connection.execute(
            t.types.insert().values(
                artifact_type=definition.name,
                schema_version=definition.schema_version,
                policy=definition.policy,
                definition_json=canonical_text(definition.definition()),
                definition_sha256=definition.definition_sha256,
                source=definition.source,
                registered_at_us=to_us(at),
                registered_by_id=actor.id,
                registered_by_kind=actor.kind.value,
            )
        )
        return True

    def _type(self, connection: sa.Connection, name: str, schema_version: str | None) -> TypeDefinition | None:
        query = sa.select(t.types).where(t.types.c.artifact_type == name)
        if schema_version:
            query = query.where(t.types.c.schema_version == schema_version)
        row = connection.execute(query.order_by(t.types.c.id.desc()).limit(1)).first()
        return None if row is None else _type_from_row(row)

    def get_type(self, name: str, schema_version: str | None = None) -> TypeDefinition | None:
        """A registration: the given schema version, or the most recently registered one."""
        with self.engine.connect() as connection:
            return self._type(connection, name, schema_version)

    def type_names(self) -> set[str]:
        with self.engine.connect() as connection:
            return set(connection.execute(sa.select(t.types.c.artifact_type).distinct()).scalars())

    def policy_types(self, policy: str) -> list[TypeDefinition]:
        """The latest registration of each type of a policy, in registration order."""
        latest = (
            sa.select(sa.func.max(t.types.c.id)).where(t.types.c.policy == policy).group_by(t.types.c.artifact_type)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(t.types).where(t.types.c.id.in_(latest)).order_by(t.types.c.id))
            return [_type_from_row(r) for r in rows]

    # ---- versions: create ------------------------------------------------------------------------------------

    def create_version(self, new: NewVersion, idem: Idempotency | None) -> CreateOutcome:
        return self._retrying(lambda: self._create_once(new, idem))  # type: ignore[no-any-return]

    def _next_number(self, connection: sa.Connection, entity: EntityKey) -> int:
        current = connection.execute(
            sa.select(sa.func.max(t.versions.c.number)).where(*_entity_filter(entity))
        ).scalar_one_or_none()
        return int(current or 0) + 1

    def _create_once(self, new: NewVersion, idem: Idempotency | None) -> CreateOutcome:
        with self._write(new.entity.project) as connection:
            replayed = self._replay(connection, idem)
            if replayed is not None:
                return CreateOutcome(parse_version_name(replayed), 0, True)
            upstream_ids = self._resolve_upstream(connection, new.upstream)
            number = self._next_number(connection, new.entity)
            name = new.entity.version(number)
            digest = snapshot_sha256(
                name, new.data_sha256, new.metadata, new.upstream, new.at, new.actor, new.request_id
            )
            version_id = connection.execute(
                t.versions.insert()
                .values(
                    name=str(name),
                    project=name.project,
                    artifact_type=name.artifact_type,
                    entity=name.entity,
                    number=number,
                    schema_version=new.metadata.schema_version,
                    data_json=new.data_json,
                    data_sha256=new.data_sha256,
                    metadata_json=canonical_text(new.metadata.to_json()),
                    upstream_json=json.dumps([str(u) for u in new.upstream]),
                    snapshot_sha256=digest,
                    created_at_us=to_us(new.at),
                    created_by_id=new.actor.id,
                    created_by_kind=new.actor.kind.value,
                    request_id=new.request_id,
                )
                .returning(t.versions.c.id)
            ).scalar_one()
            decision = Decision(new.actor, f"{name} revised {new.entity.name}", new.request_id, new.at)
            marked = self._propagate(connection, new.entity, version_id, decision) if number > 1 else 0
            if upstream_ids:
                connection.execute(
                    t.edges.insert(),
                    [
                        {"downstream_id": version_id, "position": i, "upstream_id": uid}
                        for i, uid in enumerate(upstream_ids)
                    ],
                )
            health, cause_id, why = self._initial_health(connection, upstream_ids)
            self._insert_state(connection, version_id, Status.DRAFT, health, cause_id, why, new)
            self._remember(connection, idem, str(name), new.at)
            return CreateOutcome(name, marked, False)

    def _resolve_upstream(self, connection: sa.Connection, upstream: Sequence[VersionName]) -> list[int]:
        if not upstream:
            return []
        names = [str(u) for u in upstream]
        found = dict(
            connection.execute(sa.select(t.versions.c.name, t.versions.c.id).where(t.versions.c.name.in_(names))).all()
        )
        missing = [
            FieldViolation(f"upstream[{i}]", f"{n} does not exist") for i, n in enumerate(names) if n not in found
        ]
        if missing:
            raise FailedPrecondition(
                "UPSTREAM_NOT_FOUND",
                f"{len(missing)} upstream reference(s) name no existing version; reference exact existing versions",
                violations=missing,
            )
        return [int(found[n]) for n in names]

    def _propagate(self, connection: sa.Connection, entity: EntityKey, new_id: int, decision: Decision) -> int:
        """Marks every version downstream of the entity's earlier versions stale (cause: the new version)."""
        if self.dialect == "sqlite":
            connection.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS lineage_scratch (id INTEGER PRIMARY KEY)")
        else:
            connection.exec_driver_sql(
                "CREATE TEMP TABLE IF NOT EXISTS lineage_scratch (id BIGINT PRIMARY KEY) ON COMMIT DELETE ROWS"
            )
        connection.exec_driver_sql("DELETE FROM lineage_scratch")
        connection.execute(
            sa.text(
                "WITH RECURSIVE down(id) AS ("
                " SELECT e.downstream_id FROM lineage_edges e JOIN lineage_versions v ON v.id = e.upstream_id"
                " WHERE v.project = :project AND v.artifact_type = :type AND v.entity = :entity AND v.id <> :new_id"
                " UNION"
                " SELECT e.downstream_id FROM lineage_edges e JOIN down d ON e.upstream_id = d.id"
                ") INSERT INTO lineage_scratch (id) SELECT id FROM down WHERE id <> :new_id"
            ),
            {"project": entity.project, "type": entity.artifact_type, "entity": entity.entity, "new_id": new_id},
        )
        params = {
            "stale": Health.STALE.value,
            "cause": new_id,
            "at": to_us(decision.at),
            **_decision_columns(decision),
            "h1": STALEABLE[0].value,
            "h2": STALEABLE[1].value,
        }
        connection.execute(
            sa.text(
                "INSERT INTO lineage_health_history (version_id, revision, from_health, health, cause_id, at_us,"
                " actor_id, actor_kind, actor_roles, rationale, request_id)"
                " SELECT h.version_id, h.revision + 1, h.health, :stale, :cause, :at, :actor_id, :actor_kind,"
                " :actor_roles, :rationale, :request_id"
                " FROM lineage_health h JOIN lineage_scratch s ON s.id = h.version_id"
                " WHERE h.health IN (:h1, :h2)"
            ),
            params,
        )
        # Compare-and-set on the state: only rows still valid / confirmed_valid change (needs_revision stays).
        result = connection.execute(
            sa.text(
                "UPDATE lineage_health SET health = :stale, revision = revision + 1, cause_id = :cause,"
                " updated_at_us = :at, actor_id = :actor_id, actor_kind = :actor_kind, actor_roles = :actor_roles,"
                " rationale = :rationale, request_id = :request_id"
                " WHERE version_id IN (SELECT id FROM lineage_scratch) AND health IN (:h1, :h2)"
            ),
            params,
        )
        return int(result.rowcount)

    def _initial_health(self, connection: sa.Connection, upstream_ids: Sequence[int]) -> tuple[Health, int | None, str]:
        """A new version built on a stale or superseded input is stale from the start (same cause)."""
        if not upstream_ids:
            return Health.VALID, None, ""
        newer = sa.alias(t.versions, "newer")
        rows = connection.execute(
            sa.select(
                t.versions.c.id,
                t.versions.c.name,
                t.health.c.health,
                t.health.c.cause_id,
                sa.select(sa.func.max(newer.c.id))
                .where(
                    newer.c.project == t.versions.c.project,
                    newer.c.artifact_type == t.versions.c.artifact_type,
                    newer.c.entity == t.versions.c.entity,
                    newer.c.number > t.versions.c.number,
                )
                .scalar_subquery()
                .label("newer_id"),
            )
            .join(t.health, t.health.c.version_id == t.versions.c.id)
            .where(t.versions.c.id.in_(list(upstream_ids)))
        ).all()
        by_id = {r.id: r for r in rows}
        for uid in upstream_ids:
            row = by_id[uid]
            if row.newer_id is not None:
                return Health.STALE, int(row.newer_id), f"built on {row.name}, which is superseded"
            if row.health == Health.STALE.value:
                return Health.STALE, row.cause_id, f"built on {row.name}, which is stale"
        return Health.VALID, None, ""

    def _insert_state(
        self,
        connection: sa.Connection,
        version_id: int,
        status: Status,
        health: Health,
        cause_id: int | None,
        why: str,
        new: NewVersion,
    ) -> None:
        common = {
            "version_id": version_id,
            "revision": 1,
            "actor_id": new.actor.id,
            "actor_kind": new.actor.kind.value,
            "actor_roles": _roles(new.actor),
            "request_id": new.request_id,
        }
        at = to_us(new.at)
        connection.execute(
            t.status.insert().values(status=status.value, updated_at_us=at, rationale="created", **common)
        )
        connection.execute(
            t.status_history.insert().values(
                status=status.value, from_status=None, at_us=at, rationale="created", **common
            )
        )
        connection.execute(
            t.health.insert().values(health=health.value, cause_id=cause_id, updated_at_us=at, rationale=why, **common)
        )
        connection.execute(
            t.health_history.insert().values(
                health=health.value, from_health=None, cause_id=cause_id, at_us=at, rationale=why, **common
            )
        )

    # ---- versions: decisions ---------------------------------------------------------------------------------

    def change_status(
        self,
        name: VersionName,
        target: Status,
        decision: Decision,
        idem: Idempotency | None,
        guard: Callable[[Version, TypeDefinition, Mapping[VersionName, UpstreamState]], None],
    ) -> bool:
        """Runs `guard` on the version as it is inside the transaction, then moves its status to `target` by
        compare-and-set and appends history. Returns False when the call was an idempotent replay."""
        with self._write(name.project) as connection:
            if self._replay(connection, idem) is not None:
                return False
            version = self._version(connection, name, history=False)
            if version is None:
                raise _not_found(name)
            definition = self._type(connection, name.artifact_type, version.metadata.schema_version)
            assert definition is not None  # versions are only created for registered types
            guard(version, definition, self._upstream_states(connection, version.upstream))
            version_id = self._id(connection, name)
            changed = connection.execute(
                t.status.update()
                .where(t.status.c.version_id == version_id, t.status.c.revision == version.status.revision)
                .values(
                    status=target.value,
                    revision=version.status.revision + 1,
                    updated_at_us=to_us(decision.at),
                    **_decision_columns(decision),
                )
            ).rowcount
            if changed != 1:
                raise Aborted("STATUS_CHANGED", f"the status of {name} changed concurrently; retry")
            connection.execute(
                t.status_history.insert().values(
                    version_id=version_id,
                    revision=version.status.revision + 1,
                    from_status=version.status.status.value,
                    status=target.value,
                    at_us=to_us(decision.at),
                    **_decision_columns(decision),
                )
            )
            self._remember(connection, idem, str(name), decision.at)
            return True

    def assess_health(
        self,
        name: VersionName,
        target: Health,
        decision: Decision,
        expected_revision: int,
        idem: Idempotency | None,
    ) -> bool:
        with self._write(name.project) as connection:
            if self._replay(connection, idem) is not None:
                return False
            version_id = self._id(connection, name)
            current = connection.execute(
                sa.select(t.health.c.health, t.health.c.revision).where(t.health.c.version_id == version_id)
            ).one()
            if expected_revision and expected_revision != current.revision:
                raise Aborted(
                    "HEALTH_CHANGED",
                    f"health of {name} is at revision {current.revision} ({current.health}), not {expected_revision}; "
                    "re-read it and decide again",
                    metadata={"current_revision": str(current.revision), "current_health": current.health},
                )
            changed = connection.execute(
                t.health.update()
                .where(t.health.c.version_id == version_id, t.health.c.revision == current.revision)
                .values(
                    health=target.value,
                    revision=current.revision + 1,
                    cause_id=None,
                    updated_at_us=to_us(decision.at),
                    **_decision_columns(decision),
                )
            ).rowcount
            if changed != 1:
                raise Aborted("HEALTH_CHANGED", f"the health of {name} changed concurrently; re-read and retry")
            connection.execute(
                t.health_history.insert().values(
                    version_id=version_id,
                    revision=current.revision + 1,
                    from_health=current.health,
                    health=target.value,
                    cause_id=None,
                    at_us=to_us(decision.at),
                    **_decision_columns(decision),
                )
            )
            self._remember(connection, idem, str(name), decision.at)
            return True

    # ---- versions: reads -------------------------------------------------------------------------------------

    def _id(self, connection: sa.Connection, name: VersionName) -> int:
        found = connection.execute(
            sa.select(t.versions.c.id).where(t.versions.c.name == str(name))
        ).scalar_one_or_none()
        if found is None:
            raise _not_found(name)
        return int(found)

    def get_version(self, name: VersionName, history: bool = True) -> Version:
        with self.engine.connect() as connection:
            version = self._version(connection, name, history)
        if version is None:
            raise _not_found(name)
        return version

    def _version(self, connection: sa.Connection, name: VersionName, history: bool) -> Version | None:
        row = connection.execute(_version_query().where(t.versions.c.name == str(name))).first()
        if row is None:
            return None
        version = _version_from_row(row)
        if not history:
            return version
        cause = sa.alias(t.versions, "cause")
        statuses = connection.execute(
            sa.select(t.status_history)
            .where(t.status_history.c.version_id == row.id)
            .order_by(t.status_history.c.revision)
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
                    _principal(s.actor_id, s.actor_kind, s.actor_roles),
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
                    _principal(h.actor_id, h.actor_kind, h.actor_roles),
                    h.rationale,
                    h.cause_name or "",
                    h.request_id,
                )
                for h in healths
            ),
        )

    def list_versions(self, scope: ListScope, after_id: int, limit: int) -> tuple[list[Version], int | None]:
        query = _version_query().where(t.versions.c.project == scope.project, t.versions.c.id > after_id)
        if scope.artifact_type:
            query = query.where(t.versions.c.artifact_type == scope.artifact_type)
        if scope.entity:
            query = query.where(t.versions.c.entity == scope.entity)
        return self._page(query, limit)

    def list_stale(self, project: str, after_id: int, limit: int) -> tuple[list[Version], int | None]:
        query = _version_query().where(
            t.versions.c.project == project, t.versions.c.id > after_id, t.health.c.health == Health.STALE.value
        )
        return self._page(query, limit)

    def _page(self, query: sa.Select[Any], limit: int) -> tuple[list[Version], int | None]:
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(t.versions.c.id).limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return [_version_from_row(r) for r in rows], (int(rows[-1].id) if more else None)

    def _upstream_states(
        self, connection: sa.Connection, upstream: Sequence[VersionName]
    ) -> dict[VersionName, UpstreamState]:
        if not upstream:
            return {}
        rows = connection.execute(_version_query().where(t.versions.c.name.in_([str(u) for u in upstream]))).all()
        states = {}
        for row in rows:
            name = parse_version_name(row.name)
            states[name] = UpstreamState(
                name, Status(row.status), Health(row.health), row.cause_name or "", int(row.latest_number)
            )
        return states

    # ---- graph -----------------------------------------------------------------------------------------------

    def closure_depths(self, name: VersionName, downstream: bool) -> tuple[int, dict[int, int]]:
        """The root's id and the shortest depth of every version in its downstream (or upstream) closure.

        Traversal runs on the project's adjacency held in memory, brought up to date first with one indexed query
        for the project's versions created since the last one seen. That is exact: edges are immutable and written
        with their (new) downstream version, cross-project edges do not exist, and writes to a project are
        serialized, so a project's version ids become visible in increasing order (a snapshot is a prefix).
        """
        with self.engine.connect() as connection:
            root = self._id(connection, name)
            graph = self._adjacency(name.project)
            with graph.lock:
                rows = connection.execute(
                    sa.select(t.versions.c.id, t.edges.c.upstream_id)
                    .outerjoin(t.edges, t.edges.c.downstream_id == t.versions.c.id)
                    .where(t.versions.c.project == name.project, t.versions.c.id > graph.watermark)
                ).all()
                for version_id, upstream_id in rows:
                    graph.watermark = max(graph.watermark, version_id)
                    if upstream_id is not None:
                        graph.children.setdefault(upstream_id, []).append(version_id)
                        graph.parents.setdefault(version_id, []).append(upstream_id)
                return root, bfs_depths(root, graph.children if downstream else graph.parents)

    def _adjacency(self, project: str) -> _Adjacency:
        with self._graphs_lock:
            return self._graphs.setdefault(project, _Adjacency())

    def closure_ids_by_cte(self, name: VersionName, downstream: bool) -> set[int]:
        """The same closure found by recursive CTE in the database (what propagation uses); for cross-checks."""
        step_from, step_to = ("upstream_id", "downstream_id") if downstream else ("downstream_id", "upstream_id")
        with self.engine.connect() as connection:
            root = self._id(connection, name)
            rows = connection.execute(
                sa.text(
                    f"WITH RECURSIVE reach(id) AS (SELECT CAST(:root AS BIGINT) UNION"
                    f" SELECT e.{step_to} FROM lineage_edges e JOIN reach r ON e.{step_from} = r.id)"
                    " SELECT id FROM reach"
                ),
                {"root": root},
            ).scalars()
            return {int(r) for r in rows} - {root}

    def node_infos(self, ids_and_depths: Sequence[tuple[int, int]]) -> list[LineageNodeInfo]:
        """Display data of a page of closure nodes, in the order given."""
        if not ids_and_depths:
            return []
        ids = [node for _, node in ids_and_depths]
        with self.engine.connect() as connection:
            rows = {
                r.id: r
                for r in connection.execute(_version_query(with_data=False).where(t.versions.c.id.in_(ids))).all()
            }
        infos = []
        for depth, node in ids_and_depths:
            row = rows[node]
            infos.append(
                LineageNodeInfo(
                    row.name,
                    depth,
                    Status(row.status),
                    Health(row.health),
                    tuple(json.loads(row.upstream_json)),
                    int(row.latest_number) == int(row.number),
                    _principal(row.created_by_id, row.created_by_kind),
                )
            )
        return infos


# ---- row mapping ---------------------------------------------------------------------------------------------


def _entity_filter(entity: EntityKey) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        t.versions.c.project == entity.project,
        t.versions.c.artifact_type == entity.artifact_type,
        t.versions.c.entity == entity.entity,
    )


def _not_found(name: VersionName) -> NotFound:
    return NotFound("VERSION_NOT_FOUND", f"{name} does not exist", metadata={"name": str(name)})


def _version_query(with_data: bool = True) -> sa.Select[Any]:
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


def _version_from_row(row: Any) -> Version:
    return Version(
        name=parse_version_name(row.name),
        data=json.loads(row.data_json),
        metadata=Metadata.from_json(json.loads(row.metadata_json)),
        upstream=tuple(parse_version_name(u) for u in json.loads(row.upstream_json)),
        data_sha256=row.data_sha256,
        snapshot_sha256=row.snapshot_sha256,
        created_at=from_us(row.created_at_us),
        created_by=_principal(row.created_by_id, row.created_by_kind),
        request_id=row.request_id,
        status=StatusRecord(
            Status(row.status),
            row.s_revision,
            from_us(row.s_at),
            _principal(row.s_actor_id, row.s_actor_kind, row.s_actor_roles),
            row.s_rationale,
            row.s_request_id,
        ),
        health=HealthRecord(
            Health(row.health),
            row.h_revision,
            from_us(row.h_at),
            _principal(row.h_actor_id, row.h_actor_kind, row.h_actor_roles),
            row.h_rationale,
            row.cause_name or "",
            row.h_request_id,
        ),
        latest=int(row.latest_number) == int(row.number),
    )


def _type_from_row(row: Any) -> TypeDefinition:
    document = json.loads(row.definition_json)
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
        source=row.source,
        registered_at=from_us(row.registered_at_us),
        registered_by=_principal(row.registered_by_id, row.registered_by_kind),
    )
