"""Reading the audit: GetCall and ListCalls. A service sees only its own calls; people see all of them."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from services.ai_gateway.domain.model import (
    CALL_NAME_PREFIX,
    AuditedCall,
    CallPage,
    CallRecord,
    ListFilters,
)
from services.ai_gateway.store import CallStore
from services.common import call_context, pagination
from services.common.clock import to_us, utc_now
from services.common.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied
from services.common.identity import Principal, PrincipalKind
from services.common.resource_names import CALL_ID

# ListCalls page tokens: valid for ListCalls only, with a cursor of (created_at in microseconds, call id).
LIST_CALLS = pagination.PagedList("custody.ai_gateway.v1.AiGatewayService/ListCalls", (int, str))


class CallQueries:
    def __init__(self, store: CallStore, page_tokens: pagination.PageTokens) -> None:
        self._store = store
        self._page_tokens = page_tokens

    async def get_call(self, name: str) -> AuditedCall:
        call_id = name.removeprefix(CALL_NAME_PREFIX)
        if not name.startswith(CALL_NAME_PREFIX) or not CALL_ID.match(call_id):
            raise InvalidArgument(
                "NAME_INVALID",
                "name must be calls/call_<32 hex digits>",
                violations=[FieldViolation("name", "must be calls/call_<32 hex digits>")],
            )
        found = await asyncio.to_thread(self._store.get, call_id)
        viewer = call_context.require_principal()
        if found is None or not _may_see(viewer, found.record):
            raise NotFound("CALL_NOT_FOUND", f"no call {name}", metadata={"name": name})
        return found

    async def list_calls(self, filters: ListFilters, page_size: int, page_token: str) -> CallPage:
        viewer = call_context.require_principal()
        if viewer.kind is PrincipalKind.SERVICE:
            if filters.caller and filters.caller != viewer.id:
                raise PermissionDenied(
                    "CALLER_FILTER_DENIED",
                    f"{viewer.id} may list only its own calls",
                    metadata={"principal": viewer.id},
                )
            filters = replace(filters, caller=viewer.id)
        if filters.start_us is not None and filters.end_us is not None and filters.start_us >= filters.end_us:
            raise InvalidArgument(
                "REQUEST_INVALID",
                "start_time must be before end_time",
                violations=[FieldViolation("end_time", "must be after start_time")],
            )
        size = pagination.page_size(page_size)
        key = filters.as_dict()
        cursor = self._page_tokens.decode(LIST_CALLS, page_token, key)
        after = (cursor.after[0], cursor.after[1]) if cursor else None
        rows = await asyncio.to_thread(self._store.list, filters, size + 1, after)
        page, token = self._page_tokens.page(
            LIST_CALLS, rows, size, key, lambda row: [to_us(row.record.envelope.created_at), row.record.call_id]
        )
        return CallPage(page, token)

    async def purge_replays(self) -> int:
        """Forgets replay results past their retention (the audit rows stay)."""
        return await asyncio.to_thread(self._store.purge_replays, to_us(utc_now()))


def _may_see(viewer: Principal, record: CallRecord) -> bool:
    return viewer.kind is not PrincipalKind.SERVICE or record.envelope.caller.id == viewer.id
