"""Witnessed peer checkpoints: one current row per origin moved forward under a lock, with an immutable history
(each row a record in lineage's own ledger) and an immutable list of refusals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from services.common.clock import from_us, to_us
from services.lineage import tables as t
from services.lineage.domain.witness import Witnessed
from services.lineage.ledger_records import WITNESS_REFUSALS, WITNESSED, witnessed_record
from services.lineage.store.transactions import Transactions

Judge = Callable[[Witnessed | None], Witnessed]


class WitnessStore:
    def __init__(self, tx: Transactions) -> None:
        self._tx = tx

    def witnessed(self) -> list[Witnessed]:
        """The checkpoint kept of each origin, by origin."""
        with self._tx.read() as connection:
            rows = connection.execute(sa.select(t.witnessed).order_by(t.witnessed.c.origin)).all()
            placed = self._tx.positions(connection, [witnessed_record(r.origin, r.tree_size) for r in rows])
        return [
            Witnessed(
                r.origin,
                r.tree_size,
                bytes.fromhex(r.root_hash),
                r.note,
                from_us(r.witnessed_at_us),
                placed.get(witnessed_record(r.origin, r.tree_size)),
            )
            for r in rows
        ]

    def witness(self, origin: str, judge: Judge, presented_by: str, request_id: str, at: datetime) -> Witnessed:
        """Runs `judge` on the checkpoint kept of `origin` inside the write, and keeps what it returns."""
        with self._tx.write(f"witness:{origin}") as connection:
            row = connection.execute(sa.select(t.witnessed).where(t.witnessed.c.origin == origin)).first()
            current = None if row is None else Witnessed(origin, row.tree_size, bytes.fromhex(row.root_hash), row.note)
            kept = judge(current)
            if row is not None and current is not None and kept.size == current.size:  # the same one again
                name = witnessed_record(origin, current.size)
                return Witnessed(
                    origin,
                    current.size,
                    current.root,
                    current.note,
                    from_us(row.witnessed_at_us),
                    self._tx.positions(connection, [name]).get(name),
                )
            values = {
                "tree_size": kept.size,
                "root_hash": kept.root.hex(),
                "note": kept.note,
                "witnessed_at_us": to_us(at),
            }
            if current is None:
                connection.execute(t.witnessed.insert().values(origin=origin, **values))
            else:
                connection.execute(
                    t.witnessed.update()
                    .where(t.witnessed.c.origin == origin, t.witnessed.c.tree_size == current.size)
                    .values(**values)
                )
            connection.execute(
                t.witness_history.insert().values(
                    origin=origin, presented_by=presented_by, request_id=request_id, **values
                )
            )
            placed = self._tx.record(connection, (WITNESSED, [(origin, kept.size)]))
            return Witnessed(
                origin, kept.size, kept.root, kept.note, at, placed.get(witnessed_record(origin, kept.size))
            )

    def refuse(self, origin: str, note: str, reason: str, presented_by: str, request_id: str, at: datetime) -> None:
        """Keeps a refused checkpoint as evidence, in its own transaction (the refused write rolled back)."""
        with self._tx.write(f"witness:{origin}") as connection:
            refusal_id = connection.execute(
                t.witness_refusals.insert()
                .values(
                    origin=origin,
                    note=note,
                    reason=reason,
                    refused_at_us=to_us(at),
                    presented_by=presented_by,
                    request_id=request_id,
                )
                .returning(t.witness_refusals.c.id)
            ).scalar_one()
            self._tx.record(connection, (WITNESS_REFUSALS, [(refusal_id,)]))
