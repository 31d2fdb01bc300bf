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
|           |                                        | propagation wrote (a cause and a previous health)        |
| request   | requests/<principal>/<request id>      | one lineage_idempotency row                              |
| witnessed | witness/<origin>/<tree size>           | one lineage_witness_history row (a peer's checkpoint)    |
| witness_refusal | witness/<origin>/refusals/<id>   | one lineage_witness_refusals row                         |

A propagation writes one history row per downstream version in a single statement; its one record digests every
column of all of them (propagation_sha256), and the store builds that leaf from what the statement wrote, without
reading the rows back. Health rows split between `health` and `staleness` by their columns (propagation rows are
the only ones with both a cause and a previous health), so each row lands in exactly one record; a row edited
across that line leaves one record without its leaf and makes another, and the audit reports both. History rows
are named under their version through an outer join: a row whose version is gone is named by the version id it
holds, and has no leaf.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from services.common.hashing import canonical_json
from services.common.ledger.leaves import Leaf, RecordSource, TableRecords, column_value, row_sha256
from services.lineage import tables as t

_VERSION_NAME = "ledger_version_name"
_SAFE_INT = 2**53 - 1


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


def witnessed_record(origin: str, tree_size: int) -> str:
    """A peer's checkpoint lineage kept: lineage's own ledger then commits to what it has seen of the peer's."""
    return f"witness/{origin}/{tree_size}"


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
        columns = [str(column.name) for column in table.columns]  # plain str: the fast JSON path
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

# A propagation's rows: every column of lineage_health_history. What varies between the rows one propagation writes
# is PER_ROW; the rest (SHARED: the health it sets, its cause, time, actor, rationale, request id) is its own.
HISTORY_COLUMNS = tuple(str(column.name) for column in t.health_history.columns)
PER_ROW = ("version_id", "revision", "from_health")
SHARED = tuple(name for name in HISTORY_COLUMNS if name not in PER_ROW)
_AT = {name: i for i, name in enumerate(HISTORY_COLUMNS)}
_PER_ROW_OF = itemgetter(*(_AT[name] for name in PER_ROW))
_SHARED_OF = itemgetter(*(_AT[name] for name in SHARED))
_CHUNK = 4096

# A row as propagation_sha256 takes it: its PER_ROW values, or (a row unlike the first) all its columns.
Entry = Sequence[Any] | Mapping[str, Any]


def propagation_sha256(shared: Mapping[str, Any], entries: Iterable[Entry]) -> str:
    """The digest of every column of every row one propagation wrote.

    It is the sha256 of the RFC 8785 canonical JSON of {"rows": [entry, ...], "shared": {column: value}}: `shared`
    holds the SHARED columns of the first row, and each row, in (version_id, revision) order, is the array of its
    PER_ROW values when its other columns equal `shared` (values and types), else the object of all its columns
    (a row only tampering makes). The document determines every row exactly, so any change to any row changes it.
    Values go through leaves.column_value as in row_sha256. A propagation can write 100,000 rows, so the document
    is hashed as it is built, a few C-level operations per row: integers in JSON's exact range print as RFC 8785
    prints them (digits) and each distinct string is encoded once, by canonical_json;
    tests/lineage/test_ledger_records.py checks the result against canonical_json of the document built plainly.
    """
    strings: dict[str, bytes] = {}
    digest = hashlib.sha256(b'{"rows":[')
    chunk: list[bytes] = []
    separator = b""
    for entry in entries:
        if isinstance(entry, Mapping):
            chunk.append(canonical_json({name: column_value(value) for name, value in entry.items()}))
        else:
            version_id, revision, from_health = entry
            if (
                type(version_id) is int
                and type(revision) is int
                and type(from_health) is str
                and -_SAFE_INT <= version_id <= _SAFE_INT
                and -_SAFE_INT <= revision <= _SAFE_INT
            ):
                text = strings.get(from_health)
                if text is None:
                    text = strings[from_health] = canonical_json(from_health)
                chunk.append(b"[%d,%d,%s]" % (version_id, revision, text))
            else:
                chunk.append(canonical_json([column_value(value) for value in entry]))
        if len(chunk) == _CHUNK:
            digest.update(separator + b",".join(chunk))
            chunk, separator = [], b","
    if chunk:
        digest.update(separator + b",".join(chunk))
    digest.update(b'],"shared":' + canonical_json({name: column_value(v) for name, v in shared.items()}) + b"}")
    return digest.hexdigest()


STALENESS_KIND = "staleness"


def staleness_leaf(cause_id: int, cause_name: str | None, shared: Mapping[str, Any], entries: Iterable[Entry]) -> Leaf:
    """The leaf of one propagation: `shared` and `entries` as propagation_sha256 takes them."""
    if set(shared) != set(SHARED):
        raise ValueError(f"a propagation's shared columns are {SHARED}, not {tuple(shared)}")
    return Leaf(
        kind=STALENESS_KIND,
        name=staleness_record(_version_label(cause_name, cause_id)),
        time_us=int(shared["at_us"]),
        digests={"row_sha256": propagation_sha256(shared, entries)},
        principal=str(shared["actor_id"]),
        request_id=str(shared["request_id"]),
    )


def _entries(rows: Iterable[Sequence[Any]], first: Sequence[Any]) -> Iterator[Entry]:
    """Rows of one propagation as read (HISTORY_COLUMNS first), as entries against the first row's SHARED."""
    shared = _SHARED_OF(first)
    types = tuple(map(type, shared))
    for row in rows:
        part = _SHARED_OF(row)
        if part == shared and tuple(map(type, part)) == types:
            yield _PER_ROW_OF(row)
        else:
            yield dict(zip(HISTORY_COLUMNS, row[: len(HISTORY_COLUMNS)], strict=True))


@dataclass(frozen=True)
class StalenessRecords:
    """One record per staleness propagation: every health history row it wrote, keyed by its cause (the id of the
    version whose creation propagated). The store builds the leaf from what its INSERT wrote (the values it set
    for every row, and the PER_ROW values the INSERT returns), so it never reads the rows back; this source
    derives the same leaf from the table."""

    kind: str = STALENESS_KIND

    def leaves(self, connection: sa.Connection, keys: Sequence[tuple[Any, ...]] | None = None) -> Iterator[Leaf]:
        history = t.health_history
        cause = sa.alias(t.versions, "cause")
        query = (
            sa.select(*history.columns, cause.c.name)
            .outerjoin(cause, cause.c.id == history.c.cause_id)
            .where(_PROPAGATED)
            .order_by(history.c.cause_id, history.c.version_id, history.c.revision)
        )
        if keys is not None:
            if not keys:
                return
            query = query.where(history.c.cause_id.in_([key[0] for key in keys]))
        rows = connection.execute(query)
        for cause_id, group in itertools.groupby(rows, key=itemgetter(_AT["cause_id"])):
            first = next(group)
            shared = dict(zip(SHARED, _SHARED_OF(first), strict=True))
            entries = _entries(itertools.chain([first], group), first)  # noqa: B031 (consumed right here)
            yield staleness_leaf(cause_id, first[len(HISTORY_COLUMNS)], shared, entries)


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
    added_columns=("requested_by_id", "requested_by_kind"),
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

WITNESSED = TableRecords(
    kind="witnessed",
    table=t.witness_history,
    name=lambda row: witnessed_record(row["origin"], row["tree_size"]),
    time_column="witnessed_at_us",
    principal_column="presented_by",
    request_id_column="request_id",
    digest_columns=("root_hash",),
)
WITNESS_REFUSALS = TableRecords(
    kind="witness_refusal",
    table=t.witness_refusals,
    name=lambda row: f"witness/{row['origin']}/refusals/{row['id']}",
    time_column="refused_at_us",
    principal_column="presented_by",
    request_id_column="request_id",
)

# The ledger's record kinds, in the order records written before the ledger existed are adopted.
SOURCES: tuple[RecordSource, ...] = (TYPES, VERSIONS, STATUS, HEALTH, STALENESS, REQUESTS, WITNESSED, WITNESS_REFUSALS)
