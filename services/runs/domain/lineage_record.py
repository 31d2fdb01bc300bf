"""The outbox message that records a minted verdict in lineage: written in the mint's transaction, delivered
later by the outbox dispatcher (so a verdict is recorded in lineage exactly when it exists).

The request is built as lineage's typed CreateVersionRequest at mint time and stored in its JSON form: a field
lineage's contract renamed or dropped fails the mint (and the tests), not a delivery hours later.

It names the principal that asked for the binding (the mint's authenticated caller) as requested_by: lineage then
keeps that principal from approving the verdict, as it keeps the version's creator (service:runs) from it."""

from __future__ import annotations

from dataclasses import replace

from google.protobuf import json_format, struct_pb2
from opentelemetry import propagate

from custody.lineage.v1 import lineage_pb2
from services.common.ids import new_id
from services.common.protomap import principal_to_proto
from services.common.resource_names import VERSION_NAME
from services.rosette import lineage_types
from services.runs.domain.ports import CandidateRecord
from services.runs.model import (
    OUTBOX_PREFIX,
    OutboxMessage,
    RunContent,
    RunStatus,
    Stamp,
    run_name,
)


def lineage_message(run_id: str, content: RunContent, stamp: Stamp, candidate: CandidateRecord) -> OutboxMessage:
    """The feasibility_run version that records a minted run in lineage, derived from its candidate version.
    Same candidate entity, type feasibility_run: binding the candidate again makes the next version. It names the
    candidate and the digests of the bytes decided, so a reader of lineage alone can tell what the verdict is about,
    and who requested it (id and kind: lineage records no roles for a requester)."""
    match = VERSION_NAME.fullmatch(candidate.name)
    assert match is not None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    decision = content.decision
    data = struct_pb2.Struct()
    data.update(
        {
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
        }
    )
    request = lineage_pb2.CreateVersionRequest(
        parent=f"projects/{match['project']}/artifacts/{lineage_types.FEASIBILITY_RUN}/{match['entity']}",
        data=data,
        metadata=lineage_pb2.VersionMetadata(
            intent="decide whether the candidate can be manufactured",
            rationale=f"deterministic feasibility engine {content.engine_version} on the candidate's SVG and spec",
            confidence=decision.score,
            source=lineage_pb2.SOURCE_HYBRID,
            producing_module="runs",
            producing_role="feasibility_engine",
        ),
        upstream=[candidate.name],
        requested_by=principal_to_proto(replace(stamp.created_by, roles=frozenset())),
    )
    payload = json_format.MessageToDict(request, preserving_proto_field_name=True)
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
