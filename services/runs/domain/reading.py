"""Reading runs: one by name (its owner only), or a filtered page of those the caller may list."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from services.common import call_context
from services.common.clock import to_us
from services.common.errors import FieldViolation, InvalidArgument
from services.common.pagination import page_size
from services.runs import authority
from services.runs.domain import ownership
from services.runs.domain.context import Context
from services.runs.domain.pages import LIST_RUNS, Page, page
from services.runs.model import RunRecord, parse_run_name
from services.runs.store import RunFilters


def get_run(context: Context, name: str) -> RunRecord:
    return ownership.owned_stored(context, parse_run_name(name)).record


def list_runs(context: Context, filters: RunFilters, requested_size: int, token: str) -> Page[RunRecord]:
    if filters.created_after and filters.created_before and filters.created_after >= filters.created_before:
        raise InvalidArgument(
            "FILTER_INVALID",
            "created_after must be earlier than created_before",
            violations=[FieldViolation("created_before", "must be later than created_after")],
        )
    filters = replace(filters, created_by=authority.listing_scope(call_context.require_principal(), filters.created_by))
    size = page_size(requested_size)
    key = _filters_key(filters)
    cursor = context.page_tokens.decode(LIST_RUNS, token, key)
    stored = context.store.list_runs(filters, cursor.after if cursor else None, size + 1)
    records = [s.record for s in stored]
    return page(context.page_tokens, LIST_RUNS, records, size, key, lambda r: [to_us(r.stamp.created_at), r.run_id])


def _filters_key(filters: RunFilters) -> dict[str, Any]:
    return {
        "status": filters.status,
        "risk_level": filters.risk_level,
        "mode": filters.mode,
        "tool_id": filters.tool_id,
        "created_by": filters.created_by,
        "created_after": filters.created_after.isoformat() if filters.created_after else "",
        "created_before": filters.created_before.isoformat() if filters.created_before else "",
        "explanation_status": filters.explanation_status,
        # Only when set: tokens issued before the filter existed stay valid.
        **(
            {"explanation_review_status": filters.explanation_review_status}
            if filters.explanation_review_status
            else {}
        ),
        **({"include_withdrawn": True} if filters.include_withdrawn else {}),
        **({"only_withdrawn": True} if filters.only_withdrawn else {}),
    }
