"""What the runs service does, independent of gRPC: minting, attachments, advisories, explanations, candidate
binding, diffs and verification. Callers come from the call context; every record is stamped with them.

Blocking work (database, files) is synchronous here; the servicer runs it off the event loop. The two paths that
must overlap waiting with work are async and run on the loop themselves: create_run (awaits its group commit) and
upload (receives chunks while threads hash and store them).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from opentelemetry import propagate

from services.common import call_context
from services.common.errors import (
    CustodyError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from services.common.hashing import canonical_json, is_sha256_hex, sha256_bytes
from services.common.idempotency import ensure_same_request, fingerprint, validate_request_id
from services.common.identity import MIGRATOR_ROLE, SYSTEM, Principal, PrincipalKind
from services.common.ids import new_id
from services.common.pagination import PagedList, PageTokens, page_size
from services.common.telemetry import current_trace_id
from services.rosette import lineage_types
from services.runs import authority, feasibility
from services.runs.blobs import BlobStore, PendingBlob, StreamingUpload
from services.runs.model import (
    ADVISORY_ID,
    ATTACHMENT_PREFIX,
    FILENAME,
    LINEAGE_VERSION_NAME,
    OUTBOX_PREFIX,
    RUN_PREFIX,
    AdvisoryKind,
    AdvisoryLink,
    AttachmentKind,
    AttachmentRecord,
    BoundAttachment,
    Decision,
    Explanation,
    ExplanationStatus,
    Hashes,
    OutboxMessage,
    ReviewStatus,
    RiskLevel,
    RunContent,
    RunRecord,
    RunStatus,
    Seal,
    SealScope,
    Stamp,
    parse_attachment_name,
    parse_run_name,
    run_name,
    validate_content,
    validate_legacy_content,
)
from services.runs.store import NewAttachment, RunFilters, RunsStore, StoredRun, sealed_error, to_us

log = logging.getLogger("custody.runs")
T = TypeVar("T")

CHUNK_LIMIT_BYTES = 1024 * 1024
MAX_METADATA_ENTRIES = 32
MAX_METADATA_VALUE = 1024
MAX_NOTES = 4000
CANDIDATE_KINDS = (AttachmentKind.GEOMETRY_SVG, AttachmentKind.GEOMETRY_SPEC_JSON, AttachmentKind.AI_PROVENANCE_JSON)
CONTENT_TYPE = "application/octet-stream"
# Each list RPC's page tokens: valid for that RPC only, with a cursor of (created_at in microseconds, id).
LIST_RUNS = PagedList("custody.runs.v1.RunsService/ListRuns", (int, str))
LIST_ATTACHMENTS = PagedList("custody.runs.v1.RunsService/ListAttachments", (int, str))
LIST_ADVISORIES = PagedList("custody.runs.v1.RunsService/ListAdvisories", (int, str))


@dataclass(frozen=True)
class RunsConfig:
    max_attachment_bytes: int = 64 * 1024 * 1024
    engine: feasibility.EngineSettings = field(default_factory=feasibility.EngineSettings)
    # A PENDING explanation older than this is presumed abandoned (its process died) and may be claimed again.
    explanation_lease_s: float = 300.0


@dataclass(frozen=True)
class ExplainerAnswer:
    content: str
    call: str
    engine_id: str
    engine_version: str


class Explainer(Protocol):
    """Asks an AI (through ai_gateway) to explain a decision."""

    async def explain(self, prompt: str) -> ExplainerAnswer: ...


@dataclass(frozen=True)
class AttachmentRequest:
    run: str
    kind: str
    filename: str
    content_type: str
    sha256: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


@dataclass(frozen=True)
class CandidateRecord:
    """What lineage recorded about a candidate: the digests of the SVG and spec it stands for."""

    name: str
    svg_sha256: str
    spec_sha256: str

    def to_document(self) -> dict[str, str]:
        return {"name": self.name, "svg_sha256": self.svg_sha256, "spec_sha256": self.spec_sha256}


class Candidates(Protocol):
    """Reads candidate versions from lineage."""

    async def read(self, name: str) -> CandidateRecord: ...


@dataclass(frozen=True)
class BindRequest:
    run: str
    # Attachment names to bind; empty binds the latest of each candidate kind.
    attachments: Sequence[str]
    operator_notes: str
    strict: bool
    idempotency_key: str
    # An svg_candidate version the verdict is about ("" for none).
    lineage_candidate: str


@dataclass(frozen=True)
class _Binding:
    """A bind request checked and its bytes read, ready to be decided."""

    request: BindRequest
    run_id: str
    chosen: tuple[AttachmentRecord, ...]
    svg: bytes | None
    spec: bytes | None
    candidate: CandidateRecord | None = None

    def digest(self, kind: AttachmentKind) -> str:
        return next((r.sha256 for r in self.chosen if r.kind == kind), "")


@dataclass(frozen=True)
class BindResult:
    run: RunRecord
    evaluation: feasibility.Evaluation


@dataclass(frozen=True)
class Difference:
    path: str
    left: Any
    right: Any
    severity: str  # INFO | WARNING | CRITICAL


@dataclass(frozen=True)
class Problem:
    subject: str
    problem: str
    expected: str
    actual: str


@dataclass(frozen=True)
class Verification:
    run: str
    problems: list[Problem]
    attachments_checked: int

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class _PreparedMint:
    """A run ready to commit, with what commits alongside it."""

    record: RunRecord
    artifact_json: str
    attachments: list[NewAttachment]
    outbox: list[OutboxMessage]


def legacy_migration_content(content: RunContent, caller: Principal) -> RunContent:
    """A legacy record as it will be minted: only a human with the migrator role may import one, the record names
    itself in meta.legacy.run_id, and each later Custody rule it breaks is recorded in
    meta.legacy.migration_warnings by the server (never taken from the caller). Every other rule refuses it as it
    would any run."""
    if caller.kind is not PrincipalKind.HUMAN or MIGRATOR_ROLE not in caller.roles:
        raise PermissionDenied(
            "LEGACY_MIGRATION_NOT_ALLOWED",
            f"{caller.id} may not import legacy runs: legacy_migration needs a human with the {MIGRATOR_ROLE!r} role",
            metadata={"principal": caller.id},
        )
    legacy = content.meta.get("legacy")
    if not isinstance(legacy, dict) or not isinstance(legacy.get("run_id"), str) or not legacy["run_id"]:
        raise InvalidArgument(
            "LEGACY_RUN_INVALID",
            "a legacy_migration run names its legacy record in meta.legacy.run_id",
            violations=[FieldViolation("run.meta.legacy.run_id", "required with legacy_migration")],
        )
    warnings = validate_legacy_content(content)
    return replace(content, meta={**content.meta, "legacy": {**legacy, "migration_warnings": list(warnings)}})


def utcnow() -> datetime:
    return datetime.now(UTC)


class Runs:
    def __init__(
        self,
        store: RunsStore,
        blobs: BlobStore,
        config: RunsConfig,
        explainer: Explainer | None,
        clock: Callable[[], datetime] = utcnow,
        outbox_written: Callable[[], None] = lambda: None,
        candidates: Candidates | None = None,
        page_tokens: PageTokens | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.config = config
        self.explainer = explainer
        self.candidates = candidates
        self._clock = clock
        # Called (from a worker thread) after a mint wrote an outbox message, so delivery starts at once.
        self._outbox_written = outbox_written
        self._page_tokens = page_tokens or PageTokens.ephemeral()

    def _stamp(self) -> Stamp:
        caller = call_context.require_principal()
        return Stamp(
            created_at=self._clock(),
            # Records name the principal by id and kind; roles are a property of the credentials, not the record.
            created_by=Principal(caller.id, caller.kind),
            request_id=call_context.request_id() or "",
            trace_id=current_trace_id(),
        )

    def _page(
        self, listing: PagedList, fetched: list[T], size: int, key: dict[str, Any], sort_key: Callable[[T], list[Any]]
    ) -> Page[T]:
        """A page from `size + 1` fetched items: the extra one only says there is a next page, which starts after
        the sort key of this page's last item."""
        if len(fetched) <= size:
            return Page(fetched, "")
        return Page(fetched[:size], self._page_tokens.encode(listing, sort_key(fetched[size - 1]), key))

    # ---- runs ---------------------------------------------------------------------------------------------------

    async def create_run(
        self,
        content: RunContent,
        idempotency_key: str,
        advisories: Sequence[AdvisoryLink] = (),
        explanation: Explanation | None = None,
        legacy_migration: bool = False,
    ) -> RunRecord:
        """Mints a caller-supplied run. Runs on the event loop: the CPU work is small, and the commit is awaited
        without holding a thread (the hot path of the service).

        `legacy_migration` is the one path that mints a run breaking Custody's later consistency rules: see
        legacy_migration_content."""
        validate_request_id(idempotency_key)
        if legacy_migration:
            content = legacy_migration_content(content, call_context.require_principal())
        else:
            validate_content(content)
        authority.require_not_engine(content)
        for index, link in enumerate(advisories):
            _validate_advisory_id(link.advisory_id, f"run.advisory_inputs[{index}].advisory_id")
        fingerprint = ""
        if idempotency_key:  # only a keyed request is ever compared with a retry of itself
            request = {"content": content.to_document(), "advisories": [_link_document(a) for a in advisories]}
            if explanation is not None:
                request["explanation"] = {"status": explanation.status.value, "summary": explanation.summary}
            if legacy_migration:
                request["legacy_migration"] = True
            fingerprint = _fingerprint_of(request)
        prepared = self._prepare_mint(content, advisories, explanation)
        stored, created = await self.store.create_run_async(
            prepared.record, prepared.artifact_json, idempotency_key, fingerprint
        )
        return self._minted(prepared, stored, created, idempotency_key, fingerprint)

    def _mint(
        self,
        content: RunContent,
        idempotency_key: str,
        request_fingerprint: str,
        attachments: Sequence[tuple[AttachmentRecord, str]] = (),
        candidate: CandidateRecord | None = None,
        sealing: str = "",
    ) -> RunRecord:
        """Mints an engine verdict from a worker thread (BindCandidate), with the attachments and lineage record
        that go with it and the seals it sets: on itself (no attachments) and on `sealing`, the run it was bound
        from (no new geometry)."""
        prepared = self._prepare_mint(content, (), None, attachments, candidate)
        run_id = prepared.record.run_id
        seals = [Seal(run_id, run_id, SealScope.ALL)] + ([Seal(sealing, run_id, SealScope.GEOMETRY)] if sealing else [])
        stored, created = self.store.create_run(
            prepared.record,
            prepared.artifact_json,
            idempotency_key,
            request_fingerprint,
            prepared.attachments,
            prepared.outbox,
            seals,
        )
        return self._minted(prepared, stored, created, idempotency_key, request_fingerprint)

    def _prepare_mint(
        self,
        content: RunContent,
        advisories: Sequence[AdvisoryLink],
        explanation: Explanation | None,
        attachments: Sequence[tuple[AttachmentRecord, str]] = (),
        candidate: CandidateRecord | None = None,
    ) -> _PreparedMint:
        stamp = self._stamp()
        run_id = new_id(RUN_PREFIX)
        document = artifact_document(run_id, content, stamp)
        try:
            encoded = canonical_json(document)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(
                "RUN_INVALID",
                f"the run holds a value JSON cannot express exactly ({exc}); use finite numbers",
                violations=[
                    FieldViolation("run", "values must be finite JSON numbers, strings, booleans, lists or maps")
                ],
            ) from None
        stamped_advisories = tuple(replace(a, stamp=replace(stamp, created_at=a.stamp.created_at)) for a in advisories)
        record = RunRecord(
            run_id=run_id,
            content=content,
            stamp=stamp,
            artifact_sha256=sha256_bytes(encoded),
            advisories=stamped_advisories,
            explanation=explanation or Explanation(ExplanationStatus.NONE),
        )
        new_attachments = [
            NewAttachment(
                AttachmentRecord(
                    attachment_id=new_id(ATTACHMENT_PREFIX),
                    run_id=run_id,
                    kind=source.kind,
                    filename=source.filename,
                    content_type=source.content_type,
                    sha256=source.sha256,
                    size_bytes=source.size_bytes,
                    metadata={**source.metadata, "bound_from": source_name},
                    stamp=stamp,
                ),
                None,
                None,
                position,
            )
            for position, (source, source_name) in enumerate(attachments)
        ]
        outbox = [lineage_message(run_id, content, stamp, candidate)] if candidate else []
        return _PreparedMint(record, encoded.decode(), new_attachments, outbox)

    def _minted(
        self, prepared: _PreparedMint, stored: StoredRun, created: bool, idempotency_key: str, fingerprint: str
    ) -> RunRecord:
        if not created:
            ensure_same_request(idempotency_key, stored.request_fingerprint or "", fingerprint)
        else:
            log.info("run minted", extra={"run": stored.record.name, "status": prepared.record.content.status.value})
            if prepared.outbox:
                self._outbox_written()
        return stored.record

    def get_run(self, name: str) -> RunRecord:
        return self._owned_stored(parse_run_name(name)).record

    def _owned_stored(self, run_id: str) -> StoredRun:
        stored = self._stored(run_id)
        authority.require_owner(call_context.require_principal(), stored.record.stamp.created_by, run_id)
        return stored

    def _stored(self, run_id: str) -> StoredRun:
        stored = self.store.get_run(run_id)
        if stored is None:
            raise NotFound(
                "RUN_NOT_FOUND", f"run {run_name(run_id)} does not exist", metadata={"run": run_name(run_id)}
            )
        return stored

    def _require_run(self, run_id: str) -> None:
        """The run exists and the caller may use it (a service only its own)."""
        creator = self.store.run_creator(run_id)
        if creator is None:
            raise NotFound(
                "RUN_NOT_FOUND", f"run {run_name(run_id)} does not exist", metadata={"run": run_name(run_id)}
            )
        authority.require_owner(call_context.require_principal(), creator, run_id)

    def _require_attachable(self, run_id: str, kinds: Sequence[str]) -> None:
        """_require_run, and no seal forbids any of `kinds` (the database trigger re-checks at commit)."""
        self._require_run(run_id)
        for seal in self.store.seals(run_id):
            refused = next((kind for kind in kinds if seal.forbids(kind)), None)
            if refused is not None:
                raise sealed_error(seal, refused)

    def list_runs(self, filters: RunFilters, requested_size: int, token: str) -> Page[RunRecord]:
        if filters.created_after and filters.created_before and filters.created_after >= filters.created_before:
            raise InvalidArgument(
                "FILTER_INVALID",
                "created_after must be earlier than created_before",
                violations=[FieldViolation("created_before", "must be later than created_after")],
            )
        filters = replace(
            filters, created_by=authority.listing_scope(call_context.require_principal(), filters.created_by)
        )
        size = page_size(requested_size)
        key = _filters_key(filters)
        cursor = self._page_tokens.decode(LIST_RUNS, token, key)
        stored = self.store.list_runs(filters, cursor.after if cursor else None, size + 1)
        records = [s.record for s in stored]
        return self._page(LIST_RUNS, records, size, key, lambda r: [to_us(r.stamp.created_at), r.run_id])

    # ---- attachments --------------------------------------------------------------------------------------------

    def validate_attachment(self, request: AttachmentRequest, prefix: str = "header") -> str:
        """Checks an attachment header and that its run exists; returns the run id."""
        run_id = parse_run_name(request.run, f"{prefix}.run")
        problems = _attachment_problems(request, prefix)
        if problems:
            raise InvalidArgument(
                "ATTACHMENT_INVALID", f"{len(problems)} invalid attachment field(s)", violations=problems
            )
        self._require_attachable(run_id, [request.kind])
        return run_id

    async def upload(
        self, request: AttachmentRequest, chunks: AsyncIterator[bytes], expected_sha256: str, idempotency_key: str
    ) -> AttachmentRecord:
        """Receives a streamed attachment: hashed and stored while it arrives (StreamingUpload), checked against
        `expected_sha256` when given, then published and recorded. The header is checked (a database read) while
        the first chunks arrive; its verdict is raised as soon as it is known, and always before anything is kept.
        A problem with the header is the answer whatever else went wrong, so the answer never depends on timing."""
        validation = asyncio.ensure_future(asyncio.to_thread(self.validate_attachment, request))
        upload = StreamingUpload(self.blobs.writer())
        try:
            async for chunk in chunks:
                if validation.done():
                    validation.result()
                check_chunk(chunk)
                await upload.write(chunk)
            await validation
            pending = await upload.finish(expected_sha256, "header.sha256")
        except BaseException as exc:
            await asyncio.shield(_abandon(upload, validation))
            refusal = None if validation.cancelled() else validation.exception()
            if refusal is not None and not isinstance(exc, asyncio.CancelledError):
                raise refusal from None
            raise
        return await asyncio.to_thread(self.record_upload, request, pending, idempotency_key)

    def record_upload(self, request: AttachmentRequest, pending: PendingBlob, idempotency_key: str) -> AttachmentRecord:
        """Publishes a received blob and records the attachment; or returns the original for a repeated key."""
        run_id = parse_run_name(request.run)
        request_fingerprint = _fingerprint_of({**_attachment_document(request), "sha256": pending.sha256})
        existing = self._existing_for_key(run_id, idempotency_key, [request_fingerprint])
        if existing is not None:
            pending.discard()
            return existing[0]
        self.blobs.publish(pending)
        stamp = self._stamp()
        item = NewAttachment(
            self._attachment_record(run_id, request, pending.sha256, pending.size_bytes, stamp),
            idempotency_key or None,
            request_fingerprint,
            0,
        )
        if not self.store.add_attachments([item], stamp.created_at):
            existing = self._existing_for_key(run_id, idempotency_key, [request_fingerprint])
            assert existing is not None
            return existing[0]
        return item.record

    def batch_create_attachments(
        self, run: str, items: Sequence[tuple[AttachmentRequest, bytes]], idempotency_key: str
    ) -> list[AttachmentRecord]:
        """All or none: every item is validated and every blob received before anything is recorded."""
        validate_request_id(idempotency_key)
        run_id = parse_run_name(run, "run")
        if not items:
            raise InvalidArgument(
                "ATTACHMENT_INVALID",
                "a batch needs at least one attachment",
                violations=[FieldViolation("attachments", "at least one")],
            )
        problems: list[FieldViolation] = []
        for index, (request, _data) in enumerate(items):
            problems.extend(_attachment_problems(request, f"attachments[{index}]"))
        if problems:
            raise InvalidArgument(
                "ATTACHMENT_INVALID", f"{len(problems)} invalid attachment field(s)", violations=problems
            )
        total = sum(len(data) for _, data in items)
        if total > self.config.max_attachment_bytes:
            raise ResourceExhausted(
                "ATTACHMENT_TOO_LARGE",
                f"the batch holds {total} bytes; the limit is {self.config.max_attachment_bytes}",
                metadata={"limit_bytes": str(self.config.max_attachment_bytes)},
            )
        self._require_attachable(run_id, [request.kind for request, _ in items])
        pending: list[PendingBlob] = []
        try:
            for index, (request, data) in enumerate(items):
                pending.append(self.blobs.write([data], request.sha256, f"attachments[{index}].sha256"))
            fingerprints = [
                _fingerprint_of({**_attachment_document(request), "sha256": blob.sha256, "position": index})
                for index, ((request, _), blob) in enumerate(zip(items, pending, strict=True))
            ]
            existing = self._existing_for_key(run_id, idempotency_key, fingerprints)
            if existing is not None:
                return existing
            stamp = self._stamp()
            records = [
                NewAttachment(
                    self._attachment_record(run_id, request, blob.sha256, blob.size_bytes, stamp),
                    idempotency_key or None,
                    fingerprints[index],
                    index,
                )
                for index, ((request, _), blob) in enumerate(zip(items, pending, strict=True))
            ]
            for blob in pending:
                self.blobs.publish(blob)
            if not self.store.add_attachments(records, stamp.created_at):
                existing = self._existing_for_key(run_id, idempotency_key, fingerprints)
                assert existing is not None
                return existing
            return [item.record for item in records]
        finally:
            for blob in pending:
                blob.discard()

    def _existing_for_key(
        self, run_id: str, idempotency_key: str, fingerprints: list[str]
    ) -> list[AttachmentRecord] | None:
        if not idempotency_key:
            return None
        found = self.store.attachments_for_key(run_id, call_context.require_principal().id, idempotency_key)
        if not found:
            return None
        ensure_same_request(idempotency_key, _fingerprint_of([f for _, f in found]), _fingerprint_of(fingerprints))
        return [record for record, _ in found]

    def _attachment_record(
        self, run_id: str, request: AttachmentRequest, sha256: str, size: int, stamp: Stamp
    ) -> AttachmentRecord:
        return AttachmentRecord(
            attachment_id=new_id(ATTACHMENT_PREFIX),
            run_id=run_id,
            kind=request.kind,
            filename=request.filename,
            content_type=request.content_type or CONTENT_TYPE,
            sha256=sha256,
            size_bytes=size,
            metadata=dict(request.metadata),
            stamp=stamp,
        )

    def find_missing_blobs(self, digests: Sequence[str]) -> list[str]:
        bad = [
            FieldViolation(f"sha256[{i}]", "must be 64 lower-case hex")
            for i, d in enumerate(digests)
            if not is_sha256_hex(d)
        ]
        if bad:
            raise InvalidArgument("DIGEST_INVALID", f"{len(bad)} digest(s) are not sha256 hex", violations=bad)
        known = self.store.known_blobs(digests)
        missing = {d for d in digests if d not in known or not self.blobs.exists(d)}
        return sorted(missing)

    def attachment(self, name: str) -> AttachmentRecord:
        run_id, attachment_id = parse_attachment_name(name)
        self._require_run(run_id)
        record = self.store.get_attachment(run_id, attachment_id)
        if record is None:
            raise NotFound("ATTACHMENT_NOT_FOUND", f"attachment {name} does not exist", metadata={"attachment": name})
        return record

    def list_attachments(
        self, run: str, kind: str, latest_only: bool, requested_size: int, token: str
    ) -> Page[AttachmentRecord]:
        run_id = parse_run_name(run, "run")
        if kind and kind not in set(AttachmentKind):
            raise InvalidArgument(
                "KIND_INVALID",
                f"unknown attachment kind {kind[:60]!r}",
                violations=[FieldViolation("kind", f"one of {', '.join(k.value for k in AttachmentKind)}")],
            )
        self._require_run(run_id)
        size = 1 if latest_only else page_size(requested_size)
        key = {"run": run_id, "kind": kind, "latest_only": latest_only}
        cursor = None if latest_only else self._page_tokens.decode(LIST_ATTACHMENTS, token, key)
        records = self.store.list_attachments(run_id, kind, cursor.after if cursor else None, size + 1)
        if latest_only:
            return Page(records[:1], "")
        return self._page(LIST_ATTACHMENTS, records, size, key, lambda a: [to_us(a.stamp.created_at), a.attachment_id])

    # ---- advisories ---------------------------------------------------------------------------------------------

    def attach_advisory(
        self, run: str, advisory_id: str, kind: AdvisoryKind, engine_id: str, engine_version: str, summary: str
    ) -> RunRecord:
        run_id = parse_run_name(run, "run")
        _validate_advisory_id(advisory_id, "advisory_id")
        if len(engine_id) > 128 or len(engine_version) > 128 or len(summary) > MAX_NOTES:
            raise InvalidArgument(
                "ADVISORY_INVALID",
                "engine_id and engine_version are at most 128 characters, summary 4000",
                violations=[FieldViolation("summary", "at most 4000 characters")],
            )
        self._require_run(run_id)
        link = AdvisoryLink(
            advisory_id, kind, engine_id, engine_version, summary, ReviewStatus.NOT_REQUIRED, None, self._stamp()
        )
        if self.store.attach_advisory(run_id, link):
            log.info("advisory attached", extra={"run": run_name(run_id), "advisory_id": advisory_id})
        return self._stored(run_id).record

    def list_advisories(self, run: str, requested_size: int, token: str) -> Page[AdvisoryLink]:
        run_id = parse_run_name(run, "run")
        self._require_run(run_id)
        size = page_size(requested_size)
        key = {"run": run_id}
        cursor = self._page_tokens.decode(LIST_ADVISORIES, token, key)
        links = self.store.list_advisories(run_id, cursor.after if cursor else None, size + 1)
        return self._page(LIST_ADVISORIES, links, size, key, lambda a: [to_us(a.stamp.created_at), a.advisory_id])

    # ---- explanations -------------------------------------------------------------------------------------------

    def claim_explanation(self, name: str) -> tuple[RunRecord, bool]:
        """Moves NONE/ERROR (or an abandoned PENDING) to PENDING; True only for the caller that did. Either way
        the run is read after the attempt, so a loser sees the winner's in-flight state."""
        run_id = parse_run_name(name)
        self._require_run(run_id)
        claimed = self.store.claim_explanation(
            run_id,
            call_context.require_principal(),
            call_context.request_id() or "",
            self._clock(),
            self.config.explanation_lease_s,
        )
        return self._stored(run_id).record, claimed

    async def explain(self, record: RunRecord) -> None:
        """Asks the explainer (ai_gateway) and records READY with an advisory, or ERROR with the reason."""
        if self.explainer is None:
            self._finish_explanation(
                record, Explanation(ExplanationStatus.ERROR, error="no ai_gateway is configured"), None
            )
            return
        try:
            answer = await self.explainer.explain(explanation_prompt(record))
        except CustodyError as exc:
            self._finish_explanation(
                record, Explanation(ExplanationStatus.ERROR, error=f"{exc.reason}: {exc.message}"), None
            )
            return
        except Exception as exc:  # the run is returned either way; the reason is kept, the details logged
            log.warning("explanation failed", exc_info=exc, extra={"run": record.name})
            self._finish_explanation(
                record, Explanation(ExplanationStatus.ERROR, error=f"explanation failed: {type(exc).__name__}"), None
            )
            return
        summary = answer.content.strip()[:MAX_NOTES]
        advisory_id = f"explanation:{answer.call.rsplit('/', 1)[-1]}"[:128]
        automatic = record.content.decision.risk_level is RiskLevel.GREEN
        link = AdvisoryLink(
            advisory_id=advisory_id,
            kind=AdvisoryKind.EXPLANATION,
            engine_id=answer.engine_id[:128],
            engine_version=answer.engine_version[:128],
            summary=summary,
            # Tiered review: GREEN explanations are informational; YELLOW/RED ones need a human reviewer.
            review_status=ReviewStatus.AUTO_APPROVED if automatic else ReviewStatus.PENDING_REVIEW,
            reviewed_by=SYSTEM if automatic else None,
            stamp=self._stamp(),
        )
        self._finish_explanation(
            record, Explanation(ExplanationStatus.READY, summary=summary, advisory_id=advisory_id), link
        )

    def _finish_explanation(self, record: RunRecord, outcome: Explanation, link: AdvisoryLink | None) -> None:
        self.store.finish_explanation(
            record.run_id,
            outcome,
            link,
            call_context.require_principal(),
            call_context.request_id() or "",
            self._clock(),
        )

    # ---- candidate binding --------------------------------------------------------------------------------------

    async def bind_candidate(self, request: BindRequest) -> BindResult:
        """Decides a candidate and mints the verdict. With a lineage candidate, the verdict is only minted (and only
        recorded in lineage) when that version's recorded digests are the digests of the bytes being decided."""
        binding = await asyncio.to_thread(self._binding, request)
        if request.lineage_candidate:
            if self.candidates is None:
                raise Unavailable(
                    "LINEAGE_UNAVAILABLE",
                    "this runs service has no lineage address, so it cannot check the lineage candidate; "
                    "bind without lineage_candidate or configure CUSTODY_RUNS_LINEAGE_ADDRESS",
                )
            candidate = await self.candidates.read(request.lineage_candidate)
            _require_candidate_matches(candidate, binding)
            binding = replace(binding, candidate=candidate)
        return await asyncio.to_thread(self._decide, binding)

    def _binding(self, request: BindRequest) -> _Binding:
        """The request checked, the caller's access to the run checked, the candidate's bytes read and verified."""
        run, operator_notes, lineage_candidate = request.run, request.operator_notes, request.lineage_candidate
        validate_request_id(request.idempotency_key)
        run_id = parse_run_name(run, "run")
        if len(operator_notes) > MAX_NOTES:
            raise InvalidArgument(
                "BINDING_INVALID",
                "operator_notes is limited to 4000 characters",
                violations=[FieldViolation("operator_notes", "at most 4000 characters")],
            )
        if lineage_candidate:
            match = LINEAGE_VERSION_NAME.fullmatch(lineage_candidate)
            if not match:
                raise InvalidArgument(
                    "BINDING_INVALID",
                    "lineage_candidate must be a version name projects/{p}/artifacts/{type}/{entity}/versions/{n}",
                    violations=[
                        FieldViolation("lineage_candidate", "projects/{p}/artifacts/{type}/{entity}/versions/{n}")
                    ],
                )
            if match["type"] != lineage_types.SVG_CANDIDATE:
                raise InvalidArgument(
                    "BINDING_INVALID",
                    f"lineage_candidate must be an {lineage_types.SVG_CANDIDATE} version (got type {match['type']!r})",
                    violations=[
                        FieldViolation("lineage_candidate", f"a version of type {lineage_types.SVG_CANDIDATE}")
                    ],
                )
        self._require_run(run_id)
        chosen = self._candidate_attachments(run_id, request.attachments)
        by_kind = {record.kind: record for record in chosen}
        svg_record = by_kind.get(AttachmentKind.GEOMETRY_SVG)
        spec_record = by_kind.get(AttachmentKind.GEOMETRY_SPEC_JSON)
        missing = [
            k.value
            for k, r in ((AttachmentKind.GEOMETRY_SVG, svg_record), (AttachmentKind.GEOMETRY_SPEC_JSON, spec_record))
            if r is None
        ]
        if missing and request.strict:
            raise FailedPrecondition(
                "CANDIDATE_INCOMPLETE",
                f"the candidate has no {' and no '.join(missing)} attachment; attach it, or bind with strict=false "
                "to record a BLOCKED run",
                metadata={"missing": ",".join(missing)},
            )
        return _Binding(
            request=request,
            run_id=run_id,
            chosen=tuple(chosen),
            svg=self.blobs.read_all_verified(svg_record.sha256, svg_record.size_bytes) if svg_record else None,
            spec=self.blobs.read_all_verified(spec_record.sha256, spec_record.size_bytes) if spec_record else None,
        )

    def _decide(self, binding: _Binding) -> BindResult:
        evaluation = feasibility.evaluate(binding.svg, binding.spec, self.config.engine)
        result = evaluation.result
        run_id = binding.run_id
        bound = tuple(BoundAttachment(r.name, r.kind, r.sha256, r.size_bytes) for r in binding.chosen)
        summary: dict[str, Any] = {
            "source_run": run_name(run_id),
            "attachments": [{"kind": b.kind, "sha256": b.sha256} for b in bound],
            "strict": binding.request.strict,
        }
        if binding.candidate is not None:
            summary["candidate"] = binding.candidate.to_document()
        content = RunContent(
            mode=feasibility.ENGINE_MODE,
            tool_id=feasibility.ENGINE_ID,
            status=RunStatus.OK if result.allowed else RunStatus.BLOCKED,
            decision=Decision(
                risk_level=RiskLevel(result.risk_level),
                score=result.score,
                block_reason="; ".join(result.reasons),
                warnings=result.warnings,
            ),
            hashes=Hashes(feasibility_sha256=evaluation.feasibility_sha256),
            request_summary=summary,
            feasibility={
                "engine_version": feasibility.ENGINE_VERSION,
                "inputs": evaluation.inputs,
                "result": result.to_document(),
            },
            meta={
                "operator_notes": binding.request.operator_notes,
                "lineage_candidate": binding.request.lineage_candidate,
            },
            engine_version=feasibility.ENGINE_VERSION,
            source_run=run_name(run_id),
            bound_attachments=bound,
        )
        request_fingerprint = _fingerprint_of(
            {
                "run": run_id,
                "attachments": [b.attachment for b in bound],
                "notes": binding.request.operator_notes,
                "strict": binding.request.strict,
                "lineage_candidate": binding.request.lineage_candidate,
            }
        )
        minted = self._mint(
            content,
            binding.request.idempotency_key,
            request_fingerprint,
            attachments=[(r, r.name) for r in binding.chosen],
            candidate=binding.candidate,
            sealing=run_id,
        )
        return BindResult(minted, evaluation)

    def _candidate_attachments(self, run_id: str, names: Sequence[str]) -> list[AttachmentRecord]:
        if not names:
            chosen = []
            for kind in CANDIDATE_KINDS:
                latest = self.store.list_attachments(run_id, kind.value, None, 1)
                chosen.extend(latest)
            return chosen
        chosen = []
        for index, name in enumerate(names):
            owner, attachment_id = parse_attachment_name(name, f"attachments[{index}]")
            if owner != run_id:
                raise InvalidArgument(
                    "ATTACHMENT_INVALID",
                    f"{name} belongs to another run than {run_name(run_id)}",
                    violations=[FieldViolation(f"attachments[{index}]", "must be an attachment of the bound run")],
                )
            record = self.store.get_attachment(run_id, attachment_id)
            if record is None:
                raise NotFound(
                    "ATTACHMENT_NOT_FOUND", f"attachment {name} does not exist", metadata={"attachment": name}
                )
            chosen.append(record)
        kinds = [r.kind for r in chosen]
        duplicated = sorted({k for k in kinds if kinds.count(k) > 1 and k in set(CANDIDATE_KINDS)})
        if duplicated:
            raise InvalidArgument(
                "ATTACHMENT_INVALID",
                f"bind one attachment per kind; several of kind {', '.join(duplicated)} were given",
                violations=[FieldViolation("attachments", "one attachment per candidate kind")],
            )
        return chosen

    # ---- diff and verification ----------------------------------------------------------------------------------

    def diff_runs(self, left: str, right: str, score_threshold: float) -> list[Difference]:
        threshold = score_threshold or 0.1
        if not 0 < threshold <= 1:
            raise InvalidArgument(
                "DIFF_INVALID",
                "score_drift_threshold must be in (0, 1]",
                violations=[FieldViolation("score_drift_threshold", "in (0, 1]")],
            )
        a = self._owned_stored(parse_run_name(left, "left")).record
        b = self._owned_stored(parse_run_name(right, "right")).record
        return diff_records(a, b, threshold)

    def verify_run(self, name: str) -> Verification:
        stored = self._owned_stored(parse_run_name(name))
        record = stored.record
        problems: list[Problem] = []
        recomputed = sha256_bytes(canonical_json(json.loads(stored.artifact_json)))
        if recomputed != record.artifact_sha256:
            problems.append(Problem("artifact", "ARTIFACT_HASH_MISMATCH", record.artifact_sha256, recomputed))
        document = json.loads(stored.artifact_json)
        in_document = {
            "mode": document.get("mode"),
            "tool_id": document.get("tool_id"),
            "status": document.get("status"),
            "risk_level": document.get("decision", {}).get("risk_level"),
        }
        for column, value in stored.indexed.items():
            if in_document[column] != value:
                problems.append(Problem(f"artifact.{column}", "INDEX_MISMATCH", str(in_document[column]), value))
        checked = 0
        after = None
        while True:
            page = self.store.list_attachments(record.run_id, "", after, 500)
            for attachment in page:
                checked += 1
                issue = self.blobs.verify(attachment.sha256, attachment.size_bytes)
                if issue is not None:
                    problems.append(Problem(attachment.name, issue, attachment.sha256, "unreadable or different bytes"))
            if len(page) < 500:
                break
            after = [to_us(page[-1].stamp.created_at), page[-1].attachment_id]
        return Verification(record.name, problems, checked)


def artifact_document(run_id: str, content: RunContent, stamp: Stamp) -> dict[str, Any]:
    """The immutable record as hashed: the caller's content plus the server's stamp."""
    return {
        "name": run_name(run_id),
        **content.to_document(),
        "create_time": stamp.created_at.isoformat(),
        "created_by": {"id": stamp.created_by.id, "kind": stamp.created_by.kind.value},
        "request_id": stamp.request_id,
        "trace_id": stamp.trace_id,
    }


def lineage_message(run_id: str, content: RunContent, stamp: Stamp, candidate: CandidateRecord) -> OutboxMessage:
    """The feasibility_run version that records a minted run in lineage, derived from its candidate version.
    Same candidate entity, type feasibility_run: binding the candidate again makes the next version. It names the
    candidate and the digests of the bytes decided, so a reader of lineage alone can tell what the verdict is about."""
    match = LINEAGE_VERSION_NAME.fullmatch(candidate.name)
    assert match is not None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    decision = content.decision
    payload = {
        "parent": f"projects/{match['project']}/artifacts/{lineage_types.FEASIBILITY_RUN}/{match['entity']}",
        "data": {
            "verdict": "ALLOW" if content.status is RunStatus.OK else "BLOCK",
            "run": run_name(run_id),
            "reasons": [r for r in decision.block_reason.split("; ") if r],
            "warnings": list(decision.warnings),
            "risk_level": decision.risk_level.value,
            "score": decision.score,
            "feasibility_sha256": content.hashes.feasibility_sha256,
            "engine_version": content.engine_version,
            "candidate": candidate.name,
            "svg_sha256": candidate.svg_sha256,
            "spec_sha256": candidate.spec_sha256,
        },
        "metadata": {
            "intent": "decide whether the candidate can be manufactured",
            "rationale": f"deterministic feasibility engine {content.engine_version} on the candidate's SVG and spec",
            "confidence": decision.score,
            "source": "SOURCE_HYBRID",
            "producing_module": "runs",
            "producing_role": "feasibility_engine",
        },
        "upstream": [candidate.name],
    }
    return OutboxMessage(
        message_id=new_id(OUTBOX_PREFIX),
        run_id=run_id,
        kind="lineage.create_version",
        payload=payload,
        idempotency_key=f"runs-lineage-{run_id}",
        request_id=stamp.request_id,
        traceparent=carrier.get("traceparent", ""),
        created_at=stamp.created_at,
    )


def _require_candidate_matches(candidate: CandidateRecord, binding: _Binding) -> None:
    """The verdict names its candidate: refused unless lineage recorded the digests of exactly these bytes."""
    problems = []
    for digest_field, kind, recorded in (
        ("svg_sha256", AttachmentKind.GEOMETRY_SVG, candidate.svg_sha256),
        ("spec_sha256", AttachmentKind.GEOMETRY_SPEC_JSON, candidate.spec_sha256),
    ):
        bound = binding.digest(kind)
        if not recorded or recorded != bound:
            problems.append(
                FieldViolation(
                    f"lineage_candidate.{digest_field}",
                    f"the candidate records {recorded or 'no digest'}; the bound {kind.value} is {bound or 'missing'}",
                )
            )
    if problems:
        raise FailedPrecondition(
            "CANDIDATE_MISMATCH",
            f"{candidate.name} is not the candidate being bound: "
            + "; ".join(p.description for p in problems)
            + ". Bind the attachments that candidate was recorded with, or name the candidate of these ones",
            violations=problems,
            metadata={"lineage_candidate": candidate.name},
        )


def explanation_prompt(record: RunRecord) -> str:
    """What the AI is asked: the decision only (the request summary is already redacted and is not sent)."""
    decision = record.content.decision
    return (
        "Explain, for the operator who must review it, this feasibility decision about a manufacturing run.\n"
        f"status: {record.content.status.value}\nrisk level: {decision.risk_level.value}\n"
        f"score: {decision.score}\nblocked because: {decision.block_reason or 'not blocked'}\n"
        f"warnings: {'; '.join(decision.warnings) or 'none'}\nengine: {record.content.engine_version or 'unknown'}"
    )


IDENTITY_PATHS = frozenset({"name", "create_time", "request_id", "trace_id"})


def diff_records(a: RunRecord, b: RunRecord, score_threshold: float) -> list[Difference]:
    left = _flatten(artifact_document(a.run_id, a.content, a.stamp))
    right = _flatten(artifact_document(b.run_id, b.content, b.stamp))
    left["explanation.status"], right["explanation.status"] = a.explanation.status.value, b.explanation.status.value
    differences = []
    for path in sorted(left.keys() | right.keys()):
        if path in IDENTITY_PATHS:
            continue
        lv, rv = left.get(path), right.get(path)
        if lv != rv:
            differences.append(Difference(path, lv, rv, _severity(path, lv, rv, score_threshold)))
    return differences


def _severity(path: str, left: Any, right: Any, score_threshold: float) -> str:
    if path.startswith("hashes.") or path.endswith(".sha256") or path.endswith("_sha256"):
        return "CRITICAL"
    if path == "status" and RunStatus.ERROR.value in (left, right):
        return "CRITICAL"
    if path in ("status", "decision.risk_level"):
        return "WARNING"
    if path == "decision.score" and isinstance(left, int | float) and isinstance(right, int | float):
        return "WARNING" if abs(left - right) > score_threshold else "INFO"
    return "INFO"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat or {prefix: {}}
    if isinstance(value, list):
        flat = {}
        for index, item in enumerate(value):
            flat.update(_flatten(item, f"{prefix}[{index}]"))
        return flat or {prefix: []}
    return {prefix: value}


def _filters_key(filters: RunFilters) -> dict[str, Any]:
    return {
        "status": filters.status,
        "risk_level": filters.risk_level,
        "mode": filters.mode,
        "tool_id": filters.tool_id,
        "created_by": filters.created_by,
        "created_after": filters.created_after.isoformat() if filters.created_after else "",
        "created_before": filters.created_before.isoformat() if filters.created_before else "",
        "explanation_status": filters.explanation_status,
    }


def _fingerprint_of(value: Any) -> str:
    return fingerprint({"value": value})


def _attachment_document(request: AttachmentRequest) -> dict[str, Any]:
    return {
        "run": request.run,
        "kind": request.kind,
        "filename": request.filename,
        "content_type": request.content_type,
        "metadata": dict(request.metadata),
    }


def _link_document(link: AdvisoryLink) -> dict[str, Any]:
    return {
        "advisory_id": link.advisory_id,
        "kind": link.kind.value,
        "engine_id": link.engine_id,
        "engine_version": link.engine_version,
        "summary": link.summary,
    }


def _validate_advisory_id(advisory_id: str, field: str) -> None:
    if not ADVISORY_ID.fullmatch(advisory_id):
        raise InvalidArgument(
            "ADVISORY_INVALID",
            f"{field} must be 1..128 letters, digits or ._:- (got {advisory_id[:60]!r})",
            violations=[FieldViolation(field, "1..128 letters, digits or ._:-")],
        )


def _attachment_problems(request: AttachmentRequest, prefix: str) -> list[FieldViolation]:
    problems = []
    if request.kind not in set(AttachmentKind):
        problems.append(FieldViolation(f"{prefix}.kind", f"one of {', '.join(k.value for k in AttachmentKind)}"))
    if not FILENAME.fullmatch(request.filename) or ".." in request.filename:
        problems.append(FieldViolation(f"{prefix}.filename", "1..200 of letters, digits, space, ._- ; no path"))
    if len(request.content_type) > 128:
        problems.append(FieldViolation(f"{prefix}.content_type", "at most 128 characters"))
    if request.sha256 and not is_sha256_hex(request.sha256):
        problems.append(FieldViolation(f"{prefix}.sha256", "empty or 64 lower-case hex"))
    if len(request.metadata) > MAX_METADATA_ENTRIES or any(
        len(k) > 128 or len(v) > MAX_METADATA_VALUE for k, v in request.metadata.items()
    ):
        problems.append(
            FieldViolation(f"{prefix}.metadata", f"at most {MAX_METADATA_ENTRIES} entries of short strings")
        )
    return problems


async def _abandon(upload: StreamingUpload, validation: asyncio.Future[str]) -> None:
    await asyncio.gather(validation, return_exceptions=True)
    await upload.abort()


def check_chunk(chunk: bytes) -> None:
    if len(chunk) > CHUNK_LIMIT_BYTES:
        raise InvalidArgument(
            "ATTACHMENT_INVALID",
            f"a chunk holds {len(chunk)} bytes; send at most {CHUNK_LIMIT_BYTES} per message",
            violations=[FieldViolation("chunk", "at most 1 MiB")],
        )
