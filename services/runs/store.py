"""With chunk_store.py (blob bytes), the only modules that touch the runs database.

Create-only semantics come from primary keys and unique constraints (and database triggers refuse UPDATE and
DELETE on immutable tables); idempotency keys are unique per caller, so concurrent retries converge on one row.
The explanation row is changed only by compare-and-set on its version, with a history row per change (and the row
equal to its last history row, which the audit checks). Every immutable row written gets its ledger leaf in the same
transaction (services/runs/ledger_records.py says which).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.common.clock import from_us, to_us
from services.common.db import insert_if_absent, insert_rows, keyset
from services.common.errors import FailedPrecondition
from services.common.group_commit import GroupCommit
from services.common.identity import Principal, PrincipalKind
from services.common.ledger.leaves import LedgerPosition
from services.common.ledger.ledger import Ledger, leaf_positions, record_all_leaves, record_leaves
from services.runs import tables
from services.runs.ledger_records import (
    ADVISORIES,
    ATTACHMENTS,
    BLOBS,
    EXPLANATION_DECISIONS,
    RUNS,
    SEALS,
    WITHDRAWALS,
)
from services.runs.model import (
    AdvisoryKind,
    AdvisoryLink,
    AttachmentRecord,
    BlobDigest,
    Explanation,
    ExplanationReview,
    ExplanationStatus,
    OutboxMessage,
    OutboxState,
    ReviewStatus,
    RunContent,
    RunRecord,
    Seal,
    SealScope,
    Stamp,
    Withdrawal,
    explanation_name,
    run_name,
    withdrawal_name,
)


@dataclass(frozen=True)
class RunFilters:
    status: str = ""
    risk_level: str = ""
    mode: str = ""
    tool_id: str = ""
    created_by: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None
    explanation_status: str = ""
    # Runs whose READY explanation is in this review status (model.RunRecord.explanation_review_status).
    explanation_review_status: str = ""
    # Withdrawn runs are left out unless asked for (include: them too; only: them alone).
    include_withdrawn: bool = False
    only_withdrawn: bool = False


@dataclass(frozen=True)
class StoredRun:
    """A run row as stored: the record plus the canonical document and the key it was created under."""

    record: RunRecord
    artifact_json: str
    request_fingerprint: str | None
    # The columns filters use, as stored next to the document (verification compares them with it).
    indexed: dict[str, str]


@dataclass(frozen=True)
class NewAttachment:
    record: AttachmentRecord
    idempotency_key: str | None
    fingerprint: str | None
    position: int


@dataclass(frozen=True)
class _PendingRun:
    record: RunRecord
    artifact_json: str
    key: str | None
    fingerprint: str
    attachments: tuple[NewAttachment, ...]
    outbox: tuple[OutboxMessage, ...] = ()
    seals: tuple[Seal, ...] = ()

    def run_row(self) -> dict[str, Any]:
        record, stamp = self.record, self.record.stamp
        return {
            "id": record.run_id,
            "created_at_us": to_us(stamp.created_at),
            "created_by": stamp.created_by.id,
            "created_by_kind": stamp.created_by.kind.value,
            "request_id": stamp.request_id,
            "idempotency_key": self.key,
            "request_fingerprint": self.fingerprint if self.key else None,
            "trace_id": stamp.trace_id,
            "mode": record.content.mode,
            "tool_id": record.content.tool_id,
            "status": record.content.status.value,
            "risk_level": record.content.decision.risk_level.value,
            "artifact_json": self.artifact_json,
            "artifact_sha256": record.artifact_sha256,
        }

    def explanation_row(self) -> dict[str, Any]:
        explanation = self.record.explanation
        return {
            "run_id": self.record.run_id,
            "status": explanation.status.value,
            "summary": explanation.summary,
            "error": explanation.error,
            "advisory_id": explanation.advisory_id,
            "version": 1,
            "updated_at_us": to_us(self.record.stamp.created_at),
            **_NO_REVIEW,
        }

    def history_row(self) -> dict[str, Any]:
        explanation, stamp = self.record.explanation, self.record.stamp
        return {
            "run_id": self.record.run_id,
            "version": 1,
            "status": explanation.status.value,
            "summary": explanation.summary,
            "error": explanation.error,
            "changed_by": stamp.created_by.id,
            "changed_by_kind": stamp.created_by.kind.value,
            "changed_at_us": to_us(stamp.created_at),
            "request_id": stamp.request_id,
            "advisory_id": explanation.advisory_id,
            "review_status": None,
            "review_rationale": None,
        }

    def stored(self) -> StoredRun:
        """What was just committed, without reading it back."""
        record = self.record
        explanation = replace(record.explanation, updated_at=record.stamp.created_at, version=1)
        indexed = {
            "mode": record.content.mode,
            "tool_id": record.content.tool_id,
            "status": record.content.status.value,
            "risk_level": record.content.decision.risk_level.value,
        }
        lineage = self.outbox[0] if self.outbox else None
        return StoredRun(
            replace(record, explanation=explanation, lineage=lineage), self.artifact_json, self.fingerprint, indexed
        )


class RunsStore:
    def __init__(self, engine: sa.Engine, ledger: Ledger | None = None) -> None:
        self.engine = engine
        self.ledger = ledger
        self._mints: GroupCommit[_PendingRun, tuple[StoredRun, bool]] = GroupCommit(self._insert_batch, "runs-mint")
        self._attachments: GroupCommit[tuple[tuple[NewAttachment, ...], datetime], list[AttachmentRecord] | None] = (
            GroupCommit(self._insert_attachment_batches, "runs-attach")
        )

    def close(self) -> None:
        """At shutdown: refuses new writes and returns once every mint and attachment queued is committed."""
        self._mints.close()
        self._attachments.close()

    # ---- runs -------------------------------------------------------------------------------------------------

    def create_run(
        self,
        record: RunRecord,
        artifact_json: str,
        idempotency_key: str,
        request_fingerprint: str,
        attachments: Sequence[NewAttachment] = (),
        outbox: Sequence[OutboxMessage] = (),
        seals: Sequence[Seal] = (),
    ) -> tuple[StoredRun, bool]:
        """Inserts the run, its explanation row, its outbox messages, any attachment records of already stored
        blobs and the seals its decision sets in one transaction; returns (stored, created). An existing run under
        the same caller and idempotency key is returned instead (created=False) for the caller to compare
        fingerprints.

        Concurrent mints are committed together (group commit): one durable commit for many runs."""
        return self._mints.submit(
            _PendingRun(
                record,
                artifact_json,
                idempotency_key or None,
                request_fingerprint,
                tuple(attachments),
                tuple(outbox),
                tuple(seals),
            )
        )

    async def create_run_async(
        self, record: RunRecord, artifact_json: str, idempotency_key: str, request_fingerprint: str
    ) -> tuple[StoredRun, bool]:
        """create_run for callers on the event loop: the mint waits for its group commit without a thread."""
        return await self._mints.submit_async(
            _PendingRun(record, artifact_json, idempotency_key or None, request_fingerprint, (), ())
        )

    def _insert_batch(self, batch: list[_PendingRun]) -> list[tuple[StoredRun, bool]]:
        """One transaction for a batch of mints. Keys already used (in the database or earlier in the batch)
        resolve to the existing run; if the transaction still conflicts (another replica won a race), each mint
        is retried on its own."""
        keyed = sorted({(p.record.stamp.created_by.id, p.key) for p in batch if p.key})
        existing = self._by_keys(keyed)
        results: list[tuple[StoredRun, bool] | None] = [None] * len(batch)
        first_for_key: dict[tuple[str, str], int] = {}
        inserts: list[int] = []
        for index, pending in enumerate(batch):
            key = (pending.record.stamp.created_by.id, pending.key) if pending.key else None
            if key and key in existing:
                results[index] = (existing[key], False)
            elif key and key in first_for_key:
                continue  # resolved below to the run minted by the first request with this key
            else:
                if key:
                    first_for_key[key] = index
                inserts.append(index)
        try:
            with self.engine.begin() as connection:
                placed = self._insert_rows(connection, [batch[i] for i in inserts])
        except IntegrityError:
            if len(batch) == 1:
                withdrawn = next((w for seal in batch[0].seals if (w := self.withdrawal(seal.run_id))), None)
                if withdrawn is not None:  # withdrawn after the domain checked: the trigger refused the seal
                    raise withdrawn.refusal() from None
                stored = self._by_key(batch[0].record.stamp.created_by.id, batch[0].key) if batch[0].key else None
                if stored is None:
                    raise
                return [(stored, False)]
            return [self._insert_batch([pending])[0] for pending in batch]
        for index in inserts:
            stored = batch[index].stored()
            results[index] = (
                replace(stored, record=replace(stored.record, ledger=placed.get(stored.record.name))),
                True,
            )
        for index, pending in enumerate(batch):
            if results[index] is None:
                first = results[first_for_key[(pending.record.stamp.created_by.id, pending.key)]]  # type: ignore[index]
                assert first is not None
                results[index] = (first[0], False)
        return [r for r in results if r is not None]

    def _insert_rows(self, connection: sa.Connection, batch: list[_PendingRun]) -> dict[str, LedgerPosition]:
        if not batch:
            return {}
        runs = [p.run_row() for p in batch]
        history = [p.history_row() for p in batch]
        insert_rows(connection, tables.runs, runs)
        insert_rows(connection, tables.run_explanations, [p.explanation_row() for p in batch])
        insert_rows(connection, tables.run_explanation_history, history)
        advisories = [_advisory_row(p.record.run_id, link) for p in batch for link in p.record.advisories]
        if advisories:
            insert_rows(connection, tables.advisories, advisories)
        attachments = [_attachment_row(item) for p in batch for item in p.attachments]
        if attachments:
            insert_rows(connection, tables.attachments, attachments)
        messages = [_outbox_row(message) for p in batch for message in p.outbox]
        if messages:
            insert_rows(connection, tables.outbox, messages)
        # After the attachments: a run's own seal must not refuse the bound copies it is minted with.
        seals = [_seal_row(seal, p.record.stamp.created_at) for p in batch for seal in p.seals]
        if seals:
            insert_rows(connection, tables.run_seals, seals)
        # Last, so the ledger lock (PostgreSQL) is held for as short a time as possible. Every row here is what was
        # inserted, column for column: the leaves come from them without reading them back.
        return record_all_leaves(
            self.ledger,
            connection,
            [],
            [
                (RUNS, runs),
                (EXPLANATION_DECISIONS, history),
                (ADVISORIES, advisories),
                (ATTACHMENTS, attachments),
                (SEALS, seals),
            ],
        )

    def _by_keys(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], StoredRun]:
        if not keys:
            return {}
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(tables.runs).where(
                    sa.tuple_(tables.runs.c.created_by, tables.runs.c.idempotency_key).in_(keys)
                )
            ).all()
            stored = self._hydrate(connection, rows)
        return {(s.record.stamp.created_by.id, row.idempotency_key): s for s, row in zip(stored, rows, strict=True)}

    def _by_key(self, created_by: str, key: str) -> StoredRun | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(tables.runs).where(
                    tables.runs.c.created_by == created_by, tables.runs.c.idempotency_key == key
                )
            ).first()
            return self._hydrate(connection, [row])[0] if row else None

    def get_run(self, run_id: str) -> StoredRun | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(tables.runs).where(tables.runs.c.id == run_id)).first()
            return self._hydrate(connection, [row])[0] if row else None

    def run_creator(self, run_id: str) -> Principal | None:
        """Who created the run, or None when there is no such run."""
        runs = tables.runs
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(runs.c.created_by, runs.c.created_by_kind).where(runs.c.id == run_id)
            ).first()
            return _principal(row.created_by, row.created_by_kind) if row else None

    def list_runs(self, filters: RunFilters, after: Sequence[Any] | None, limit: int) -> list[StoredRun]:
        """Newest first by (created_at, id); `after` is the sort key of the last run of the previous page."""
        runs, explanations = tables.runs, tables.run_explanations
        query = sa.select(runs)
        for column, value in (
            (runs.c.status, filters.status),
            (runs.c.risk_level, filters.risk_level),
            (runs.c.mode, filters.mode),
            (runs.c.tool_id, filters.tool_id),
            (runs.c.created_by, filters.created_by),
        ):
            if value:
                query = query.where(column == value)
        if filters.created_after is not None:
            query = query.where(runs.c.created_at_us >= to_us(filters.created_after))
        if filters.created_before is not None:
            query = query.where(runs.c.created_at_us < to_us(filters.created_before))
        if filters.explanation_status:
            query = query.join(explanations, explanations.c.run_id == runs.c.id).where(
                explanations.c.status == filters.explanation_status
            )
        if filters.explanation_review_status:
            query = query.where(_review_status_is(filters.explanation_review_status))
        withdrawn = sa.exists().where(tables.run_withdrawals.c.run_id == runs.c.id)
        if filters.only_withdrawn:
            query = query.where(withdrawn)
        elif not filters.include_withdrawn:
            query = query.where(~withdrawn)
        query = keyset(query, runs.c.created_at_us, runs.c.id, after, limit, newest_first=True)
        with self.engine.connect() as connection:
            return self._hydrate(connection, list(connection.execute(query)))

    def _hydrate(self, connection: sa.Connection, rows: Sequence[sa.Row[Any]]) -> list[StoredRun]:
        """Rows -> stored runs, with their explanations and advisories fetched in two queries for the page."""
        ids = [row.id for row in rows]
        explanation_rows = {
            r.run_id: r
            for r in connection.execute(
                sa.select(tables.run_explanations).where(tables.run_explanations.c.run_id.in_(ids))
            )
        }
        advisory_rows: dict[str, list[AdvisoryLink]] = {run_id: [] for run_id in ids}
        for r in connection.execute(
            sa.select(tables.advisories)
            .where(tables.advisories.c.run_id.in_(ids))
            .order_by(tables.advisories.c.created_at_us, tables.advisories.c.advisory_id)
        ):
            advisory_rows[r.run_id].append(_advisory_link(r))
        lineage = {
            r.run_id: _outbox_message(r)
            for r in connection.execute(sa.select(tables.outbox).where(tables.outbox.c.run_id.in_(ids)))
        }
        reviewed = [
            explanation_name(r.run_id, r.version) for r in explanation_rows.values() if r.review_status is not None
        ]
        placed = leaf_positions(self.ledger, connection, [run_name(run_id) for run_id in ids] + reviewed)
        withdrawals = self._withdrawals(connection, ids)
        stored = []
        for row in rows:
            document = json.loads(row.artifact_json)
            explanation_row = explanation_rows[row.id]
            record = RunRecord(
                run_id=row.id,
                content=RunContent.from_document(document),
                stamp=_stamp(row),
                artifact_sha256=row.artifact_sha256,
                advisories=tuple(advisory_rows[row.id]),
                explanation=_explanation(explanation_row, placed),
                lineage=lineage.get(row.id),
                ledger=placed.get(run_name(row.id)),
                withdrawal=withdrawals.get(row.id),
            )
            indexed = {"mode": row.mode, "tool_id": row.tool_id, "status": row.status, "risk_level": row.risk_level}
            stored.append(StoredRun(record, row.artifact_json, row.request_fingerprint, indexed))
        return stored

    # ---- withdrawals --------------------------------------------------------------------------------------------

    def runs_of_request(self, created_by: str, request_id: str) -> list[StoredRun]:
        """The runs `created_by` minted under `request_id` (one command's), oldest first (ix_runs_request)."""
        runs = tables.runs
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(runs)
                .where(runs.c.created_by == created_by, runs.c.request_id == request_id)
                .order_by(runs.c.created_at_us, runs.c.id)
            ).all()
            return self._hydrate(connection, rows)

    def withdraw(self, withdrawals: Sequence[Withdrawal]) -> list[Withdrawal] | None:
        """Records the withdrawals in one transaction with their leaves, all or none; None when one of the runs
        was withdrawn meanwhile (the primary key refused it), for the caller to read what is recorded."""
        rows = [_withdrawal_row(w) for w in withdrawals]
        try:
            with self.engine.begin() as connection:
                insert_rows(connection, tables.run_withdrawals, rows)
                placed = record_leaves(self.ledger, connection, WITHDRAWALS, [(row["run_id"],) for row in rows])
        except IntegrityError:
            return None
        return [replace(w, ledger=placed.get(withdrawal_name(w.run_id))) for w in withdrawals]

    def withdrawal(self, run_id: str) -> Withdrawal | None:
        with self.engine.connect() as connection:
            return self._withdrawals(connection, [run_id]).get(run_id)

    def withdrawn_with(self, batch_run_id: str) -> list[str]:
        """Ids of the runs withdrawn with a batch (the batch aside), oldest run first."""
        table, runs = tables.run_withdrawals, tables.runs
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(table.c.run_id)
                .join(runs, runs.c.id == table.c.run_id)
                .where(table.c.batch_run_id == batch_run_id, table.c.run_id != batch_run_id)
                .order_by(runs.c.created_at_us, runs.c.id)
            )
            return [row.run_id for row in rows]

    def _withdrawals(self, connection: sa.Connection, run_ids: Sequence[str]) -> dict[str, Withdrawal]:
        if not run_ids:
            return {}
        table = tables.run_withdrawals
        found = {
            row.run_id: _withdrawal(row)
            for row in connection.execute(sa.select(table).where(table.c.run_id.in_(list(run_ids))))
        }
        placed = leaf_positions(self.ledger, connection, [withdrawal_name(run_id) for run_id in found])
        return {run_id: replace(w, ledger=placed.get(withdrawal_name(run_id))) for run_id, w in found.items()}

    # ---- explanations -------------------------------------------------------------------------------------------

    def claim_explanation(self, run_id: str, by: Principal, request_id: str, now: datetime, lease_s: float) -> bool:
        """NONE/ERROR (or PENDING older than the lease: its process died) -> PENDING by compare-and-set on the
        row version; True only for the one caller whose update matched."""
        with self.engine.begin() as connection:
            current = connection.execute(
                sa.select(tables.run_explanations).where(tables.run_explanations.c.run_id == run_id)
            ).first()
            if current is None:
                return False
            abandoned = (
                current.status == ExplanationStatus.PENDING and current.updated_at_us < to_us(now) - lease_s * 1e6
            )
            if current.status not in (ExplanationStatus.NONE, ExplanationStatus.ERROR) and not abandoned:
                return False
            changed = connection.execute(
                tables.run_explanations.update()
                .where(
                    tables.run_explanations.c.run_id == run_id,
                    tables.run_explanations.c.version == current.version,
                )
                .values(
                    status=ExplanationStatus.PENDING.value,
                    summary="",
                    error="",
                    advisory_id="",
                    version=current.version + 1,
                    updated_at_us=to_us(now),
                )
            ).rowcount
            if changed != 1:
                return False
            self._history(
                connection,
                run_id,
                current.version + 1,
                Explanation(ExplanationStatus.PENDING),
                by,
                to_us(now),
                request_id,
            )
            record_leaves(self.ledger, connection, EXPLANATION_DECISIONS, [(run_id, current.version + 1)])
            return True

    def finish_explanation(
        self,
        run_id: str,
        outcome: Explanation,
        advisory: AdvisoryLink | None,
        by: Principal,
        request_id: str,
        now: datetime,
    ) -> None:
        """PENDING -> READY (with its advisory, in the same transaction) or ERROR."""
        with self.engine.begin() as connection:
            current = connection.execute(
                sa.select(tables.run_explanations).where(tables.run_explanations.c.run_id == run_id)
            ).one()
            if current.status != ExplanationStatus.PENDING:
                raise RuntimeError(f"explanation of {run_id} is {current.status}, not PENDING")
            if advisory is not None:
                connection.execute(tables.advisories.insert().values(_advisory_row(run_id, advisory)))
            changed = connection.execute(
                tables.run_explanations.update()
                .where(
                    tables.run_explanations.c.run_id == run_id,
                    tables.run_explanations.c.version == current.version,
                )
                .values(
                    status=outcome.status.value,
                    summary=outcome.summary,
                    error=outcome.error,
                    advisory_id=outcome.advisory_id,
                    version=current.version + 1,
                    updated_at_us=to_us(now),
                )
            ).rowcount
            if changed != 1:
                raise RuntimeError(f"explanation of {run_id} changed concurrently")
            self._history(connection, run_id, current.version + 1, outcome, by, to_us(now), request_id)
            if advisory is not None:
                record_leaves(self.ledger, connection, ADVISORIES, [(run_id, advisory.advisory_id)])
            record_leaves(self.ledger, connection, EXPLANATION_DECISIONS, [(run_id, current.version + 1)])

    def explanation_changed_by(self, run_id: str, version: int) -> Principal | None:
        """Who made a version of the run's explanation (for a READY one: who asked for it), or None."""
        history = tables.run_explanation_history
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(history.c.changed_by, history.c.changed_by_kind).where(
                    history.c.run_id == run_id, history.c.version == version
                )
            ).first()
            return _principal(row.changed_by, row.changed_by_kind) if row else None

    def review_explanation(self, run_id: str, review: ExplanationReview, request_id: str) -> ExplanationReview | None:
        """Records a reviewer's decision: the explanation at version review.version - 1 -> review.version by
        compare-and-set, its history row and that row's leaf in one transaction. None when the version no longer
        matched (another change won): nothing is written."""
        explanations, version = tables.run_explanations, review.version
        at_us = to_us(review.reviewed_at)
        with self.engine.begin() as connection:
            changed = connection.execute(
                explanations.update()
                .where(explanations.c.run_id == run_id, explanations.c.version == version - 1)
                .values(
                    version=version,
                    updated_at_us=at_us,
                    review_status=review.status.value,
                    review_rationale=review.rationale,
                    reviewed_by=review.reviewed_by.id,
                    reviewed_by_kind=review.reviewed_by.kind.value,
                )
            ).rowcount
            if changed != 1:
                return None
            current = connection.execute(sa.select(explanations).where(explanations.c.run_id == run_id)).one()
            self._history(
                connection,
                run_id,
                version,
                _explanation(current, {}),
                review.reviewed_by,
                at_us,
                request_id,
                review=review,
            )
            placed = record_leaves(self.ledger, connection, EXPLANATION_DECISIONS, [(run_id, version)])
        return replace(review, ledger=placed.get(explanation_name(run_id, version)))

    def explanation_history(self, run_id: str) -> list[tuple[int, str]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(tables.run_explanation_history.c.version, tables.run_explanation_history.c.status)
                .where(tables.run_explanation_history.c.run_id == run_id)
                .order_by(tables.run_explanation_history.c.version)
            )
            return [(row.version, row.status) for row in rows]

    @staticmethod
    def _history(
        connection: sa.Connection,
        run_id: str,
        version: int,
        explanation: Explanation,
        by: Principal,
        at_us: int,
        request_id: str,
        review: ExplanationReview | None = None,
    ) -> None:
        connection.execute(
            tables.run_explanation_history.insert().values(
                run_id=run_id,
                version=version,
                status=explanation.status.value,
                summary=explanation.summary,
                error=explanation.error,
                changed_by=by.id,
                changed_by_kind=by.kind.value,
                changed_at_us=at_us,
                request_id=request_id,
                advisory_id=explanation.advisory_id,
                review_status=review.status.value if review is not None else None,
                review_rationale=review.rationale if review is not None else None,
            )
        )

    # ---- outbox -------------------------------------------------------------------------------------------------

    def due_outbox(self, now: datetime, lease_s: float, limit: int) -> list[OutboxMessage]:
        """Claims pending messages that are due, by moving their next attempt a lease into the future with a
        compare-and-set; a replica (or a restart) picks a message up again only if its lease ran out."""
        table = tables.outbox
        now_us = to_us(now)
        with self.engine.connect() as connection:
            candidates = connection.execute(
                sa.select(table)
                .where(table.c.state == OutboxState.PENDING.value, table.c.next_attempt_at_us <= now_us)
                .order_by(table.c.next_attempt_at_us, table.c.id)
                .limit(limit)
            ).all()
        claimed = []
        for row in candidates:
            with self.engine.begin() as connection:
                won = connection.execute(
                    table.update()
                    .where(table.c.id == row.id, table.c.next_attempt_at_us == row.next_attempt_at_us)
                    .values(next_attempt_at_us=now_us + int(lease_s * 1_000_000))
                ).rowcount
            if won == 1:
                claimed.append(_outbox_message(row))
        return claimed

    def outbox_backlog(self) -> int:
        """Messages still to deliver (due or backing off); counted on the (state, next attempt) index."""
        table = tables.outbox
        with self.engine.connect() as connection:
            count = connection.execute(
                sa.select(sa.func.count()).select_from(table).where(table.c.state == OutboxState.PENDING.value)
            ).scalar_one()
        return int(count)

    def outbox_delivered(self, message_id: str, result: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                tables.outbox.update()
                .where(tables.outbox.c.id == message_id)
                .values(
                    state=OutboxState.DELIVERED.value,
                    result=result[:512],
                    last_error="",
                    attempts=tables.outbox.c.attempts + 1,
                )
            )

    def outbox_failed(self, message_id: str, error: str, retry_at: datetime | None) -> None:
        """Records a failed attempt: retried at `retry_at`, or given up on (FAILED) when it is None."""
        values: dict[str, Any] = {"last_error": error[:2000], "attempts": tables.outbox.c.attempts + 1}
        if retry_at is None:
            values["state"] = OutboxState.FAILED.value
        else:
            values["next_attempt_at_us"] = to_us(retry_at)
        with self.engine.begin() as connection:
            connection.execute(tables.outbox.update().where(tables.outbox.c.id == message_id).values(**values))

    # ---- advisories ---------------------------------------------------------------------------------------------

    def attach_advisory(self, run_id: str, link: AdvisoryLink) -> bool:
        """Append-only and idempotent: False when this advisory id is already linked to the run."""
        try:
            with self.engine.begin() as connection:
                connection.execute(tables.advisories.insert().values(_advisory_row(run_id, link)))
                record_leaves(self.ledger, connection, ADVISORIES, [(run_id, link.advisory_id)])
        except IntegrityError:
            with self.engine.connect() as connection:
                exists = connection.execute(
                    sa.select(tables.advisories.c.advisory_id).where(
                        tables.advisories.c.run_id == run_id, tables.advisories.c.advisory_id == link.advisory_id
                    )
                ).first()
            if exists:
                return False
            raise
        return True

    def list_advisories(self, run_id: str, after: Sequence[Any] | None, limit: int) -> list[AdvisoryLink]:
        query = sa.select(tables.advisories).where(tables.advisories.c.run_id == run_id)
        table = tables.advisories
        query = keyset(query, table.c.created_at_us, table.c.advisory_id, after, limit, newest_first=False)
        with self.engine.connect() as connection:
            return [_advisory_link(row) for row in connection.execute(query)]

    # ---- blobs and attachments ----------------------------------------------------------------------------------

    def known_blobs(self, digests: Iterable[str]) -> set[str]:
        wanted = sorted(set(digests))
        with self.engine.connect() as connection:
            return {
                row.sha256
                for row in connection.execute(sa.select(tables.blobs.c.sha256).where(tables.blobs.c.sha256.in_(wanted)))
            }

    def attachments_for_key(self, run_id: str, created_by: str, key: str) -> list[tuple[AttachmentRecord, str]]:
        """Attachments created under an idempotency key, with the request fingerprint they were made from."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(tables.attachments)
                .where(
                    tables.attachments.c.run_id == run_id,
                    tables.attachments.c.created_by == created_by,
                    tables.attachments.c.idempotency_key == key,
                )
                .order_by(tables.attachments.c.batch_position)
            )
            found = [(_attachment(row), row.idempotency_fingerprint or "") for row in rows]
            placed = leaf_positions(self.ledger, connection, [a.name for a, _ in found])
            return [(replace(a, ledger=placed.get(a.name)), fingerprint) for a, fingerprint in found]

    def add_attachments(self, items: Sequence[NewAttachment], now: datetime) -> list[AttachmentRecord] | None:
        """Records blobs and attachments in one transaction: all or none. Returns the attachments as stored (with
        their ledger positions), or None if an idempotency key raced. Concurrent callers share one commit (group
        commit)."""
        return self._attachments.submit((tuple(items), now))

    def _insert_attachment_batches(
        self, batch: list[tuple[tuple[NewAttachment, ...], datetime]]
    ) -> list[list[AttachmentRecord] | BaseException | None]:
        """Every caller's attachments in one transaction; on a conflict, each caller's on its own, so one
        refused batch never takes the others down with it."""
        try:
            with self.engine.begin() as connection:
                blobs = {
                    blob.sha256: {"sha256": blob.sha256, "size_bytes": blob.size_bytes, "created_at_us": to_us(now)}
                    for items, now in batch
                    for item in items
                    for blob in item.record.blobs()
                }
                # The same bytes may be recorded by a concurrent upload: that is the same blob, not a conflict.
                connection.execute(insert_if_absent(connection, tables.blobs), sorted(blobs.values(), key=str))
                attachments = [_attachment_row(item) for items, _ in batch for item in items]
                connection.execute(tables.attachments.insert(), attachments)
                # A blob already recorded (by an earlier upload, or a concurrent one that committed while this
                # insert waited on it) has its leaf; only bytes new to the store get one.
                names = {f"blobs/{sha256}": sha256 for sha256 in sorted(blobs)}
                known = leaf_positions(self.ledger, connection, list(names))
                placed = record_all_leaves(
                    self.ledger,
                    connection,
                    # Read back: a blob row inserted by a concurrent upload keeps that upload's time.
                    [(BLOBS, [(sha,) for name, sha in names.items() if name not in known])],
                    [(ATTACHMENTS, attachments)],
                )
            return [[replace(item.record, ledger=placed.get(item.record.name)) for item in items] for items, _ in batch]
        except IntegrityError as exc:
            if len(batch) > 1:
                return [self._insert_attachment_batches([one])[0] for one in batch]
            ((items, _),) = batch
            sealed = self._sealed_refusal(items)
            if sealed is not None:  # a decision sealed the run after the caller checked (the trigger caught it)
                return [sealed]
            return [None if any(item.idempotency_key for item in items) else exc]

    def _sealed_refusal(self, items: Sequence[NewAttachment]) -> FailedPrecondition | None:
        by_run: dict[str, list[str]] = {}
        for item in items:
            by_run.setdefault(item.record.run_id, []).append(item.record.kind)
        return next(
            (refusal for run_id, kinds in by_run.items() if (refusal := self.sealed_refusal(run_id, kinds))), None
        )

    def sealed_refusal(self, run_id: str, kinds: Sequence[str]) -> FailedPrecondition | None:
        """RUN_SEALED for the first of `kinds` a seal on the run forbids, or None (the seals are read once)."""
        for seal in self.seals(run_id):
            refused = next((kind for kind in kinds if seal.forbids(kind)), None)
            if refused is not None:
                return sealed_error(seal, refused)
        return None

    def seals(self, run_id: str) -> list[Seal]:
        """The seals decisions have set on a run, oldest first."""
        table = tables.run_seals
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(table).where(table.c.run_id == run_id).order_by(table.c.created_at_us, table.c.sealed_by)
            )
            return [Seal(row.run_id, row.sealed_by, SealScope(row.scope)) for row in rows]

    def get_attachment(self, run_id: str, attachment_id: str) -> AttachmentRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(tables.attachments).where(
                    tables.attachments.c.id == attachment_id, tables.attachments.c.run_id == run_id
                )
            ).first()
            return self._placed(connection, [_attachment(row)])[0] if row else None

    def list_attachments(
        self, run_id: str, kind: str, after: Sequence[Any] | None, limit: int
    ) -> list[AttachmentRecord]:
        """Newest first by (created_at, id), optionally of one kind (served by ix_attachments_run_kind)."""
        table = tables.attachments
        query = sa.select(table).where(table.c.run_id == run_id)
        if kind:
            query = query.where(table.c.kind == kind)
        query = keyset(query, table.c.created_at_us, table.c.id, after, limit, newest_first=True)
        with self.engine.connect() as connection:
            return self._placed(connection, [_attachment(row) for row in connection.execute(query)])

    def _placed(self, connection: sa.Connection, found: list[AttachmentRecord]) -> list[AttachmentRecord]:
        placed = leaf_positions(self.ledger, connection, [a.name for a in found])
        return [replace(a, ledger=placed.get(a.name)) for a in found]


def sealed_error(seal: Seal, kind: str) -> FailedPrecondition:
    """The one refusal for an attachment a seal forbids, whether the domain or the database trigger saw it."""
    run, by = f"runs/{seal.run_id}", f"runs/{seal.sealed_by}"
    why = (
        "it was minted by the feasibility engine and its record is the decision"
        if seal.scope is SealScope.ALL
        else f"{by} was bound from its geometry, so its latest {kind} must stay the one decided on"
    )
    return FailedPrecondition(
        "RUN_SEALED",
        f"{run} takes no new {kind} attachment: {why}; attach to a new design session run instead",
        metadata={"run": run, "sealed_by": by, "scope": seal.scope.value},
    )


_NO_REVIEW: dict[str, Any] = {
    "review_status": None,
    "review_rationale": None,
    "reviewed_by": None,
    "reviewed_by_kind": None,
}


def _explanation(row: sa.Row[Any], placed: dict[str, LedgerPosition]) -> Explanation:
    review = None
    if row.review_status is not None:
        review = ExplanationReview(
            status=ReviewStatus(row.review_status),
            rationale=row.review_rationale or "",
            reviewed_by=_principal(row.reviewed_by, row.reviewed_by_kind),
            reviewed_at=from_us(row.updated_at_us),
            version=row.version,
            ledger=placed.get(explanation_name(row.run_id, row.version)),
        )
    return Explanation(
        status=ExplanationStatus(row.status),
        summary=row.summary,
        error=row.error,
        advisory_id=row.advisory_id,
        updated_at=from_us(row.updated_at_us),
        version=row.version,
        review=review,
    )


def _review_status_is(wanted: str) -> sa.ColumnElement[bool]:
    """ListRuns' explanation_review_status, as model.RunRecord.explanation_review_status says it: a READY
    explanation's decision once reviewed, else its advisory's review status (NOT_REQUIRED without one)."""
    explanations, advisories = tables.run_explanations, tables.advisories
    advisory_status = (
        sa.select(advisories.c.review_status)
        .where(
            advisories.c.run_id == explanations.c.run_id,
            advisories.c.advisory_id == explanations.c.advisory_id,
        )
        .scalar_subquery()
    )
    effective = sa.func.coalesce(explanations.c.review_status, advisory_status, ReviewStatus.NOT_REQUIRED.value)
    return (
        sa.exists()
        .where(
            explanations.c.run_id == tables.runs.c.id,
            explanations.c.status == ExplanationStatus.READY.value,
            effective == wanted,
        )
        .correlate(tables.runs)
    )


def _withdrawal_row(withdrawal: Withdrawal) -> dict[str, Any]:
    stamp = withdrawal.stamp
    return {
        "run_id": withdrawal.run_id,
        "batch_run_id": withdrawal.batch_run_id,
        "reason": withdrawal.reason,
        "withdrawn_by": stamp.created_by.id,
        "withdrawn_by_kind": stamp.created_by.kind.value,
        "withdrawn_at_us": to_us(stamp.created_at),
        "request_id": stamp.request_id,
        "trace_id": stamp.trace_id,
    }


def _withdrawal(row: sa.Row[Any]) -> Withdrawal:
    return Withdrawal(
        run_id=row.run_id,
        batch_run_id=row.batch_run_id,
        reason=row.reason,
        stamp=Stamp(
            created_at=from_us(row.withdrawn_at_us),
            created_by=_principal(row.withdrawn_by, row.withdrawn_by_kind),
            request_id=row.request_id,
            trace_id=row.trace_id,
        ),
    )


def _seal_row(seal: Seal, at: datetime) -> dict[str, Any]:
    return {"run_id": seal.run_id, "sealed_by": seal.sealed_by, "scope": seal.scope.value, "created_at_us": to_us(at)}


def _stamp(row: sa.Row[Any]) -> Stamp:
    """The stamp columns every stored record shares."""
    return Stamp(
        created_at=from_us(row.created_at_us),
        created_by=_principal(row.created_by, row.created_by_kind),
        request_id=row.request_id,
        trace_id=row.trace_id,
    )


def _principal(principal_id: str, kind: str) -> Principal:
    return Principal(principal_id, PrincipalKind(kind))


def _advisory_row(run_id: str, link: AdvisoryLink) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "advisory_id": link.advisory_id,
        "kind": link.kind.value,
        "engine_id": link.engine_id,
        "engine_version": link.engine_version,
        "summary": link.summary,
        "review_status": link.review_status.value,
        "reviewed_by": link.reviewed_by.id if link.reviewed_by else None,
        "reviewed_by_kind": link.reviewed_by.kind.value if link.reviewed_by else None,
        "created_at_us": to_us(link.stamp.created_at),
        "created_by": link.stamp.created_by.id,
        "created_by_kind": link.stamp.created_by.kind.value,
        "request_id": link.stamp.request_id,
        "trace_id": link.stamp.trace_id,
    }


def _advisory_link(row: sa.Row[Any]) -> AdvisoryLink:
    return AdvisoryLink(
        advisory_id=row.advisory_id,
        kind=AdvisoryKind(row.kind),
        engine_id=row.engine_id,
        engine_version=row.engine_version,
        summary=row.summary,
        review_status=ReviewStatus(row.review_status),
        reviewed_by=_principal(row.reviewed_by, row.reviewed_by_kind) if row.reviewed_by else None,
        stamp=_stamp(row),
    )


def _attachment_row(item: NewAttachment) -> dict[str, Any]:
    record = item.record
    return {
        "id": record.attachment_id,
        "run_id": record.run_id,
        "kind": record.kind,
        "filename": record.filename,
        "content_type": record.content_type,
        "sha256": record.sha256,
        "size_bytes": record.size_bytes,
        "metadata_json": json.dumps(record.metadata, sort_keys=True),
        "created_at_us": to_us(record.stamp.created_at),
        "created_by": record.stamp.created_by.id,
        "created_by_kind": record.stamp.created_by.kind.value,
        "request_id": record.stamp.request_id,
        "trace_id": record.stamp.trace_id,
        "idempotency_key": item.idempotency_key,
        "idempotency_fingerprint": item.fingerprint,
        "batch_position": item.position,
        "signed_sha256": None if record.signed is None else record.signed.sha256,
        "signed_size_bytes": None if record.signed is None else record.signed.size_bytes,
    }


def _attachment(row: sa.Row[Any]) -> AttachmentRecord:
    return AttachmentRecord(
        attachment_id=row.id,
        run_id=row.run_id,
        kind=row.kind,
        filename=row.filename,
        content_type=row.content_type,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        metadata=json.loads(row.metadata_json),
        stamp=_stamp(row),
        signed=None if row.signed_sha256 is None else BlobDigest(row.signed_sha256, row.signed_size_bytes),
    )


def _outbox_row(message: OutboxMessage) -> dict[str, Any]:
    return {
        "id": message.message_id,
        "run_id": message.run_id,
        "kind": message.kind,
        "payload_json": json.dumps(message.payload, sort_keys=True),
        "idempotency_key": message.idempotency_key,
        "request_id": message.request_id,
        "traceparent": message.traceparent,
        "created_at_us": to_us(message.created_at),
        "state": message.state.value,
        "attempts": message.attempts,
        "next_attempt_at_us": to_us(message.created_at),
        "last_error": message.last_error,
        "result": message.result,
    }


def _outbox_message(row: sa.Row[Any]) -> OutboxMessage:
    return OutboxMessage(
        message_id=row.id,
        run_id=row.run_id,
        kind=row.kind,
        payload=json.loads(row.payload_json),
        idempotency_key=row.idempotency_key,
        request_id=row.request_id,
        traceparent=row.traceparent,
        created_at=from_us(row.created_at_us),
        state=OutboxState(row.state),
        attempts=row.attempts,
        last_error=row.last_error,
        result=row.result,
    )
