"""What changed since the entity's last approved version: lineage's RFC 6902 JSON Patch, shown operation by
operation. The base is the newest APPROVED version of the same entity older than the one under review."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.json_format import MessageToDict

from custody.lineage.v1 import lineage_pb2
from services.console.pages.formatting import pretty_json
from services.console.upstream import PersonCalls


@dataclass(frozen=True)
class PatchOperation:
    op: str
    path: str
    source: str
    value: str


@dataclass(frozen=True)
class ApprovedDiff:
    # Empty when no earlier version of the entity is approved: everything is new.
    base: str
    operations: list[PatchOperation]
    patch_json: str
    identical: bool


def entity_of(name: str) -> str:
    return name.rsplit("/versions/", 1)[0]


async def last_approved_before(calls: PersonCalls, version: lineage_pb2.Version) -> str:
    best, token = "", ""
    while True:
        response = await calls.call(
            "lineage",
            "ListVersions",
            lineage_pb2.ListVersionsRequest(
                parent=entity_of(version.name),
                statuses=[lineage_pb2.STATUS_APPROVED],
                page_size=200,
                page_token=token,
            ),
        )
        for candidate in response.versions:
            if candidate.version < version.version:
                best = candidate.name  # oldest first: the last one seen is the newest
        token = response.next_page_token
        if not token:
            return best


async def approved_diff(calls: PersonCalls, version: lineage_pb2.Version) -> ApprovedDiff:
    base = await last_approved_before(calls, version)
    if not base:
        return ApprovedDiff("", [], "", False)
    diff = await calls.call("lineage", "DiffVersions", lineage_pb2.DiffVersionsRequest(base=base, target=version.name))
    operations = [
        PatchOperation(
            op=op.op,
            path=op.path,
            source=getattr(op, "from"),
            value=pretty_json(MessageToDict(op.value)) if op.HasField("value") else "",
        )
        for op in diff.patch
    ]
    return ApprovedDiff(base, operations, diff.patch_json, diff.identical)
