"""Wires the lineage service for the shared bootstrap: `custody serve lineage`.

Policies are loaded and validated while the service is built: an invalid policy file is a configuration error
(exit 2, naming the file and field) before anything listens. At start, after migrations, the policies' types are
registered; a policy that changed a registered schema version without bumping it stops the start (exit 3).
The ledger (services/lineage/ledger_records.py) is appended to by the store and signs checkpoints in the background.
"""

from __future__ import annotations

import asyncio

import grpc
from opentelemetry.sdk.trace import TracerProvider

from custody.lineage.v1 import lineage_pb2_grpc
from services.common.catalog import SERVICES, callers_of
from services.common.config import ConfigError, ServiceSettings
from services.common.db import create_engine
from services.common.errors import CustodyError
from services.common.ledger.ledger import Ledger
from services.common.outage_errors import outage_error
from services.common.pagination import PageTokens
from services.common.server import Service, StartupError
from services.lineage import tables
from services.lineage.access import ACCESS
from services.lineage.config import LineageSettings
from services.lineage.domain.policy import PolicyError, load_policies
from services.lineage.domain.service import Lineage
from services.lineage.domain.witness import PeerKeys, Witnessing
from services.lineage.ledger_records import SOURCES
from services.lineage.servicer import LineageServicer
from services.lineage.store import LineageStore

SETTINGS = LineageSettings


def build(settings: ServiceSettings, tracer_provider: TracerProvider) -> Service:
    assert isinstance(settings, LineageSettings)
    try:
        policies = load_policies(settings.policies_dir)
    except PolicyError as exc:
        raise ConfigError(f"CUSTODY_LINEAGE_POLICIES_DIR: {exc}") from None
    engine = create_engine(settings.resolved_database_url)
    ledger = Ledger.configured(engine, tables.ledger, settings, SOURCES)
    lineage = Lineage(
        LineageStore(engine, ledger), policies, page_tokens=PageTokens.configured(settings.page_token_key, "lineage")
    )
    peers = PeerKeys(settings.resolved_ledger_peer_keys_dir, [s for s in callers_of("lineage") if SERVICES[s].stateful])
    servicer = LineageServicer(lineage, Witnessing(lineage.store.witnesses, peers), ledger)

    def register(server: grpc.aio.Server) -> None:
        lineage_pb2_grpc.add_LineageServiceServicer_to_server(servicer, server)

    async def install_policies() -> None:
        try:
            await asyncio.to_thread(lineage.install_policies)
        except CustodyError as exc:
            raise StartupError(f"policies in {settings.policies_dir} conflict with registered types: {exc}") from None

    return Service(
        outage_errors=outage_error,
        engine=engine,
        full_name=SERVICES["lineage"].full_name,
        register=register,
        access=ACCESS,
        # The ledger starts first: it adopts records written before it existed only while it is still empty.
        on_start=(install_policies,) if ledger is None else (ledger.start, install_policies),
        on_stop=() if ledger is None else (ledger.stop,),
    )
