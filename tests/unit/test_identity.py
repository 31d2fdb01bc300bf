"""Principals, the hashed credentials file, `custody init`, and default-deny access tables."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from services.cli.state import StateLayout, initialize
from services.common.catalog import SERVICE_NAMES
from services.common.errors import PermissionDenied, Unauthenticated
from services.common.identity import (
    AccessTable,
    CredentialEntry,
    Credentials,
    CredentialsError,
    Principal,
    PrincipalKind,
    allow,
    new_token,
    token_digest,
)

REVIEWER = Principal("human:ana", PrincipalKind.HUMAN, frozenset({"reviewer"}))


def _credentials(token: str, principal: Principal = REVIEWER) -> Credentials:
    return Credentials([CredentialEntry(principal, token_digest(token))])


def test_known_token_resolves_to_its_principal() -> None:
    token = new_token()
    assert _credentials(token).authenticate(f"Bearer {token}") == REVIEWER


def test_bearer_scheme_is_case_insensitive() -> None:
    token = new_token()
    assert _credentials(token).authenticate(f"bearer {token}") == REVIEWER


@pytest.mark.parametrize("header", [None, "", "Bearer ", "Token abc", "abc"])
def test_missing_or_malformed_header_is_token_missing(header: str | None) -> None:
    with pytest.raises(Unauthenticated) as raised:
        _credentials(new_token()).authenticate(header)
    assert raised.value.reason == "TOKEN_MISSING"


def test_unknown_token_is_token_invalid() -> None:
    with pytest.raises(Unauthenticated) as raised:
        _credentials(new_token()).authenticate(f"Bearer {new_token()}")
    assert raised.value.reason == "TOKEN_INVALID"


def test_tokens_are_long_and_random() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) >= 40 for t in tokens)


def test_init_writes_hashes_only_to_the_credentials_file(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path)
    initialize(layout)
    text = layout.credentials.read_text()
    tokens = [yaml.safe_load(layout.service_config(s).read_text())["token"] for s in SERVICE_NAMES]
    tokens.append(layout.operator_token.read_text().strip())
    assert all(token not in text for token in tokens)
    loaded = Credentials.load(layout.credentials)
    assert {loaded.authenticate(f"Bearer {t}").id for t in tokens} == {
        *(f"service:{s}" for s in SERVICE_NAMES),
        "human:operator",
    }


def test_each_service_config_holds_only_its_own_token(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path)
    initialize(layout)
    tokens = {s: yaml.safe_load(layout.service_config(s).read_text())["token"] for s in SERVICE_NAMES}
    for service in SERVICE_NAMES:
        text = layout.service_config(service).read_text()
        assert [s for s, t in tokens.items() if t in text] == [service]


def test_secrets_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path)
    initialize(layout)
    for path in (layout.operator_token, layout.credentials, *(layout.service_config(s) for s in SERVICE_NAMES)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_init_keeps_existing_tokens_unless_forced(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path)
    assert initialize(layout) is True
    first = layout.operator_token.read_text()
    assert initialize(layout) is False
    assert layout.operator_token.read_text() == first
    assert initialize(layout, force=True) is True
    assert layout.operator_token.read_text() != first


def test_missing_credentials_file_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="custody init"):
        Credentials.load(tmp_path / "credentials")


def test_malformed_credentials_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text('{"version": 1, "principals": [{"id": "x", "kind": "robot", "token_sha256": "y"}]}')
    with pytest.raises(CredentialsError, match="principal #0"):
        Credentials.load(path)


def test_rpc_missing_from_the_access_table_is_denied() -> None:
    with pytest.raises(PermissionDenied):
        AccessTable("runs", {}).authorize("GetRun", REVIEWER)


def test_human_needs_one_of_the_listed_roles() -> None:
    table = AccessTable("lineage", {"Approve": allow(human_roles={"reviewer"})})
    table.authorize("Approve", REVIEWER)
    with pytest.raises(PermissionDenied):
        table.authorize("Approve", Principal("human:bob", PrincipalKind.HUMAN, frozenset({"operator"})))


def test_services_and_system_are_allowed_only_when_listed() -> None:
    table = AccessTable("runs", {"GetRun": allow(services={"art_studio"})})
    table.authorize("GetRun", Principal.service("art_studio"))
    for outsider in (Principal.service("lineage"), Principal("system:custody", PrincipalKind.SYSTEM)):
        with pytest.raises(PermissionDenied):
            table.authorize("GetRun", outsider)


def test_init_gives_each_stateful_service_its_own_page_token_key(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path)
    initialize(layout)
    keys = {s: yaml.safe_load(layout.service_config(s).read_text()).get("page_token_key") for s in SERVICE_NAMES}
    assert keys["art_studio"] is None  # it lists nothing
    stateful = [keys[s] for s in ("ai_gateway", "runs", "lineage")]
    assert all(len(k) >= 32 for k in stateful) and len(set(stateful)) == 3


def test_init_adds_a_missing_page_token_key_and_keeps_everything_else(tmp_path: Path) -> None:
    """A state directory written before the setting existed: the key is added, tokens are not rotated."""
    layout = StateLayout(tmp_path)
    initialize(layout)
    config = layout.service_config("runs")
    old = "".join(line for line in config.read_text().splitlines(True) if "page_token_key" not in line)
    config.write_text(old)
    kept = {s: layout.service_config(s).read_text() for s in SERVICE_NAMES}
    assert initialize(layout) is False
    assert config.read_text().startswith(old)
    assert yaml.safe_load(config.read_text())["page_token_key"]
    assert {s: layout.service_config(s).read_text() for s in SERVICE_NAMES if s != "runs"} == {
        s: t for s, t in kept.items() if s != "runs"
    }
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def _file_with(tmp_path: Path, **principal: object) -> Path:
    raw = {"id": "human:ana", "kind": "human", "roles": ["reviewer"], "token_sha256": token_digest(new_token())}
    raw.update(principal)
    path = tmp_path / "credentials"
    path.write_text(json.dumps({"version": 1, "principals": [raw]}))
    return path


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"revoked_at": "2026-01-01T00:00:00Z"}, "revoked principal keeps no token_sha256"),
        ({"token_sha256": None}, "not revoked"),
        ({"token_sha256": "ABC"}, "64 lower-case hex"),
        ({"id": "service:runs"}, "not human:<name>"),
        ({"id": "human:"}, "not human:<name>"),
        ({"roles": "reviewer"}, "roles is not a list"),
        ({"created_at": "2026-01-01T00:00:00"}, "no time zone"),
        ({"created_at": "yesterday"}, "principal #0 is malformed"),
    ],
)
def test_an_inconsistent_principal_makes_the_file_malformed(
    tmp_path: Path, change: dict[str, object], problem: str
) -> None:
    with pytest.raises(CredentialsError, match=problem):
        Credentials.load(_file_with(tmp_path, **change))


def test_a_principal_listed_twice_makes_the_file_malformed(tmp_path: Path) -> None:
    path = _file_with(tmp_path)
    document = json.loads(path.read_text())
    document["principals"].append({**document["principals"][0], "token_sha256": token_digest(new_token())})
    path.write_text(json.dumps(document))
    with pytest.raises(CredentialsError, match="repeats human:ana"):
        Credentials.load(path)


def test_a_revoked_principal_is_kept_with_its_history_and_authenticates_nobody(tmp_path: Path) -> None:
    token = new_token()
    entries = [CredentialEntry(REVIEWER, None, revoked_at=datetime(2026, 1, 2, tzinfo=UTC))]
    Credentials(entries).save(tmp_path / "credentials")
    loaded = Credentials.load(tmp_path / "credentials")
    assert loaded.entries == tuple(entries)
    with pytest.raises(Unauthenticated):
        loaded.authenticate(f"Bearer {token}")


def test_saved_timestamps_load_back_unchanged(tmp_path: Path) -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    entries = [CredentialEntry(REVIEWER, token_digest(new_token()), created_at=moment, rotated_at=moment)]
    Credentials(entries).save(tmp_path / "credentials")
    assert Credentials.load(tmp_path / "credentials").entries == tuple(entries)
