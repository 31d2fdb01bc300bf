"""The lineage use cases: validate, decide, and hand atomic work to the store. No grpc here."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from services.common import call_context
from services.common.clock import utc_now
from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, PermissionDenied
from services.common.hashing import sha256_canonical
from services.common.idempotency import fingerprint, validate_request_id
from services.common.identity import SYSTEM, Principal
from services.common.json_schemas import data_violations
from services.common.ledger.leaves import LedgerPosition
from services.common.pagination import PagedList, PageTokens, page_size
from services.lineage.domain import approval, four_eyes, graph
from services.lineage.domain.birth import health_at_birth
from services.lineage.domain.creators import require_creator
from services.lineage.domain.diff import Diff, diff
from services.lineage.domain.model import (
    MAX_SAFE_INTEGER,
    ClosurePage,
    Health,
    Idempotency,
    Metadata,
    ProjectSummary,
    Status,
    TypeDefinition,
    UpstreamState,
    Version,
    canonical_text,
    normalize_json,
)
from services.lineage.domain.names import (
    POLICY_NAME,
    VersionName,
    parse_entity_name,
    parse_list_scope,
    parse_project_name,
    parse_version_name,
)
from services.lineage.domain.plan import Plan, build_plan
from services.lineage.domain.policy import Policy, validate_registration
from services.lineage.domain.registration import check_registration
from services.lineage.store import Decision, LineageStore, NewVersion

log = logging.getLogger("custody.lineage")

# Each list RPC's page tokens are valid for that RPC only. Version lists page by version row id; closures by
# (depth, node id).
_SERVICE = "custody.lineage.v1.LineageService"
LIST_VERSIONS = PagedList(f"{_SERVICE}/ListVersions", (int,))
LIST_STALE = PagedList(f"{_SERVICE}/ListStale", (int,))
LIST_PROJECTS = PagedList(f"{_SERVICE}/ListProjects", (str,))
GET_UPSTREAM = PagedList(f"{_SERVICE}/GetUpstream", (int, int))
GET_DOWNSTREAM = PagedList(f"{_SERVICE}/GetDownstream", (int, int))


@dataclass(frozen=True)
class Caller:
    """Who is calling and the call's correlation request id."""

    principal: Principal
    request_id: str


def _caller() -> Caller:
    """The caller and request id the call's handling bound to its context (never a request field)."""
    return Caller(call_context.require_principal(), call_context.request_id() or "")


@dataclass(frozen=True)
class Created:
    version: Version
    marked_stale: int
    replayed: bool
    # The ledger leaf recording the staleness the creation propagated, if it marked any (never on replay).
    staleness: LedgerPosition | None = None


@dataclass(frozen=True)
class PolicyView:
    policy: Policy
    types: tuple[TypeDefinition, ...]


def _policy_name(name: str, field: str = "name") -> str:
    if not POLICY_NAME.fullmatch(name):
        raise InvalidArgument(
            "POLICY_NAME_INVALID",
            f"{field} must match [a-z][a-z0-9_]{{0,62}} (got {name[:100]!r})",
            violations=[FieldViolation(field, "must match [a-z][a-z0-9_]{0,62}")],
        )
    return name


class Lineage:
    def __init__(
        self, store: LineageStore, policies: Mapping[str, Policy], page_tokens: PageTokens | None = None
    ) -> None:
        self.store = store
        self.policies = dict(policies)
        self._page_tokens = page_tokens or PageTokens.ephemeral()

    def install_policies(self) -> int:
        """Registers the policy files' types (identical ones are kept); a changed definition under an existing
        schema version stops the start-up instead of silently changing the rules of existing versions."""
        definitions = [d for p in self.policies.values() for d in p.types]
        return self.store.ensure_types(definitions, SYSTEM, utc_now(), check_registration)

    # ---- idempotency ---------------------------------------------------------------------------------------------

    @staticmethod
    def _idempotency(method: str, key: str, caller: Caller, request: Mapping[str, Any]) -> Idempotency | None:
        validate_request_id(key)
        if not key:
            return None
        return Idempotency(caller.principal.id, key, method, fingerprint({"method": method, **request}))

    # ---- types and policies ------------------------------------------------------------------------------------

    def register_type(self, definition: TypeDefinition, key: str) -> TypeDefinition:
        caller = _caller()
        idem = self._idempotency("RegisterType", key, caller, definition.definition())
        registered = self.store.type_names()
        file_policy = self.policies.get(definition.policy)
        if file_policy is not None and file_policy.job_groups:
            unknown = [
                FieldViolation(f"conditional[{i}].when_any_selected", f"unknown job type {job!r}")
                for i, c in enumerate(definition.conditional)
                for job in c.when_any_selected
                if job not in file_policy.job_types
            ]
            if unknown:
                raise InvalidArgument("RULE_INVALID", "a condition names an unknown job type", violations=unknown)
        validate_registration(replace(definition, source="runtime"), registered)
        if not definition.four_eyes:
            raise PermissionDenied(
                "FOUR_EYES_WAIVER_NOT_ALLOWED",
                f"type {definition.name!r} cannot waive four eyes at run time: the operator registering it could then "
                "approve their own versions; waive it in the policy file (four_eyes: false), which the deployment "
                "reviews",
                violations=[FieldViolation("four_eyes", "FOUR_EYES_REQUIRED (or unspecified) at run time")],
            )
        existing = self.store.get_type(definition.name)
        if existing is not None and existing.policy == definition.policy and existing.creators != definition.creators:
            raise FailedPrecondition(
                "CREATORS_CHANGED",
                f"type {definition.name!r} is created by {', '.join(existing.creators) or 'people only'}; a new "
                "schema version keeps the creator rule (authority over a type is not re-granted at run time)",
                violations=[FieldViolation("creators", f"must be {list(existing.creators)}")],
            )
        stored, _ = self.store.register_type(
            replace(definition, source="runtime"), caller.principal, utc_now(), idem, check_registration
        )
        return stored

    def get_policy(self, name: str) -> PolicyView:
        _policy_name(name)
        types = tuple(self.store.policy_types(name))
        policy = self.policies.get(name)
        if policy is None:
            if not types:
                raise NotFound("POLICY_NOT_FOUND", f"no policy named {name!r}", metadata={"policy": name})
            policy = Policy(name, "", "runtime", types)
        return PolicyView(policy, types)

    def list_policies(self) -> list[PolicyView]:
        """Every policy, by name: the policy files' and those only RegisterType created."""
        return [self.get_policy(name) for name in sorted(set(self.policies) | self.store.policy_names())]

    def list_projects(self, size: int, token: str) -> tuple[list[ProjectSummary], str]:
        limit = page_size(size)
        filters = {"list": "projects"}
        cursor = self._page_tokens.decode(LIST_PROJECTS, token, filters)
        projects, last = self.store.list_projects(cursor.after[0] if cursor else "", limit)
        return projects, (self._page_tokens.encode(LIST_PROJECTS, [last], filters) if last is not None else "")

    def build_plan(self, name: str, selected: Sequence[str]) -> Plan:
        view = self.get_policy(_policy_name(name, "policy"))
        # Rules as registered now (a newer schema version's rules win), job groups from the policy file.
        return build_plan(replace(view.policy, types=view.types), list(selected))

    # ---- versions ----------------------------------------------------------------------------------------------

    def create_version(
        self,
        parent: str,
        data: Mapping[str, Any],
        metadata: Metadata,
        upstream: Sequence[str],
        key: str,
        requested_by: Principal | None = None,
    ) -> Created:
        """`requested_by`: the principal on whose request an attesting service records the version (four_eyes.py)."""
        caller = _caller()
        four_eyes.validate_requester(requested_by, caller.principal)
        entity = parse_entity_name(parent)
        refs = self._parse_upstream(upstream)
        problems = []
        for i, ref in enumerate(refs):
            if ref.entity_key == entity:
                problems.append(FieldViolation(f"upstream[{i}]", "a version cannot be derived from its own entity"))
            elif ref.project != entity.project:
                problems.append(FieldViolation(f"upstream[{i}]", f"must be in project {entity.project!r}"))
            if ref in refs[:i]:
                problems.append(FieldViolation(f"upstream[{i}]", "listed twice"))
        if problems:
            raise InvalidArgument("UPSTREAM_INVALID", "upstream references are invalid", violations=problems)
        metadata.validate()
        clean = normalize_json(dict(data))
        idem = self._idempotency(
            "CreateVersion",
            key,
            caller,
            {
                "parent": parent,
                "data": clean,
                "metadata": metadata.to_json(),
                "upstream": list(upstream),
                **({} if requested_by is None else {"requested_by": [requested_by.id, requested_by.kind.value]}),
            },
        )
        definition = self.store.get_type(entity.artifact_type, metadata.schema_version or None)
        if definition is None:
            if metadata.schema_version and self.store.get_type(entity.artifact_type) is not None:
                raise FailedPrecondition(
                    "SCHEMA_VERSION_NOT_REGISTERED",
                    f"type {entity.artifact_type!r} has no schema version {metadata.schema_version!r}",
                    violations=[FieldViolation("metadata.schema_version", "not registered for this type")],
                )
            raise FailedPrecondition(
                "TYPE_NOT_REGISTERED",
                f"type {entity.artifact_type!r} is not registered; load a policy or call RegisterType first",
                violations=[FieldViolation("parent", f"type {entity.artifact_type!r} is not registered")],
            )
        require_creator(definition.name, definition.creators, caller.principal)
        violations = data_violations(definition.schema, clean)
        if violations:
            raise InvalidArgument(
                "DATA_SCHEMA_VIOLATION",
                f"data violates the schema of {definition.name} version {definition.schema_version} "
                f"({len(violations)} problem(s))",
                violations=violations,
            )
        outcome = self.store.create_version(
            NewVersion(
                entity=entity,
                data_json=canonical_text(clean),
                data_sha256=sha256_canonical(clean),
                metadata=replace(metadata, schema_version=definition.schema_version),
                upstream=refs,
                actor=caller.principal,
                request_id=caller.request_id,
                at=utc_now(),
                requested_by=requested_by,
            ),
            idem,
            health_at_birth,
        )
        if not outcome.replayed:
            log.info(
                "created %s; %d downstream version(s) marked stale",
                outcome.name,
                outcome.marked_stale,
                extra={"version": str(outcome.name), "marked_stale": outcome.marked_stale},
            )
        return Created(
            self.store.get_version(outcome.name, history=False),
            outcome.marked_stale,
            outcome.replayed,
            outcome.staleness,
        )

    @staticmethod
    def _parse_upstream(upstream: Sequence[str]) -> tuple[VersionName, ...]:
        refs: list[VersionName] = []
        problems: list[FieldViolation] = []
        for i, value in enumerate(upstream):
            try:
                refs.append(parse_version_name(value, f"upstream[{i}]"))
            except InvalidArgument as exc:
                problems.extend(exc.violations)
        if problems:
            raise InvalidArgument(
                "NAME_INVALID", "upstream references must be exact version names", violations=problems
            )
        return tuple(refs)

    def get_version(self, name: str) -> Version:
        return self.store.get_version(parse_version_name(name), history=True)

    def list_versions(
        self, parent: str, size: int, token: str, statuses: frozenset[Status] = frozenset()
    ) -> tuple[list[Version], str]:
        """`statuses` empty: every status. A token is bound to the set (not its order or repetitions); without a
        status filter the bound filters are those tokens carried before the filter existed, so they stay valid."""
        scope = parse_list_scope(parent)
        filters: dict[str, Any] = {"list": "versions", "parent": parent}
        if statuses:
            filters["statuses"] = sorted(s.value for s in statuses)
        return self._paged(
            LIST_VERSIONS, lambda after, n: self.store.list_versions(scope, after, n, statuses), size, token, filters
        )

    def list_stale(self, parent: str, size: int, token: str) -> tuple[list[Version], str]:
        project = parse_project_name(parent)
        filters = {"list": "stale", "parent": parent}
        return self._paged(LIST_STALE, lambda after, n: self.store.list_stale(project, after, n), size, token, filters)

    def _paged(
        self, listing: PagedList, fetch: Any, size: int, token: str, filters: dict[str, Any]
    ) -> tuple[list[Version], str]:
        limit = page_size(size)
        cursor = self._page_tokens.decode(listing, token, filters)
        versions, last = fetch(cursor.after[0] if cursor else 0, limit)
        return versions, (self._page_tokens.encode(listing, [last], filters) if last is not None else "")

    def diff(self, base: str, target: str) -> tuple[Version, Version, Diff]:
        a = self.store.get_version(parse_version_name(base, "base"), history=False)
        b = self.store.get_version(parse_version_name(target, "target"), history=False)
        return a, b, diff(a.data, b.data)

    # ---- decisions ---------------------------------------------------------------------------------------------

    def approve(self, name: str, rationale: str, key: str, validate_only: bool = False) -> Version:
        """`validate_only`: the same checks in the same order, nothing written (AIP-163); the version as it is."""
        caller = _caller()

        def guard(version: Version, definition: TypeDefinition, upstream: Mapping[VersionName, UpstreamState]) -> None:
            approval.check_approval(version, definition, upstream, caller.principal)

        return self._decide("Approve", name, Status.APPROVED, rationale, caller, key, guard, validate_only)

    def flag(self, name: str, rationale: str, key: str) -> Version:
        caller = _caller()

        def guard(version: Version, definition: TypeDefinition, upstream: Mapping[VersionName, UpstreamState]) -> None:
            approval.ensure_transition(version.name, version.status.status, Status.FLAGGED_FOR_REVIEW)

        return self._decide("Flag", name, Status.FLAGGED_FOR_REVIEW, rationale, caller, key, guard)

    def reject(self, name: str, rationale: str, key: str) -> Version:
        caller = _caller()

        def guard(version: Version, definition: TypeDefinition, upstream: Mapping[VersionName, UpstreamState]) -> None:
            approval.ensure_transition(version.name, version.status.status, Status.REJECTED)

        approval.ensure_human_reviewer(caller.principal, "REVIEWER_NOT_HUMAN", "rejection")
        return self._decide("Reject", name, Status.REJECTED, rationale, caller, key, guard)

    def _decide(
        self,
        method: str,
        name: str,
        target: Status,
        rationale: str,
        caller: Caller,
        key: str,
        guard: Any,
        validate_only: bool = False,
    ) -> Version:
        parsed = parse_version_name(name)
        reason = approval.require_rationale(rationale)
        # A check-only call fingerprints as the call it previews: its key answers as that call's would.
        idem = self._idempotency(method, key, caller, {"name": name, "rationale": rationale})
        if validate_only:
            self.store.check_status(parsed, idem, guard)
            return self.store.get_version(parsed, history=False)
        decision = Decision(caller.principal, reason, caller.request_id, utc_now())
        if self.store.change_status(parsed, target, decision, idem, guard):
            log.info(
                "%s is %s by %s (%s)",
                parsed,
                target.value,
                caller.principal.id,
                caller.principal.kind.value,
                extra={"version": str(parsed), "status": target.value, "actor": caller.principal.id},
            )
        return self.store.get_version(parsed, history=False)

    def assess_health(
        self, name: str, health: Health | None, rationale: str, expected_revision: int, key: str
    ) -> Version:
        caller = _caller()
        parsed = parse_version_name(name)
        if health not in (Health.NEEDS_REVISION, Health.CONFIRMED_VALID):
            raise InvalidArgument(
                "HEALTH_INVALID",
                "a reviewer may set health to needs_revision or confirmed_valid only",
                violations=[FieldViolation("health", "HEALTH_NEEDS_REVISION or HEALTH_CONFIRMED_VALID")],
            )
        reason = approval.require_rationale(rationale)
        if not 0 <= expected_revision <= MAX_SAFE_INTEGER:  # beyond it the request cannot be fingerprinted (JSON)
            raise InvalidArgument(
                "EXPECTED_REVISION_INVALID",
                "expected_revision must be between 0 and 2**53 - 1",
                violations=[FieldViolation("expected_revision", "must be between 0 and 2**53 - 1")],
            )
        approval.ensure_human_reviewer(caller.principal, "REVIEWER_NOT_HUMAN", "a health assessment")
        if health is Health.CONFIRMED_VALID:
            # Who made or requested a version is immutable, so checking before the write cannot race with it.
            version = self.store.get_version(parsed, history=False)
            definition = self.store.get_type(parsed.artifact_type, version.metadata.schema_version)
            assert definition is not None  # versions are only created for registered types
            four_eyes.ensure_not_own(version, definition, caller.principal, "confirm the health of")
        idem = self._idempotency(
            "AssessHealth",
            key,
            caller,
            {"name": name, "health": health.value, "rationale": rationale, "expected_revision": expected_revision},
        )
        decision = Decision(caller.principal, reason, caller.request_id, utc_now())
        self.store.assess_health(parsed, health, decision, expected_revision, idem)
        return self.store.get_version(parsed, history=False)

    # ---- graph queries -----------------------------------------------------------------------------------------

    def closure(self, name: str, downstream: bool, max_depth: int, size: int, token: str) -> tuple[ClosurePage, str]:
        root = parse_version_name(name)
        limit, depth_limit = graph.page_limits(size, max_depth)
        listing = GET_DOWNSTREAM if downstream else GET_UPSTREAM
        filters = {"closure": "downstream" if downstream else "upstream", "name": name}
        decoded = self._page_tokens.decode(listing, token, filters)
        after = (decoded.after[0], decoded.after[1]) if decoded else (0, 0)
        _, depths = self.store.closure_depths(root, downstream)
        pairs, truncated, cursor = graph.cut_page(depths, after, limit, depth_limit)
        page = ClosurePage(root, tuple(self.store.node_infos(pairs)), truncated, cursor, len(depths))
        return page, (self._page_tokens.encode(listing, list(cursor), filters) if cursor else "")
