"""Explanations: the AI's account of a run's decision, asked of ai_gateway once per run at a time (a claim moves
the run to PENDING) and recorded as READY with an advisory, or ERROR with the reason."""

from __future__ import annotations

import asyncio
import logging

from services.common import call_context
from services.common.errors import CustodyError
from services.common.identity import SYSTEM
from services.runs.domain import ownership
from services.runs.domain.advisories import MAX_NOTES
from services.runs.domain.context import Context
from services.runs.domain.reading import get_run
from services.runs.model import (
    AdvisoryKind,
    AdvisoryLink,
    Explanation,
    ExplanationStatus,
    ReviewStatus,
    RiskLevel,
    RunRecord,
    parse_run_name,
)

log = logging.getLogger("custody.runs")


async def suggest_explanation(context: Context, name: str) -> RunRecord:
    """Explains the run if this caller wins the claim, and returns it: explained, or (claimed by another caller)
    in the state the winner left it."""
    record, claimed = await asyncio.to_thread(claim_explanation, context, name)
    if claimed:
        await explain(context, record)
        record = await asyncio.to_thread(get_run, context, name)
    return record


def claim_explanation(context: Context, name: str) -> tuple[RunRecord, bool]:
    """Moves NONE/ERROR (or an abandoned PENDING) to PENDING; True only for the caller that did. Either way
    the run is read after the attempt, so a loser sees the winner's in-flight state."""
    run_id = parse_run_name(name)
    ownership.require_run(context, run_id)
    claimed = context.store.claim_explanation(
        run_id,
        call_context.require_principal(),
        call_context.request_id() or "",
        context.clock(),
        context.config.explanation_lease_s,
    )
    return ownership.stored(context, run_id).record, claimed


async def explain(context: Context, record: RunRecord) -> None:
    """Asks the explainer (ai_gateway) and records READY with an advisory, or ERROR with the reason."""
    if context.explainer is None:
        _finish_explanation(
            context, record, Explanation(ExplanationStatus.ERROR, error="no ai_gateway is configured"), None
        )
        return
    try:
        answer = await context.explainer.explain(explanation_prompt(record))
    except CustodyError as exc:
        _finish_explanation(
            context, record, Explanation(ExplanationStatus.ERROR, error=f"{exc.reason}: {exc.message}"), None
        )
        return
    except Exception as exc:  # the run is returned either way; the reason is kept, the details logged
        log.warning("explanation failed", exc_info=exc, extra={"run": record.name})
        _finish_explanation(
            context,
            record,
            Explanation(ExplanationStatus.ERROR, error=f"explanation failed: {type(exc).__name__}"),
            None,
        )
        return
    summary = answer.content.strip()[:MAX_NOTES]
    advisory_id = f"explanation:{answer.call.rsplit('/', 1)[-1]}"[:128]
    automatic = record.content.decision.risk_level is RiskLevel.GREEN
    link = AdvisoryLink(
        advisory_id=advisory_id,
        kind=AdvisoryKind.EXPLANATION,
        engine_id=answer.engine_id[:128],
        engine_version=answer.engine_version[:128],
        summary=summary,
        # Tiered review: GREEN explanations are informational; YELLOW/RED ones need a human reviewer.
        review_status=ReviewStatus.AUTO_APPROVED if automatic else ReviewStatus.PENDING_REVIEW,
        reviewed_by=SYSTEM if automatic else None,
        stamp=context.stamp(),
    )
    _finish_explanation(
        context, record, Explanation(ExplanationStatus.READY, summary=summary, advisory_id=advisory_id), link
    )


def _finish_explanation(context: Context, record: RunRecord, outcome: Explanation, link: AdvisoryLink | None) -> None:
    context.store.finish_explanation(
        record.run_id,
        outcome,
        link,
        call_context.require_principal(),
        call_context.request_id() or "",
        context.clock(),
    )


def explanation_prompt(record: RunRecord) -> str:
    """What the AI is asked: the decision only (the request summary is already redacted and is not sent)."""
    decision = record.content.decision
    return (
        "Explain, for the operator who must review it, this feasibility decision about a manufacturing run.\n"
        f"status: {record.content.status.value}\nrisk level: {decision.risk_level.value}\n"
        f"score: {decision.score}\nblocked because: {decision.block_reason or 'not blocked'}\n"
        f"warnings: {'; '.join(decision.warnings) or 'none'}\nengine: {record.content.engine_version or 'unknown'}"
    )
