"""Reading attachments: one by name with its bytes (re-hashed before they are served), a page of a run's
attachments, and which blobs a client need not upload again."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from services.common.clock import to_us
from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from services.common.hashing import is_sha256_hex
from services.common.pagination import page_size
from services.runs.domain import ownership
from services.runs.domain.context import Context
from services.runs.domain.pages import LIST_ATTACHMENTS, Page, page
from services.runs.model import AttachmentKind, AttachmentRecord, BlobDigest, parse_attachment_name, parse_run_name


@dataclass(frozen=True)
class AttachmentContent:
    """An attachment and its verified bytes, in chunks read as they are consumed."""

    record: AttachmentRecord
    chunks: Iterator[bytes]


def attachment(context: Context, name: str) -> AttachmentRecord:
    run_id, attachment_id = parse_attachment_name(name)
    ownership.require_run(context, run_id)
    record = context.store.get_attachment(run_id, attachment_id)
    if record is None:
        raise NotFound("ATTACHMENT_NOT_FOUND", f"attachment {name} does not exist", metadata={"attachment": name})
    return record


def read_attachment(context: Context, name: str, signed: bool = False) -> AttachmentContent:
    """The attachment and its bytes (or, with `signed`, its credentialed asset); DATA_LOSS (before any byte) when
    the stored bytes are not the recorded ones."""
    record = attachment(context, name)
    blob = BlobDigest(record.sha256, record.size_bytes)
    if signed:
        if record.signed is None:
            raise FailedPrecondition(
                "ATTACHMENT_NOT_SIGNED",
                f"attachment {name} carries no content credentials; read it without signed",
                metadata={"attachment": name},
            )
        blob = record.signed
    return AttachmentContent(record, context.blobs.read_verified(blob.sha256, blob.size_bytes))


def list_attachments(
    context: Context, run: str, kind: str, latest_only: bool, requested_size: int, token: str
) -> Page[AttachmentRecord]:
    run_id = parse_run_name(run, "run")
    if kind and kind not in set(AttachmentKind):
        raise InvalidArgument(
            "KIND_INVALID",
            f"unknown attachment kind {kind[:60]!r}",
            violations=[FieldViolation("kind", f"one of {', '.join(k.value for k in AttachmentKind)}")],
        )
    ownership.require_run(context, run_id)
    size = 1 if latest_only else page_size(requested_size)
    key = {"run": run_id, "kind": kind, "latest_only": latest_only}
    cursor = None if latest_only else context.page_tokens.decode(LIST_ATTACHMENTS, token, key)
    records = context.store.list_attachments(run_id, kind, cursor.after if cursor else None, size + 1)
    if latest_only:
        return Page(records[:1], "")
    return page(
        context.page_tokens,
        LIST_ATTACHMENTS,
        records,
        size,
        key,
        lambda a: [to_us(a.stamp.created_at), a.attachment_id],
    )


def find_missing_blobs(context: Context, digests: Sequence[str]) -> list[str]:
    bad = [
        FieldViolation(f"sha256[{i}]", "must be 64 lower-case hex")
        for i, d in enumerate(digests)
        if not is_sha256_hex(d)
    ]
    if bad:
        raise InvalidArgument("DIGEST_INVALID", f"{len(bad)} digest(s) are not sha256 hex", violations=bad)
    known = context.store.known_blobs(digests)
    missing = {d for d in digests if d not in known or not context.blobs.exists(d)}
    return sorted(missing)
