"""Budgets and rate limits shared by real gateway replicas: three `custody serve ai_gateway` processes on one
PostgreSQL database, many concurrent GenerateText calls spread round-robin over them (offline `local` provider).
Each replica alone would grant the whole budget; together they grant it once. Replicas settle in the background;
stopping them (SIGTERM) commits every queued settlement, so the ledger is read after they stopped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import pytest

from custody.ai_gateway.v1 import gateway_pb2, gateway_pb2_grpc
from services.ai_gateway.budget_store import BudgetLedger
from services.ai_gateway.domain.model import ListFilters
from services.ai_gateway.store import CallStore
from services.cli.state import StateLayout
from services.common import status
from services.common.db import create_engine
from services.common.identity import OPERATOR_ROLE, Principal, PrincipalKind
from tests.support.harness import add_principal, bearer, state_layout
from tests.support.processes import ServedProcess, serving

pytestmark = pytest.mark.stack

TOKENS_PER_DAY = 1_000  # a call's worst case is ~55 tokens, what the local provider reports ~20
REQUESTS_PER_MINUTE = 12
SPENDER = Principal("human:spender", PrincipalKind.HUMAN, frozenset({OPERATOR_ROLE}))
HASTY = Principal("human:hasty", PrincipalKind.HUMAN, frozenset({OPERATOR_ROLE}))


@dataclass
class Replicas:
    layout: StateLayout
    gateways: list[ServedProcess]
    database_url: str
    tokens: dict[str, str]


@pytest.fixture
def replicas(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("shared_budgets")
    layout = state_layout(root / "var")
    tokens = {p.id: add_principal(layout, p) for p in (SPENDER, HASTY)}
    budgets = json.dumps(
        {SPENDER.id: {"tokens_per_day": TOKENS_PER_DAY}, HASTY.id: {"requests_per_minute": REQUESTS_PER_MINUTE}}
    )
    with ExitStack() as stack:
        starting = [
            serving("ai_gateway", layout.root, root / f"r{i}", budgets=budgets, database_url=postgres_url)
            for i in range(3)
        ]
        for i in range(3):
            (root / f"r{i}").mkdir()
        with ThreadPoolExecutor(3) as pool:  # started together, as replicas are (the migration runs once)
            entered = [pool.submit(replica.__enter__) for replica in starting]
        for replica, future in zip(starting, entered, strict=True):
            if future.exception() is None:
                stack.push(replica.__exit__)
        yield Replicas(layout, [future.result() for future in entered], postgres_url, tokens)


def call_all(replicas: Replicas, caller: Principal, count: int) -> list[gateway_pb2.GenerateTextResponse | str]:
    """`count` concurrent GenerateText calls, the i-th to replica i % 3: each response, or its refusal's reason."""
    channels = [grpc.insecure_channel(g.address) for g in replicas.gateways]
    stubs = [gateway_pb2_grpc.AiGatewayServiceStub(c) for c in channels]
    metadata = bearer(replicas.tokens[caller.id])

    def call(i: int) -> gateway_pb2.GenerateTextResponse | str:
        request = gateway_pb2.GenerateTextRequest(
            operation="general_text", prompt=f"Describe rosette {i} briefly.", max_tokens=50
        )
        try:
            return stubs[i % 3].GenerateText(request, metadata=metadata, timeout=30)
        except grpc.RpcError as error:
            decoded = status.decode(error)
            assert decoded.code == grpc.StatusCode.RESOURCE_EXHAUSTED, decoded
            return decoded.reason

    try:
        with ThreadPoolExecutor(24) as pool:
            return list(pool.map(call, range(count)))
    finally:
        for channel in channels:
            channel.close()


def test_replicas_never_grant_more_tokens_than_the_shared_budget_and_the_ledger_matches_the_audit(
    replicas: Replicas,
) -> None:
    results = call_all(replicas, SPENDER, 150)
    granted = [r for r in results if not isinstance(r, str)]
    refused = [r for r in results if isinstance(r, str)]
    assert refused and set(refused) == {"BUDGET_EXCEEDED"}
    used = sum(r.envelope.usage.total_tokens for r in granted)
    assert used <= TOKENS_PER_DAY
    assert [gateway.stop() for gateway in replicas.gateways] == [0, 0, 0]
    engine = create_engine(replicas.database_url)
    try:
        audited = CallStore(engine).list(ListFilters(caller=SPENDER.id), 1000, None)
        assert len(audited) == len(granted)
        assert sum(a.record.envelope.usage.total_tokens for a in audited if a.record.envelope.usage) == used
        today = datetime.now(UTC).date().isoformat()
        totals = BudgetLedger(engine).day_totals(today)[SPENDER.id]
        assert (totals.spent_tokens, totals.reserved_tokens) == (used, 0)
    finally:
        engine.dispose()


def test_replicas_admit_exactly_the_shared_requests_per_minute(replicas: Replicas) -> None:
    results = call_all(replicas, HASTY, 36)
    refused = [r for r in results if isinstance(r, str)]
    assert len(results) - len(refused) == REQUESTS_PER_MINUTE
    assert set(refused) == {"RATE_LIMITED"}
