"""Resource names, validated with strict patterns before anything is looked up.

A name that does not match is INVALID_ARGUMENT, never a path: no dots, slashes or separators inside a segment, so
nothing in a name can reach a file system or a different resource.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.common.errors import FieldViolation, InvalidArgument
from services.common.resource_names import ENTITY, PROJECT, TYPE, VERSION_NAME

PROJECT_NAME = re.compile(rf"^projects/(?P<project>{PROJECT})$")
TYPE_PARENT = re.compile(rf"^projects/(?P<project>{PROJECT})/artifacts/(?P<type>{TYPE})$")
ENTITY_NAME = re.compile(rf"^projects/(?P<project>{PROJECT})/artifacts/(?P<type>{TYPE})/(?P<entity>{ENTITY})$")
TYPE_NAME = re.compile(rf"^{TYPE}$")
POLICY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True, order=True)
class EntityKey:
    project: str
    artifact_type: str
    entity: str

    @property
    def name(self) -> str:
        return f"projects/{self.project}/artifacts/{self.artifact_type}/{self.entity}"

    def version(self, number: int) -> VersionName:
        return VersionName(self.project, self.artifact_type, self.entity, number)


@dataclass(frozen=True, order=True)
class VersionName:
    project: str
    artifact_type: str
    entity: str
    number: int

    @property
    def entity_key(self) -> EntityKey:
        return EntityKey(self.project, self.artifact_type, self.entity)

    def __str__(self) -> str:
        return f"{self.entity_key.name}/versions/{self.number}"


# AIP-159: `projects/-` names every project. Only the whole parent may be the wildcard: a type or entity across
# projects would need an index of its own, and nothing asks for it.
EVERY_PROJECT = "projects/-"


@dataclass(frozen=True)
class ListScope:
    """What ListVersions lists: every project (project None), a project, a type within it, or one entity."""

    project: str | None
    artifact_type: str | None = None
    entity: str | None = None


def name_error(field: str, value: str, expected: str) -> InvalidArgument:
    shown = value if len(value) <= 200 else value[:200] + "..."
    return InvalidArgument(
        "NAME_INVALID",
        f"{field} must be {expected} (got {shown!r})",
        violations=[FieldViolation(field, f"must be {expected}")],
    )


VERSION_FORMAT = "projects/{project}/artifacts/{type}/{entity}/versions/{n}"
ENTITY_FORMAT = "projects/{project}/artifacts/{type}/{entity}"


def parse_version_name(value: str, field: str = "name") -> VersionName:
    match = VERSION_NAME.fullmatch(value)
    if match is None:
        raise name_error(field, value, VERSION_FORMAT)
    return VersionName(match["project"], match["type"], match["entity"], int(match["number"]))


def parse_entity_name(value: str, field: str = "parent") -> EntityKey:
    match = ENTITY_NAME.fullmatch(value)
    if match is None:
        raise name_error(field, value, ENTITY_FORMAT)
    return EntityKey(match["project"], match["type"], match["entity"])


def parse_project_name(value: str, field: str = "parent") -> str:
    match = PROJECT_NAME.fullmatch(value)
    if match is None:
        raise name_error(field, value, "projects/{project}")
    return match["project"]


def parse_list_scope(value: str, field: str = "parent") -> ListScope:
    if value == EVERY_PROJECT:
        return ListScope(None)
    if value.startswith(EVERY_PROJECT + "/"):
        raise name_error(field, value, "a type or entity of one project: projects/- stands alone, for every project")
    if match := PROJECT_NAME.fullmatch(value):
        return ListScope(match["project"])
    if match := TYPE_PARENT.fullmatch(value):
        return ListScope(match["project"], match["type"])
    if match := ENTITY_NAME.fullmatch(value):
        return ListScope(match["project"], match["type"], match["entity"])
    raise name_error(field, value, "projects/{project}[/artifacts/{type}[/{entity}]] or projects/-")
