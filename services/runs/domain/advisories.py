"""Advisories: links from a run to advice an engine gave about it (an explanation, a note), attached and listed
by the run's owner."""

from __future__ import annotations

import logging
from typing import Any

from services.common.clock import to_us
from services.common.errors import FieldViolation, InvalidArgument
from services.common.pagination import page_size
from services.runs.domain import ownership
from services.runs.domain.context import Context
from services.runs.domain.pages import LIST_ADVISORIES, Page, page
from services.runs.model import (
    ADVISORY_ID,
    AdvisoryKind,
    AdvisoryLink,
    ReviewStatus,
    RunRecord,
    parse_run_name,
    run_name,
)

log = logging.getLogger("custody.runs")

# The longest summary or note a run records (advisory summaries, explanations, operator notes).
MAX_NOTES = 4000


def attach_advisory(
    context: Context, run: str, advisory_id: str, kind: AdvisoryKind, engine_id: str, engine_version: str, summary: str
) -> RunRecord:
    run_id = parse_run_name(run, "run")
    validate_advisory_id(advisory_id, "advisory_id")
    if len(engine_id) > 128 or len(engine_version) > 128 or len(summary) > MAX_NOTES:
        raise InvalidArgument(
            "ADVISORY_INVALID",
            "engine_id and engine_version are at most 128 characters, summary 4000",
            violations=[FieldViolation("summary", "at most 4000 characters")],
        )
    ownership.require_run(context, run_id)
    link = AdvisoryLink(
        advisory_id, kind, engine_id, engine_version, summary, ReviewStatus.NOT_REQUIRED, None, context.stamp()
    )
    if context.store.attach_advisory(run_id, link):
        log.info("advisory attached", extra={"run": run_name(run_id), "advisory_id": advisory_id})
    return ownership.stored(context, run_id).record


def list_advisories(context: Context, run: str, requested_size: int, token: str) -> Page[AdvisoryLink]:
    run_id = parse_run_name(run, "run")
    ownership.require_run(context, run_id)
    size = page_size(requested_size)
    key = {"run": run_id}
    cursor = context.page_tokens.decode(LIST_ADVISORIES, token, key)
    links = context.store.list_advisories(run_id, cursor.after if cursor else None, size + 1)
    return page(
        context.page_tokens, LIST_ADVISORIES, links, size, key, lambda a: [to_us(a.stamp.created_at), a.advisory_id]
    )


def validate_advisory_id(advisory_id: str, field: str) -> None:
    if not ADVISORY_ID.fullmatch(advisory_id):
        raise InvalidArgument(
            "ADVISORY_INVALID",
            f"{field} must be 1..128 letters, digits or ._:- (got {advisory_id[:60]!r})",
            violations=[FieldViolation(field, "1..128 letters, digits or ._:-")],
        )


def link_document(link: AdvisoryLink) -> dict[str, Any]:
    """An advisory link as a minted run's request fingerprint holds it."""
    return {
        "advisory_id": link.advisory_id,
        "kind": link.kind.value,
        "engine_id": link.engine_id,
        "engine_version": link.engine_version,
        "summary": link.summary,
    }
