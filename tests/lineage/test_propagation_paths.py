"""PostgreSQL's closure-array staleness propagation writes exactly what the reference recursive CTE writes: the same
plan of versions on random DAGs, once through each path (two stores on one database, a project each), leaves the
same health rows and the same history rows, version by version."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given

from services.common import migrations
from services.common.clock import utc_now
from services.common.db import create_engine
from services.lineage import tables as t
from services.lineage.domain.model import TypeDefinition
from services.lineage.domain.registration import check_registration
from services.lineage.domain.service import Lineage
from services.lineage.store import LineageStore
from services.lineage.store.propagation import Propagation
from tests.lineage.test_staleness_property import CALLER, PROPERTY, grow, steps


@pytest.fixture
def paths(postgres_url: str) -> Iterator[tuple[sa.Engine, dict[Propagation, Lineage]]]:
    engine = create_engine(postgres_url)
    migrations.upgrade(engine, "lineage")
    stores = {how: LineageStore(engine, propagation=how) for how in Propagation}
    node = TypeDefinition("node", "prop", "1", {"type": "object"})
    stores[Propagation.REFERENCE].ensure_types([node], CALLER, utc_now(), check_registration)
    yield engine, {how: Lineage(store, {}) for how, store in stores.items()}
    engine.dispose()


def written(engine: sa.Engine, project: str) -> dict[tuple[str, str, int], Any]:
    """Every health row and history row of a project, keyed by (entity, column set, version number), causes by
    the name of the version that caused them (ids differ between the two projects)."""
    names = sa.select(t.versions.c.id, t.versions.c.entity, t.versions.c.number).where(t.versions.c.project == project)
    with engine.connect() as connection:
        by_id = {row.id: (row.entity, row.number) for row in connection.execute(names)}
        found: dict[tuple[str, str, int], Any] = {}
        for table, extra in ((t.health, ("revision",)), (t.health_history, ("revision", "from_health"))):
            rows = connection.execute(sa.select(table).where(table.c.version_id.in_(list(by_id))))
            for row in rows:
                entity, number = by_id[row.version_id]
                cause = by_id.get(row.cause_id) if row.cause_id is not None else None
                key = (entity, f"{table.name}:{row.revision}", number)
                found[key] = (row.health, cause, *(getattr(row, c) for c in extra))
    return found


@PROPERTY
@given(steps)
def test_the_closure_array_path_writes_what_the_reference_path_writes(
    paths: tuple[sa.Engine, dict[Propagation, Lineage]], plan: list
) -> None:
    engine, lineages = paths
    projects = {how: grow(lineage, plan)[0] for how, lineage in lineages.items()}
    reference = written(engine, projects[Propagation.REFERENCE])
    assert written(engine, projects[Propagation.CLOSURE_ARRAY]) == reference


def test_both_paths_mark_a_version_derived_from_a_superseded_one(
    paths: tuple[sa.Engine, dict[Propagation, Lineage]],
) -> None:
    engine, lineages = paths
    plan = [(0, []), (1, [0]), (2, [1]), (0, [])]  # e1 and e2 derive from e0 v1, which e0 v2 supersedes
    projects = {how: grow(lineage, plan)[0] for how, lineage in lineages.items()}
    for how, project in projects.items():
        stale = {
            key[0]
            for key, row in written(engine, project).items()
            if key[1].startswith("lineage_health:") and row[0] == "stale"
        }
        assert stale == {"e1", "e2"}, how
    assert written(engine, projects[Propagation.CLOSURE_ARRAY]) == written(engine, projects[Propagation.REFERENCE])
