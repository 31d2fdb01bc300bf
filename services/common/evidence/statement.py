"""in-toto Statement v1 builders for Custody evidence, from plain typed inputs (the exporter fills them from the
services' responses; nothing here talks to a service).

Two statements:
- a run's provenance, predicate SLSA Provenance v1: subjects are the run artifact (name = the run's resource
  name, sha256 = its artifact_sha256) and each attachment (`<run>/attachments/<id>/<filename>`, its sha256);
  resolved dependencies are the upstream lineage versions (uri = version name, sha256 = snapshot_sha256) and the
  AI calls the run used (uri = the gateway's call name, sha256 = the call record's digest, with model, provider
  and request id as annotations).
- an approval, predicate SLSA Verification Summary v1: the human reviewer is the verifier, the policy is the
  type registration the approval was checked against (uri `types/<type>@<schema version>`, the lineage ledger's
  record of that type's schema and required-lineage rules, sha256 = its definition_sha256, which covers the
  policy's name), the approved versions are the subjects; Custody's own fields (reviewer principal,
  approval record, request id, rationale, the approved versions' upstream) sit in an extension field named by a
  URI, as the VSA parsing rules allow.

Every resolved dependency and extension entry that names a ledger record says which kind in `annotations.
ledgerKind` (records.py), so a verifier knows which ledger must vouch for it. Resource names are used as URIs
as they are: relative references, resolved against the deployment that exported them. The payload is the RFC
8785 canonical JSON of the statement, so the same inputs always sign the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.common import clock
from services.common.evidence import records
from services.common.hashing import SHA256_HEX, canonical_json
from services.common.version import CUSTODY_VERSION

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
VERIFICATION_SUMMARY = "https://slsa.dev/verification_summary/v1"
CUSTODY_URI = "https://custody.dev"
RUN_BUILD_TYPE = f"{CUSTODY_URI}/run/v1"
RUNS_BUILDER_ID = f"{CUSTODY_URI}/runs"
REVIEWER_ID_PREFIX = f"{CUSTODY_URI}/reviewers/"
APPROVAL_EXTENSION = f"{CUSTODY_URI}/approval/v1"
HUMAN_APPROVAL_LEVEL = "CUSTODY_HUMAN_APPROVAL"


@dataclass(frozen=True)
class Digested:
    """A record named by its resource name and its sha256 (hex)."""

    name: str
    sha256: str


@dataclass(frozen=True)
class AttachmentInput:
    name: str  # runs/{run}/attachments/{attachment}
    filename: str
    sha256: str


@dataclass(frozen=True)
class AiCallInput:
    name: str  # calls/{call}
    record_sha256: str
    model: str
    provider: str
    request_id: str


@dataclass(frozen=True)
class RunInput:
    name: str  # runs/{run}
    artifact_sha256: str
    mode: str
    tool_id: str
    request_id: str
    created_at: datetime
    engine_id: str = ""
    engine_version: str = ""
    attachments: Sequence[AttachmentInput] = ()
    lineage: Sequence[Digested] = ()
    ai_calls: Sequence[AiCallInput] = ()
    custody_version: str = CUSTODY_VERSION


@dataclass(frozen=True)
class ApprovalInput:
    record_name: str  # the approving status change in the lineage ledger: <version>/status/<revision>
    reviewer: str  # principal id, "human:<name>"
    decided_at: datetime
    policy_name: str  # the type registration checked: types/<type>@<schema version> (records.type_record)
    policy_sha256: str  # its definition_sha256
    approved: Sequence[Digested]
    request_id: str
    upstream: Sequence[Digested] = ()
    rationale: str = ""


def run_provenance(run: RunInput) -> dict[str, Any]:
    subjects = [_descriptor(run.name, run.artifact_sha256, key="name")]
    for attachment in run.attachments:
        if not attachment.name.startswith(f"{run.name}/attachments/"):
            raise ValueError(f"attachment {attachment.name} does not belong to {run.name}")
        subjects.append(_descriptor(f"{attachment.name}/{attachment.filename}", attachment.sha256, key="name"))
    dependencies = [
        _descriptor(v.name, v.sha256, annotations={"ledgerKind": records.VERSION.leaf_kind}) for v in run.lineage
    ]
    dependencies += [
        _descriptor(
            call.name,
            call.record_sha256,
            annotations={
                "ledgerKind": records.AI_CALL.leaf_kind,
                "model": call.model,
                "provider": call.provider,
                "requestId": call.request_id,
            },
        )
        for call in run.ai_calls
    ]
    build_definition: dict[str, Any] = {
        "buildType": RUN_BUILD_TYPE,
        "externalParameters": {"mode": run.mode, "toolId": run.tool_id},
        "resolvedDependencies": dependencies,
    }
    if run.engine_id or run.engine_version:
        build_definition["internalParameters"] = {
            "feasibilityEngine": {"id": run.engine_id, "version": run.engine_version}
        }
    predicate = {
        "buildDefinition": build_definition,
        "runDetails": {
            "builder": {"id": RUNS_BUILDER_ID, "version": {"custody": run.custody_version}},
            "metadata": {"invocationId": run.request_id, "startedOn": rfc3339(run.created_at)},
        },
    }
    return _statement(subjects, SLSA_PROVENANCE, predicate)


def approval_summary(approval: ApprovalInput) -> dict[str, Any]:
    if not approval.approved:
        raise ValueError("an approval statement needs at least one approved version")
    subjects = [_descriptor(v.name, v.sha256, key="name") for v in approval.approved]
    extension: dict[str, Any] = {
        "reviewer": approval.reviewer,
        "approval": {"name": approval.record_name, "ledgerKind": records.APPROVAL.leaf_kind},
        "requestId": approval.request_id,
        "rationale": approval.rationale,
        "upstream": [
            _descriptor(v.name, v.sha256, annotations={"ledgerKind": records.VERSION.leaf_kind})
            for v in approval.upstream
        ],
    }
    predicate = {
        "verifier": {"id": REVIEWER_ID_PREFIX + approval.reviewer},
        "timeVerified": rfc3339(approval.decided_at),
        "resourceUri": approval.approved[0].name,
        "policy": _descriptor(approval.policy_name, approval.policy_sha256),
        "verificationResult": "PASSED",
        "verifiedLevels": [HUMAN_APPROVAL_LEVEL],
        "slsaVersion": "1.0",
        APPROVAL_EXTENSION: extension,
    }
    return _statement(subjects, VERIFICATION_SUMMARY, predicate)


def payload(statement: dict[str, Any]) -> bytes:
    """The bytes that get signed: the statement's RFC 8785 canonical JSON."""
    return canonical_json(statement)


def problems(statement: Any) -> list[str]:
    """What makes `statement` not an in-toto Statement v1 with sha256-named subjects (empty when it is one)."""
    if not isinstance(statement, dict):
        return ["the statement is not a JSON object"]
    found = []
    if statement.get("_type") != STATEMENT_TYPE:
        found.append(f"_type is {statement.get('_type')!r}, not {STATEMENT_TYPE}")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        found.append("subject is missing or empty")
    else:
        for index, subject in enumerate(subjects):
            found += [f"subject[{index}]: {p}" for p in descriptor_problems(subject, key="name")]
    if not isinstance(statement.get("predicateType"), str) or not statement["predicateType"]:
        found.append("predicateType is missing or not a string")
    if not isinstance(statement.get("predicate"), dict):
        found.append("predicate is missing or not an object")
    return found


def rfc3339(moment: datetime) -> str:
    """UTC with microseconds (clock.rfc3339), the precision of a ledger leaf's time_us; naive times are refused."""
    if moment.tzinfo is None:
        raise ValueError("times in evidence must be timezone-aware")
    return clock.rfc3339(moment)


def time_us(text: str) -> int:
    """Microseconds since the epoch of an RFC 3339 timestamp; raises ValueError for anything else."""
    return clock.to_us(clock.parse_rfc3339(text))


def _statement(subjects: list[dict[str, Any]], predicate_type: str, predicate: dict[str, Any]) -> dict[str, Any]:
    return {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": predicate_type, "predicate": predicate}


def _descriptor(
    name: str, sha256: str, *, key: str = "uri", annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    if not SHA256_HEX.match(sha256):
        raise ValueError(f"{name}: {sha256!r} is not a lowercase hex sha256")
    descriptor: dict[str, Any] = {key: name, "digest": {"sha256": sha256}}
    if annotations:
        descriptor["annotations"] = annotations
    return descriptor


def descriptor_problems(descriptor: Any, *, key: str) -> list[str]:
    """What makes `descriptor` not a resource descriptor naming a record by `key` ("name" or "uri") and sha256."""
    if not isinstance(descriptor, dict):
        return ["not an object"]
    found = []
    if not isinstance(descriptor.get(key), str) or not descriptor[key]:
        found.append(f"{key} is missing or not a string")
    digest = descriptor.get("digest")
    if not isinstance(digest, dict) or not digest:
        found.append("digest is missing or empty")
    elif not all(isinstance(k, str) and isinstance(v, str) for k, v in digest.items()):
        found.append("digest is not a map of strings")
    elif not SHA256_HEX.match(digest.get("sha256", "")):
        found.append("digest has no lowercase hex sha256")
    return found
