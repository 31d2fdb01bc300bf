"""Hands runs' latest checkpoint (signed then, so it covers what was just delivered) to lineage whenever the
outbox delivers to it, so lineage keeps a copy of what runs committed to (services/lineage/domain/witness.py):
from then on, a runs database rewritten out of band is inconsistent with a checkpoint held in another service's
database, under another service's key.

It follows C2SP tlog-witness's add-checkpoint: the checkpoint, the size lineage last kept and a consistency proof
from there. runs remembers that size from lineage's last answer; when it does not know it (after a restart) or it
is wrong, lineage says which size it holds and runs proves from there, once. Witnessing never holds up or fails a
delivery: a checkpoint lineage cannot take now is handed over with the next one.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from custody.lineage.v1 import lineage_pb2
from services.common import status
from services.common.clients import ServiceClients
from services.common.errors import CustodyError
from services.common.ledger.ledger import Ledger

log = logging.getLogger("custody.runs.witnessing")


class CheckpointWitness:
    def __init__(self, ledger: Ledger, clients: ServiceClients) -> None:
        self._ledger = ledger
        self._clients = clients
        self._kept: int | None = None  # the size lineage last said it kept, once known
        self._lock = asyncio.Lock()

    async def hand_over(self) -> None:
        async with self._lock:
            try:
                await self._hand_over()
            except (CustodyError, grpc.RpcError) as exc:
                log.warning("witnessing: could not hand checkpoint to lineage: %s", exc)

    async def _hand_over(self) -> None:
        latest = await asyncio.to_thread(self._ledger.sign_now)
        if latest.checkpoint.size == self._kept:
            return
        for _ in range(2):
            old = self._kept or 0
            proof = (
                []
                if old == 0
                else (await asyncio.to_thread(self._ledger.consistency, old, latest.checkpoint.size)).hashes
            )
            request = lineage_pb2.WitnessCheckpointRequest(note=latest.note, old_size=old, consistency_proof=proof)
            try:
                kept = await self._clients.stub("lineage").WitnessCheckpoint(request)
            except grpc.RpcError as exc:
                error = status.decode(exc)
                if error.reason == "WITNESS_SIZE_MISMATCH" and "witnessed_size" in error.metadata:
                    self._kept = int(error.metadata["witnessed_size"])
                    continue
                if error.reason == "CHECKPOINT_INCONSISTENT":
                    log.error("witnessing: lineage refused runs' checkpoint as inconsistent: %s", error.message)
                raise
            self._kept = kept.tree_size
            return
