"""What every use case shares: the service's dependencies, its configuration, and the stamp each new record
carries (the caller from the call context, the request and trace ids)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from services.common import call_context
from services.common.content_credentials import CredentialSigner
from services.common.identity import Principal
from services.common.pagination import PageTokens
from services.common.telemetry import current_trace_id
from services.runs import feasibility
from services.runs.blobs import BlobStore
from services.runs.domain.ports import Candidates, Explainer
from services.runs.model import Stamp
from services.runs.store import RunsStore


@dataclass(frozen=True)
class RunsConfig:
    max_attachment_bytes: int = 64 * 1024 * 1024
    engine: feasibility.EngineSettings = field(default_factory=feasibility.EngineSettings)
    # A PENDING explanation older than this is presumed abandoned (its process died) and may be claimed again.
    explanation_lease_s: float = 300.0


@dataclass(frozen=True)
class Context:
    store: RunsStore
    blobs: BlobStore
    config: RunsConfig
    explainer: Explainer | None
    candidates: Candidates | None
    clock: Callable[[], datetime]
    # Called (from a worker thread) after a mint wrote an outbox message, so delivery starts at once.
    outbox_written: Callable[[], None]
    page_tokens: PageTokens
    # Signs content credentials into generated images (None: this service has no signing certificate).
    signer: CredentialSigner | None = None
    # What VerifyRun trusts credentialed assets against (the deployment's C2PA trust anchors, PEM).
    credential_anchors: bytes | None = None

    def stamp(self) -> Stamp:
        caller = call_context.require_principal()
        return Stamp(
            created_at=self.clock(),
            # Records name the principal by id and kind; roles are a property of the credentials, not the record.
            created_by=Principal(caller.id, caller.kind),
            request_id=call_context.request_id() or "",
            trace_id=current_trace_id(),
        )
