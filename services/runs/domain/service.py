"""The runs facade: one method per use case, each handing the shared Context to the module that implements it.
Every record is stamped with its caller.

Blocking work (database, files) is synchronous; the servicer runs it off the event loop. The paths that must
overlap waiting with work are async and run on the loop themselves: create_run (awaits its group commit), upload
(receives chunks while threads hash and store them), and the two that wait on another service (bind_candidate,
suggest_explanation)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime

from services.common.clock import utc_now
from services.common.content_credentials import CredentialSigner
from services.common.pagination import PageTokens
from services.runs.blobs import BlobStore
from services.runs.domain import (
    advisories,
    attachment_reads,
    attachments,
    binding,
    diff,
    explanations,
    minting,
    reading,
    reviews,
    verification,
    withdrawals,
)
from services.runs.domain.attachment_reads import AttachmentContent
from services.runs.domain.attachments import AttachmentRequest
from services.runs.domain.binding import BindRequest, BindResult
from services.runs.domain.context import Context, RunsConfig
from services.runs.domain.diff import Difference
from services.runs.domain.pages import Page
from services.runs.domain.ports import Candidates, Explainer
from services.runs.domain.verification import Verification
from services.runs.domain.withdrawals import WithdrawResult
from services.runs.model import (
    AdvisoryKind,
    AdvisoryLink,
    AttachmentRecord,
    Explanation,
    ReviewStatus,
    RunContent,
    RunRecord,
)
from services.runs.store import RunFilters, RunsStore


class Runs:
    def __init__(
        self,
        store: RunsStore,
        blobs: BlobStore,
        config: RunsConfig,
        explainer: Explainer | None,
        clock: Callable[[], datetime] = utc_now,
        outbox_written: Callable[[], None] = lambda: None,
        candidates: Candidates | None = None,
        page_tokens: PageTokens | None = None,
        signer: CredentialSigner | None = None,
        credential_anchors: bytes | None = None,
    ) -> None:
        self.context = Context(
            store=store,
            blobs=blobs,
            config=config,
            explainer=explainer,
            candidates=candidates,
            clock=clock,
            outbox_written=outbox_written,
            page_tokens=page_tokens or PageTokens.ephemeral(),
            signer=signer,
            credential_anchors=credential_anchors,
        )

    # ---- runs ---------------------------------------------------------------------------------------------------

    async def create_run(
        self,
        content: RunContent,
        idempotency_key: str,
        advisories: Sequence[AdvisoryLink] = (),
        explanation: Explanation | None = None,
        legacy_migration: bool = False,
    ) -> RunRecord:
        return await minting.create_run(
            self.context, content, idempotency_key, advisories, explanation, legacy_migration
        )

    def get_run(self, name: str) -> RunRecord:
        return reading.get_run(self.context, name)

    def list_runs(self, filters: RunFilters, requested_size: int, token: str) -> Page[RunRecord]:
        return reading.list_runs(self.context, filters, requested_size, token)

    # ---- attachments --------------------------------------------------------------------------------------------

    async def upload(
        self, request: AttachmentRequest, chunks: AsyncIterator[bytes], expected_sha256: str, idempotency_key: str
    ) -> AttachmentRecord:
        return await attachments.upload(self.context, request, chunks, expected_sha256, idempotency_key)

    def batch_create_attachments(
        self, run: str, items: Sequence[tuple[AttachmentRequest, bytes]], idempotency_key: str
    ) -> list[AttachmentRecord]:
        return attachments.batch_create_attachments(self.context, run, items, idempotency_key)

    def find_missing_blobs(self, digests: Sequence[str]) -> list[str]:
        return attachment_reads.find_missing_blobs(self.context, digests)

    def attachment(self, name: str) -> AttachmentRecord:
        return attachment_reads.attachment(self.context, name)

    def read_attachment(self, name: str, signed: bool = False) -> AttachmentContent:
        return attachment_reads.read_attachment(self.context, name, signed)

    def list_attachments(
        self, run: str, kind: str, latest_only: bool, requested_size: int, token: str
    ) -> Page[AttachmentRecord]:
        return attachment_reads.list_attachments(self.context, run, kind, latest_only, requested_size, token)

    # ---- advisories and explanations ----------------------------------------------------------------------------

    def attach_advisory(
        self, run: str, advisory_id: str, kind: AdvisoryKind, engine_id: str, engine_version: str, summary: str
    ) -> RunRecord:
        return advisories.attach_advisory(self.context, run, advisory_id, kind, engine_id, engine_version, summary)

    def list_advisories(self, run: str, requested_size: int, token: str) -> Page[AdvisoryLink]:
        return advisories.list_advisories(self.context, run, requested_size, token)

    async def suggest_explanation(self, name: str) -> RunRecord:
        return await explanations.suggest_explanation(self.context, name)

    def review_explanation(self, name: str, decision: ReviewStatus, rationale: str, expected_version: int) -> RunRecord:
        return reviews.review_explanation(self.context, name, decision, rationale, expected_version)

    # ---- candidate binding, diff and verification ---------------------------------------------------------------

    async def bind_candidate(self, request: BindRequest) -> BindResult:
        return await binding.bind_candidate(self.context, request)

    def diff_runs(self, left: str, right: str, score_threshold: float) -> list[Difference]:
        return diff.diff_runs(self.context, left, right, score_threshold)

    def verify_run(self, name: str) -> Verification:
        return verification.verify_run(self.context, name)

    # ---- legacy migrations --------------------------------------------------------------------------------------

    def withdraw_migration_batch(self, batch: str, reason: str) -> WithdrawResult:
        return withdrawals.withdraw_batch(self.context, batch, reason)
