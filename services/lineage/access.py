"""Who may call each LineageService RPC. Default deny: an RPC missing here is refused to everyone."""

from __future__ import annotations

from services.common.catalog import callers_of
from services.common.identity import OPERATOR_ROLE, REVIEWER_ROLE, AccessTable, allow

ACCESS = AccessTable(
    "lineage",
    {
        "GetServiceInfo": allow(services=callers_of("lineage"), human_roles={OPERATOR_ROLE, REVIEWER_ROLE}),
    },
)
