"""Who may call each AiGatewayService RPC. Default deny: an RPC missing here is refused to everyone.

Generation is for the services in the call graph (art_studio, runs) and operators; reading the audit and the
policy also for reviewers. Services see only their own calls (enforced by the gateway domain). The ledger RPCs
(checkpoints and proofs) follow the rule every authority shares (services/common/ledger/rpc.py).
"""

from __future__ import annotations

from services.common.catalog import callers_of
from services.common.identity import OPERATOR_ROLE, REVIEWER_ROLE, AccessTable, allow
from services.common.ledger import rpc

_GENERATE = allow(services=callers_of("ai_gateway"), human_roles={OPERATOR_ROLE})
_READ = allow(services=callers_of("ai_gateway"), human_roles={OPERATOR_ROLE, REVIEWER_ROLE})

ACCESS = AccessTable(
    "ai_gateway",
    {
        "GetServiceInfo": _READ,
        "GenerateText": _GENERATE,
        "StreamText": _GENERATE,
        "GenerateImage": _GENERATE,
        "GetCall": _READ,
        "ListCalls": _READ,
        "GetPolicy": _READ,
        **rpc.access_rules("ai_gateway"),
    },
)
