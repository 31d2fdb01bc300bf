"""The one set of retry rules GenerateText and StreamText share (services/ai_gateway/domain/attempts.py), where
the two used to differ: no attempt once the deadline has passed, and a deadline passing between providers
names the provider last tried, never an untried fallback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from custody.ai_gateway.v1 import gateway_pb2
from services.ai_gateway.budget_store import BudgetLedger
from services.ai_gateway.budgets import Budgets
from services.ai_gateway.config import DEFAULT_POLICY_FILE, DEFAULT_PRICE_TABLE_FILE
from services.ai_gateway.domain.config import GatewayConfig, Operation
from services.ai_gateway.domain.gateway import Gateway
from services.ai_gateway.domain.model import ListFilters, TextRequest
from services.ai_gateway.policy import load_policy
from services.ai_gateway.pricing import load_price_table
from services.ai_gateway.store import CallStore
from services.ai_gateway.transport.base import ProviderRequest, ProviderResponse, StreamEvent
from services.ai_gateway.transport.local import LocalProvider
from services.cli.state import StateLayout
from services.common import call_context, migrations
from services.common.db import create_engine
from services.common.errors import DeadlineExceeded
from services.common.identity import Principal
from tests.ai_gateway.conftest import GatewayFactory, as_operator, generate, rpc_error, stream, stub
from tests.ai_gateway.fake_openai import FakeOpenAI, Reply
from tests.support.harness import ServiceHarness


class CountingProvider(LocalProvider):
    """The local provider, counting the attempts that reach it."""

    def __init__(self) -> None:
        super().__init__("custody-local-1")
        self.calls = 0

    async def complete(self, request: ProviderRequest, timeout_s: float) -> ProviderResponse:
        self.calls += 1
        return await super().complete(request, timeout_s)

    async def stream(self, request: ProviderRequest, timeout_s: float) -> AsyncIterator[StreamEvent]:
        self.calls += 1
        async for event in super().stream(request, timeout_s):
            yield event


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine(f"sqlite:///{tmp_path}/gateway.db")
    migrations.upgrade(engine, "ai_gateway")
    yield engine
    engine.dispose()


def domain_gateway(engine: sa.Engine, provider: CountingProvider) -> Gateway:
    return Gateway(
        config=GatewayConfig(operations={"general_text": Operation(categories=("GENERAL",))}),
        policy=load_policy(DEFAULT_POLICY_FILE),
        prices=load_price_table(DEFAULT_PRICE_TABLE_FILE),
        providers={"local": provider},
        store=CallStore(engine),
        budgets=Budgets({}, BudgetLedger(engine)),
    )


async def _call(gateway: Gateway, rpc: str, time_remaining: float) -> None:
    # Within the margin kept to record the call: the call's own deadline has already passed.
    call_context.bind(request_id="req-1", principal=Principal.service("runs"), time_remaining=time_remaining)
    request = TextRequest(operation="general_text", prompt="hello")
    if rpc == "generate":
        await gateway.generate(request)
    else:
        async for _ in gateway.stream(request):
            pass


@pytest.mark.parametrize("rpc", ["generate", "stream"])
def test_no_attempt_starts_once_the_deadline_has_passed(engine: sa.Engine, rpc: str) -> None:
    provider = CountingProvider()
    gateway = domain_gateway(engine, provider)
    with pytest.raises(DeadlineExceeded) as raised:
        asyncio.run(_call(gateway, rpc, time_remaining=0.01))
    assert (raised.value.reason, raised.value.metadata["attempts"]) == ("DEADLINE_EXCEEDED", "0")
    assert provider.calls == 0
    (stored,) = CallStore(engine).list(ListFilters(), 10, None)
    assert (stored.record.envelope.attempts, stored.record.error_reason) == (0, "DEADLINE_EXCEEDED")


@pytest.mark.parametrize("rpc", [generate, stream], ids=["generate", "stream"])
def test_a_deadline_passing_between_providers_names_the_provider_last_tried(
    start_gateway: GatewayFactory, fake: FakeOpenAI, layout: StateLayout, rpc
) -> None:
    # prompt_to_svg_spec falls back to local; openai's one attempt hangs past the caller's deadline.
    gateway = start_gateway(fake, max_attempts=1, provider_timeout_s=5)
    fake.default = Reply(kind="hang", delay_s=3)
    error = rpc_error(lambda: rpc(gateway, layout, timeout=1, operation="prompt_to_svg_spec", prompt="12 petals"))
    assert error.code is grpc.StatusCode.DEADLINE_EXCEEDED
    calls = _wait_for_calls(gateway, layout)
    (call,) = calls
    assert (call.envelope.provider, call.envelope.attempts, call.error_reason) == ("openai", 1, "DEADLINE_EXCEEDED")
    assert call.envelope.model != "custody-local-1"


def _wait_for_calls(gateway: ServiceHarness, layout: StateLayout) -> list[gateway_pb2.Call]:
    """The record is stored as the call fails, which may be just after the client gave up waiting."""
    until = time.monotonic() + 10
    while True:
        listed = stub(gateway).ListCalls(gateway_pb2.ListCallsRequest(), metadata=as_operator(layout), timeout=5)
        if listed.calls or time.monotonic() > until:
            return list(listed.calls)
        time.sleep(0.05)
