"""Verifying a run: its stored document still hashes to its recorded digest, its indexed columns agree with the
document, and every attachment's bytes are intact."""

from __future__ import annotations

import json
from dataclasses import dataclass

from services.common.clock import to_us
from services.common.hashing import canonical_json, loads_canonical, sha256_bytes
from services.runs.domain import ownership
from services.runs.domain.context import Context
from services.runs.model import parse_run_name


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
        if len(page) < 500:
            break
        after = [to_us(page[-1].stamp.created_at), page[-1].attachment_id]
    return Verification(record.name, problems, checked)
