"""People: the named humans of a deployment (principal `human:<name>`), each with a token of their own, added,
rotated and revoked in the state directory's credentials file (`custody users`; `custody demo` adds a reviewer with
add_user).

Every change is a read-modify-write under an exclusive lock on a lock file beside the credentials file (the file
itself is replaced atomically, so it cannot carry the lock), so concurrent invocations never lose each other's
updates. Tokens are printed once by the caller and only their sha256 is stored. Revoked people stay in the file
with the time of their revocation and no hash, and their name is never given out again: `human:alice` in an old
approval must always mean the same person. The bootstrap operator `custody init` creates (`human:operator`,
shared by whoever holds operator.token) is a person too, meant for the first run only.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from services.common.catalog import SERVICE_NAMES
from services.common.clock import rfc3339, utc_now
from services.common.identity import (
    MIGRATOR_ROLE,
    OPERATOR_ROLE,
    REVIEWER_ROLE,
    CredentialEntry,
    Credentials,
    CredentialsError,
    Principal,
    PrincipalKind,
    new_token,
    token_digest,
    write_private_file,
)
from services.common.resource_names import PERSON_NAME

if TYPE_CHECKING:
    from services.cli.state import StateLayout

ROLES = (REVIEWER_ROLE, OPERATOR_ROLE, MIGRATOR_ROLE)
BOOTSTRAP_NAME = "operator"
BOOTSTRAP_OPERATOR = Principal(
    f"human:{BOOTSTRAP_NAME}", PrincipalKind.HUMAN, frozenset({OPERATOR_ROLE, REVIEWER_ROLE, MIGRATOR_ROLE})
)
# Names that would read as a machine, a kind, a role or a shared account rather than one person.
RESERVED_NAMES = frozenset(
    {BOOTSTRAP_NAME, *ROLES, *(kind.value for kind in PrincipalKind), "custody", "root", "admin", "anonymous"}
)
NAME_RULE = "1 to 63 of a-z, 0-9, _ and -, starting with a letter or digit"

_Save = Callable[[Iterable[CredentialEntry]], None]


class PeopleError(Exception):
    """A `custody users` operation that was refused; the message says why and what to do instead."""


@dataclass(frozen=True)
class Person:
    name: str
    principal: str
    roles: tuple[str, ...]
    created_at: datetime | None
    rotated_at: datetime | None
    revoked_at: datetime | None
    bootstrap: bool

    @property
    def state(self) -> str:
        return "revoked" if self.revoked_at is not None else "active"

    def as_json(self) -> dict[str, object]:
        def moment(value: datetime | None) -> str | None:
            return rfc3339(value) if value is not None else None

        return {
            "name": self.name,
            "principal": self.principal,
            "roles": list(self.roles),
            "created_at": moment(self.created_at),
            "rotated_at": moment(self.rotated_at),
            "revoked_at": moment(self.revoked_at),
            "state": self.state,
            "bootstrap": self.bootstrap,
        }


def add_user(layout: StateLayout, name: str, roles: Iterable[str]) -> str:
    """Adds the person `name` with `roles` and returns their new token (show it once; only its hash is kept)."""
    name = _name(name)
    if name in RESERVED_NAMES:
        raise PeopleError(f"{name!r} is reserved (it would not name one person); choose another name")
    wanted = _roles(roles)
    token = new_token()
    with _editing(layout.credentials) as (credentials, save):
        existing = _find(credentials, name)
        if existing is not None and existing.revoked_at is not None:
            raise PeopleError(
                f"human:{name} was revoked at {rfc3339(existing.revoked_at)}; a revoked name is never reused, so that "
                f"human:{name} in an existing approval always means the same person: choose another name "
                f"(e.g. {name}-2)"
            )
        if existing is not None:
            raise PeopleError(f"human:{name} already exists; `custody users rotate {name}` gives them a new token")
        principal = Principal(f"human:{name}", PrincipalKind.HUMAN, wanted)
        save([*credentials.entries, CredentialEntry(principal, token_digest(token), created_at=utc_now())])
    return token


def rotate_user(layout: StateLayout, name: str) -> str:
    """Gives `name` a new token and returns it; the old one stops working. Rotating the bootstrap operator also
    writes the new token to operator.token, where `custody init` put the old one."""
    name = _name(name)
    token = new_token()
    with _editing(layout.credentials) as (credentials, save):
        person = _existing(credentials, name)
        if person.revoked_at is not None:
            raise PeopleError(f"human:{name} was revoked at {rfc3339(person.revoked_at)}; revoked people stay revoked")
        rotated = replace(person, token_sha256=token_digest(token), rotated_at=utc_now())
        save([rotated if e is person else e for e in credentials.entries])
        if person.principal.id == BOOTSTRAP_OPERATOR.id:
            write_private_file(layout.operator_token, token + "\n")
    return token


def revoke_user(layout: StateLayout, name: str) -> Person:
    """Revokes `name`: their token stops working, their entry stays as history. Revoking the bootstrap operator
    also deletes operator.token, which then opens nothing."""
    name = _name(name)
    with _editing(layout.credentials) as (credentials, save):
        person = _existing(credentials, name)
        if person.revoked_at is not None:
            raise PeopleError(f"human:{name} was already revoked at {rfc3339(person.revoked_at)}")
        revoked = replace(person, token_sha256=None, revoked_at=utc_now())
        save([revoked if e is person else e for e in credentials.entries])
        if person.principal.id == BOOTSTRAP_OPERATOR.id:
            layout.operator_token.unlink(missing_ok=True)
    return _person(revoked)


def list_users(layout: StateLayout) -> list[Person]:
    """Every person the credentials file knows, revoked ones included, in the order they were added."""
    credentials = _load(layout.credentials)
    return [_person(e) for e in credentials.entries if e.principal.kind is PrincipalKind.HUMAN]


def reset_credentials(layout: StateLayout, services: Iterable[CredentialEntry]) -> None:
    """What `custody init` writes (first run, or --force): the services' entries, replacing theirs; the bootstrap
    operator with a new token in operator.token, unless it was revoked (then it stays revoked: a revoked name is
    never reused); every other principal as it was, so named people keep their tokens and the revoked their
    history."""
    with _editing(layout.credentials, missing_ok=True) as (credentials, save):
        kept = [e for e in credentials.entries if e.principal.kind is not PrincipalKind.SERVICE]
        bootstrap = next((e for e in kept if e.principal.id == BOOTSTRAP_OPERATOR.id), None)
        if bootstrap is not None and bootstrap.revoked_at is not None:
            save([*services, *kept])
            return
        token = new_token()
        if bootstrap is None:
            kept.append(CredentialEntry(BOOTSTRAP_OPERATOR, token_digest(token), created_at=utc_now()))
        else:
            rotated = replace(bootstrap, token_sha256=token_digest(token), rotated_at=utc_now())
            kept = [rotated if e is bootstrap else e for e in kept]
        save([*services, *kept])
        write_private_file(layout.operator_token, token + "\n")


def _name(name: str) -> str:
    """`name`, or `human:name`, checked: services are not people, and a name has one grammar."""
    bare = name.removeprefix(f"{PrincipalKind.HUMAN.value}:")
    if bare.removeprefix(f"{PrincipalKind.SERVICE.value}:").replace("-", "_") in SERVICE_NAMES:
        raise PeopleError(
            f"{name!r} is a Custody service: services' tokens are not managed by `custody users` (each is in its "
            "config/<service>.yaml; `custody init --force` rotates them)"
        )
    if not PERSON_NAME.fullmatch(bare):
        raise PeopleError(f"{name!r} is not a person's name: {NAME_RULE} (the principal becomes human:<name>)")
    return bare


def _roles(roles: Iterable[str]) -> frozenset[str]:
    wanted = frozenset(roles)
    if not wanted:
        raise PeopleError(f"give at least one --role ({', '.join(ROLES)})")
    unknown = sorted(wanted - set(ROLES))
    if unknown:
        raise PeopleError(f"unknown role {', '.join(unknown)}: choose from {', '.join(ROLES)}")
    return wanted


def _find(credentials: Credentials, name: str) -> CredentialEntry | None:
    return next((e for e in credentials.entries if e.principal.id == f"human:{name}"), None)


def _existing(credentials: Credentials, name: str) -> CredentialEntry:
    entry = _find(credentials, name)
    if entry is None:
        raise PeopleError(f"no person named {name!r}; `custody users list` shows who exists")
    return entry


def _person(entry: CredentialEntry) -> Person:
    return Person(
        name=entry.principal.id.removeprefix("human:"),
        principal=entry.principal.id,
        roles=tuple(sorted(entry.principal.roles)),
        created_at=entry.created_at,
        rotated_at=entry.rotated_at,
        revoked_at=entry.revoked_at,
        bootstrap=entry.principal.id == BOOTSTRAP_OPERATOR.id,
    )


def _load(path: Path, *, missing_ok: bool = False) -> Credentials:
    if missing_ok and not path.exists():
        return Credentials(())
    try:
        return Credentials.load(path)
    except CredentialsError as exc:
        raise PeopleError(str(exc)) from exc


@contextmanager
def _editing(path: Path, *, missing_ok: bool = False) -> Iterator[tuple[Credentials, _Save]]:
    """The credentials as they are now, and a function replacing them, both under the file's exclusive lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield _load(path, missing_ok=missing_ok), lambda entries: Credentials(entries).save(path)
    finally:
        os.close(fd)  # releases the lock
