"""A database created at a service's first revision, with rows written then, upgrades to head and its store still
reads every row, on both backends.

The rows (first_revision_rows.json) were written by each service's store under its first revision and are frozen
here like the migrations themselves: they are inserted into the tables as that revision created them (reflected
from the database, not taken from today's model), so a later revision that breaks old rows, or a store that can no
longer read them, fails this test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from services.ai_gateway.store import CallStore
from services.common import migrations
from services.common.db import create_engine
from services.lineage.domain.names import parse_version_name
from services.lineage.store import LineageStore
from services.runs.store import RunsStore

ROWS: dict[str, dict[str, list[dict[str, Any]]]] = json.loads(
    (Path(__file__).parent / "first_revision_rows.json").read_text()
)


def upgrade_to(engine: sa.Engine, service: str, revision: str) -> None:
    with engine.begin() as connection:
        command.upgrade(migrations._config(service, connection), revision)


def first_revision(service: str) -> str:
    base = ScriptDirectory.from_config(migrations._config(service)).get_base()
    assert base is not None
    return base


def at_first_revision_with_rows(engine: sa.Engine, service: str) -> None:
    """Creates the first revision's schema, inserts the frozen rows (tables in dependency order), upgrades."""
    upgrade_to(engine, service, first_revision(service))
    with engine.begin() as connection:
        for table, rows in ROWS[service].items():
            reflected = sa.Table(table, sa.MetaData(), autoload_with=connection)
            connection.execute(reflected.insert(), rows)
    assert migrations.current_revision(engine, service) == first_revision(service)
    migrations.upgrade(engine, service)
    assert migrations.current_revision(engine, service) == migrations.head_revision(service)


def count_rows(engine: sa.Engine, service: str) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() for table in ROWS[service]
        }


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("service", sorted(ROWS))
def test_the_frozen_rows_cover_every_table_of_the_first_revision(engine: sa.Engine, service: str) -> None:
    upgrade_to(engine, service, first_revision(service))
    tables = set(sa.inspect(engine).get_table_names()) - {f"{service}_alembic_version"}
    assert tables == set(ROWS[service])
    assert all(ROWS[service].values())


@pytest.mark.parametrize("service", sorted(ROWS))
def test_upgrading_from_the_first_revision_keeps_every_row(engine: sa.Engine, service: str) -> None:
    at_first_revision_with_rows(engine, service)
    assert count_rows(engine, service) == {table: len(rows) for table, rows in ROWS[service].items()}


def test_runs_written_at_the_first_revision_read_back_through_the_store(engine: sa.Engine) -> None:
    at_first_revision_with_rows(engine, "runs")
    store = RunsStore(engine)
    (run,) = ROWS["runs"]["runs"]
    stored = store.get_run(run["id"])
    assert stored is not None
    assert stored.artifact_json == run["artifact_json"]
    assert stored.record.run_id == run["id"]
    assert store.explanation_history(run["id"]) == [(1, "NONE")]
    (advisory,) = store.list_advisories(run["id"], None, 10)
    assert advisory.advisory_id == ROWS["runs"]["advisories"][0]["advisory_id"]
    (attachment,) = store.list_attachments(run["id"], "", None, 10)
    assert attachment.attachment_id == ROWS["runs"]["attachments"][0]["id"]
    assert attachment.sha256 == ROWS["runs"]["blobs"][0]["sha256"]
    assert store.known_blobs([attachment.sha256]) == {attachment.sha256}
    assert store.seals(run["id"]) == []  # seals came with a later revision; old runs have none


def test_lineage_versions_written_at_the_first_revision_read_back_through_the_store(engine: sa.Engine) -> None:
    at_first_revision_with_rows(engine, "lineage")
    store = LineageStore(engine)
    upstream_row, downstream_row = ROWS["lineage"]["lineage_versions"]
    downstream = store.get_version(parse_version_name(downstream_row["name"]))
    assert downstream.snapshot_sha256 == downstream_row["snapshot_sha256"]
    assert [str(name) for name in downstream.upstream] == [upstream_row["name"]]
    assert downstream.status.status.name == "DRAFT"
    assert downstream.requested_by is None  # recorded before four eyes named requesters: none, and still readable
    upstream = store.get_version(parse_version_name(upstream_row["name"]))
    assert dict(upstream.data) == json.loads(upstream_row["data_json"])
    assert store.get_type("node") is not None


def test_gateway_calls_written_at_the_first_revision_read_back_through_the_store(engine: sa.Engine) -> None:
    at_first_revision_with_rows(engine, "ai_gateway")
    store = CallStore(engine)
    (call,) = ROWS["ai_gateway"]["ai_calls"]
    found = store.get(call["id"])  # raises RecordCorrupted if the stored digest no longer matches
    assert found is not None and found.record.call_id == call["id"]
    (replay,) = ROWS["ai_gateway"]["ai_call_replays"]
    entry = store.find_replay(replay["caller_id"], replay["idempotency_key"], now_us=call["created_at_us"])
    assert entry is not None and entry.content == replay["content"]
