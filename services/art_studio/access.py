"""Who may call each ArtStudioService RPC. Default deny. No service calls art_studio; operators do."""

from __future__ import annotations

from services.common.catalog import callers_of
from services.common.identity import OPERATOR_ROLE, REVIEWER_ROLE, AccessTable, allow

READ = allow(services=callers_of("art_studio"), human_roles={OPERATOR_ROLE, REVIEWER_ROLE})
GENERATE = allow(services=callers_of("art_studio"), human_roles={OPERATOR_ROLE})

ACCESS = AccessTable(
    "art_studio",
    {
        "GetServiceInfo": READ,
        "GenerateCandidates": GENERATE,
        "CompileSpec": READ,
        "ValidateSvg": READ,
    },
)
