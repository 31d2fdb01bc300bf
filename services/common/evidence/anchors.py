"""What a Custody statement claims about ledger records: one anchor per subject, dependency and decision, each
naming the record, its kind and the values its leaf must carry.

The verifier derives anchors from the signed statement alone (never from the bundle's ledger file), so a
bundle cannot choose which of its claims get checked: every subject and every resolved dependency must be
anchored, and a statement whose shape this module does not know is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from services.common.evidence import records, statement
from services.common.evidence.records import RecordKind


@dataclass(frozen=True)
class Anchor:
    where: str  # the claim's place in the statement, e.g. "subject[1]"
    kind: RecordKind
    name: str
    sha256: str | None = None
    principal: str | None = None
    request_id: str | None = None
    time_us: int | None = None


def anchors(claims: dict[str, Any]) -> tuple[list[Anchor], list[str]]:
    """The anchors of a statement that passed statement.problems, and what prevents deriving the others."""
    predicate_type = claims["predicateType"]
    if predicate_type == statement.SLSA_PROVENANCE:
        return _run_anchors(claims)
    if predicate_type == statement.VERIFICATION_SUMMARY:
        return _approval_anchors(claims)
    return [], [f"predicateType {predicate_type} is not one Custody exports"]


def _run_anchors(claims: dict[str, Any]) -> tuple[list[Anchor], list[str]]:
    found: list[Anchor] = []
    problems: list[str] = []
    subjects = claims["subject"]
    run = subjects[0]["name"]
    predicate = claims["predicate"]
    metadata = _get(predicate, "runDetails", "metadata")
    started = metadata.get("startedOn") if isinstance(metadata, dict) else None
    invocation = metadata.get("invocationId") if isinstance(metadata, dict) else None
    if not isinstance(started, str) or not isinstance(invocation, str):
        problems.append("predicate.runDetails.metadata needs invocationId and startedOn")
    started_us = _time_us(started, "predicate.runDetails.metadata.startedOn", problems)
    found.append(
        Anchor(
            "subject[0]",
            records.RUN,
            run,
            subjects[0]["digest"]["sha256"],
            request_id=invocation if isinstance(invocation, str) else None,
            time_us=started_us,
        )
    )
    prefix = f"{run}/attachments/"
    for index, subject in enumerate(subjects[1:], start=1):
        name = subject["name"]
        attachment, _, filename = name.removeprefix(prefix).partition("/")
        if not name.startswith(prefix) or not attachment or not filename:
            problems.append(f"subject[{index}] {name} is neither the run nor one of its attachments")
            continue
        found.append(Anchor(f"subject[{index}]", records.ATTACHMENT, prefix + attachment, subject["digest"]["sha256"]))
    dependencies = _get(predicate, "buildDefinition", "resolvedDependencies")
    if not isinstance(dependencies, list):
        problems.append("predicate.buildDefinition.resolvedDependencies is missing or not a list")
        dependencies = []
    for index, dependency in enumerate(dependencies):
        where = f"predicate.buildDefinition.resolvedDependencies[{index}]"
        anchor = _dependency(where, dependency, problems)
        if anchor is not None and anchor.kind is records.AI_CALL:
            request_id = dependency["annotations"].get("requestId")
            anchor = replace(anchor, request_id=request_id if isinstance(request_id, str) and request_id else None)
        if anchor is not None:
            found.append(anchor)
    return found, problems


def _approval_anchors(claims: dict[str, Any]) -> tuple[list[Anchor], list[str]]:
    problems: list[str] = []
    found = [
        Anchor(f"subject[{index}]", records.VERSION, subject["name"], subject["digest"]["sha256"])
        for index, subject in enumerate(claims["subject"])
    ]
    predicate = claims["predicate"]
    extension = predicate.get(statement.APPROVAL_EXTENSION)
    if not isinstance(extension, dict):
        return found, [f"predicate has no {statement.APPROVAL_EXTENSION} object"]
    reviewer = extension.get("reviewer")
    approval = extension.get("approval")
    request_id = extension.get("requestId")
    verifier_id = _get(predicate, "verifier", "id")
    if not isinstance(reviewer, str) or verifier_id != statement.REVIEWER_ID_PREFIX + reviewer:
        problems.append("the extension's reviewer is missing or is not the predicate's verifier")
    decided_us = _time_us(predicate.get("timeVerified"), "predicate.timeVerified", problems)
    if (
        not isinstance(approval, dict)
        or not isinstance(approval.get("name"), str)
        or approval.get("ledgerKind") != records.APPROVAL.leaf_kind
    ):
        problems.append(f"the extension's approval must name the {records.APPROVAL.leaf_kind} record")
    else:
        found.append(
            Anchor(
                f"predicate.{statement.APPROVAL_EXTENSION}.approval",
                records.APPROVAL,
                approval["name"],
                principal=reviewer if isinstance(reviewer, str) else None,
                request_id=request_id if isinstance(request_id, str) else None,
                time_us=decided_us,
            )
        )
    policy = predicate.get("policy")
    if statement.descriptor_problems(policy, key="uri") or not policy["uri"].startswith(records.TYPE_RECORD_PREFIX):
        problems.append(
            f"predicate.policy must name the lineage type registration the approval was checked against "
            f"({records.TYPE_RECORD_PREFIX}<type>@<schema version>) by uri and sha256"
        )
    else:
        found.append(Anchor("predicate.policy", records.TYPE, policy["uri"], policy["digest"]["sha256"]))
    upstream = extension.get("upstream", [])
    if not isinstance(upstream, list):
        problems.append("the extension's upstream is not a list")
        upstream = []
    for index, dependency in enumerate(upstream):
        anchor = _dependency(f"predicate.{statement.APPROVAL_EXTENSION}.upstream[{index}]", dependency, problems)
        if anchor is not None:
            found.append(anchor)
    return found, problems


def _dependency(where: str, descriptor: Any, problems: list[str]) -> Anchor | None:
    """The anchor of a resource descriptor naming a ledger record by uri, digest and annotations.ledgerKind."""
    shape = statement.descriptor_problems(descriptor, key="uri")
    if shape:
        problems += [f"{where}: {p}" for p in shape]
        return None
    annotations = descriptor.get("annotations")
    kind = records.BY_LEAF_KIND.get(annotations.get("ledgerKind", "")) if isinstance(annotations, dict) else None
    if kind is None:
        problems.append(f"{where} ({descriptor['uri']}) names no ledger record kind Custody knows")
        return None
    return Anchor(where, kind, descriptor["uri"], descriptor["digest"]["sha256"])


def _time_us(text: Any, where: str, problems: list[str]) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return statement.time_us(text)
    except ValueError:
        problems.append(f"{where} {text!r} is not an RFC 3339 time")
        return None


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data
