"""Adding attachments to a run: one streamed upload (hashed and stored while it arrives) or a batch (all or none).
Either way the bytes are received and checked before anything is recorded, and a repeated request id answers
with the original attachments."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from services.common import call_context
from services.common.errors import FieldViolation, InvalidArgument, ResourceExhausted
from services.common.hashing import is_sha256_hex
from services.common.idempotency import ensure_same_request, validate_request_id
from services.common.ids import new_id
from services.common.limits import CHUNK_LIMIT_BYTES
from services.runs.blobs import PendingBlob, StreamingUpload
from services.runs.domain import credentials, ownership
from services.runs.domain.context import Context
from services.runs.domain.credentials import CredentialsRequest
from services.runs.domain.idempotency import fingerprint_of
from services.runs.model import (
    ATTACHMENT_PREFIX,
    FILENAME,
    AttachmentKind,
    AttachmentRecord,
    Stamp,
    parse_run_name,
)
from services.runs.store import NewAttachment

MAX_METADATA_ENTRIES = 32
MAX_METADATA_VALUE = 1024
CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class AttachmentRequest:
    run: str
    kind: str
    filename: str
    content_type: str
    sha256: str
    metadata: dict[str, str]
    # Set when runs is to sign content credentials into the asset (domain/credentials.py).
    credentials: CredentialsRequest | None = None


def validate_attachment(context: Context, request: AttachmentRequest, prefix: str = "header") -> str:
    """Checks an attachment header and that its run exists; returns the run id."""
    run_id = parse_run_name(request.run, f"{prefix}.run")
    problems = _attachment_problems(request, prefix)
    if problems:
        raise InvalidArgument("ATTACHMENT_INVALID", f"{len(problems)} invalid attachment field(s)", violations=problems)
    _check_credentials([(request, prefix)])
    if request.credentials is not None:
        credentials.require_signer(context)
    ownership.require_attachable(context, run_id, [request.kind])
    return run_id


async def upload(
    context: Context,
    request: AttachmentRequest,
    chunks: AsyncIterator[bytes],
    expected_sha256: str,
    idempotency_key: str,
) -> AttachmentRecord:
    """Receives a streamed attachment: hashed and stored while it arrives (StreamingUpload), checked against
    `expected_sha256` when given, then published and recorded. The header is checked (a database read) while
    the first chunks arrive; its verdict is raised as soon as it is known, and always before anything is kept.
    A problem with the header is the answer whatever else went wrong, so the answer never depends on timing."""
    validation = asyncio.ensure_future(asyncio.to_thread(validate_attachment, context, request))
    streaming = StreamingUpload(context.blobs.writer())
    try:
        async for chunk in chunks:
            if validation.done():
                validation.result()
            check_chunk(chunk)
            await streaming.write(chunk)
        await validation
        pending = await streaming.finish(expected_sha256, "header.sha256")
    except BaseException as exc:
        await asyncio.shield(_abandon(streaming, validation))
        refusal = None if validation.cancelled() else validation.exception()
        if refusal is not None and not isinstance(exc, asyncio.CancelledError):
            raise refusal from None
        raise
    try:
        return await asyncio.to_thread(record_upload, context, request, pending, idempotency_key)
    finally:
        pending.discard()  # a no-op once published; a refused signature leaves nothing behind


def record_upload(
    context: Context, request: AttachmentRequest, pending: PendingBlob, idempotency_key: str
) -> AttachmentRecord:
    """Publishes a received blob and records the attachment; or returns the original for a repeated key."""
    run_id = parse_run_name(request.run)
    request_fingerprint = fingerprint_of({**_attachment_document(request), "sha256": pending.sha256})
    existing = _existing_for_key(context, run_id, idempotency_key, [request_fingerprint])
    if existing is not None:
        return existing[0]  # upload() discards the unpublished blob
    stamp = context.stamp()
    record = _attachment_record(run_id, request, pending.sha256, pending.size_bytes, stamp)
    signed = _sign(context, request, record, pending, "header")
    try:
        if signed is not None:
            record = replace(record, signed=credentials.signed_digest(signed))
            context.blobs.publish(signed)
        context.blobs.publish(pending)
    finally:
        if signed is not None:
            signed.discard()
    item = NewAttachment(record, idempotency_key or None, request_fingerprint, 0)
    stored = context.store.add_attachments([item], stamp.created_at)
    if stored is None:
        existing = _existing_for_key(context, run_id, idempotency_key, [request_fingerprint])
        assert existing is not None
        return existing[0]
    return stored[0]


def batch_create_attachments(
    context: Context, run: str, items: Sequence[tuple[AttachmentRequest, bytes]], idempotency_key: str
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
        raise InvalidArgument("ATTACHMENT_INVALID", f"{len(problems)} invalid attachment field(s)", violations=problems)
    _check_credentials([(request, f"attachments[{index}]") for index, (request, _) in enumerate(items)])
    if any(request.credentials is not None for request, _ in items):
        credentials.require_signer(context)
    total = sum(len(data) for _, data in items)
    if total > context.config.max_attachment_bytes:
        raise ResourceExhausted(
            "ATTACHMENT_TOO_LARGE",
            f"the batch holds {total} bytes; the limit is {context.config.max_attachment_bytes}",
            metadata={"limit_bytes": str(context.config.max_attachment_bytes)},
        )
    ownership.require_attachable(context, run_id, [request.kind for request, _ in items])
    pending: list[PendingBlob] = []
    try:
        for index, (request, data) in enumerate(items):
            pending.append(context.blobs.write([data], request.sha256, f"attachments[{index}].sha256"))
        fingerprints = [
            fingerprint_of({**_attachment_document(request), "sha256": blob.sha256, "position": index})
            for index, ((request, _), blob) in enumerate(zip(items, pending, strict=True))
        ]
        existing = _existing_for_key(context, run_id, idempotency_key, fingerprints)
        if existing is not None:
            return existing
        stamp = context.stamp()
        records = []
        for index, ((request, _), blob) in enumerate(zip(items, list(pending), strict=True)):
            record = _attachment_record(run_id, request, blob.sha256, blob.size_bytes, stamp)
            signed = _sign(context, request, record, blob, f"attachments[{index}]")
            if signed is not None:
                pending.append(signed)  # at once: a later item's refusal discards it with the others
                record = replace(record, signed=credentials.signed_digest(signed))
            records.append(NewAttachment(record, idempotency_key or None, fingerprints[index], index))
        for blob in pending:
            context.blobs.publish(blob)
        stored = context.store.add_attachments(records, stamp.created_at)
        if stored is None:
            existing = _existing_for_key(context, run_id, idempotency_key, fingerprints)
            assert existing is not None
            return existing
        return stored
    finally:
        for blob in pending:
            blob.discard()


def check_chunk(chunk: bytes) -> None:
    if len(chunk) > CHUNK_LIMIT_BYTES:
        raise InvalidArgument(
            "ATTACHMENT_INVALID",
            f"a chunk holds {len(chunk)} bytes; send at most {CHUNK_LIMIT_BYTES} per message",
            violations=[FieldViolation("chunk", "at most 1 MiB")],
        )


def _existing_for_key(
    context: Context, run_id: str, idempotency_key: str, fingerprints: list[str]
) -> list[AttachmentRecord] | None:
    if not idempotency_key:
        return None
    found = context.store.attachments_for_key(run_id, call_context.require_principal().id, idempotency_key)
    if not found:
        return None
    ensure_same_request(idempotency_key, fingerprint_of([f for _, f in found]), fingerprint_of(fingerprints))
    return [record for record, _ in found]


def _attachment_record(
    run_id: str, request: AttachmentRequest, sha256: str, size: int, stamp: Stamp
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


def _attachment_document(request: AttachmentRequest) -> dict[str, Any]:
    document: dict[str, Any] = {
        "run": request.run,
        "kind": request.kind,
        "filename": request.filename,
        "content_type": request.content_type,
        "metadata": dict(request.metadata),
    }
    if request.credentials is not None:  # absent otherwise: fingerprints recorded before credentials existed hold
        document["content_credentials"] = request.credentials.document()
    return document


def _check_credentials(requests: Sequence[tuple[AttachmentRequest, str]]) -> None:
    """Each request with the field prefix its problems are named under."""
    problems = [
        problem
        for request, prefix in requests
        if request.credentials is not None
        for problem in credentials.credentials_problems(request.credentials, request.content_type, prefix)
    ]
    if problems:
        raise InvalidArgument(
            "CONTENT_CREDENTIALS_INVALID", f"{len(problems)} invalid content-credentials field(s)", violations=problems
        )


def _sign(
    context: Context, request: AttachmentRequest, record: AttachmentRecord, blob: PendingBlob, prefix: str
) -> PendingBlob | None:
    if request.credentials is None:
        return None
    return credentials.sign(context, record, request.credentials, blob, prefix)


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


async def _abandon(streaming: StreamingUpload, validation: asyncio.Future[str]) -> None:
    await asyncio.gather(validation, return_exceptions=True)
    await streaming.abort()
