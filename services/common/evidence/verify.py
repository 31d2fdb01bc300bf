"""Offline verification of an evidence bundle, from public keys alone: every failure, each naming what failed.

What holds when the list is empty:
- the envelope is signed, over the exact payload and payload type, by one of the trusted evidence keys, and its
  payload is an in-toto Statement v1 of a kind Custody exports;
- every ledger record in the bundle sits at its index in a tree whose checkpoint is signed by the trusted note
  key of its origin, and that origin is the ledger of the record's own authority (runs for runs and
  attachments, lineage for versions and approvals, ai_gateway for AI calls);
- every subject, resolved dependency and decision the statement names has such a record, whose leaf carries the
  digest (and, where the statement says them, the principal, request id and time) the statement claims;
- every subject file in the bundle hashes to its name, and that name is a subject's sha256.

A record whose checkpoint does not verify gets no proof check (its root proves nothing), but its leaf is still
compared with the statement, so every mismatch is reported at once. The bundle's own copies of the public keys
are never trusted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.evidence import anchors, bundle, dsse, records, statement
from services.common.evidence.anchors import Anchor
from services.common.evidence.bundle import LedgerRecord
from services.common.evidence.keys import EvidencePublicKey
from services.common.ledger import merkle
from services.common.ledger.leaves import LEAF_VERSION, Leaf
from services.common.ledger.note import NoteError, NoteVerifier, parse_checkpoint


@dataclass(frozen=True)
class Failure:
    where: str  # the file, and within it the record or field
    check: str  # a stable name for the check that failed, e.g. "ledger.inclusion"
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.check}: {self.detail}"


@dataclass(frozen=True)
class _Parsed:
    """A record whose leaf parsed and names the record it claims to be, with the authority its origin names."""

    index: int
    record: LedgerRecord
    service: str
    leaf: Leaf


def verify_bundle(
    directory: Path, trusted_evidence_keys: Sequence[EvidencePublicKey], trusted_note_vkeys: Sequence[str]
) -> list[Failure]:
    """Every way the bundle in `directory` fails to hold under these keys; empty when all of it holds.
    Raises NoteError for a trusted note key that is not a valid verifier key (the caller's mistake)."""
    failures: list[Failure] = []
    claims = _statement(directory, trusted_evidence_keys, failures)
    wanted, problems = anchors.anchors(claims) if claims is not None else ([], [])
    failures += [Failure(bundle.STATEMENT_FILE, "statement.claims", p) for p in problems]
    verifiers: dict[str, list[NoteVerifier]] = {}
    for vkey in trusted_note_vkeys:  # an origin may have several trusted keys (a rotation)
        verifier = NoteVerifier(vkey)
        verifiers.setdefault(verifier.name, []).append(verifier)  # a note key's name is its log's origin
    try:
        ledger = bundle.read_ledger(directory)
    except bundle.BundleError as exc:
        failures.append(Failure(bundle.LEDGER_FILE, "ledger.format", str(exc)))
    else:
        parsed = [
            p
            for index, record in enumerate(ledger.records)
            if (p := _check_record(index, record, verifiers, failures)) is not None
        ]
        for anchor in wanted:
            _check_anchor(anchor, parsed, failures)
    _check_subject_files(directory, claims, failures)
    return failures


def _statement(directory: Path, trusted: Sequence[EvidencePublicKey], failures: list[Failure]) -> dict[str, Any] | None:
    """The statement, if the envelope parses and holds one; signature failures are recorded, not fatal, so that
    the rest of the bundle is still reported on."""
    where = bundle.STATEMENT_FILE
    try:
        envelope = bundle.read_envelope(directory)
    except (bundle.BundleError, dsse.EnvelopeError) as exc:
        failures.append(Failure(where, "dsse.format", str(exc)))
        return None
    try:
        dsse.verify(envelope, trusted)
    except dsse.EnvelopeError as exc:
        failures.append(Failure(where, "dsse.signature", str(exc)))
    if envelope.payload_type != dsse.IN_TOTO_PAYLOAD_TYPE:
        failures.append(
            Failure(where, "dsse.payload_type", f"{envelope.payload_type!r} is not {dsse.IN_TOTO_PAYLOAD_TYPE}")
        )
    try:
        claims = json.loads(envelope.payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        failures.append(Failure(where, "statement.format", f"the payload is not JSON: {exc}"))
        return None
    problems = statement.problems(claims)
    failures += [Failure(where, "statement.format", p) for p in problems]
    return None if problems else claims


def _check_record(
    index: int, record: LedgerRecord, verifiers: dict[str, list[NoteVerifier]], failures: list[Failure]
) -> _Parsed | None:
    where = f"{bundle.LEDGER_FILE} records[{index}] ({record.label()})"

    def fail(check: str, detail: str) -> None:
        failures.append(Failure(where, check, detail))

    leaf = _parse_leaf(record.leaf, fail)
    if leaf is not None and (leaf.kind, leaf.name) != (record.kind, record.record_name):
        fail("ledger.leaf_mismatch", f"the leaf is {leaf.kind} {leaf.name}, not what the record says")
        leaf = None
    service = record.origin.rpartition("/custody/")[2] if "/custody/" in record.origin else ""
    # Claims are matched against every record that says what it is; its proof failures are reported here.
    parsed = None if leaf is None else _Parsed(index, record, service, leaf)
    trusted = verifiers.get(record.origin)
    if not trusted:
        fail("ledger.untrusted_origin", f"no trusted note key for origin {record.origin!r}")
        return parsed
    if service != record.service:
        fail("ledger.origin", f"origin {record.origin} is not the ledger of {record.service}")
        return parsed
    known = records.BY_LEAF_KIND.get(record.kind)
    if known is not None and known.service != service:
        fail("ledger.origin", f"{record.kind} records belong to the {known.service} ledger, not to {service}")
        return parsed
    body = _verified_body(record.checkpoint, trusted)
    if body is None:
        fail("ledger.checkpoint_signature", f"the checkpoint is not signed by a trusted key of {record.origin}")
        return parsed
    try:
        checkpoint = parse_checkpoint(body)
    except ValueError as exc:
        fail("ledger.checkpoint_format", str(exc))
        return parsed
    if checkpoint.origin != record.origin:
        fail("ledger.checkpoint_origin", f"the checkpoint is of {checkpoint.origin}, not of {record.origin}")
        return parsed
    if checkpoint.size != record.tree_size:
        fail("ledger.checkpoint_size", f"the checkpoint is of size {checkpoint.size}, not {record.tree_size}")
        return parsed
    try:
        merkle.verify_inclusion(
            merkle.leaf_hash(record.leaf.encode("utf-8")),
            record.leaf_index,
            record.tree_size,
            record.inclusion_proof,
            checkpoint.root,
        )
    except merkle.ProofError as exc:
        fail("ledger.inclusion", str(exc))
    return parsed


def _check_anchor(anchor: Anchor, parsed: list[_Parsed], failures: list[Failure]) -> None:
    kind = anchor.kind
    matches = [
        p for p in parsed if (p.service, p.leaf.kind, p.leaf.name) == (kind.service, kind.leaf_kind, anchor.name)
    ]
    where = f"{bundle.STATEMENT_FILE} {anchor.where}"
    if not matches:
        failures.append(
            Failure(where, "ledger.missing_record", f"no {kind.service} {kind.leaf_kind} record {anchor.name}")
        )
    for match in matches:
        leaf = match.leaf
        claimed: list[tuple[str, object, object]] = []
        if kind.digest_key is not None and anchor.sha256 is not None:
            claimed.append((f"digests.{kind.digest_key}", anchor.sha256, leaf.digests.get(kind.digest_key)))
        if anchor.principal is not None:
            claimed.append(("principal", anchor.principal, leaf.principal))
        if anchor.request_id is not None:
            claimed.append(("request_id", anchor.request_id, leaf.request_id))
        if anchor.time_us is not None:
            claimed.append(("time_us", anchor.time_us, leaf.time_us))
        for field, stated, recorded in claimed:
            if stated != recorded:
                failures.append(
                    Failure(
                        where,
                        "ledger.claim",
                        f"the statement says {field} {stated} for {anchor.name}; its leaf "
                        f"({bundle.LEDGER_FILE} records[{match.index}]) says {recorded}",
                    )
                )


def _check_subject_files(directory: Path, claims: dict[str, Any] | None, failures: list[Failure]) -> None:
    subjects = {s["digest"]["sha256"] for s in claims["subject"]} if claims is not None else None
    for name, data in bundle.read_subject_files(directory).items():
        where = f"{bundle.SUBJECTS_DIR}/{name}"
        actual = hashlib.sha256(data).hexdigest()
        if actual != name:
            failures.append(Failure(where, "subject.digest", f"the file's sha256 is {actual}"))
        elif subjects is not None and name not in subjects:
            failures.append(Failure(where, "subject.unknown", "no subject of the statement has this sha256"))


def _parse_leaf(text: str, fail: Callable[[str, str], None]) -> Leaf | None:
    """The leaf, if `text` is exactly what services/common/ledger/leaves.py writes for one: canonical JSON of
    the known fields only, so that no two parsers can read it apart and nothing rides along unhashed."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        fail("ledger.leaf_format", f"the leaf is not JSON: {exc}")
        return None
    if not isinstance(data, dict) or data.get("v") != LEAF_VERSION:
        fail("ledger.leaf_format", f"the leaf is not a version {LEAF_VERSION} leaf object")
        return None
    kind, name, time, digests = (data.get(k) for k in ("kind", "name", "time_us", "digests"))
    principal, request_id = data.get("principal"), data.get("request_id")
    if (
        not isinstance(kind, str)
        or not isinstance(name, str)
        or type(time) is not int
        or not isinstance(digests, dict)
        or not all(isinstance(v, str) for v in digests.values())
        or not isinstance(principal, str | None)
        or not isinstance(request_id, str | None)
    ):
        fail("ledger.leaf_format", "the leaf's kind, name, time_us, digests, principal or request_id is malformed")
        return None
    leaf = Leaf(kind, name, time, dict(digests), principal, request_id)
    if leaf.canonical() != text.encode("utf-8"):
        fail("ledger.leaf_format", "the leaf is not the RFC 8785 canonical JSON of a ledger leaf")
        return None
    return leaf


def _verified_body(note: str, trusted: list[NoteVerifier]) -> str | None:
    for verifier in trusted:
        try:
            return verifier.verify(note)
        except NoteError:
            continue
    return None
