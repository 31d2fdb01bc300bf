"""Minting runs: a caller's run (CreateRun, on the event loop: the hot path awaits its group commit without
holding a thread) and an engine verdict (from BindCandidate, in a worker thread, with its attachments, seals and
lineage record). Every minted record is the caller's content plus the server's stamp, hashed as one document."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from services.common import call_context
from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument
from services.common.hashing import canonical_json, sha256_bytes
from services.common.idempotency import ensure_same_request, validate_request_id
from services.common.identity import Principal
from services.common.ids import new_id
from services.runs import authority
from services.runs.domain.advisories import link_document, validate_advisory_id
from services.runs.domain.context import Context
from services.runs.domain.idempotency import fingerprint_of
from services.runs.domain.lineage_record import lineage_message
from services.runs.domain.ports import CandidateRecord
from services.runs.model import (
    ATTACHMENT_PREFIX,
    RUN_NAME,
    RUN_PREFIX,
    AdvisoryLink,
    AttachmentRecord,
    Explanation,
    ExplanationStatus,
    OutboxMessage,
    RunContent,
    RunRecord,
    Seal,
    SealScope,
    Stamp,
    run_name,
    validate_content,
    validate_legacy_content,
)
from services.runs.store import NewAttachment, StoredRun

log = logging.getLogger("custody.runs")


@dataclass(frozen=True)
class _PreparedMint:
    """A run ready to commit, with what commits alongside it."""

    record: RunRecord
    artifact_json: str
    attachments: list[NewAttachment]
    outbox: list[OutboxMessage]


async def create_run(
    context: Context,
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
    caller = call_context.require_principal()
    authority.require_batch_author(content, caller, legacy_migration)
    if legacy_migration:
        content = legacy_migration_content(content, caller)
        if "replaces" in content.meta["legacy"]:
            await asyncio.to_thread(require_replaceable, context, content)
    else:
        validate_content(content)
    authority.require_not_engine(content)
    for index, link in enumerate(advisories):
        validate_advisory_id(link.advisory_id, f"run.advisory_inputs[{index}].advisory_id")
    fingerprint = ""
    if idempotency_key:  # only a keyed request is ever compared with a retry of itself
        request: dict[str, Any] = {
            "content": content.to_document(),
            "advisories": [link_document(a) for a in advisories],
        }
        if explanation is not None:
            request["explanation"] = {"status": explanation.status.value, "summary": explanation.summary}
        if legacy_migration:
            request["legacy_migration"] = True
        fingerprint = fingerprint_of(request)
    prepared = _prepare_mint(context, content, advisories, explanation)
    stored, created = await context.store.create_run_async(
        prepared.record, prepared.artifact_json, idempotency_key, fingerprint
    )
    return _minted(context, prepared, stored, created, idempotency_key, fingerprint)


def mint_verdict(
    context: Context,
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
    prepared = _prepare_mint(context, content, (), None, attachments, candidate)
    run_id = prepared.record.run_id
    seals = [Seal(run_id, run_id, SealScope.ALL)] + ([Seal(sealing, run_id, SealScope.GEOMETRY)] if sealing else [])
    stored, created = context.store.create_run(
        prepared.record,
        prepared.artifact_json,
        idempotency_key,
        request_fingerprint,
        prepared.attachments,
        prepared.outbox,
        seals,
    )
    return _minted(context, prepared, stored, created, idempotency_key, request_fingerprint)


def _prepare_mint(
    context: Context,
    content: RunContent,
    advisories: Sequence[AdvisoryLink],
    explanation: Explanation | None,
    attachments: Sequence[tuple[AttachmentRecord, str]] = (),
    candidate: CandidateRecord | None = None,
) -> _PreparedMint:
    stamp = context.stamp()
    run_id = new_id(RUN_PREFIX)
    document = artifact_document(run_id, content, stamp)
    try:
        encoded = canonical_json(document)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(
            "RUN_INVALID",
            f"the run holds a value JSON cannot express exactly ({exc}); use finite numbers",
            violations=[FieldViolation("run", "values must be finite JSON numbers, strings, booleans, lists or maps")],
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
    context: Context, prepared: _PreparedMint, stored: StoredRun, created: bool, idempotency_key: str, fingerprint: str
) -> RunRecord:
    if not created:
        ensure_same_request(idempotency_key, stored.request_fingerprint or "", fingerprint)
    else:
        log.info("run minted", extra={"run": stored.record.name, "status": prepared.record.content.status.value})
        if prepared.outbox:
            context.outbox_written()
    return stored.record


def legacy_migration_content(content: RunContent, caller: Principal) -> RunContent:
    """A legacy record as it will be minted: only a human with the migrator role may import one, the record names
    itself in meta.legacy.run_id, and each later Custody rule it breaks is recorded in
    meta.legacy.migration_warnings by the server (never taken from the caller). Every other rule refuses it as it
    would any run."""
    authority.require_migrator(caller, "LEGACY_MIGRATION_NOT_ALLOWED", "import legacy runs (legacy_migration)")
    legacy = content.meta.get("legacy")
    if not isinstance(legacy, dict) or not isinstance(legacy.get("run_id"), str) or not legacy["run_id"]:
        raise InvalidArgument(
            "LEGACY_RUN_INVALID",
            "a legacy_migration run names its legacy record in meta.legacy.run_id",
            violations=[FieldViolation("run.meta.legacy.run_id", "required with legacy_migration")],
        )
    warnings = validate_legacy_content(content)
    return replace(content, meta={**content.meta, "legacy": {**legacy, "migration_warnings": list(warnings)}})


MAX_REPLACED = 100


def require_replaceable(context: Context, content: RunContent) -> None:
    """A re-migrated record names the withdrawn runs it replaces (meta.legacy.replaces): each must exist, be
    withdrawn, and have been migrated from the same legacy record."""
    legacy = content.meta["legacy"]
    replaces = legacy["replaces"]
    if (
        not isinstance(replaces, list)
        or not 0 < len(replaces) <= MAX_REPLACED
        or not all(isinstance(name, str) and RUN_NAME.fullmatch(name) for name in replaces)
    ):
        raise InvalidArgument(
            "LEGACY_RUN_INVALID",
            "meta.legacy.replaces lists the withdrawn runs a re-migrated record replaces, as run names",
            violations=[FieldViolation("run.meta.legacy.replaces", f"1 to {MAX_REPLACED} names runs/{{run}}")],
        )
    problems = []
    for index, name in enumerate(replaces):
        where = f"run.meta.legacy.replaces[{index}]"
        found = context.store.get_run(RUN_NAME.fullmatch(name)["run"])  # type: ignore[index]
        if found is None:
            problems.append(FieldViolation(where, f"{name} does not exist"))
        elif found.record.withdrawal is None:
            problems.append(FieldViolation(where, f"{name} is not withdrawn: withdraw its migration batch first"))
        elif (found.record.content.meta.get("legacy") or {}).get("run_id") != legacy["run_id"]:
            problems.append(FieldViolation(where, f"{name} was migrated from another legacy record"))
    if problems:
        raise FailedPrecondition(
            "LEGACY_REPLACES_INVALID",
            "a re-migrated record replaces only withdrawn runs of the same legacy record: "
            + "; ".join(p.description for p in problems),
            violations=problems,
        )


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
