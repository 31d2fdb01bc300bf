"""Withdrawing a legacy migration: custody, not deletion. A person with the migrator role withdraws a migration
batch (a run of mode legacy_migration); an append-only withdrawal (who, why, when) is recorded in one transaction
on the batch and on every run it created, which are the legacy runs its creator minted under its request id (every
run one `custody runs migrate` mints carries that command's request id). Withdrawn runs stay readable and
verifiable; ListRuns leaves them out unless asked, binding refuses them (here and by a database trigger), and a
later migration of the same records mints fresh runs naming them in meta.legacy.replaces (checked by minting).

A withdrawal is never rewritten: repeating it with the same reason returns the recorded one (a retry), with another
reason is ALREADY_WITHDRAWN."""

from __future__ import annotations

from dataclasses import dataclass

from services.common import call_context
from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument
from services.runs import authority
from services.runs.domain import ownership
from services.runs.domain.context import Context
from services.runs.model import RunRecord, Withdrawal, parse_run_name, run_name

MAX_REASON = 2000


@dataclass(frozen=True)
class WithdrawResult:
    # The batch's withdrawal.
    withdrawal: Withdrawal
    # The runs withdrawn with it (the batch aside), oldest first.
    runs: list[str]


def withdraw_batch(context: Context, batch: str, reason: str) -> WithdrawResult:
    batch_id = parse_run_name(batch, "batch")
    if not reason.strip() or len(reason) > MAX_REASON:
        raise InvalidArgument(
            "WITHDRAWAL_INVALID",
            f"a withdrawal says why: give a reason of 1 to {MAX_REASON} characters",
            violations=[FieldViolation("reason", f"required, at most {MAX_REASON} characters")],
        )
    authority.require_migrator(call_context.require_principal(), "WITHDRAWAL_NOT_ALLOWED", "withdraw a migration")
    record = ownership.stored(context, batch_id).record
    if not authority.is_migration_batch(record.content):
        raise FailedPrecondition(
            "NOT_A_MIGRATION_BATCH",
            f"{record.name} is a run of mode {record.content.mode!r}, not a legacy migration batch: only a batch "
            "(the run `custody runs migrate` reports as its batch) is withdrawn, with the runs it created",
            metadata={"run": record.name},
        )
    if record.withdrawal is not None:
        return _repeated(context, record.withdrawal, reason)
    stamp = context.stamp()
    created = [r for r in _created_by(context, record) if r.withdrawal is None]
    withdrawals = [Withdrawal(r.run_id, batch_id, reason, stamp) for r in (record, *created)]
    stored = context.store.withdraw(withdrawals)
    if stored is None:  # withdrawn concurrently: answer as for a repeat
        existing = context.store.withdrawal(batch_id)
        if existing is None:
            raise FailedPrecondition(
                "ALREADY_WITHDRAWN",
                f"a run of {record.name} was withdrawn while this withdrawal was recorded; nothing was written, "
                "read the batch and its runs and try again",
                metadata={"batch": record.name},
            )
        return _repeated(context, existing, reason)
    return WithdrawResult(stored[0], [run_name(w.run_id) for w in stored[1:]])


def _created_by(context: Context, batch: RunRecord) -> list[RunRecord]:
    """The legacy runs the batch's creator minted under the batch's request id: the runs that migration created."""
    found = context.store.runs_of_request(batch.stamp.created_by.id, batch.stamp.request_id)
    return [
        s.record
        for s in found
        if s.record.run_id != batch.run_id
        and not authority.is_migration_batch(s.record.content)
        and isinstance(s.record.content.meta.get("legacy"), dict)
    ]


def _repeated(context: Context, existing: Withdrawal, reason: str) -> WithdrawResult:
    if existing.reason != reason:
        raise FailedPrecondition(
            "ALREADY_WITHDRAWN",
            f"{run_name(existing.batch_run_id)} was withdrawn by {existing.stamp.created_by.id} at "
            f"{existing.stamp.created_at.isoformat()} for another reason; a withdrawal is recorded once and never "
            "rewritten",
            metadata={
                "batch": run_name(existing.batch_run_id),
                "withdrawn_by": existing.stamp.created_by.id,
                "reason": existing.reason[:200],
            },
        )
    return WithdrawResult(existing, [run_name(r) for r in context.store.withdrawn_with(existing.batch_run_id)])


def require_not_withdrawn(context: Context, run_id: str) -> None:
    """RUN_WITHDRAWN for a withdrawn run: it is never bound (the database refuses its seal too)."""
    withdrawal = context.store.withdrawal(run_id)
    if withdrawal is not None:
        raise withdrawal.refusal()
