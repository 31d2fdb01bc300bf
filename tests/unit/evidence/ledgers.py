"""Small in-test ledgers with real RFC 9162 proofs and signed C2SP checkpoints, and bundles built on them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.evidence import records, statement
from services.common.evidence.bundle import LedgerRecord, write_bundle
from services.common.evidence.keys import EvidenceSigner
from services.common.ledger import merkle
from services.common.ledger.leaves import Leaf
from services.common.ledger.note import Checkpoint, NoteSigner, generate_note_key
from tests.unit.evidence import samples


@dataclass
class SmallLedger:
    """One authority's ledger: leaves in order, and its own note key."""

    service: str
    deployment: str = "localhost"
    leaves: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.origin = f"{self.deployment}/custody/{self.service}"
        private, self.vkey = generate_note_key(self.origin)
        self.signer = NoteSigner(private)

    def append(
        self,
        kind: str,
        name: str,
        digests: dict[str, str] | None = None,
        *,
        principal: str | None = "service:runs",
        request_id: str | None = "req-x",
        time_us: int = 1,
    ) -> int:
        """Appends the leaf services/common/ledger/leaves.py would write; returns its index."""
        leaf = Leaf(kind, name, time_us, digests or {}, principal, request_id)
        self.leaves.append(leaf.canonical().decode("utf-8"))
        return len(self.leaves) - 1

    def checkpoint(self, size: int) -> str:
        root = merkle.root_of(merkle.leaf_hash(leaf.encode()) for leaf in self.leaves[:size])
        return self.signer.sign(Checkpoint(self.origin, size, root).body())

    def record(self, index: int, size: int | None = None) -> LedgerRecord:
        size = len(self.leaves) if size is None else size
        hashes = [merkle.leaf_hash(leaf.encode()) for leaf in self.leaves[:size]]
        proof = merkle.inclusion_proof(index, size, lambda start, end: merkle.root_of(hashes[start:end]))
        leaf = self.leaves[index]
        parsed: dict[str, Any] = json.loads(leaf)
        return LedgerRecord(
            service=self.service,
            origin=self.origin,
            kind=parsed["kind"],
            record_name=parsed["name"],
            leaf=leaf,
            leaf_index=index,
            tree_size=size,
            inclusion_proof=tuple(proof),
            checkpoint=self.checkpoint(size),
        )


@dataclass
class World:
    """The three ledgers and the evidence key a deployment would hold."""

    runs: SmallLedger = field(default_factory=lambda: SmallLedger("runs"))
    lineage: SmallLedger = field(default_factory=lambda: SmallLedger("lineage"))
    gateway: SmallLedger = field(default_factory=lambda: SmallLedger("ai_gateway"))
    signer: EvidenceSigner = field(default_factory=EvidenceSigner.generate)

    @property
    def vkeys(self) -> list[str]:
        return [self.runs.vkey, self.lineage.vkey, self.gateway.vkey]


def run_records(world: World, *, attachment_sha256: str | None = None) -> list[LedgerRecord]:
    """The sample run's records, each among unrelated leaves, proven at the ledgers' current sizes."""
    run = samples.RUN
    runs, lineage, gateway = world.runs, world.lineage, world.gateway
    for n in range(3):
        runs.append("run", f"runs/other{n}", {"artifact_sha256": samples.sha(b"%d" % n)})
    run_index = runs.append(
        "run",
        run.name,
        {"artifact_sha256": run.artifact_sha256},
        request_id=run.request_id,
        time_us=statement.time_us(statement.rfc3339(run.created_at)),
    )
    attachment_indexes = [
        runs.append("attachment", a.name, {"sha256": attachment_sha256 or a.sha256}) for a in run.attachments
    ]
    runs.append("advisory", "runs/r1/advisories/x", {"sha256": samples.sha(b"advice")})
    version_index = lineage.append(
        records.VERSION.leaf_kind, samples.UPSTREAM.name, {"snapshot_sha256": samples.UPSTREAM.sha256}
    )
    lineage.append(
        records.VERSION.leaf_kind,
        "projects/p/artifacts/spec/rosette/versions/4",
        {"snapshot_sha256": samples.sha(b"4")},
    )
    gateway.append("call", "calls/c0", {"record_sha256": samples.sha(b"c0")})
    call_index = gateway.append(
        "call", samples.CALL.name, {"record_sha256": samples.CALL.record_sha256}, request_id=samples.CALL.request_id
    )
    return [
        runs.record(run_index),
        *(runs.record(i) for i in attachment_indexes),
        lineage.record(version_index),
        gateway.record(call_index),
    ]


def approval_records(world: World, *, reviewer: str | None = None) -> list[LedgerRecord]:
    """The sample approval's records: the approved version, the decision, the type registration it was checked
    against, and the approved version's upstream."""
    approval = samples.APPROVAL
    lineage = world.lineage
    upstream = lineage.append("version", samples.UPSTREAM.name, {"snapshot_sha256": samples.UPSTREAM.sha256})
    approved = lineage.append("version", samples.APPROVED.name, {"snapshot_sha256": samples.APPROVED.sha256})
    decision = lineage.append(
        records.APPROVAL.leaf_kind,
        approval.record_name,
        {"row_sha256": samples.sha(b"status row")},
        principal=reviewer or approval.reviewer,
        request_id=approval.request_id,
        time_us=statement.time_us(statement.rfc3339(approval.decided_at)),
    )
    registration = lineage.append(
        records.TYPE.leaf_kind,
        approval.policy_name,
        {"definition_sha256": approval.policy_sha256, "row_sha256": samples.sha(b"type row")},
        principal="system:lineage",
        request_id=None,
    )
    return [
        lineage.record(approved),
        lineage.record(decision),
        lineage.record(registration),
        lineage.record(upstream),
    ]


def write_run_bundle(directory: Path, world: World, ledger_records: list[LedgerRecord] | None = None) -> None:
    write_bundle(
        directory,
        statement.run_provenance(samples.RUN),
        run_records(world) if ledger_records is None else ledger_records,
        world.signer,
        subject_files=[samples.ARTIFACT, samples.SVG, samples.GCODE],
        verifier_keys={ledger.origin: ledger.vkey for ledger in (world.runs, world.lineage, world.gateway)},
    )
