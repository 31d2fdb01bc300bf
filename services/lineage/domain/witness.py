"""Witnessing a peer authority's ledger: lineage keeps the latest checkpoint of each peer (runs) that it has
checked, so a peer that later rewrites its history cannot make lineage's copy agree with it.

The exchange follows C2SP tlog-witness's add-checkpoint: the peer presents a signed checkpoint, the size of the
last one lineage kept from it and a consistency proof between the two. lineage keeps the new checkpoint only if
it is signed by the peer's own key (the key's name is the origin, so a peer cannot present another's ledger) and
provably extends the one it kept; anything else is refused, and a checkpoint that does not extend it is evidence
of a rewritten history: the service records the refusal and raises the alarm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from services.common import call_context
from services.common.clock import utc_now
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.identity import Principal, PrincipalKind
from services.common.ledger import merkle
from services.common.ledger.leaves import LedgerPosition
from services.common.ledger.note import NoteError, NoteVerifier

log = logging.getLogger("custody.lineage.witness")


@dataclass(frozen=True)
class Witnessed:
    origin: str
    size: int
    root: bytes
    note: str
    at: datetime | None = None
    ledger: LedgerPosition | None = None


@dataclass(frozen=True)
class Presented:
    note: str
    old_size: int
    proof: tuple[bytes, ...]


class Inconsistent(FailedPrecondition):
    """The presented checkpoint does not extend the one lineage kept: the peer's history was rewritten."""


class PeerKeys:
    """The verifier keys of the authorities that may present checkpoints, by service name: `<service>.ledger.vkey`
    files in one directory (what `custody init` writes, and what deploy/ mounts)."""

    def __init__(self, directory: Path, services: Sequence[str]) -> None:
        self._directory = directory
        self._services = tuple(services)

    def for_caller(self, principal: Principal) -> NoteVerifier:
        service = principal.service_name if principal.kind is PrincipalKind.SERVICE else None
        path = self._directory / f"{service}.ledger.vkey"
        if service not in self._services or not path.is_file():
            raise FailedPrecondition(
                "PEER_KEY_UNKNOWN",
                f"lineage holds no ledger verifier key for {principal.id}: put {path.name} in {self._directory} "
                "(ledger_peer_keys_dir)",
            )
        return NoteVerifier(path.read_text(encoding="utf-8").strip())


def judge(verifier: NoteVerifier, presented: Presented, current: Witnessed | None) -> Witnessed:
    """The checkpoint to keep, or the refusal: a bad signature, a stale old_size, or an inconsistent history."""
    try:
        checkpoint = verifier.verify_checkpoint(presented.note)
    except NoteError as exc:
        raise InvalidArgument(
            "CHECKPOINT_SIGNATURE_INVALID",
            f"the note is not a checkpoint of {verifier.name} signed with its ledger key: {exc}",
        ) from None
    known = 0 if current is None else current.size
    if presented.old_size != known:
        raise FailedPrecondition(
            "WITNESS_SIZE_MISMATCH",
            f"lineage last kept a checkpoint of {verifier.name} at size {known}, not {presented.old_size}: "
            f"send a consistency proof from size {known}",
            metadata={"witnessed_size": str(known)},
        )
    new = Witnessed(checkpoint.origin, checkpoint.size, checkpoint.root, presented.note)
    if current is None:
        return new
    if checkpoint.size < current.size:
        raise Inconsistent(
            "CHECKPOINT_INCONSISTENT",
            f"{verifier.name} presented a tree of {checkpoint.size} leaves after lineage kept one of {current.size}",
        )
    try:
        merkle.verify_consistency(current.size, checkpoint.size, current.root, checkpoint.root, presented.proof)
    except merkle.ProofError as exc:
        raise Inconsistent(
            "CHECKPOINT_INCONSISTENT",
            f"the checkpoint of {verifier.name} at size {checkpoint.size} does not extend the one lineage kept at "
            f"size {current.size}: {exc}",
        ) from None
    return new


class WitnessRecords(Protocol):
    """What witnessing needs from the store (services/lineage/store/witness.py)."""

    def witnessed(self) -> list[Witnessed]: ...

    def witness(
        self,
        origin: str,
        judge: Callable[[Witnessed | None], Witnessed],
        presented_by: str,
        request_id: str,
        at: datetime,
    ) -> Witnessed: ...

    def refuse(self, origin: str, note: str, reason: str, presented_by: str, request_id: str, at: datetime) -> None: ...


class Witnessing:
    """The WitnessCheckpoint and ListWitnessedCheckpoints use cases."""

    def __init__(self, records: WitnessRecords, peers: PeerKeys) -> None:
        self._records = records
        self._peers = peers

    def present(self, note: str, old_size: int, proof: Sequence[bytes]) -> Witnessed:
        caller = call_context.require_principal()
        request_id = call_context.request_id() or ""
        if old_size < 0:
            raise InvalidArgument(
                "WITNESS_SIZE_MISMATCH", f"old_size must be >= 0, not {old_size}", metadata={"witnessed_size": "0"}
            )
        verifier = self._peers.for_caller(caller)
        presented = Presented(note, old_size, tuple(proof))
        now = utc_now()
        try:
            return self._records.witness(
                verifier.name, lambda current: judge(verifier, presented, current), caller.id, request_id, now
            )
        except Inconsistent as refusal:
            self._records.refuse(verifier.name, note, refusal.message, caller.id, request_id, now)
            log.error(
                "witness: refused a checkpoint of %s presented by %s: %s",
                verifier.name,
                caller.id,
                refusal.message,
                extra={"origin": verifier.name, "reason": refusal.reason},
            )
            raise

    def witnessed(self) -> list[Witnessed]:
        return self._records.witnessed()
