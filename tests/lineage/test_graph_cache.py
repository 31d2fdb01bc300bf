"""The in-memory closure graph is never invalidated, only caught up by watermark: what makes that exact, tried.

Each test breaks one way the cache could go stale: a version written after the cache was read, a version written
by another replica (another store on the same database), a catch-up repeated, a write in another project, and
writers racing a reader. The closure the cache answers must always equal the database's own recursive CTE.
"""

from __future__ import annotations

import itertools
import threading

import pytest
import sqlalchemy as sa

from services.common.clock import utc_now
from services.common.identity import Principal, PrincipalKind
from services.lineage.domain.model import Metadata, Source, TypeDefinition
from services.lineage.domain.names import parse_version_name
from services.lineage.domain.registration import check_registration
from services.lineage.domain.service import Lineage
from services.lineage.store import LineageStore
from tests.lineage.conftest import calling_as

CALLER = Principal("human:cache", PrincipalKind.HUMAN, frozenset({"operator"}))
META = Metadata("cache", "cache", 1.0, Source.HUMAN)


@pytest.fixture(autouse=True)
def node_type(engine: sa.Engine) -> None:
    LineageStore(engine).ensure_types(
        [TypeDefinition("node", "cache", "1", {"type": "object"})], CALLER, utc_now(), check_registration
    )


def replica(engine: sa.Engine) -> Lineage:
    """A lineage domain with its own store, so its own graph cache: what a second process has."""
    return Lineage(LineageStore(engine), {})


def new(lineage: Lineage, entity: str, upstream: list[str] | None = None, project: str = "p") -> str:
    parent = f"projects/{project}/artifacts/node/{entity}"
    return str(calling_as(CALLER, "cache", lineage.create_version, parent, {}, META, upstream or [], "").version.name)


def downstream(lineage: Lineage, name: str) -> set[str]:
    page, _ = lineage.closure(name, True, 0, 1000, "")
    return {node.name for node in page.nodes}


def test_a_version_created_after_the_cache_was_read_is_in_the_next_closure(engine: sa.Engine) -> None:
    lineage = replica(engine)
    a = new(lineage, "a")
    assert downstream(lineage, a) == set()
    b = new(lineage, "b", [a])
    c = new(lineage, "c", [b])
    assert downstream(lineage, a) == {b, c}


def test_a_version_written_by_another_replica_is_in_this_replicas_next_closure(engine: sa.Engine) -> None:
    first, second = replica(engine), replica(engine)
    a = new(first, "a")
    assert downstream(first, a) == set()
    b = new(second, "b", [a])
    assert downstream(first, a) == {b}
    c = new(first, "c", [b])
    assert downstream(second, a) == {b, c}


def test_catching_up_again_reads_nothing_new_and_duplicates_no_edge(engine: sa.Engine) -> None:
    lineage = replica(engine)
    a = new(lineage, "a")
    b = new(lineage, "b", [a])
    cache = lineage.store.graph_cache
    with engine.connect() as connection:
        assert cache.catch_up(connection, "p") == 2
        assert cache.catch_up(connection, "p") == 0
    page, _ = lineage.closure(a, True, 0, 1000, "")
    assert [node.name for node in page.nodes] == [b]
    assert page.total_size == 1


def test_a_write_in_another_project_does_not_move_this_projects_watermark(engine: sa.Engine) -> None:
    lineage = replica(engine)
    a = new(lineage, "a")
    downstream(lineage, a)
    cache = lineage.store.graph_cache
    before = cache.watermark("p")
    new(lineage, "x", project="q")
    with engine.connect() as connection:
        assert cache.catch_up(connection, "p") == 0
    assert cache.watermark("p") == before
    assert cache.watermark("q") == 0  # nothing asked about q yet: its graph is read when first traversed


def test_closures_read_while_two_replicas_write_always_equal_the_database_closure(engine: sa.Engine) -> None:
    writers, reader = [replica(engine), replica(engine)], replica(engine)
    root = new(writers[0], "root")
    names = [root]
    names_lock = threading.Lock()
    counter = itertools.count()
    failures: list[BaseException] = []

    def write(lineage: Lineage) -> None:
        try:
            for _ in range(12):
                with names_lock:
                    upstream = names[-1]
                name = new(lineage, f"n{next(counter)}", [upstream])
                with names_lock:
                    names.append(name)
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    seen = []
    while any(thread.is_alive() for thread in threads):
        seen.append(downstream(reader, root))
    for thread in threads:
        thread.join()
    assert failures == []
    # Every closure seen mid-write was a set the final one contains (the cache never invents or loses a node) ...
    final = downstream(reader, root)
    assert all(snapshot <= final for snapshot in seen)
    # ... and the final one is exactly what the database's recursive CTE finds.
    by_cte = reader.store.closure_ids_by_cte(parse_version_name(root), True)
    root_id, depths = reader.store.closure_depths(parse_version_name(root), True)
    assert set(depths) - {root_id} == by_cte
    assert len(final) == 24
