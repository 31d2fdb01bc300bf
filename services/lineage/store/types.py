"""The type registry's rows: registrations are insert-only, serialized by one lock across all projects."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

import sqlalchemy as sa

from services.common.clock import to_us
from services.common.identity import Principal
from services.lineage import tables as t
from services.lineage.domain.model import Idempotency, TypeDefinition, canonical_text
from services.lineage.ledger_records import REQUESTS, TYPES, type_record
from services.lineage.store import idempotency
from services.lineage.store.rows import type_from_row
from services.lineage.store.transactions import TYPE_LOCK, Transactions

# (definition, policy owning the type or None, digest registered under its schema version or None) -> insert it?
# Raises when the registration is refused; the domain's rule (domain/registration.py) is the one passed in.
RegistrationGuard = Callable[[TypeDefinition, str | None, str | None], bool]


def find_type(connection: sa.Connection, name: str, schema_version: str | None) -> TypeDefinition | None:
    """A registration: the given schema version, or the most recently registered one."""
    query = sa.select(t.types).where(t.types.c.artifact_type == name)
    if schema_version:
        query = query.where(t.types.c.schema_version == schema_version)
    row = connection.execute(query.order_by(t.types.c.id.desc()).limit(1)).first()
    return None if row is None else type_from_row(row)


class TypeStore:
    def __init__(self, tx: Transactions) -> None:
        self._tx = tx

    def register_type(
        self,
        definition: TypeDefinition,
        actor: Principal,
        at: datetime,
        idem: Idempotency | None,
        guard: RegistrationGuard,
    ) -> tuple[TypeDefinition, bool]:
        """Creates (type, schema_version) when `guard` allows it, or returns the stored registration:
        (definition, created)."""

        def work() -> tuple[TypeDefinition, bool]:
            with self._tx.write(TYPE_LOCK) as connection:
                replayed = idempotency.replay(connection, idem)
                if replayed is not None:
                    name, _, version = replayed.partition("@")
                    found = find_type(connection, name, version)
                    assert found is not None
                    return self._with_ledger(connection, [found])[0], False
                inserted = self._insert_type(connection, definition, actor, at, guard)
                requests = idempotency.remember(connection, idem, f"{definition.name}@{definition.schema_version}", at)
                stored = find_type(connection, definition.name, definition.schema_version)
                assert stored is not None
                self._tx.record(connection, (TYPES, [] if inserted is None else [(inserted,)]), (REQUESTS, requests))
                return self._with_ledger(connection, [stored])[0], inserted is not None

        return self._tx.retrying(work)

    def ensure_types(
        self, definitions: Sequence[TypeDefinition], actor: Principal, at: datetime, guard: RegistrationGuard
    ) -> int:
        """Registers a policy file's types at start-up; returns how many were new. Raises on any refusal."""
        with self._tx.write(TYPE_LOCK) as connection:
            inserted = [self._insert_type(connection, d, actor, at, guard) for d in definitions]
            keys = [(row_id,) for row_id in inserted if row_id is not None]
            self._tx.record(connection, (TYPES, keys))
            return len(keys)

    def _insert_type(
        self,
        connection: sa.Connection,
        definition: TypeDefinition,
        actor: Principal,
        at: datetime,
        guard: RegistrationGuard,
    ) -> int | None:
        """The id of the registration inserted, or None when the guard found it registered already."""
        owner = connection.execute(
            sa.select(t.types.c.policy).where(t.types.c.artifact_type == definition.name).limit(1)
        ).scalar_one_or_none()
        existing = connection.execute(
            sa.select(t.types.c.definition_sha256).where(
                t.types.c.artifact_type == definition.name, t.types.c.schema_version == definition.schema_version
            )
        ).scalar_one_or_none()
        if not guard(definition, owner, existing):
            return None
        inserted = connection.execute(
            t.types.insert()
            .values(
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
            .returning(t.types.c.id)
        ).scalar_one()
        return int(inserted)

    def get_type(self, name: str, schema_version: str | None = None) -> TypeDefinition | None:
        """A registration: the given schema version, or the most recently registered one."""
        with self._tx.read() as connection:
            return find_type(connection, name, schema_version)

    def type_names(self) -> set[str]:
        with self._tx.read() as connection:
            return set(connection.execute(sa.select(t.types.c.artifact_type).distinct()).scalars())

    def policy_names(self) -> set[str]:
        """Every policy a registered type names (policy files' and RegisterType's alike)."""
        with self._tx.read() as connection:
            return set(connection.execute(sa.select(t.types.c.policy).distinct()).scalars())

    def policy_types(self, policy: str) -> list[TypeDefinition]:
        """The latest registration of each type of a policy, in registration order."""
        latest = (
            sa.select(sa.func.max(t.types.c.id)).where(t.types.c.policy == policy).group_by(t.types.c.artifact_type)
        )
        with self._tx.read() as connection:
            rows = connection.execute(sa.select(t.types).where(t.types.c.id.in_(latest)).order_by(t.types.c.id))
            return self._with_ledger(connection, [type_from_row(r) for r in rows])

    def _with_ledger(self, connection: sa.Connection, definitions: list[TypeDefinition]) -> list[TypeDefinition]:
        """The registrations with the ledger leaves recording them (unchanged without a ledger)."""
        if self._tx.ledger is None:
            return definitions
        found = self._tx.positions(connection, [type_record(d.name, d.schema_version) for d in definitions])
        return [replace(d, ledger=found.get(type_record(d.name, d.schema_version))) for d in definitions]
