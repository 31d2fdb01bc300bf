"""Who may do what to which run: the rules that keep a verdict about exactly the bytes it names.

- Only the feasibility engine gives verdicts. CreateRun refuses the engine's mode, tool id and versions, so a run
  that carries them was minted by BindCandidate and nothing else.
- Services act only on their own runs. A service principal reads, lists, attaches to, advises, explains and binds
  only runs it created; people (operators and reviewers, as the access table admits them) see every run. A
  compromised service token therefore cannot read, extend or decide on another principal's work.
- Legacy migrations are a migrator's: only a human with the migrator role imports legacy records, mints a
  migration batch (mode legacy_migration) or withdraws one.
- Explanations awaiting review are decided by people: only a human with the reviewer role approves or rejects one,
  and never approves one they asked for or whose run they created (four eyes).
- Seals (model.Seal) refuse the attachments a decision froze; the store and a database trigger enforce them.
"""

from __future__ import annotations

from services.common.errors import FieldViolation, InvalidArgument, PermissionDenied
from services.common.identity import MIGRATOR_ROLE, REVIEWER_ROLE, Principal, PrincipalKind
from services.common.run_rules import MIGRATION_BATCH_MODE
from services.runs import feasibility
from services.runs.model import RunContent, run_name


def require_not_engine(content: RunContent, prefix: str = "run") -> None:
    """Refuses a caller-supplied run that would pass for an engine verdict (case and spelling variants too: a
    reader must not be able to mistake one for the other)."""
    problems = []
    if content.mode.lower() == feasibility.ENGINE_MODE:
        problems.append(
            FieldViolation(f"{prefix}.mode", f"{feasibility.ENGINE_MODE!r} is minted only by BindCandidate")
        )
    if content.tool_id.lower().startswith(feasibility.ENGINE_ID):
        problems.append(
            FieldViolation(
                f"{prefix}.tool_id", f"{feasibility.ENGINE_ID!r} is the engine's; only BindCandidate uses it"
            )
        )
    if feasibility.is_engine_version(content.engine_version.lower()):
        problems.append(
            FieldViolation(
                f"{prefix}.engine_version", "the feasibility engine's versions are set only by BindCandidate"
            )
        )
    if problems:
        raise PermissionDenied(
            "ENGINE_RESERVED",
            "only the feasibility engine gives verdicts: "
            + ", ".join(p.field for p in problems)
            + " may not claim to be the engine; call BindCandidate to have a candidate decided",
            violations=problems,
            metadata={"fields": ",".join(p.field for p in problems)},
        )


def require_owner(caller: Principal, creator: Principal, run_id: str) -> None:
    if caller.kind is PrincipalKind.SERVICE and caller.id != creator.id:
        raise PermissionDenied(
            "RUN_NOT_OWNED",
            f"{caller.id} may use only runs it created; {run_name(run_id)} was created by {creator.id}",
            metadata={"run": run_name(run_id)},
        )


def listing_scope(caller: Principal, created_by: str) -> str:
    """The created_by filter a listing must use: a service sees only its own runs."""
    if caller.kind is not PrincipalKind.SERVICE:
        return created_by
    if created_by and created_by != caller.id:
        raise PermissionDenied(
            "RUN_NOT_OWNED",
            f"{caller.id} may list only runs it created (created_by {caller.id!r} or empty)",
            violations=[FieldViolation("created_by", f"empty or {caller.id!r}")],
        )
    return caller.id


def is_migrator(caller: Principal) -> bool:
    return caller.kind is PrincipalKind.HUMAN and MIGRATOR_ROLE in caller.roles


def require_migrator(caller: Principal, reason: str, what: str) -> None:
    """PERMISSION_DENIED (`reason`) unless the caller is a human with the migrator role."""
    if not is_migrator(caller):
        raise PermissionDenied(
            reason,
            f"{caller.id} may not {what}: that needs a human with the {MIGRATOR_ROLE!r} role",
            metadata={"principal": caller.id},
        )


def require_human_reviewer(caller: Principal, what: str) -> None:
    """REVIEWER_NOT_HUMAN unless the caller is a human with the reviewer role: defence in depth behind the access
    table, so a service or system principal never decides for a person."""
    if caller.kind is not PrincipalKind.HUMAN or REVIEWER_ROLE not in caller.roles:
        raise PermissionDenied(
            "REVIEWER_NOT_HUMAN",
            f"{what} needs a human with the {REVIEWER_ROLE!r} role; {caller.id} is a {caller.kind.value} principal "
            f"with roles {sorted(caller.roles)}",
            metadata={"principal": caller.id, "kind": caller.kind.value},
        )


def is_migration_batch(content: RunContent) -> bool:
    return content.mode.lower() == MIGRATION_BATCH_MODE


def require_batch_author(content: RunContent, caller: Principal, legacy_record: bool) -> None:
    """A run of the batch mode records a migration: a migrator's only, and never a legacy record itself."""
    if not is_migration_batch(content):
        return
    require_migrator(caller, "LEGACY_MIGRATION_NOT_ALLOWED", f"record a {MIGRATION_BATCH_MODE} batch")
    if legacy_record:
        raise InvalidArgument(
            "LEGACY_RUN_INVALID",
            f"a legacy record cannot be migrated as mode {MIGRATION_BATCH_MODE!r}: that mode is the batch's",
            violations=[FieldViolation("run.mode", f"not {MIGRATION_BATCH_MODE!r} with legacy_migration")],
        )
