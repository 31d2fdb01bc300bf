"""Who may call each RunsService RPC. Default deny: an RPC missing here is refused to everyone.

art_studio attaches candidates and reads what it attached; operators do everything an operator does. Minting is
open to services in the call graph (art_studio) and operators; nobody may call anything not listed.
"""

from __future__ import annotations

from services.common.catalog import callers_of
from services.common.identity import OPERATOR_ROLE, REVIEWER_ROLE, AccessRule, AccessTable, allow
from services.common.ledger import rpc as ledger_rpc

CALLERS = callers_of("runs")
READ = allow(services=CALLERS, human_roles={OPERATOR_ROLE, REVIEWER_ROLE})
WRITE = allow(services=CALLERS, human_roles={OPERATOR_ROLE})
OPERATE = allow(human_roles={OPERATOR_ROLE})

RULES: dict[str, AccessRule] = {
    "GetServiceInfo": READ,
    "CreateRun": WRITE,
    "GetRun": READ,
    "ListRuns": READ,
    "UploadAttachment": WRITE,
    "BatchCreateAttachments": WRITE,
    "FindMissingBlobs": READ,
    "ReadAttachment": READ,
    "ListAttachments": READ,
    "AttachAdvisory": WRITE,
    "ListAdvisories": READ,
    "SuggestExplanation": WRITE,
    # People with the reviewer role only; the domain re-checks (REVIEWER_NOT_HUMAN) and applies four eyes.
    "ReviewExplanation": allow(human_roles={REVIEWER_ROLE}),
    "BindCandidate": WRITE,
    "DiffRuns": READ,
    "VerifyRun": READ,
    # People only; the domain then asks for the migrator role (WITHDRAWAL_NOT_ALLOWED).
    "WithdrawMigrationBatch": OPERATE,
    **ledger_rpc.access_rules("runs"),
}

ACCESS = AccessTable("runs", RULES)
