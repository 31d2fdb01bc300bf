"""What lineage records in its ledger: every row of every immutable table belongs to exactly one record, and each
record is one leaf, derived from its rows by the same code when the store writes it and when the audit checks it.

| kind      | record name                            | rows                                                     |
| --------- | -------------------------------------- | -------------------------------------------------------- |
| type      | types/<artifact type>@<schema version> | one lineage_types row                                    |
| version   | <version name>                         | one lineage_versions row and its lineage_edges (parts)   |
| status    | <version name>/status/<revision>       | one lineage_status_history row (created, approved, ...)  |
| health    | <version name>/health/<revision>       | one lineage_health_history row written alone: the health |
|           |                                        | a version is born with, a reviewer's assessment          |
| staleness | <cause version name>/staleness         | every lineage_health_history row one staleness           |
|           |                                        | propagation wrote (its cause, with a from_health)         |
| request   | requests/<principal>/<request id>      | one lineage_idempotency row                              |

A propagation writes one history row per downstream version in a single statement; its record digests all of
them in (version_id, revision) order, streamed, so its cost stays one pass over the rows it wrote. Health rows split
between `health` and `staleness` by their columns (propagation rows are the only ones with both a cause and a
previous health), so each row lands in exactly one record; a row edited across that line leaves one record without
its leaf and makes another, and the audit reports both. History rows are named under their version through an
outer join: a row whose version is gone is named by the version id it holds, and has no leaf.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from services.common.hashing import canonical_json
from services.common.ledger.leaves import Leaf, RecordSource, TableRecords, column_value, row_sha256
from services.lineage import tables as t

_VERSION_NAME = "ledger_version_name"


def type_record(artifact_type: str, schema_version: str) -> str:
    return f"types/{artifact_type}@{schema_version}"


def status_record(version: str, revision: int) -> str:
    return f"{version}/status/{revision}"


def health_record(version: str, revision: int) -> str:
    return f"{version}/health/{revision}"


def staleness_record(cause: str) -> str:
    return f"{cause}/staleness"


def request_record(principal_id: str, request_id: str) -> str:
    return f"requests/{principal_id}/{request_id}"


def health_state_record(version: str, revision: int, cause: str) -> str:
    """The record a version's health state belongs to: its own, or the staleness propagation that made it (only a
    propagation gives a state after the first, which always has a previous health, a cause)."""
    return staleness_record(cause) if revision > 1 and cause else health_record(version, revision)


def _edges(
    connection: sa.Connection, versions: Sequence[Mapping[str, Any]]
) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Each version's upstream edges, in position order: part of the version's record."""
    found: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    rows = connection.execute(
        sa.select(t.edges)
        .where(t.edges.c.downstream_id.in_([row["id"] for row in versions]))
        .order_by(t.edges.c.downstream_id, t.edges.c.position)
    ).mappings()
    for row in rows:
        found.setdefault((row["downstream_id"],), []).append(dict(row))
    return found


def streamed_row_sha256(rows: Iterable[Mapping[str, Any]]) -> str:
    """leaves.row_sha256 of rows without holding them all: the canonical JSON of a list is "[" + its elements'
    canonical JSON joined by "," + "]" (RFC 8785 writes no whitespace), so it can be hashed element by element."""
    digest = hashlib.sha256(b"[")
    for index, row in enumerate(rows):
        if index:
            digest.update(b",")
        digest.update(canonical_json({key: column_value(value) for key, value in row.items()}))
    digest.update(b"]")
    return digest.hexdigest()


def _version_label(name: str | None, version_id: Any) -> str:
    """A history row's version as its record name says it: the name, or the bare id when no version has it."""
    return name if name is not None else f"lineage_versions/{version_id}"


@dataclass(frozen=True)
class HistoryRecords:
    """Records that are one row each of a version's status or health history, named under the version."""

    kind: str
    table: sa.Table
    name: Callable[[str, int], str]
    # Which of the table's rows are records of this kind (None: all of them).
    only: sa.ColumnElement[bool] | None = None

    def leaves(self, connection: sa.Connection, keys: Sequence[tuple[Any, ...]] | None = None) -> Iterator[Leaf]:
        table = self.table
        query = (
            sa.select(table, t.versions.c.name.label(_VERSION_NAME))
            .outerjoin(t.versions, t.versions.c.id == table.c.version_id)
            .order_by(table.c.at_us, table.c.version_id, table.c.revision)
        )
        if self.only is not None:
            query = query.where(self.only)
        if keys is not None:
            if not keys:
                return
            query = query.where(sa.tuple_(table.c.version_id, table.c.revision).in_(list(keys)))
        columns = [column.name for column in table.columns]
        for row in connection.execute(query).mappings():
            version = _version_label(row[_VERSION_NAME], row["version_id"])
            yield Leaf(
                kind=self.kind,
                name=self.name(version, int(row["revision"])),
                time_us=int(row["at_us"]),
                digests={"row_sha256": row_sha256([{name: row[name] for name in columns}])},
                principal=str(row["actor_id"]),
                request_id=str(row["request_id"]),
            )


_PROPAGATED = sa.and_(t.health_history.c.cause_id.is_not(None), t.health_history.c.from_health.is_not(None))


@dataclass(frozen=True)
class StalenessRecords:
    """One record per staleness propagation: every health history row it wrote, keyed by its cause (the id of the
    version whose creation propagated)."""

    kind: str = "staleness"
    # Narrows the rows read to the versions this select returns: the writer passes the propagation's own scratch
    # table, so reading back what it wrote walks the history's primary key instead of the whole table.
    within: sa.Select[Any] | None = None

    def narrowed(self, within: sa.Select[Any]) -> StalenessRecords:
        return replace(self, within=within)

    def leaves(self, connection: sa.Connection, keys: Sequence[tuple[Any, ...]] | None = None) -> Iterator[Leaf]:
        history = t.health_history
        cause = sa.alias(t.versions, "cause")
        query = (
            sa.select(history, cause.c.name.label(_VERSION_NAME))
            .outerjoin(cause, cause.c.id == history.c.cause_id)
            .where(_PROPAGATED)
            .order_by(history.c.cause_id, history.c.version_id, history.c.revision)
        )
        if keys is not None:
            if not keys:
                return
            query = query.where(history.c.cause_id.in_([key[0] for key in keys]))
        if self.within is not None:
            query = query.where(history.c.version_id.in_(self.within))
        columns = [column.name for column in history.columns]
        rows = connection.execute(query).mappings()
        for cause_id, group in itertools.groupby(rows, key=lambda row: row["cause_id"]):
            first = next(group)
            digest = streamed_row_sha256(
                {name: row[name] for name in columns} for row in itertools.chain([first], group)
            )
            yield Leaf(
                kind=self.kind,
                name=staleness_record(_version_label(first[_VERSION_NAME], cause_id)),
                time_us=int(first["at_us"]),
                digests={"row_sha256": digest},
                principal=str(first["actor_id"]),
                request_id=str(first["request_id"]),
            )


TYPES = TableRecords(
    kind="type",
    table=t.types,
    name=lambda row: type_record(row["artifact_type"], row["schema_version"]),
    time_column="registered_at_us",
    principal_column="registered_by_id",
    digest_columns=("definition_sha256",),
)
VERSIONS = TableRecords(
    kind="version",
    table=t.versions,
    name=lambda row: str(row["name"]),
    time_column="created_at_us",
    principal_column="created_by_id",
    request_id_column="request_id",
    digest_columns=("data_sha256", "snapshot_sha256"),
    parts=_edges,
)
STATUS = HistoryRecords("status", t.status_history, status_record)
HEALTH = HistoryRecords("health", t.health_history, health_record, only=sa.not_(_PROPAGATED))
STALENESS = StalenessRecords()
REQUESTS = TableRecords(
    kind="request",
    table=t.idempotency,
    name=lambda row: request_record(row["principal_id"], row["request_id"]),
    time_column="created_at_us",
    principal_column="principal_id",
)

# The ledger's record kinds, in the order records written before the ledger existed are adopted.
SOURCES: tuple[RecordSource, ...] = (TYPES, VERSIONS, STATUS, HEALTH, STALENESS, REQUESTS)
