"""`custody ledger audit`: checks an authority's database against its ledger and its signed checkpoints.

It trusts neither the service nor the database, only the authority's verifier key and the checkpoint log:
1. leaves: indexes are dense from 0, each stored leaf hash is SHA-256(0x00 || leaf), each leaf is canonical JSON
   whose kind, name and time are the row's;
2. checkpoints: each is signed by the verifier key, names the authority's origin, and its root is the root this
   audit recomputes from the leaves at its size; consecutive checkpoints are consistent (RFC 9162 proof);
3. records: every record the service's sources derive from its rows has exactly one leaf, equal to the one in the
   tree, and every leaf has its record;
4. the service's own checks (blob bytes re-hashed, mutable rows equal to the last entry of their history).
Any edit, deletion, reordering or insertion of a single row of a recorded table, or of the ledger, breaks one of
these. Findings are ordered by leaf index where they have one, so the first names the first bad entry.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from services.common.config import StatefulServiceSettings
from services.common.db import create_engine
from services.common.hashing import canonical_json
from services.common.ledger import merkle
from services.common.ledger.checkpoint_log import CheckpointLog
from services.common.ledger.checkpointer import parse_signed
from services.common.ledger.leaves import RecordSource
from services.common.ledger.note import NoteError, NoteVerifier
from services.common.ledger.store import LedgerRows
from services.common.ledger.tree import LedgerGap, LedgerTree

UNPLACED = 1 << 62


@dataclass(frozen=True, order=True)
class Finding:
    # Leaf index the finding is about, or UNPLACED (sorts after every leaf).
    position: int
    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


@dataclass
class AuditReport:
    origin: str
    leaves: int = 0
    checkpoints: int = 0
    records: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


ExtraCheck = Callable[[sa.Connection], Iterator[Finding]]


def audit(
    engine: sa.Engine,
    rows: LedgerRows,
    sources: Sequence[RecordSource],
    checkpoints: CheckpointLog,
    verifier: NoteVerifier,
    extra_checks: Sequence[ExtraCheck] = (),
) -> AuditReport:
    report = AuditReport(verifier.name)
    with engine.connect() as connection:
        stored = _check_leaves(connection, rows, report)
        _check_checkpoints(engine, rows, checkpoints, verifier, report)
        _check_records(connection, sources, stored, report)
        for check in extra_checks:
            report.findings.extend(check(connection))
    report.findings.sort()
    return report


def _check_leaves(connection: sa.Connection, rows: LedgerRows, report: AuditReport) -> dict[str, tuple[int, bytes]]:
    """Record name -> (leaf index, leaf bytes) of every stored leaf, after checking each one."""
    stored: dict[str, tuple[int, bytes]] = {}
    expected = 0
    for leaf in rows.all(connection):
        report.leaves += 1
        where = f"leaf {leaf.index} ({leaf.record_name})"
        if leaf.index != expected:
            report.findings.append(
                Finding(min(leaf.index, expected), f"leaf {expected}", f"missing: the next stored leaf is {leaf.index}")
            )
        expected = leaf.index + 1
        if merkle.leaf_hash(leaf.leaf) != leaf.leaf_hash:
            report.findings.append(Finding(leaf.index, where, "stored leaf hash is not SHA-256(0x00 || leaf)"))
        problem = _leaf_problem(leaf.leaf, leaf.kind, leaf.record_name, leaf.created_at_us)
        if problem:
            report.findings.append(Finding(leaf.index, where, problem))
        if leaf.record_name in stored:
            report.findings.append(
                Finding(leaf.index, where, f"a second leaf for the record of leaf {stored[leaf.record_name][0]}")
            )
        stored[leaf.record_name] = (leaf.index, leaf.leaf)
    return stored


def _leaf_problem(leaf: bytes, kind: str, name: str, created_at_us: int) -> str | None:
    try:
        document = json.loads(leaf)
    except ValueError:
        return "leaf is not JSON"
    if not isinstance(document, dict) or canonical_json(document) != leaf:
        return "leaf is not RFC 8785 canonical JSON of an object"
    if document.get("kind") != kind or document.get("name") != name:
        return f"leaf says {document.get('kind')!r} {document.get('name')!r}, its row {kind!r} {name!r}"
    if document.get("time_us") != created_at_us:
        return f"leaf says time {document.get('time_us')}, its row {created_at_us}"
    return None


def _check_checkpoints(
    engine: sa.Engine, rows: LedgerRows, checkpoints: CheckpointLog, verifier: NoteVerifier, report: AuditReport
) -> None:
    tree = LedgerTree(engine, rows)
    try:
        size = tree.catch_up()
    except LedgerGap as gap:
        report.findings.append(Finding(tree.size, f"leaf {tree.size}", str(gap)))
        size = tree.size
    previous: tuple[int, bytes] | None = None
    for logged_size, note in checkpoints.entries():
        report.checkpoints += 1
        where = f"checkpoint {logged_size}"
        try:
            verifier.verify(note)
            signed = parse_signed(note).checkpoint
        except (NoteError, ValueError) as exc:
            report.findings.append(Finding(UNPLACED, where, f"signature or format does not verify: {exc}"))
            continue
        if signed.origin != verifier.name or signed.size != logged_size:
            report.findings.append(Finding(UNPLACED, where, f"names {signed.origin!r} size {signed.size}"))
            continue
        if signed.size > size:
            report.findings.append(
                Finding(size, where, f"signed {signed.size} leaves but the database holds {size}: leaves were deleted")
            )
            continue
        try:
            root = tree.root(signed.size)
            if previous is not None:
                merkle.verify_consistency(
                    previous[0], signed.size, previous[1], signed.root, tree.consistency(previous[0], signed.size)
                )
        except (LedgerGap, merkle.ProofError) as exc:
            report.findings.append(Finding(UNPLACED, where, f"not consistent with checkpoint {previous}: {exc}"))
            continue
        if root != signed.root:
            report.findings.append(
                Finding(
                    _first_changed(tree, signed.size, previous),
                    where,
                    "the leaves in the database no longer hash to the signed root",
                )
            )
        previous = (signed.size, signed.root)


def _first_changed(tree: LedgerTree, size: int, previous: tuple[int, bytes] | None) -> int:
    """Roughly where a root stopped matching: after the last checkpoint that still matched."""
    if previous is not None and tree.root(previous[0]) == previous[1]:
        return previous[0]
    return 0


def _check_records(
    connection: sa.Connection,
    sources: Sequence[RecordSource],
    stored: dict[str, tuple[int, bytes]],
    report: AuditReport,
) -> None:
    seen: set[str] = set()
    for source in sources:
        for leaf in source.leaves(connection):
            report.records += 1
            derived = leaf.canonical()
            found = stored.get(leaf.name)
            if found is None:
                report.findings.append(Finding(UNPLACED, leaf.name, f"{source.kind} record has no ledger leaf"))
                continue
            seen.add(leaf.name)
            if found[1] != derived:
                report.findings.append(
                    Finding(
                        found[0],
                        f"leaf {found[0]} ({leaf.name})",
                        "the record no longer matches its leaf: " + _diff(found[1], derived),
                    )
                )
    for name, (index, _) in stored.items():
        if name not in seen:
            report.findings.append(Finding(index, f"leaf {index} ({name})", "no record in the database has this leaf"))


def _diff(stored: bytes, derived: bytes) -> str:
    """Which leaf fields differ (digests by name), for the person reading the finding."""
    try:
        old, new = json.loads(stored), json.loads(derived)
    except ValueError:
        return "the stored leaf is not JSON"
    changed = [key for key in sorted(set(old) | set(new)) if key != "digests" and old.get(key) != new.get(key)]
    old_digests, new_digests = old.get("digests") or {}, new.get("digests") or {}
    changed += [
        f"digests.{key}"
        for key in sorted(set(old_digests) | set(new_digests))
        if old_digests.get(key) != new_digests.get(key)
    ]
    return ", ".join(changed) + " changed"


def audit_configured(
    settings: StatefulServiceSettings,
    table: sa.Table,
    sources: Sequence[RecordSource],
    extra_checks: Callable[[sa.Engine], Sequence[ExtraCheck]] = lambda _engine: (),
    verifier_key: str | None = None,
) -> AuditReport:
    """Audits the authority's database and checkpoint log as its settings locate them. The verifier key defaults
    to the one `custody init` wrote beside the signing key; an auditor passes their own copy."""
    key = verifier_key or settings.resolved_ledger_key_file.with_suffix(".vkey").read_text(encoding="utf-8").strip()
    engine = create_engine(settings.resolved_database_url)
    try:
        return audit(
            engine,
            LedgerRows(table),
            sources,
            CheckpointLog(settings.resolved_ledger_checkpoint_dir),
            NoteVerifier(key),
            extra_checks(engine),
        )
    finally:
        engine.dispose()
