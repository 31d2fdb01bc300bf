"""Proto <-> domain conversions for the lineage contract (the servicer's only vocabulary)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from google.protobuf import json_format

from custody.common.v1 import common_pb2
from custody.lineage.v1 import lineage_pb2 as pb
from services.common.clock import rfc3339
from services.common.errors import FieldViolation, InvalidArgument
from services.common.identity import Principal
from services.common.ledger import rpc
from services.common.protomap import dict_to_struct, principal_kind_from_proto, principal_to_proto, struct_to_dict
from services.lineage.domain.diff import Diff
from services.lineage.domain.model import (
    ClosurePage,
    Conditional,
    Health,
    HealthRecord,
    Metadata,
    ProjectSummary,
    Source,
    Status,
    StatusRecord,
    TypeDefinition,
    Version,
)
from services.lineage.domain.plan import Plan
from services.lineage.domain.policy import Policy
from services.lineage.domain.witness import Witnessed

SOURCES = {pb.SOURCE_AI: Source.AI, pb.SOURCE_HUMAN: Source.HUMAN, pb.SOURCE_HYBRID: Source.HYBRID}
STATUSES = {
    Status.DRAFT: pb.STATUS_DRAFT,
    Status.APPROVED: pb.STATUS_APPROVED,
    Status.FLAGGED_FOR_REVIEW: pb.STATUS_FLAGGED_FOR_REVIEW,
    Status.REJECTED: pb.STATUS_REJECTED,
}
HEALTHS = {
    Health.VALID: pb.HEALTH_VALID,
    Health.STALE: pb.HEALTH_STALE,
    Health.NEEDS_REVISION: pb.HEALTH_NEEDS_REVISION,
    Health.CONFIRMED_VALID: pb.HEALTH_CONFIRMED_VALID,
}
HEALTH_FROM_PROTO = {v: k for k, v in HEALTHS.items()}
STATUS_FROM_PROTO = {v: k for k, v in STATUSES.items()}


def statuses_from_proto(values: Sequence[pb.Status.ValueType]) -> frozenset[Status]:
    """ListVersions' status filter. proto3 enums are open, so an unspecified or unknown number arrives as is: each
    such entry is named in one FILTER_INVALID (as runs names its bad filters), never silently dropped."""
    problems = [
        FieldViolation(
            f"statuses[{i}]",
            ("STATUS_UNSPECIFIED" if value == pb.STATUS_UNSPECIFIED else f"unknown value {value}")
            + ": must be STATUS_DRAFT, STATUS_APPROVED, STATUS_FLAGGED_FOR_REVIEW or STATUS_REJECTED",
        )
        for i, value in enumerate(values)
        if value not in STATUS_FROM_PROTO
    ]
    if problems:
        raise InvalidArgument(
            "FILTER_INVALID",
            f"{len(problems)} status filter value(s) name no status: " + ", ".join(p.field for p in problems),
            violations=problems,
        )
    return frozenset(STATUS_FROM_PROTO[value] for value in values)


def metadata_from_proto(message: pb.VersionMetadata) -> Metadata:
    problems = []
    if message.source not in SOURCES:
        problems.append(FieldViolation("metadata.source", "required: SOURCE_AI, SOURCE_HUMAN or SOURCE_HYBRID"))
    if not message.HasField("confidence"):
        problems.append(FieldViolation("metadata.confidence", "required, between 0 and 1"))
    if problems:
        raise InvalidArgument("METADATA_INVALID", "version metadata is incomplete or invalid", violations=problems)
    cost = (
        json_format.MessageToDict(message.cost, preserving_proto_field_name=True) if message.HasField("cost") else None
    )
    return Metadata(
        intent=message.intent,
        rationale=message.rationale,
        confidence=message.confidence,
        source=SOURCES[message.source],
        alternatives_considered=tuple(message.alternatives_considered),
        producing_module=message.producing_module,
        producing_role=message.producing_role,
        cost=cost,
        schema_version=message.schema_version,
        parameters_sha256=message.parameters_sha256,
    )


def metadata_to_proto(metadata: Metadata) -> pb.VersionMetadata:
    message = pb.VersionMetadata(
        intent=metadata.intent,
        rationale=metadata.rationale,
        alternatives_considered=list(metadata.alternatives_considered),
        confidence=metadata.confidence,
        source={v: k for k, v in SOURCES.items()}[metadata.source],
        producing_module=metadata.producing_module,
        producing_role=metadata.producing_role,
        schema_version=metadata.schema_version,
        parameters_sha256=metadata.parameters_sha256,
    )
    if metadata.cost is not None:
        message.cost.CopyFrom(json_format.ParseDict(dict(metadata.cost), common_pb2.CostRecord()))
    return message


def requested_by_from_proto(request: pb.CreateVersionRequest) -> Principal | None:
    """CreateVersion's requested_by (id and kind; roles are not the caller's to say), or None when unset."""
    if not request.HasField("requested_by"):
        return None
    kind = principal_kind_from_proto(request.requested_by.kind)
    if kind is None:
        raise InvalidArgument(
            "REQUESTED_BY_INVALID",
            "requested_by needs a kind: PRINCIPAL_KIND_HUMAN or PRINCIPAL_KIND_SERVICE",
            violations=[FieldViolation("requested_by.kind", "PRINCIPAL_KIND_HUMAN or PRINCIPAL_KIND_SERVICE")],
        )
    return Principal(request.requested_by.id, kind)


FOUR_EYES = {True: pb.FOUR_EYES_REQUIRED, False: pb.FOUR_EYES_WAIVED}


def four_eyes_from_proto(value: int) -> bool:
    """RegisterType's four_eyes: required unless waived (the domain refuses a waiver at run time)."""
    if value not in (pb.FOUR_EYES_UNSPECIFIED, pb.FOUR_EYES_REQUIRED, pb.FOUR_EYES_WAIVED):
        raise InvalidArgument(
            "RULE_INVALID",
            f"four_eyes {value} is not a FourEyes value",
            violations=[FieldViolation("four_eyes", "FOUR_EYES_REQUIRED or FOUR_EYES_WAIVED")],
        )
    return value != pb.FOUR_EYES_WAIVED


def status_to_proto(record: StatusRecord) -> pb.StatusRecord:
    return pb.StatusRecord(
        status=STATUSES[record.status],
        revision=record.revision,
        update_time=rfc3339(record.at),
        actor=principal_to_proto(record.actor),
        rationale=record.rationale,
        request_id=record.request_id,
        ledger=rpc.entry(record.ledger),
    )


def health_to_proto(record: HealthRecord) -> pb.HealthRecord:
    return pb.HealthRecord(
        health=HEALTHS[record.health],
        revision=record.revision,
        update_time=rfc3339(record.at),
        actor=principal_to_proto(record.actor),
        rationale=record.rationale,
        cause=record.cause,
        request_id=record.request_id,
        ledger=rpc.entry(record.ledger),
    )


def version_to_proto(version: Version) -> pb.Version:
    return pb.Version(
        name=str(version.name),
        project=version.name.project,
        artifact_type=version.name.artifact_type,
        entity=version.name.entity,
        version=version.name.number,
        data=dict_to_struct(version.data),
        metadata=metadata_to_proto(version.metadata),
        upstream=[str(u) for u in version.upstream],
        data_sha256=version.data_sha256,
        snapshot_sha256=version.snapshot_sha256,
        create_time=rfc3339(version.created_at),
        created_by=principal_to_proto(version.created_by),
        request_id=version.request_id,
        status=status_to_proto(version.status),
        health=health_to_proto(version.health),
        latest=version.latest,
        status_history=[status_to_proto(s) for s in version.status_history],
        health_history=[health_to_proto(h) for h in version.health_history],
        ledger=rpc.entry(version.ledger),
        requested_by=None if version.requested_by is None else principal_to_proto(version.requested_by),
    )


def type_from_proto(request: pb.RegisterTypeRequest) -> TypeDefinition:
    return TypeDefinition(
        name=request.name,
        policy=request.policy,
        schema_version=request.schema_version,
        schema=struct_to_dict(request.schema, "schema"),
        requires=tuple(request.requires),
        conditional=tuple(Conditional(tuple(c.requires), tuple(c.when_any_selected)) for c in request.conditional),
        selection_field=request.selection_field,
        creators=tuple(request.creators),
        four_eyes=four_eyes_from_proto(request.four_eyes),
    )


def type_to_proto(definition: TypeDefinition) -> pb.ArtifactType:
    message = pb.ArtifactType(
        name=definition.name,
        policy=definition.policy,
        schema_version=definition.schema_version,
        schema=dict_to_struct(definition.schema),
        requires=list(definition.requires),
        conditional=[
            pb.ConditionalRequirement(requires=list(c.requires), when_any_selected=list(c.when_any_selected))
            for c in definition.conditional
        ],
        selection_field=definition.selection_field,
        definition_sha256=definition.definition_sha256,
        source=definition.source,
        creators=list(definition.creators),
        ledger=rpc.entry(definition.ledger),
        four_eyes=FOUR_EYES[definition.four_eyes],
    )
    if definition.registered_at is not None:
        message.register_time = rfc3339(definition.registered_at)
    if definition.registered_by is not None:
        message.registered_by.CopyFrom(principal_to_proto(definition.registered_by))
    return message


def project_to_proto(project: ProjectSummary) -> pb.Project:
    message = pb.Project(name=f"projects/{project.project}", version_count=project.version_count)
    message.latest_create_time.FromDatetime(project.latest_created_at)
    return message


def policy_to_proto(policy: Policy, types: tuple[TypeDefinition, ...]) -> pb.Policy:
    return pb.Policy(
        name=policy.name,
        description=policy.description,
        source=policy.source,
        types=[type_to_proto(t) for t in types],
        job_groups=[
            pb.JobGroup(name=g.name, artifact_type=g.artifact_type, job_types=list(g.job_types))
            for g in policy.job_groups
        ],
    )


def diff_to_proto(base: Version, target: Version, result: Diff) -> pb.DiffVersionsResponse:
    operations = []
    for op in result.patch:
        message = pb.JsonPatchOperation(op=op["op"], path=op["path"], **({"from": op["from"]} if "from" in op else {}))
        if "value" in op:
            json_format.ParseDict(op["value"], message.value)
        operations.append(message)
    return pb.DiffVersionsResponse(
        base=str(base.name),
        target=str(target.name),
        patch=operations,
        patch_json=json.dumps(list(result.patch), sort_keys=True, separators=(",", ":")),
        changed_paths=list(result.changed_paths),
        added=result.counts.get("add", 0) + result.counts.get("copy", 0),
        removed=result.counts.get("remove", 0),
        replaced=result.counts.get("replace", 0),
        moved=result.counts.get("move", 0),
        identical=result.identical,
    )


def closure_to_proto(page: ClosurePage, token: str) -> pb.LineageResponse:
    return pb.LineageResponse(
        root=str(page.root),
        nodes=[
            pb.LineageNode(
                name=str(n.name),
                depth=n.depth,
                status=STATUSES[n.status],
                health=HEALTHS[n.health],
                upstream=[str(u) for u in n.upstream],
                latest=n.latest,
                created_by=principal_to_proto(n.created_by),
            )
            for n in page.nodes
        ],
        truncated=page.truncated,
        next_page_token=token,
        total_size=page.total_size,
    )


def plan_to_proto(plan: Plan) -> pb.Plan:
    return pb.Plan(
        policy=plan.policy,
        jobs=[
            pb.Job(
                id=j.id,
                job_type=j.job_type,
                group=j.group,
                artifact_type=j.artifact_type,
                depends_on=list(j.depends_on),
            )
            for j in plan.jobs
        ],
        requirements=[
            pb.TypeRequirement(artifact_type=name, required_upstream_types=list(required))
            for name, required in plan.requirements
        ],
        warnings=list(plan.warnings),
    )


def witnessed_to_proto(kept: Witnessed) -> pb.WitnessedCheckpoint:
    message = pb.WitnessedCheckpoint(
        origin=kept.origin,
        tree_size=kept.size,
        root_hash=kept.root,
        note=kept.note,
        ledger=rpc.entry(kept.ledger),
    )
    if kept.at is not None:
        message.witness_time.FromDatetime(kept.at)
    return message
