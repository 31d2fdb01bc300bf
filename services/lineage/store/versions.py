"""Creating a version: number, rows, edges, staleness downstream and the new version's own state, atomically.

Version numbers are max+1 under a unique (project, type, entity, number) constraint; a conflict retries the whole
transaction. Staleness propagation (propagation.py) is set-wise: the health rows by compare-and-set on their state,
one history row each, and all those history rows are one ledger record (built from what the writes set, never read
back from the history table). The new version's starting health is the domain's rule (domain/birth.py), applied to
its inputs as this transaction reads them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from services.common.clock import to_us
from services.common.errors import FailedPrecondition, FieldViolation
from services.common.identity import Principal
from services.common.ledger.leaves import LedgerPosition
from services.lineage import tables as t
from services.lineage.domain.birth import BirthHealth, InputState
from services.lineage.domain.model import (
    Health,
    Idempotency,
    Metadata,
    Status,
    canonical_text,
    snapshot_sha256,
)
from services.lineage.domain.names import EntityKey, VersionName, parse_version_name
from services.lineage.ledger_records import (
    HEALTH,
    REQUESTS,
    STATUS,
    VERSIONS,
    staleness_record,
)
from services.lineage.store import idempotency
from services.lineage.store.propagation import Propagator
from services.lineage.store.rows import Decision, entity_filter, roles
from services.lineage.store.transactions import Transactions

# The health a new version starts with, given its inputs in upstream order (domain/birth.py's rule).
BirthRule = Callable[[Sequence[InputState]], BirthHealth]


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
    # On whose request an attesting service records it (domain/four_eyes.py), if anyone's.
    requested_by: Principal | None = None


@dataclass(frozen=True)
class CreateOutcome:
    name: VersionName
    marked_stale: int
    replayed: bool
    # The ledger leaf recording the staleness this version propagated (None when it marked nothing, or on replay).
    staleness: LedgerPosition | None = None


class VersionStore:
    def __init__(self, tx: Transactions, propagator: Propagator) -> None:
        self._tx = tx
        self._propagator = propagator

    def create_version(self, new: NewVersion, idem: Idempotency | None, birth: BirthRule) -> CreateOutcome:
        return self._tx.retrying(lambda: self._create_once(new, idem, birth))

    def _next_number(self, connection: sa.Connection, entity: EntityKey) -> int:
        current = connection.execute(
            sa.select(sa.func.max(t.versions.c.number)).where(*entity_filter(entity))
        ).scalar_one_or_none()
        return int(current or 0) + 1

    def _create_once(self, new: NewVersion, idem: Idempotency | None, birth: BirthRule) -> CreateOutcome:
        with self._tx.write(new.entity.project) as connection:
            replayed = idempotency.replay(connection, idem)
            if replayed is not None:
                return CreateOutcome(parse_version_name(replayed), 0, True, None)
            upstream_ids = self._resolve_upstream(connection, new.upstream)
            number = self._next_number(connection, new.entity)
            name = new.entity.version(number)
            digest = snapshot_sha256(
                name, new.data_sha256, new.metadata, new.upstream, new.at, new.actor, new.request_id, new.requested_by
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
                    requested_by_id=None if new.requested_by is None else new.requested_by.id,
                    requested_by_kind=None if new.requested_by is None else new.requested_by.kind.value,
                )
                .returning(t.versions.c.id)
            ).scalar_one()
            decision = Decision(new.actor, f"{name} revised {new.entity.name}", new.request_id, new.at)
            marked, staleness = 0, None
            if number > 1:
                marked, staleness = self._propagator.propagate(connection, new.entity, version_id, str(name), decision)
            if upstream_ids:
                connection.execute(
                    t.edges.insert(),
                    [
                        {"downstream_id": version_id, "position": i, "upstream_id": uid}
                        for i, uid in enumerate(upstream_ids)
                    ],
                )
            self._insert_state(connection, version_id, birth(self._input_states(connection, upstream_ids)), new)
            requests = idempotency.remember(connection, idem, str(name), new.at)
            leaves = self._tx.record(
                connection,
                (VERSIONS, [(version_id,)]),
                *([] if staleness is None else [staleness]),
                (STATUS, [(version_id, 1)]),
                (HEALTH, [(version_id, 1)]),
                (REQUESTS, requests),
            )
            return CreateOutcome(name, marked, False, leaves.get(staleness_record(str(name))))

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

    def _input_states(self, connection: sa.Connection, upstream_ids: Sequence[int]) -> list[InputState]:
        """Each input's health and cause, and the newest later version of its entity, in upstream order."""
        if not upstream_ids:
            return []
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
        return [
            InputState(
                by_id[uid].name,
                Health(by_id[uid].health),
                by_id[uid].cause_id,
                None if by_id[uid].newer_id is None else int(by_id[uid].newer_id),
            )
            for uid in upstream_ids
        ]

    def _insert_state(self, connection: sa.Connection, version_id: int, born: BirthHealth, new: NewVersion) -> None:
        common = {
            "version_id": version_id,
            "revision": 1,
            "actor_id": new.actor.id,
            "actor_kind": new.actor.kind.value,
            "actor_roles": roles(new.actor),
            "request_id": new.request_id,
        }
        at = to_us(new.at)
        status = Status.DRAFT.value
        connection.execute(t.status.insert().values(status=status, updated_at_us=at, rationale="created", **common))
        connection.execute(
            t.status_history.insert().values(status=status, from_status=None, at_us=at, rationale="created", **common)
        )
        health, cause, why = born.health.value, born.cause, born.rationale
        connection.execute(
            t.health.insert().values(health=health, cause_id=cause, updated_at_us=at, rationale=why, **common)
        )
        connection.execute(
            t.health_history.insert().values(
                health=health, from_health=None, cause_id=cause, at_us=at, rationale=why, **common
            )
        )
