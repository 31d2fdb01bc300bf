"""An authority's ledger as its service uses it: append leaves with the records, and answer for them.

Stores call `append` inside the transaction that writes the records; servicers call `checkpoint`,
`inclusion` and `consistency` (the three ledger RPCs every authority serves). Every proof is checked against the
signed checkpoint before it leaves: a database rewritten under a running service makes it answer DATA_LOSS rather
than hand out a proof that does not verify.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from services.common.config import StatefulServiceSettings
from services.common.errors import DataLoss, FailedPrecondition, InvalidArgument, NotFound
from services.common.identity import exposed_key_file
from services.common.ledger import merkle
from services.common.ledger.checkpoint_log import CheckpointLog
from services.common.ledger.checkpointer import Checkpointer, Signed, parse_signed
from services.common.ledger.leaves import Leaf, LedgerPosition, RecordSource, TableRecords
from services.common.ledger.note import NoteSigner
from services.common.ledger.store import LedgerRows, StoredLeaf
from services.common.ledger.tree import LedgerGap, LedgerTree

log = logging.getLogger("custody.ledger")


@dataclass(frozen=True)
class LedgerSettings:
    key_file: Path
    checkpoint_dir: Path
    every_leaves: int
    every_s: float


@dataclass(frozen=True)
class Inclusion:
    leaf: StoredLeaf
    hashes: list[bytes]
    checkpoint: Signed


@dataclass(frozen=True)
class Consistency:
    hashes: list[bytes]
    old: Signed
    new: Signed


Records = Sequence[tuple[RecordSource, Sequence[tuple[Any, ...]]]]
"""Records just written, by source: (source, primary keys), in the order their leaves are appended."""

InsertedRecords = Sequence[tuple[TableRecords, Sequence[Mapping[str, Any]]]]
"""Records just written, by source: (source, the rows as inserted; see TableRecords.inserted)."""


def record_leaves(
    ledger: Ledger | None, connection: sa.Connection, source: RecordSource, keys: Sequence[tuple[Any, ...]]
) -> dict[str, LedgerPosition]:
    """Ledger.record_all of one source, for stores that may run without a ledger (benchmarks: nothing recorded)."""
    return record_all_leaves(ledger, connection, [(source, keys)])


def record_all_leaves(
    ledger: Ledger | None, connection: sa.Connection, records: Records, inserted: InsertedRecords = ()
) -> dict[str, LedgerPosition]:
    """Ledger.record_all, or nothing without a ledger."""
    if ledger is None or (not any(keys for _, keys in records) and not any(rows for _, rows in inserted)):
        return {}
    return ledger.record_all(connection, records, inserted)


def leaf_positions(
    ledger: Ledger | None, connection: sa.Connection, record_names: Sequence[str]
) -> dict[str, LedgerPosition]:
    """Ledger.positions, or nothing without a ledger."""
    return {} if ledger is None or not record_names else ledger.positions(connection, record_names)


def load_signer(key_file: Path) -> NoteSigner:
    """The authority's signing key, created by `custody init` (mode 0600); refused when others may read it or its
    group may write it (a Kubernetes Secret mounted with an fsGroup is group-readable, which is tolerated)."""
    try:
        exposed = exposed_key_file(key_file)
        text = key_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"ledger signing key {key_file} does not exist: run `custody init` (it creates one per authority)"
        ) from None
    if exposed:
        raise PermissionError(f"ledger signing key {key_file} is readable by others: chmod 600 {key_file}")
    return NoteSigner(text)


class Ledger:
    def __init__(
        self, engine: sa.Engine, rows: LedgerRows, settings: LedgerSettings, sources: Sequence[RecordSource]
    ) -> None:
        self.rows = rows
        self.sources = tuple(sources)
        self._engine = engine
        self.tree = LedgerTree(engine, rows)
        self.checkpointer = Checkpointer(
            self.tree,
            load_signer(settings.key_file),
            CheckpointLog(settings.checkpoint_dir),
            every_leaves=settings.every_leaves,
            every_s=settings.every_s,
        )
        self._poll_s = min(0.25, settings.every_s)
        self._task: asyncio.Task[None] | None = None

    @property
    def origin(self) -> str:
        return self.checkpointer.origin

    @property
    def verifier_key(self) -> str:
        return self.checkpointer.signer.vkey

    @classmethod
    def configured(
        cls, engine: sa.Engine, table: sa.Table, settings: StatefulServiceSettings, sources: Sequence[RecordSource]
    ) -> Ledger | None:
        """The authority's ledger as its settings describe it; None when `ledger_enabled` is off (benchmarks)."""
        if not settings.ledger_enabled:
            return None
        return cls(
            engine,
            LedgerRows(table),
            LedgerSettings(
                key_file=settings.resolved_ledger_key_file,
                checkpoint_dir=settings.resolved_ledger_checkpoint_dir,
                every_leaves=settings.ledger_checkpoint_leaves,
                every_s=settings.ledger_checkpoint_interval_s,
            ),
            sources,
        )

    def place(self, connection: sa.Connection, leaves: Sequence[Leaf]) -> dict[str, LedgerPosition]:
        """Appends leaves in order inside the caller's transaction; returns record name -> position."""
        indexes = self.rows.append(connection, leaves)
        return {leaf.name: LedgerPosition(self.origin, index) for leaf, index in zip(leaves, indexes, strict=True)}

    def record_all(
        self, connection: sa.Connection, records: Records, inserted: InsertedRecords = ()
    ) -> dict[str, LedgerPosition]:
        """Appends, in one append, the leaves of records of several sources written in this transaction: first
        those derived from rows as inserted, then those read back inside it (so each leaf is what the audit will
        derive). The ledger's lock, size and insert come once per transaction rather than once per source (what a
        mint's run, explanation, advisories, attachments and seals cost)."""
        leaves = [leaf for source, rows in inserted if rows for leaf in source.inserted(rows)]
        leaves += [leaf for source, keys in records if keys for leaf in source.leaves(connection, keys)]
        return self.place(connection, leaves)

    def positions(self, connection: sa.Connection, record_names: Sequence[str]) -> dict[str, LedgerPosition]:
        return {
            name: LedgerPosition(self.origin, index)
            for name, index in self.rows.indexes(connection, record_names).items()
        }

    def adopt_existing(self) -> int:
        """Gives records written before this database had a ledger their leaves, once (when the ledger is empty
        and records exist), in each source's order. Returns how many were added."""
        with self._engine.begin() as connection:
            if self.rows.size(connection):
                return 0
            leaves = [leaf for source in self.sources for leaf in source.leaves(connection)]
            self.rows.append(connection, leaves)
        if leaves:
            log.warning("ledger %s: adopted %d records written before the ledger existed", self.origin, len(leaves))
        return len(leaves)

    # ---- background signing --------------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.adopt_existing)
        await asyncio.to_thread(self.checkpointer.tick)
        self._task = asyncio.create_task(self._sign_forever(), name=f"ledger-{self.origin}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:  # a last checkpoint, so records written just before shutdown do not wait for the next start
            await asyncio.to_thread(self.checkpointer.tick)
        except Exception:
            log.exception("ledger %s: the checkpoint at shutdown failed; the next start signs it", self.origin)

    async def _sign_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await asyncio.to_thread(self.checkpointer.tick)
            except Exception:  # a database outage must not end signing for good
                log.exception("ledger %s: checkpoint failed; retrying", self.origin)

    # ---- what the RPCs answer ------------------------------------------------------------------------------------

    def checkpoint(self) -> Signed:
        return self._latest()

    def sign_now(self) -> Signed:
        """A checkpoint covering every leaf committed so far, signed now if the latest does not (for handing it to a
        witness right after the records it should cover)."""
        self.checkpointer.tick(force=True)
        return self._latest()

    def inclusion(self, record_name: str | None, leaf_index: int | None, tree_size: int) -> Inclusion:
        latest = self._latest()
        with self._engine.connect() as connection:
            if record_name is not None:
                stored = self.rows.by_name(connection, record_name)
                if stored is None:
                    raise NotFound("LEDGER_RECORD_NOT_FOUND", f"no ledger leaf records {record_name!r}")
            else:
                assert leaf_index is not None
                if leaf_index < 0:
                    raise InvalidArgument("LEAF_INDEX_OUT_OF_RANGE", f"leaf_index must be >= 0, not {leaf_index}")
                stored = self.rows.by_index(connection, leaf_index)
                if stored is None:
                    raise NotFound("LEAF_INDEX_OUT_OF_RANGE", f"the ledger has no leaf {leaf_index}")
        target = self._checkpoint_at(tree_size, latest)
        size = target.checkpoint.size
        if stored.index >= size and tree_size == 0:  # another replica may have signed it: catch up once
            self.checkpointer.tick()
            target = self._latest()
            size = target.checkpoint.size
        if stored.index >= size:
            raise FailedPrecondition(
                "NOT_YET_CHECKPOINTED",
                f"leaf {stored.index} is not yet covered by a checkpoint (tree size {size}); retry shortly",
                retry_after_s=self.checkpointer.due_in_s(),
            )
        hashes = self._guard(lambda: self.tree.inclusion(stored.index, size))
        try:
            merkle.verify_inclusion(merkle.leaf_hash(stored.leaf), stored.index, size, hashes, target.checkpoint.root)
        except merkle.ProofError as exc:
            raise self._tampered(f"leaf {stored.index} ({stored.record_name}) does not verify: {exc}") from None
        return Inclusion(stored, hashes, target)

    def consistency(self, old_size: int, new_size: int) -> Consistency:
        latest = self._latest()
        new = self._checkpoint_at(new_size, latest)
        if old_size > new.checkpoint.size:
            raise InvalidArgument(
                "OLD_SIZE_AFTER_NEW_SIZE", f"old_size {old_size} is larger than new_size {new.checkpoint.size}"
            )
        old = self._checkpoint_at(old_size, latest, zero_is_latest=False)
        hashes = self._guard(lambda: self.tree.consistency(old.checkpoint.size, new.checkpoint.size))
        try:
            merkle.verify_consistency(
                old.checkpoint.size, new.checkpoint.size, old.checkpoint.root, new.checkpoint.root, hashes
            )
        except merkle.ProofError as exc:
            raise self._tampered(f"checkpoints {old_size} and {new.checkpoint.size} do not verify: {exc}") from None
        return Consistency(hashes, old, new)

    def _latest(self) -> Signed:
        if self.checkpointer.alarm is not None:
            raise self._tampered(self.checkpointer.alarm)
        latest = self.checkpointer.latest
        if latest is None:
            raise FailedPrecondition(
                "NOT_YET_CHECKPOINTED",
                "the ledger has not signed its first checkpoint yet; retry shortly",
                retry_after_s=self.checkpointer.due_in_s(),
            )
        return latest

    def _checkpoint_at(self, size: int, latest: Signed, *, zero_is_latest: bool = True) -> Signed:
        if size < 0:
            raise InvalidArgument("TREE_SIZE_NOT_CHECKPOINTED", f"tree size must be >= 0, not {size}")
        if (size == 0 and zero_is_latest) or size == latest.checkpoint.size:
            return latest
        note = self.checkpointer.checkpoints.get(size)
        if note is None:
            raise InvalidArgument(
                "TREE_SIZE_NOT_CHECKPOINTED",
                f"no checkpoint of tree size {size} was signed; ask for a signed size (GetCheckpoint gives the latest)",
            )
        signed = parse_signed(note)
        if signed.checkpoint.size > self.tree.size:  # signed by another replica, beyond what this one caught up
            try:
                self.tree.catch_up()
            except LedgerGap as gap:
                raise self._tampered(str(gap)) from None
            if signed.checkpoint.size > self.tree.size:
                raise self._tampered(
                    f"checkpoint {signed.checkpoint.size} is logged but the database holds {self.tree.size} leaves"
                )
        return signed

    def _guard(self, work: Callable[[], list[bytes]]) -> list[bytes]:
        try:
            return work()
        except LedgerGap as gap:
            raise self._tampered(str(gap)) from None

    def _tampered(self, problem: str) -> DataLoss:
        log.error("ledger %s: %s", self.origin, problem)
        return DataLoss(
            "LEDGER_INCONSISTENT", f"the {self.origin} ledger does not match its signed checkpoints: {problem}"
        )
