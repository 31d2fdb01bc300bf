"""The kinds of ledger record an evidence statement relies on: which authority's ledger holds each, and which
key of the leaf's `digests` carries the digest the statement names.

These must agree with the leaves the services append (services/common/ledger/leaves.py): a statement about a
run is only as good as the run's leaf saying the same digest in the runs ledger, and only the runs ledger is
an authority for runs (a lineage checkpoint cannot vouch for a run leaf).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RecordKind:
    service: str
    leaf_kind: str
    # The `digests` key that must equal the digest the statement names; None when the statement names none.
    digest_key: str | None


RUN = RecordKind("runs", "run", "artifact_sha256")
ATTACHMENT = RecordKind("runs", "attachment", "sha256")
VERSION = RecordKind("lineage", "version", "snapshot_sha256")
APPROVAL = RecordKind("lineage", "status", None)  # <version>/status/<revision>: the approval is a status change
# types/<type>@<schema version>: the type registration (schema and required-lineage rules) an approval was checked
# against, the approval statement's policy.
TYPE = RecordKind("lineage", "type", "definition_sha256")
AI_CALL = RecordKind("ai_gateway", "call", "record_sha256")

BY_LEAF_KIND = {kind.leaf_kind: kind for kind in (RUN, ATTACHMENT, VERSION, APPROVAL, TYPE, AI_CALL)}


def type_record(artifact_type: str, schema_version: str) -> str:
    """The lineage ledger's name for a type registration (as services/lineage/ledger_records.py names it)."""
    return f"types/{artifact_type}@{schema_version}"


TYPE_RECORD_PREFIX = "types/"
