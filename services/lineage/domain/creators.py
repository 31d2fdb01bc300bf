"""Creator rules: which principals may create versions of a type. Authority is per type: only runs records
feasibility verdicts, only art_studio records SVG candidates, only people write briefs.

A rule is a list of entries, any of which admits the caller:
- `service:<name>`: exactly that service's principal (e.g. `service:runs`);
- `human`: any person (principal kind human);
- `role:<role>`: a person holding that role.
A type registered without creators admits people only: no service token gains authority by default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from services.common.errors import FieldViolation, PermissionDenied
from services.common.identity import Principal, PrincipalKind

CREATOR = re.compile(r"^(?:service:[a-z][a-z0-9_]{0,62}|human|role:[a-z][a-z0-9_]{0,62})$")
DEFAULT_CREATORS = ("human",)


def creator_problems(creators: Sequence[str], field: str) -> list[FieldViolation]:
    problems = [
        FieldViolation(f"{field}[{i}]", "service:<name>, human or role:<role>")
        for i, entry in enumerate(creators)
        if not CREATOR.fullmatch(entry)
    ]
    if len(set(creators)) != len(creators):
        problems.append(FieldViolation(field, "lists an entry twice"))
    return problems


def admits(creators: Iterable[str], principal: Principal) -> bool:
    for entry in creators:
        if entry == principal.id and principal.kind is PrincipalKind.SERVICE:
            return True
        if principal.kind is PrincipalKind.HUMAN and (
            entry == "human" or (entry.startswith("role:") and entry.removeprefix("role:") in principal.roles)
        ):
            return True
    return False


def require_creator(artifact_type: str, creators: Sequence[str], principal: Principal) -> None:
    effective = tuple(creators) or DEFAULT_CREATORS
    if not admits(effective, principal):
        raise PermissionDenied(
            "CREATOR_NOT_ALLOWED",
            f"{principal.id} may not create {artifact_type} versions; the type's creators are " + ", ".join(effective),
            metadata={"artifact_type": artifact_type, "creators": ",".join(effective)},
        )
