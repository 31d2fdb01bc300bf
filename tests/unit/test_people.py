"""People in the credentials file (services/cli/people.py): each added, rotated and revoked under a lock, only
hashes on disk, revoked names kept as history and never reused, services and reserved names refused."""

from __future__ import annotations

import json
import multiprocessing
import stat
from pathlib import Path

import pytest

from services.cli.people import (
    BOOTSTRAP_OPERATOR,
    PeopleError,
    add_user,
    list_users,
    revoke_user,
    rotate_user,
)
from services.cli.state import StateLayout, initialize
from services.common.errors import Unauthenticated
from services.common.identity import Credentials, Principal, PrincipalKind


@pytest.fixture
def layout(tmp_path: Path) -> StateLayout:
    layout = StateLayout(tmp_path / "var")
    initialize(layout)
    return layout


def authenticate(layout: StateLayout, token: str) -> Principal:
    return Credentials.load(layout.credentials).authenticate(f"Bearer {token}")


def refused_token(layout: StateLayout, token: str) -> str:
    with pytest.raises(Unauthenticated) as raised:
        authenticate(layout, token)
    return raised.value.reason


def test_an_added_person_authenticates_as_human_name_with_exactly_their_roles(layout: StateLayout) -> None:
    token = add_user(layout, "alice", ["reviewer"])
    assert authenticate(layout, token) == Principal("human:alice", PrincipalKind.HUMAN, frozenset({"reviewer"}))


def test_several_roles_may_be_given(layout: StateLayout) -> None:
    token = add_user(layout, "olga", ["operator", "migrator", "operator"])
    assert authenticate(layout, token).roles == {"operator", "migrator"}


def test_only_the_hash_of_a_token_is_written_and_the_file_stays_private(layout: StateLayout) -> None:
    tokens = [add_user(layout, "alice", ["reviewer"]), rotate_user(layout, "alice")]
    tokens.append(add_user(layout, "bob", ["operator"]))
    text = layout.credentials.read_text()
    assert all(token not in text for token in tokens)
    assert stat.S_IMODE(layout.credentials.stat().st_mode) == 0o600


def test_a_name_may_be_given_as_its_principal(layout: StateLayout) -> None:
    token = add_user(layout, "human:carla", ["reviewer"])
    assert authenticate(layout, token).id == "human:carla"
    rotate_user(layout, "carla")
    revoke_user(layout, "human:carla")
    assert [p.state for p in list_users(layout) if p.name == "carla"] == ["revoked"]


def test_the_list_shows_every_person_with_principal_roles_times_and_state(layout: StateLayout) -> None:
    add_user(layout, "alice", ["reviewer"])
    add_user(layout, "bob", ["operator", "reviewer"])
    rotate_user(layout, "bob")
    revoke_user(layout, "alice")
    people = {p.name: p for p in list_users(layout)}
    assert set(people) == {"operator", "alice", "bob"}  # services are not people
    alice, bob = people["alice"], people["bob"]
    assert (alice.principal, alice.roles, alice.state) == ("human:alice", ("reviewer",), "revoked")
    assert alice.created_at is not None and alice.revoked_at is not None and alice.revoked_at >= alice.created_at
    assert (bob.roles, bob.state, bob.revoked_at) == (("operator", "reviewer"), "active", None)
    assert bob.created_at is not None and bob.rotated_at is not None and bob.rotated_at >= bob.created_at


def test_the_bootstrap_operator_is_marked_as_such_and_nobody_else_is(layout: StateLayout) -> None:
    add_user(layout, "alice", ["operator", "reviewer", "migrator"])
    marked = [p.principal for p in list_users(layout) if p.bootstrap]
    assert marked == [BOOTSTRAP_OPERATOR.id]


def test_a_revoked_token_is_refused_and_the_person_stays_in_the_file_without_a_hash(layout: StateLayout) -> None:
    token = add_user(layout, "alice", ["reviewer"])
    revoke_user(layout, "alice")
    assert refused_token(layout, token) == "TOKEN_INVALID"
    (raw,) = [p for p in json.loads(layout.credentials.read_text())["principals"] if p["id"] == "human:alice"]
    assert raw["token_sha256"] is None and raw["revoked_at"] and raw["roles"] == ["reviewer"]


def test_a_revoked_name_cannot_be_added_again_and_the_refusal_says_why(layout: StateLayout) -> None:
    add_user(layout, "alice", ["reviewer"])
    revoke_user(layout, "alice")
    with pytest.raises(PeopleError, match=r"never reused.*same person"):
        add_user(layout, "alice", ["reviewer"])


def test_a_revoked_person_cannot_be_rotated_back_nor_revoked_twice(layout: StateLayout) -> None:
    add_user(layout, "alice", ["reviewer"])
    revoke_user(layout, "alice")
    with pytest.raises(PeopleError, match="revoked"):
        rotate_user(layout, "alice")
    with pytest.raises(PeopleError, match="already revoked"):
        revoke_user(layout, "alice")


def test_rotation_refuses_the_old_token_and_accepts_the_new_one(layout: StateLayout) -> None:
    old = add_user(layout, "alice", ["reviewer"])
    new = rotate_user(layout, "alice")
    assert new != old
    assert refused_token(layout, old) == "TOKEN_INVALID"
    assert authenticate(layout, new).id == "human:alice"


def test_rotation_keeps_when_the_person_was_created(layout: StateLayout) -> None:
    add_user(layout, "alice", ["reviewer"])
    (before,) = [p for p in list_users(layout) if p.name == "alice"]
    rotate_user(layout, "alice")
    (after,) = [p for p in list_users(layout) if p.name == "alice"]
    assert after.created_at == before.created_at and after.rotated_at is not None


def test_a_person_who_exists_is_not_added_twice(layout: StateLayout) -> None:
    token = add_user(layout, "alice", ["reviewer"])
    with pytest.raises(PeopleError, match=r"already exists.*rotate"):
        add_user(layout, "alice", ["operator"])
    assert authenticate(layout, token).roles == {"reviewer"}


@pytest.mark.parametrize(
    "name", ["Alice", "", "al ice", "al.ice", "../alice", "alice/x", "-alice", "a" * 64, "alice:x", "ålice", "system:x"]
)
def test_a_name_outside_the_grammar_is_refused_and_nothing_is_written(layout: StateLayout, name: str) -> None:
    before = layout.credentials.read_bytes()
    with pytest.raises(PeopleError, match="not a person's name"):
        add_user(layout, name, ["reviewer"])
    assert layout.credentials.read_bytes() == before


def test_the_longest_name_the_grammar_allows_is_accepted(layout: StateLayout) -> None:
    name = "a" * 63
    assert authenticate(layout, add_user(layout, name, ["reviewer"])).id == f"human:{name}"


@pytest.mark.parametrize("name", ["operator", "reviewer", "migrator", "system", "service", "human", "custody", "root"])
def test_reserved_names_are_refused(layout: StateLayout, name: str) -> None:
    with pytest.raises(PeopleError, match="reserved"):
        add_user(layout, name, ["reviewer"])


@pytest.mark.parametrize("name", ["runs", "ai_gateway", "ai-gateway", "art-studio", "lineage", "service:runs"])
def test_services_are_not_people_for_any_operation(layout: StateLayout, name: str) -> None:
    before = layout.credentials.read_bytes()
    for operation in (lambda: add_user(layout, name, ["reviewer"]), lambda: revoke_user(layout, name)):
        with pytest.raises(PeopleError, match="is a Custody service"):
            operation()
    with pytest.raises(PeopleError, match="is a Custody service"):
        rotate_user(layout, name)
    assert layout.credentials.read_bytes() == before


@pytest.mark.parametrize("roles", [[], ["admin"], ["reviewer", "superuser"]])
def test_roles_must_be_known_and_at_least_one(layout: StateLayout, roles: list[str]) -> None:
    before = layout.credentials.read_bytes()
    with pytest.raises(PeopleError, match="role"):
        add_user(layout, "alice", roles)
    assert layout.credentials.read_bytes() == before


def test_rotating_or_revoking_someone_unknown_says_who_exists(layout: StateLayout) -> None:
    for operation in (rotate_user, revoke_user):
        with pytest.raises(PeopleError, match=r"no person named 'zoe'.*custody users list"):
            operation(layout, "zoe")


def test_without_a_credentials_file_every_operation_says_to_run_init(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path / "empty")
    with pytest.raises(PeopleError, match="custody init"):
        add_user(layout, "alice", ["reviewer"])
    with pytest.raises(PeopleError, match="custody init"):
        list_users(layout)
    assert not layout.credentials.exists()


def test_revoking_the_bootstrap_operator_refuses_its_token_and_deletes_operator_token(layout: StateLayout) -> None:
    token = layout.operator_token.read_text().strip()
    person = revoke_user(layout, "operator")
    assert person.bootstrap and person.state == "revoked"
    assert refused_token(layout, token) == "TOKEN_INVALID"
    assert not layout.operator_token.exists()


def test_rotating_the_bootstrap_operator_writes_its_new_token_where_init_put_it(layout: StateLayout) -> None:
    old = layout.operator_token.read_text().strip()
    new = rotate_user(layout, "operator")
    assert layout.operator_token.read_text().strip() == new
    assert stat.S_IMODE(layout.operator_token.stat().st_mode) == 0o600
    assert refused_token(layout, old) == "TOKEN_INVALID"


def test_init_force_rotates_services_and_the_bootstrap_operator_but_keeps_people(layout: StateLayout) -> None:
    alice = add_user(layout, "alice", ["reviewer"])
    add_user(layout, "bob", ["reviewer"])
    revoke_user(layout, "bob")
    operator = layout.operator_token.read_text().strip()
    assert initialize(layout, force=True) is True
    assert authenticate(layout, alice).id == "human:alice"
    assert [p.state for p in list_users(layout) if p.name == "bob"] == ["revoked"]
    assert refused_token(layout, operator) == "TOKEN_INVALID"
    assert authenticate(layout, layout.operator_token.read_text().strip()).id == BOOTSTRAP_OPERATOR.id


def test_init_force_does_not_bring_a_revoked_bootstrap_operator_back(layout: StateLayout) -> None:
    revoke_user(layout, "operator")
    assert initialize(layout, force=True) is True
    assert not layout.operator_token.exists()
    assert [p.state for p in list_users(layout) if p.bootstrap] == ["revoked"]


def test_init_force_refuses_to_overwrite_a_credentials_file_it_cannot_read(layout: StateLayout) -> None:
    layout.credentials.write_text("{not json")
    with pytest.raises(PeopleError, match="not JSON"):
        initialize(layout, force=True)
    assert layout.credentials.read_text() == "{not json"


def test_a_file_written_before_people_existed_still_loads_and_takes_new_people(layout: StateLayout) -> None:
    """Version 1 as `custody init` wrote it before: no timestamps on any principal."""
    document = json.loads(layout.credentials.read_text())
    for raw in document["principals"]:
        raw.pop("created_at")
    layout.credentials.write_text(json.dumps(document))
    operator = layout.operator_token.read_text().strip()
    token = add_user(layout, "alice", ["reviewer"])
    assert authenticate(layout, operator).id == BOOTSTRAP_OPERATOR.id
    assert authenticate(layout, token).id == "human:alice"
    (bootstrap,) = [p for p in list_users(layout) if p.bootstrap]
    assert bootstrap.created_at is None and bootstrap.state == "active"


def _add_many(root: str, worker: int, count: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    layout = StateLayout(Path(root))
    barrier.wait()
    for index in range(count):
        add_user(layout, f"w{worker}-p{index}", ["reviewer"])


def test_concurrent_adds_from_several_processes_lose_no_one(layout: StateLayout) -> None:
    workers, each = 6, 8
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(workers)
    processes = [
        context.Process(target=_add_many, args=(str(layout.root), worker, each, barrier)) for worker in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * workers
    names = {p.name for p in list_users(layout)}
    assert names == {"operator", *(f"w{w}-p{i}" for w in range(workers) for i in range(each))}
