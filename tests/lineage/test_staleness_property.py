"""Properties on random version DAGs, with the real domain and store on SQLite and PostgreSQL (each example in a
fresh project of one database):
- after every new version, the stale set equals what a reference BFS finds: every version transitively downstream
  of a version that is no longer its entity's latest (propagation is the recursive CTE);
- GetDownstream/GetUpstream closures (in-memory adjacency, caught up incrementally) equal the reference BFS and the
  recursive CTE, with shortest depths."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common import migrations
from services.common.clock import utc_now
from services.common.db import create_engine
from services.common.identity import Principal, PrincipalKind
from services.lineage.domain.model import Health, Metadata, Source, TypeDefinition
from services.lineage.domain.names import parse_version_name
from services.lineage.domain.registration import check_registration
from services.lineage.domain.service import Lineage
from services.lineage.store import LineageStore
from tests.lineage.conftest import calling_as

CALLER = Principal("human:prop", PrincipalKind.HUMAN, frozenset({"operator"}))
META = Metadata("prop", "prop", 1.0, Source.AI)
ENTITIES = 6
_projects = itertools.count()


@pytest.fixture
def lineage(database_url: str) -> Iterator[Lineage]:
    engine = create_engine(database_url)
    migrations.upgrade(engine, "lineage")
    store = LineageStore(engine)
    store.ensure_types([TypeDefinition("node", "prop", "1", {"type": "object"})], CALLER, utc_now(), check_registration)
    yield Lineage(store, {})
    engine.dispose()


# A step: (entity to create a new version of, indexes into the existing versions to reference).
steps = st.lists(
    st.tuples(st.integers(0, ENTITIES - 1), st.lists(st.integers(0, 10_000), max_size=3)), min_size=1, max_size=14
)


def reference_descendants(start, children: dict) -> dict:
    """Shortest depth of every node reachable from `start` along `children`."""
    depths = {start: 0}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in children.get(node, ()):
            if child not in depths:
                depths[child] = depths[node] + 1
                queue.append(child)
    del depths[start]
    return depths


def closure(lineage: Lineage, name: str, downstream: bool) -> dict:
    found, token = {}, ""
    while True:
        page, token = lineage.closure(name, downstream, 0, 3, token)
        for node in page.nodes:
            parsed = parse_version_name(node.name)
            found[(int(parsed.entity[1:]), parsed.number)] = node.depth
        if not token:
            return found


def reference_stale(versions: list[tuple[int, int]], refs: dict[tuple[int, int], list[tuple[int, int]]]) -> set:
    """BFS over "derived from" edges, from every version that is not its entity's latest."""
    latest = {}
    for entity, number in versions:
        latest[entity] = max(latest.get(entity, 0), number)
    children: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for child, parents in refs.items():
        for parent in parents:
            children.setdefault(parent, []).append(child)
    queue = deque(v for v in versions if v[1] != latest[v[0]])
    stale: set = set()
    while queue:
        for child in children.get(queue.popleft(), ()):
            if child not in stale:
                stale.add(child)
                queue.append(child)
    return stale


def grow(lineage: Lineage, plan: list, after_each: object = None) -> tuple[str, list, dict]:
    """Creates the versions a drawn plan describes; returns (project, versions in order, refs of each)."""
    project = f"p{next(_projects)}"
    versions: list[tuple[int, int]] = []
    refs: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for entity, picks in plan:
        candidates = [v for v in versions if v[0] != entity]
        chosen = list(dict.fromkeys(candidates[p % len(candidates)] for p in picks)) if candidates else []
        upstream = [f"projects/{project}/artifacts/node/e{e}/versions/{n}" for e, n in chosen]
        parent = f"projects/{project}/artifacts/node/e{entity}"
        created = calling_as(CALLER, "prop", lineage.create_version, parent, {}, META, upstream, "")
        key = (entity, created.version.name.number)
        versions.append(key)
        refs[key] = chosen
        if callable(after_each):
            after_each(project, versions, refs)
    return project, versions, refs


def name_of(project: str, key: tuple[int, int]) -> str:
    return f"projects/{project}/artifacts/node/e{key[0]}/versions/{key[1]}"


PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(steps)
def test_stale_set_equals_reference_bfs_after_every_new_version(lineage: Lineage, plan: list) -> None:
    def check(project: str, versions: list, refs: dict) -> None:
        stale, token = set(), ""
        while True:
            page, token = lineage.list_stale(f"projects/{project}", 1000, token)
            assert all(v.health.health is Health.STALE for v in page)
            stale |= {(int(v.name.entity[1:]), v.name.number) for v in page}
            if not token:
                break
        assert stale == reference_stale(versions, refs)

    grow(lineage, plan, check)


@PROPERTY
@given(steps)
def test_closures_equal_reference_bfs_and_the_recursive_cte(lineage: Lineage, plan: list) -> None:
    def check_first(project: str, versions: list, refs: dict) -> None:
        # Queried between creates, so the in-memory adjacency is caught up incrementally.
        assert closure(lineage, name_of(project, versions[0]), True) == reference_descendants(
            versions[0], _children(refs)
        )

    project, versions, refs = grow(lineage, plan, check_first)
    parents = {child: list(ups) for child, ups in refs.items()}
    for key in versions:
        down = closure(lineage, name_of(project, key), True)
        assert down == reference_descendants(key, _children(refs))
        assert closure(lineage, name_of(project, key), False) == reference_descendants(key, parents)
        by_cte = lineage.store.closure_ids_by_cte(parse_version_name(name_of(project, key)), True)
        assert len(by_cte) == len(down)


def _children(refs: dict) -> dict:
    children: dict = {}
    for child, parents in refs.items():
        for parent in parents:
            children.setdefault(parent, []).append(child)
    return children
