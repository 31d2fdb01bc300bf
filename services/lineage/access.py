"""Who may call each LineageService RPC. Default deny: an RPC missing here is refused to everyone.

Decisions that need an accountable person (Approve, Reject, AssessHealth) admit humans with the reviewer role
only: no service token and no system principal can ever reach them (the domain checks again).
"""

from __future__ import annotations

from services.common.catalog import SERVICES, callers_of
from services.common.identity import OPERATOR_ROLE, REVIEWER_ROLE, AccessTable, allow
from services.common.ledger import rpc

_SERVICES = callers_of("lineage")
_READ = allow(services=_SERVICES, human_roles={OPERATOR_ROLE, REVIEWER_ROLE})
_REVIEWERS_ONLY = allow(human_roles={REVIEWER_ROLE})

ACCESS = AccessTable(
    "lineage",
    {
        "GetServiceInfo": _READ,
        "RegisterType": allow(human_roles={OPERATOR_ROLE}),
        "GetPolicy": _READ,
        "ListPolicies": _READ,
        "ListProjects": _READ,
        "CreateVersion": allow(services=_SERVICES, human_roles={OPERATOR_ROLE}),
        "GetVersion": _READ,
        "ListVersions": _READ,
        "DiffVersions": _READ,
        "Approve": _REVIEWERS_ONLY,
        "Flag": allow(services=_SERVICES, human_roles={OPERATOR_ROLE, REVIEWER_ROLE}),
        "Reject": _REVIEWERS_ONLY,
        "AssessHealth": _REVIEWERS_ONLY,
        "ListStale": _READ,
        "GetUpstream": _READ,
        "GetDownstream": _READ,
        "BuildPlan": _READ,
        # Only authorities (services with a ledger of their own) present checkpoints; the domain checks the key.
        "WitnessCheckpoint": allow(services=[s for s in _SERVICES if SERVICES[s].stateful]),
        "ListWitnessedCheckpoints": _READ,
        **rpc.access_rules("lineage"),
    },
)
