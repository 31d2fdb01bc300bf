"""The three ledger RPCs (GetCheckpoint, GetInclusionProof, GetConsistencyProof), one implementation that the
runs, lineage and ai_gateway servicers delegate to: proto in, one Ledger call, proto out."""

from __future__ import annotations

import asyncio

from custody.common.v1 import ledger_pb2
from services.common.catalog import callers_of
from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument
from services.common.identity import MIGRATOR_ROLE, OPERATOR_ROLE, REVIEWER_ROLE, AccessRule, allow
from services.common.ledger.checkpointer import Signed
from services.common.ledger.leaves import LedgerPosition
from services.common.ledger.ledger import Ledger


def access_rules(service: str) -> dict[str, AccessRule]:
    """Who may read an authority's ledger: its callers and every person with a role. Proofs reveal record names,
    digests and principals, never content."""
    rule = allow(services=callers_of(service), human_roles={OPERATOR_ROLE, REVIEWER_ROLE, MIGRATOR_ROLE})
    return {"GetCheckpoint": rule, "GetInclusionProof": rule, "GetConsistencyProof": rule}


def require(ledger: Ledger | None) -> Ledger:
    """The ledger, or LEDGER_DISABLED when the service runs without one (`ledger_enabled: false`, benchmarks)."""
    if ledger is None:
        raise FailedPrecondition(
            "LEDGER_DISABLED", "this service runs with ledger_enabled off: it records no leaves and signs nothing"
        )
    return ledger


def checkpoint_to_proto(ledger: Ledger, signed: Signed) -> ledger_pb2.SignedCheckpoint:
    return ledger_pb2.SignedCheckpoint(
        note=signed.note,
        origin=signed.checkpoint.origin,
        tree_size=signed.checkpoint.size,
        root_hash=signed.checkpoint.root,
        verifier_key=ledger.verifier_key,
    )


def entry(position: LedgerPosition | None) -> ledger_pb2.LedgerEntry | None:
    """The LedgerEntry a record's message carries (None for records without a leaf)."""
    if position is None:
        return None
    return ledger_pb2.LedgerEntry(leaf_index=position.leaf_index, origin=position.origin)


async def get_checkpoint(ledger: Ledger, request: ledger_pb2.GetCheckpointRequest) -> ledger_pb2.SignedCheckpoint:
    return checkpoint_to_proto(ledger, await asyncio.to_thread(ledger.checkpoint))


async def get_inclusion_proof(
    ledger: Ledger, request: ledger_pb2.GetInclusionProofRequest
) -> ledger_pb2.InclusionProof:
    which = request.WhichOneof("leaf")
    if which is None or (which == "record_name" and not request.record_name):
        raise InvalidArgument(
            "LEAF_NOT_NAMED",
            "name the leaf to prove: set record_name (e.g. runs/<id>) or leaf_index",
            violations=[FieldViolation("leaf", "set record_name or leaf_index")],
        )
    found = await asyncio.to_thread(
        ledger.inclusion,
        request.record_name if which == "record_name" else None,
        request.leaf_index if which == "leaf_index" else None,
        request.tree_size,
    )
    return ledger_pb2.InclusionProof(
        record_name=found.leaf.record_name,
        kind=found.leaf.kind,
        leaf_index=found.leaf.index,
        leaf=found.leaf.leaf,
        hashes=found.hashes,
        checkpoint=checkpoint_to_proto(ledger, found.checkpoint),
    )


async def get_consistency_proof(
    ledger: Ledger, request: ledger_pb2.GetConsistencyProofRequest
) -> ledger_pb2.ConsistencyProof:
    found = await asyncio.to_thread(ledger.consistency, request.old_size, request.new_size)
    return ledger_pb2.ConsistencyProof(
        hashes=found.hashes,
        old_checkpoint=checkpoint_to_proto(ledger, found.old),
        new_checkpoint=checkpoint_to_proto(ledger, found.new),
    )
