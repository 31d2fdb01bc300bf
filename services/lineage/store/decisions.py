"""Status and health changes: compare-and-set on the mutable row, one history row each, under the project lock.

Whether a change is allowed is the domain's decision: `change_status` runs the guard it is given on the version,
its type and its upstream as this transaction reads them, so the check and the write cannot interleave with a
revision of an upstream. Each change is a ledger record (its history row), appended in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sqlalchemy as sa

from services.common.clock import to_us
from services.common.errors import Aborted
from services.lineage import tables as t
from services.lineage.domain.model import Health, Idempotency, Status, TypeDefinition, UpstreamState, Version
from services.lineage.domain.names import VersionName
from services.lineage.ledger_records import HEALTH, REQUESTS, STATUS
from services.lineage.store import idempotency
from services.lineage.store.reads import find_version, upstream_states, version_id
from services.lineage.store.rows import Decision, decision_columns, not_found
from services.lineage.store.transactions import Transactions
from services.lineage.store.types import find_type

StatusGuard = Callable[[Version, TypeDefinition, Mapping[VersionName, UpstreamState]], None]


class DecisionStore:
    def __init__(self, tx: Transactions) -> None:
        self._tx = tx

    def change_status(
        self, name: VersionName, target: Status, decision: Decision, idem: Idempotency | None, guard: StatusGuard
    ) -> bool:
        """Runs `guard` on the version as it is inside the transaction, then moves its status to `target` by
        compare-and-set and appends history. Returns False when the call was an idempotent replay."""
        with self._tx.write(name.project) as connection:
            version = _guarded(connection, name, idem, guard)
            if version is None:
                return False
            row_id = version_id(connection, name)
            changed = connection.execute(
                t.status.update()
                .where(t.status.c.version_id == row_id, t.status.c.revision == version.status.revision)
                .values(
                    status=target.value,
                    revision=version.status.revision + 1,
                    updated_at_us=to_us(decision.at),
                    **decision_columns(decision),
                )
            ).rowcount
            if changed != 1:
                raise Aborted("STATUS_CHANGED", f"the status of {name} changed concurrently; retry")
            connection.execute(
                t.status_history.insert().values(
                    version_id=row_id,
                    revision=version.status.revision + 1,
                    from_status=version.status.status.value,
                    status=target.value,
                    at_us=to_us(decision.at),
                    **decision_columns(decision),
                )
            )
            requests = idempotency.remember(connection, idem, str(name), decision.at)
            self._tx.record(connection, (STATUS, [(row_id, version.status.revision + 1)]), (REQUESTS, requests))
            return True

    def check_status(self, name: VersionName, idem: Idempotency | None, guard: StatusGuard) -> None:
        """What change_status checks, in its order (request id, existence, `guard`), in a read that writes nothing
        and takes no lock: a preview, which the change itself re-checks atomically."""
        with self._tx.read() as connection:
            _guarded(connection, name, idem, guard)

    def assess_health(
        self, name: VersionName, target: Health, decision: Decision, expected_revision: int, idem: Idempotency | None
    ) -> bool:
        with self._tx.write(name.project) as connection:
            if idempotency.replay(connection, idem) is not None:
                return False
            row_id = version_id(connection, name)
            current = connection.execute(
                sa.select(t.health.c.health, t.health.c.revision).where(t.health.c.version_id == row_id)
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
                .where(t.health.c.version_id == row_id, t.health.c.revision == current.revision)
                .values(
                    health=target.value,
                    revision=current.revision + 1,
                    cause_id=None,
                    updated_at_us=to_us(decision.at),
                    **decision_columns(decision),
                )
            ).rowcount
            if changed != 1:
                raise Aborted("HEALTH_CHANGED", f"the health of {name} changed concurrently; re-read and retry")
            connection.execute(
                t.health_history.insert().values(
                    version_id=row_id,
                    revision=current.revision + 1,
                    from_health=current.health,
                    health=target.value,
                    cause_id=None,
                    at_us=to_us(decision.at),
                    **decision_columns(decision),
                )
            )
            requests = idempotency.remember(connection, idem, str(name), decision.at)
            self._tx.record(connection, (HEALTH, [(row_id, current.revision + 1)]), (REQUESTS, requests))
            return True


def _guarded(
    connection: sa.Connection, name: VersionName, idem: Idempotency | None, guard: StatusGuard
) -> Version | None:
    """The version once `guard` allowed a decision on it; None when the request id replays an earlier call."""
    if idempotency.replay(connection, idem) is not None:
        return None
    version = find_version(connection, name, history=False)
    if version is None:
        raise not_found(name)
    definition = find_type(connection, name.artifact_type, version.metadata.schema_version)
    assert definition is not None  # versions are only created for registered types
    guard(version, definition, upstream_states(connection, version.upstream))
    return version
