"""Finding a caller's runs: a run that does not exist is RUN_NOT_FOUND, one the caller may not use is refused
(authority.require_owner: a service only its own), and a sealed run refuses new attachments of sealed kinds."""

from __future__ import annotations

from collections.abc import Sequence

from services.common import call_context
from services.common.errors import NotFound
from services.runs import authority
from services.runs.domain.context import Context
from services.runs.model import run_name
from services.runs.store import StoredRun


def _not_found(run_id: str) -> NotFound:
    return NotFound("RUN_NOT_FOUND", f"run {run_name(run_id)} does not exist", metadata={"run": run_name(run_id)})


def stored(context: Context, run_id: str) -> StoredRun:
    found = context.store.get_run(run_id)
    if found is None:
        raise _not_found(run_id)
    return found


def owned_stored(context: Context, run_id: str) -> StoredRun:
    found = stored(context, run_id)
    authority.require_owner(call_context.require_principal(), found.record.stamp.created_by, run_id)
    return found


def require_run(context: Context, run_id: str) -> None:
    """The run exists and the caller may use it (a service only its own)."""
    creator = context.store.run_creator(run_id)
    if creator is None:
        raise _not_found(run_id)
    authority.require_owner(call_context.require_principal(), creator, run_id)


def require_attachable(context: Context, run_id: str, kinds: Sequence[str]) -> None:
    """require_run, and no seal forbids any of `kinds` (the database trigger re-checks at commit)."""
    require_run(context, run_id)
    refusal = context.store.sealed_refusal(run_id, kinds)
    if refusal is not None:
        raise refusal
