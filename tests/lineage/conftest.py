"""Fixtures for the lineage tests: the service over real gRPC on SQLite and PostgreSQL, callers of each kind."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import grpc
import pytest
import sqlalchemy as sa

from custody.lineage.v1 import lineage_pb2 as pb
from custody.lineage.v1 import lineage_pb2_grpc
from services.cli.state import StateLayout
from services.common import call_context, migrations, status
from services.common.db import create_engine
from services.common.identity import (
    REVIEWER_ROLE,
    CredentialEntry,
    Credentials,
    Principal,
    PrincipalKind,
    new_token,
    token_digest,
    write_private_file,
)
from services.common.ledger import audit as ledger_audit
from services.common.ledger.audit import AuditReport
from services.common.ledger.checkpoint_log import CheckpointLog
from services.common.ledger.ledger import Ledger, LedgerSettings
from services.common.ledger.note import NoteVerifier, generate_note_key
from services.common.ledger.store import LedgerRows
from services.lineage import ledger_audit as lineage_audit
from services.lineage import tables
from services.lineage.ledger_records import SOURCES
from tests.support.harness import ServiceHarness, bearer, operator_token, service_token, state_layout

Metadata = tuple[tuple[str, str], ...]
P = ParamSpec("P")
T = TypeVar("T")


def calling_as(principal: Principal, request_id: str, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Runs a direct call of the lineage domain as an RPC runs it: in a context of its own, holding the caller and
    request id call handling binds (nothing stays bound afterwards, and a test's own threads can call it too)."""
    context = contextvars.copy_context()
    context.run(call_context.bind, request_id=request_id, principal=principal, time_remaining=None)
    return context.run(work, *args, **kwargs)


def add_principal(layout: StateLayout, principal: Principal) -> str:
    """Adds a principal to the credentials file (before the service starts) and returns its token; a principal
    already there gets the new token instead (the file lists each principal once)."""
    token = new_token()
    credentials = Credentials.load(layout.credentials)
    entries = [e for e in credentials.entries if e.principal.id != principal.id]
    entries.append(CredentialEntry(principal, token_digest(token)))
    Credentials(entries).save(layout.credentials)
    return token


@dataclass
class Client:
    """A LineageService stub plus the bearer metadata of each kind of caller."""

    stub: Any
    operator: Metadata
    reviewer: Metadata
    runs: Metadata
    art_studio: Metadata
    human_without_review: Metadata
    system: Metadata
    ai_gateway: Metadata
    harness: ServiceHarness


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """A migrated lineage database for tests that use the store without a server."""
    engine = create_engine(database_url)
    migrations.upgrade(engine, "lineage")
    yield engine
    engine.dispose()


@dataclass(frozen=True)
class LedgerFiles:
    """Where a store-level test's ledger keeps what lives outside the database."""

    key: Path
    checkpoints: Path

    @property
    def verifier_key(self) -> str:
        return self.key.with_suffix(".vkey").read_text(encoding="utf-8").strip()


def make_ledger(engine: sa.Engine, directory: Path, *, every_leaves: int = 1_000_000) -> tuple[Ledger, LedgerFiles]:
    """A ledger over a test database with its own key; it signs only when ticked (or every `every_leaves`)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = LedgerFiles(directory / "lineage.ledger.key", directory / "checkpoints")
    if not files.key.exists():
        private, public = generate_note_key("test/custody/lineage")
        write_private_file(files.key, private + "\n")
        files.key.with_suffix(".vkey").write_text(public + "\n", encoding="utf-8")
    settings = LedgerSettings(files.key, files.checkpoints, every_leaves=every_leaves, every_s=3600)
    return Ledger(engine, LedgerRows(tables.ledger), settings, SOURCES), files


def audit(engine: sa.Engine, files: LedgerFiles) -> AuditReport:
    """What `custody ledger audit lineage` reports about this database."""
    return ledger_audit.audit(
        engine,
        LedgerRows(tables.ledger),
        SOURCES,
        CheckpointLog(files.checkpoints),
        NoteVerifier(files.verifier_key),
        lineage_audit.EXTRA_CHECKS,
    )


@pytest.fixture
def ledger(engine: sa.Engine, tmp_path: Path) -> tuple[Ledger, LedgerFiles]:
    return make_ledger(engine, tmp_path / "ledger")


@pytest.fixture
def layout(tmp_path: Path) -> StateLayout:
    return state_layout(tmp_path / "var")


def start_client(layout: StateLayout, database_url: str, **settings: str) -> Iterator[Client]:
    reviewer = add_principal(layout, Principal("human:rita", PrincipalKind.HUMAN, frozenset({REVIEWER_ROLE})))
    plain = add_principal(layout, Principal("human:pat", PrincipalKind.HUMAN, frozenset({"viewer"})))
    system = add_principal(layout, Principal("system:custody", PrincipalKind.SYSTEM, frozenset({REVIEWER_ROLE})))
    with ServiceHarness("lineage", layout, settings={"database_url": database_url, **settings}) as harness:
        yield Client(
            stub=lineage_pb2_grpc.LineageServiceStub(harness.channel()),
            operator=bearer(operator_token(layout)),
            reviewer=bearer(reviewer),
            runs=bearer(service_token(layout, "runs")),
            art_studio=bearer(service_token(layout, "art_studio")),
            human_without_review=bearer(plain),
            system=bearer(system),
            ai_gateway=bearer(service_token(layout, "ai_gateway")),
            harness=harness,
        )


@pytest.fixture
def client(layout: StateLayout, database_url: str) -> Iterator[Client]:
    yield from start_client(layout, database_url)


def rpc_error(call: Any, request: Any, metadata: Metadata) -> status.DecodedError:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, metadata=metadata, timeout=30)
    return status.decode(raised.value)


def meta(
    intent: str = "test",
    rationale: str = "because",
    confidence: float = 0.9,
    source: int = pb.SOURCE_HUMAN,
    **extra: Any,
) -> pb.VersionMetadata:
    return pb.VersionMetadata(intent=intent, rationale=rationale, confidence=confidence, source=source, **extra)


def create(
    client: Client,
    parent: str,
    data: dict[str, Any],
    upstream: list[str] | None = None,
    metadata: Metadata | None = None,
    **fields: Any,
) -> pb.CreateVersionResponse:
    request = pb.CreateVersionRequest(
        parent=parent, metadata=fields.pop("meta", meta()), upstream=upstream or [], **fields
    )
    request.data.update(data)
    return client.stub.CreateVersion(request, metadata=metadata or client.operator, timeout=30)
