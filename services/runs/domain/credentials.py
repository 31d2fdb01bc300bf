"""Content credentials on generated images: runs embeds a C2PA manifest it signs into a PNG or SVG as it is
attached, so the asset carries its provenance wherever it goes (services/common/content_credentials).

The manifest states what runs knows itself (the run, the attachment, the digest of the unsigned bytes, who
uploaded them) and what the uploader states about the model and the AI call, marked as the uploader's. The
unsigned bytes stay the attachment's `sha256` (what binding checks); the signed asset is a second blob, named by
`AttachmentRecord.signed`. A request for credentials that cannot be honoured fails and stores nothing: an asset
is never attached without the credentials it was meant to carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.common.content_credentials import (
    SUPPORTED_MEDIA_TYPES,
    Credentials,
    CredentialsError,
    CustodyAssertion,
    Generator,
    SourceType,
    media_type_of,
)
from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument
from services.common.resource_names import CALL_NAME
from services.common.version import CUSTODY_VERSION
from services.runs.blobs import PendingBlob
from services.runs.domain.context import Context
from services.runs.model import AttachmentRecord, BlobDigest, run_name

MAX_PROVIDER, MAX_MODEL, MAX_REQUEST_ID = 64, 128, 128
# The principal that signs: this service (the uploader is named by the attachment's created_by).
SIGNER = "service:runs"


class AssetSource(StrEnum):
    MODEL_OUTPUT = "model_output"
    COMPILED_FROM_MODEL_OUTPUT = "compiled_from_model_output"


SOURCE_TYPES = {
    AssetSource.MODEL_OUTPUT: SourceType.TRAINED_ALGORITHMIC_MEDIA,
    AssetSource.COMPILED_FROM_MODEL_OUTPUT: SourceType.ALGORITHMIC_MEDIA,
}


@dataclass(frozen=True)
class CredentialsRequest:
    """What the uploader states about a generated asset (AttachmentHeader.content_credentials)."""

    source: AssetSource | None
    provider: str
    model: str
    ai_call: str = ""
    ai_request_id: str = ""
    ai_ledger_leaf_index: int | None = None

    def document(self) -> dict[str, object]:
        """What the request contributes to the attachment's idempotency fingerprint."""
        return {
            "source": None if self.source is None else self.source.value,
            "provider": self.provider,
            "model": self.model,
            "ai_call": self.ai_call,
            "ai_request_id": self.ai_request_id,
            "ai_ledger_leaf_index": self.ai_ledger_leaf_index,
        }


def credentials_problems(request: CredentialsRequest, content_type: str, prefix: str) -> list[FieldViolation]:
    field = f"{prefix}.content_credentials"
    problems = []
    if request.source is None:
        problems.append(FieldViolation(f"{field}.source", "MODEL_OUTPUT or COMPILED_FROM_MODEL_OUTPUT"))
    if content_type not in SUPPORTED_MEDIA_TYPES:
        problems.append(FieldViolation(f"{prefix}.content_type", f"one of {', '.join(sorted(SUPPORTED_MEDIA_TYPES))}"))
    if not 1 <= len(request.provider) <= MAX_PROVIDER or not 1 <= len(request.model) <= MAX_MODEL:
        problems.append(
            FieldViolation(f"{field}.provider", f"provider 1..{MAX_PROVIDER} and model 1..{MAX_MODEL} characters")
        )
    if request.ai_call and not CALL_NAME.fullmatch(request.ai_call):
        problems.append(FieldViolation(f"{field}.ai_call", "empty or calls/call_<32 lower-case hex>"))
    if len(request.ai_request_id) > MAX_REQUEST_ID:
        problems.append(FieldViolation(f"{field}.ai_request_id", f"at most {MAX_REQUEST_ID} characters"))
    if request.ai_ledger_leaf_index is not None and request.ai_ledger_leaf_index < 0:
        problems.append(FieldViolation(f"{field}.ai_ledger_leaf_index", "0 or more"))
    return problems


def require_signer(context: Context) -> None:
    """Checked before any byte is received, so an upload that cannot be signed fails at once."""
    if context.signer is None:
        raise FailedPrecondition(
            "CONTENT_CREDENTIALS_UNAVAILABLE",
            "this runs service has no content-credentials signing certificate, so it cannot sign the asset; run "
            "`custody init` (it creates <state_dir>/c2pa/runs/) or set CUSTODY_RUNS_CONTENT_CREDENTIALS_DIR",
        )


def sign(
    context: Context, record: AttachmentRecord, request: CredentialsRequest, pending: PendingBlob, prefix: str
) -> PendingBlob:
    """The credentialed asset of a received attachment, as a second pending blob (published with the first)."""
    require_signer(context)
    assert context.signer is not None and request.source is not None
    data = pending.path.read_bytes()
    try:
        media_type = media_type_of(data)
    except CredentialsError:
        media_type = ""
    if media_type != record.content_type:
        raise InvalidArgument(
            "CONTENT_CREDENTIALS_INVALID",
            f"content credentials were asked for a {record.content_type} but the bytes are "
            f"{media_type or 'not an image Custody can sign'}",
            violations=[FieldViolation(f"{prefix}.content_type", "must be the media type of the bytes")],
        )
    credentials = Credentials(
        source_type=SOURCE_TYPES[request.source],
        generator=Generator(provider=request.provider, model=request.model, custody_version=CUSTODY_VERSION),
        assertion=CustodyAssertion(
            run=run_name(record.run_id),
            attachment=record.name,
            kind=record.kind,
            unsigned_sha256=record.sha256,
            unsigned_size_bytes=record.size_bytes,
            ai_call=request.ai_call,
            ai_request_id=request.ai_request_id,
            ai_ledger_leaf_index=request.ai_ledger_leaf_index,
            signed_by=SIGNER,
        ),
        title=record.filename,
    )
    try:
        signed = context.signer.sign(data, media_type, credentials)
    except CredentialsError as exc:
        raise InvalidArgument(
            "CONTENT_CREDENTIALS_INVALID",
            f"the {media_type} could not be signed: {exc}",
            violations=[FieldViolation(f"{prefix}.content_credentials", "the asset must be a well-formed image")],
        ) from None
    return context.blobs.write([signed])


def signed_digest(blob: PendingBlob) -> BlobDigest:
    return BlobDigest(blob.sha256, blob.size_bytes)
