"""Wires the ai_gateway service for the shared bootstrap: `custody serve ai_gateway`.

The safety policy and the price table are loaded and validated here, before anything listens: an invalid file
is a configuration error (exit 2) naming the file and the problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from opentelemetry.sdk.trace import TracerProvider

from custody.ai_gateway.v1 import gateway_pb2_grpc
from services.ai_gateway.access import ACCESS
from services.ai_gateway.budget_store import BudgetLedger
from services.ai_gateway.budgets import Budgets
from services.ai_gateway.config import AiGatewaySettings
from services.ai_gateway.domain.config import GatewayConfig, ImageModel, ImageOperation, Operation
from services.ai_gateway.domain.gateway import Gateway
from services.ai_gateway.ledger_records import SOURCES
from services.ai_gateway.policy import PolicyError, load_policy
from services.ai_gateway.pricing import load_price_table
from services.ai_gateway.servicer import AiGatewayServicer
from services.ai_gateway.store import CallStore
from services.ai_gateway.tables import ledger as ledger_table
from services.ai_gateway.transport import TransportConfig, build_providers
from services.common.catalog import SERVICES
from services.common.config import ConfigError, ServiceSettings
from services.common.db import create_engine
from services.common.ledger.ledger import Ledger
from services.common.outage_errors import outage_error
from services.common.pagination import PageTokens
from services.common.server import Service

SETTINGS = AiGatewaySettings
REPLAY_PURGE_INTERVAL_S = 600.0

log = logging.getLogger("custody.ai_gateway")


def build(settings: ServiceSettings, tracer_provider: TracerProvider) -> Service:
    assert isinstance(settings, AiGatewaySettings)
    try:
        policy = load_policy(settings.policy_file)
        prices = load_price_table(settings.price_table_file)
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None
    named = {c for op in settings.operations.values() for c in op.categories}
    named |= {c for op in settings.image_operations.values() for c in op.categories}
    unknown = sorted(named - set(policy.document.categories))
    if unknown:
        raise ConfigError(f"operations name categories the safety policy {settings.policy_file} lacks: {unknown}")
    providers = build_providers(
        TransportConfig(
            openai_base_url=settings.openai_base_url,
            openai_model=settings.openai_model,
            local_model=settings.local_model,
            connect_timeout_s=settings.provider_connect_timeout_s,
            timeout_s=settings.provider_timeout_s,
            max_connections=settings.provider_max_connections,
        )
    )
    defaults = {"local": settings.local_image_model, "openai": settings.openai_image_model}
    for provider in providers:
        if defaults[provider] not in settings.image_models.get(provider, {}):  # type: ignore[call-overload]
            raise ConfigError(f"{provider}'s default image model {defaults[provider]!r} is not in image_models")
    engine = create_engine(settings.resolved_database_url)
    ledger = Ledger.configured(engine, ledger_table, settings, SOURCES)
    store = CallStore(engine, ledger)

    budgets = Budgets(settings.budgets, BudgetLedger(engine))
    gateway = Gateway(
        config=gateway_config(settings),
        policy=policy,
        prices=prices,
        providers=providers,
        store=store,
        budgets=budgets,
        tracer=tracer_provider.get_tracer("custody.ai_gateway"),
        page_tokens=PageTokens.configured(settings.page_token_key, "ai_gateway"),
    )
    servicer = AiGatewayServicer(gateway, ledger)
    purger: list[asyncio.Task[None]] = []

    def register(server: grpc.aio.Server) -> None:
        gateway_pb2_grpc.add_AiGatewayServiceServicer_to_server(servicer, server)

    async def purge_forever() -> None:
        while True:
            try:
                await gateway.purge_replays()
            except Exception:
                log.exception("purging expired replay results failed; retrying later")
            try:
                await budgets.reclaim()  # reservations of calls that never settled (a crashed replica's)
            except Exception:
                log.exception("reclaiming expired budget reservations failed; retrying later")
            await asyncio.sleep(REPLAY_PURGE_INTERVAL_S)

    async def on_start() -> None:
        log.info(
            "safety policy %s, price table %s, providers %s, verbose audit %s",
            policy.version,
            prices.version,
            ", ".join(sorted(providers)),
            "on" if settings.audit_verbose else "off",
            extra={"policy_sha256": policy.sha256, "price_table_sha256": prices.sha256},
        )
        purger.append(asyncio.create_task(purge_forever()))

    async def on_stop() -> None:
        for task in purger:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await gateway.close()  # every queued audit record (and its leaf) is committed first
        await budgets.close()  # then every queued settlement

    # The ledger starts after the migrations (it adopts calls recorded before it existed) and before the server
    # listens; it stops after the last queued call is recorded, so its last tick sees every leaf.
    return Service(
        outage_errors=outage_error,
        engine=engine,
        full_name=SERVICES["ai_gateway"].full_name,
        register=register,
        access=ACCESS,
        on_start=(on_start,) if ledger is None else (ledger.start, on_start),
        on_stop=(on_stop,) if ledger is None else (on_stop, ledger.stop),
    )


def gateway_config(settings: AiGatewaySettings) -> GatewayConfig:
    """The domain's configuration, read once from the settings."""
    return GatewayConfig(
        operations={
            name: Operation(
                categories=tuple(op.categories),
                provider=op.provider,
                model=op.model,
                temperature=op.temperature,
                max_tokens=op.max_tokens,
                fallback_providers=tuple(op.fallback_providers),
            )
            for name, op in settings.operations.items()
        },
        image_operations={
            name: ImageOperation(tuple(op.categories), op.provider, op.model, op.size)
            for name, op in settings.image_operations.items()
        },
        image_models={
            provider: {name: ImageModel(tuple(m.sizes), m.max_count) for name, m in models.items()}
            for provider, models in settings.image_models.items()
        },
        openai_image_model=settings.openai_image_model,
        local_image_model=settings.local_image_model,
        default_provider=settings.default_provider,
        openai_model=settings.openai_model,
        local_model=settings.local_model,
        provider_timeout_s=settings.provider_timeout_s,
        max_attempts=settings.max_attempts,
        backoff_initial_s=settings.backoff_initial_s,
        backoff_max_s=settings.backoff_max_s,
        max_retry_wait_s=settings.max_retry_wait_s,
        call_deadline_s=settings.call_deadline_s,
        max_tokens_limit=settings.max_tokens_limit,
        max_schema_bytes=settings.max_schema_bytes,
        audit_verbose=settings.audit_verbose,
        replay_retention_s=settings.replay_retention_s,
    )
