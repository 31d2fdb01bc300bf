"""Verifying a run: its stored document still hashes to its recorded digest, its indexed columns agree with the
document, every attachment's bytes are intact, and every credentialed asset is intact and carries a trusted
manifest naming its attachment."""

from __future__ import annotations

import json
from dataclasses import dataclass

from services.common.clock import to_us
from services.common.content_credentials import CredentialsError, read_credentials
from services.common.hashing import canonical_json, loads_canonical, sha256_bytes
from services.runs.domain import ownership
from services.runs.domain.context import Context
from services.runs.model import AttachmentRecord, parse_run_name


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


def verify_run(context: Context, name: str) -> Verification:
    stored = ownership.owned_stored(context, parse_run_name(name))
    record = stored.record
    problems: list[Problem] = []
    recomputed = sha256_bytes(canonical_json(loads_canonical(stored.artifact_json)))
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
        page = context.store.list_attachments(record.run_id, "", after, 500)
        for attachment in page:
            checked += 1
            issue = context.blobs.verify(attachment.sha256, attachment.size_bytes)
            if issue is not None:
                problems.append(Problem(attachment.name, issue, attachment.sha256, "unreadable or different bytes"))
            if attachment.signed is not None:
                problems.extend(_signed_asset_problems(context, attachment))
        if len(page) < 500:
            break
        after = [to_us(page[-1].stamp.created_at), page[-1].attachment_id]
    return Verification(record.name, problems, checked)


def _signed_asset_problems(context: Context, attachment: AttachmentRecord) -> list[Problem]:
    """The credentialed asset is the recorded bytes, and its manifest is trusted and names exactly this attachment
    and its unsigned bytes (a manifest copied from another asset would validate on its own)."""
    assert attachment.signed is not None
    signed, where = attachment.signed, f"{attachment.name}#signed"
    issue = context.blobs.verify(signed.sha256, signed.size_bytes)
    if issue is not None:
        return [Problem(where, issue, signed.sha256, "unreadable or different bytes")]
    if context.credential_anchors is None:
        return []  # no anchors configured: the digest above is all this service can check
    data = context.blobs.read_all_verified(signed.sha256, signed.size_bytes)
    try:
        report = read_credentials(data, attachment.content_type, context.credential_anchors)
    except CredentialsError as exc:
        return [Problem(where, "CREDENTIALS_INVALID", "a readable C2PA manifest", str(exc))]
    expected = {"attachment": attachment.name, "unsigned_sha256": attachment.sha256}
    named = (
        {}
        if report.assertion is None
        else {
            "attachment": report.assertion.attachment,
            "unsigned_sha256": report.assertion.unsigned_sha256,
        }
    )
    if not report.trusted or named != expected:
        found = "; ".join(report.problems) or f"the manifest names {named or 'nothing'}"
        return [Problem(where, "CREDENTIALS_INVALID", f"a trusted manifest naming {expected}", found)]
    return []
