"""Wires the runs service for the shared bootstrap: `custody serve runs`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import grpc
from opentelemetry.sdk.trace import TracerProvider
from pydantic import SecretStr
from sqlalchemy import Engine

from custody.runs.v1 import runs_pb2_grpc
from services.common.catalog import SERVICES
from services.common.clients import ServiceClients
from services.common.clock import utc_now
from services.common.config import ServiceSettings
from services.common.content_credentials import CredentialSigner
from services.common.db import create_engine
from services.common.ledger.ledger import Ledger
from services.common.outage_errors import outage_error_with_blob_store
from services.common.pagination import PageTokens
from services.common.server import Service
from services.runs import tables
from services.runs.access import ACCESS
from services.runs.blobs import BlobStore, DatabaseBlobStore, FilesystemBlobStore, S3BlobStore, s3_client
from services.runs.config import RunsSettings
from services.runs.domain.context import RunsConfig
from services.runs.domain.service import Runs
from services.runs.explainer import GatewayExplainer
from services.runs.feasibility import EngineSettings
from services.runs.ledger_records import SOURCES
from services.runs.lineage_candidates import LineageCandidates
from services.runs.lineage_recorder import LineageRecorder
from services.runs.outbox import OutboxDispatcher
from services.runs.servicer import RunsServicer
from services.runs.store import RunsStore
from services.runs.witnessing import CheckpointWitness

SETTINGS = RunsSettings
log = logging.getLogger("custody.runs")


def blob_store(settings: RunsSettings, engine: Engine) -> BlobStore:
    if settings.blob_backend == "database":
        return DatabaseBlobStore(engine, settings.resolved_blob_dir / "tmp", settings.max_attachment_bytes)
    if settings.blob_backend == "s3":
        client = s3_client(
            settings.s3_endpoint_url,
            settings.s3_region,
            _revealed(settings.s3_access_key_id),
            _revealed(settings.s3_secret_access_key),
            settings.s3_addressing_style,
        )
        staging = settings.resolved_blob_dir / "tmp"
        return S3BlobStore(
            client,
            settings.s3_bucket,
            settings.s3_prefix,
            staging,
            settings.max_attachment_bytes,
            part_uploads=settings.s3_part_uploads,
        )
    return FilesystemBlobStore(settings.resolved_blob_dir, settings.max_attachment_bytes)


def _revealed(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def credential_signer(settings: RunsSettings) -> CredentialSigner | None:
    """The content-credentials signer; None (credentials refused per request) when `custody init` made none. A
    signer directory that exists but is unusable (a key readable by others, a broken chain) stops the service."""
    directory = settings.resolved_content_credentials_dir
    if not directory.exists():
        log.warning(
            "no content-credentials signer in %s: attachments that ask for credentials will be refused", directory
        )
        return None
    return CredentialSigner.from_directory(directory)


def _read_if_present(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def _soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """Schedules `callback` on `loop` from any thread."""
    loop.call_soon_threadsafe(callback)


def build(settings: ServiceSettings, tracer_provider: TracerProvider) -> Service:
    assert isinstance(settings, RunsSettings)
    engine = create_engine(settings.resolved_database_url)
    clients = ServiceClients.for_service(settings, tracer_provider)
    ledger = Ledger.configured(engine, tables.ledger, settings, SOURCES)
    store = RunsStore(engine, ledger)
    witness = None if ledger is None else CheckpointWitness(ledger, clients)
    dispatcher = OutboxDispatcher(store, LineageRecorder(clients, witness).deliver, utc_now)
    loop = asyncio.get_running_loop()  # build runs inside the bootstrap's event loop
    runs = Runs(
        store,
        blob_store(settings, engine),
        RunsConfig(
            max_attachment_bytes=settings.max_attachment_bytes,
            engine=EngineSettings(tool_diameter_mm=settings.tool_diameter_mm, cnc_safe=settings.cnc_safe),
        ),
        GatewayExplainer(clients),
        outbox_written=lambda: _soon(loop, dispatcher.wake),
        candidates=LineageCandidates(clients),
        page_tokens=PageTokens.configured(settings.page_token_key, "runs"),
        signer=credential_signer(settings),
        credential_anchors=_read_if_present(settings.resolved_content_credentials_anchors),
    )
    servicer = RunsServicer(runs, ledger)

    def register(server: grpc.aio.Server) -> None:
        runs_pb2_grpc.add_RunsServiceServicer_to_server(servicer, server)

    return Service(
        outage_errors=outage_error_with_blob_store,
        engine=engine,
        full_name=SERVICES["runs"].full_name,
        register=register,
        access=ACCESS,
        on_start=(dispatcher.start, *(() if ledger is None else (ledger.start,))),
        on_stop=(
            dispatcher.stop,
            lambda: asyncio.to_thread(store.close),
            *(() if ledger is None else (ledger.stop,)),
            clients.close,
        ),
    )
