"""Who is calling, and may they? Principals, the hashed credentials file and per-service access tables.

Tokens are random bearer secrets; only their sha256 is ever written to the shared credentials file. A token is
matched against every entry with a constant-time comparison, so timing reveals neither which entry matched nor
how much of a wrong token was right.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from services.common.errors import PermissionDenied, Unauthenticated
from services.common.hashing import sha256_text

CREDENTIALS_FORMAT_VERSION = 1
TOKEN_PREFIX = "cst_"
REVIEWER_ROLE = "reviewer"
OPERATOR_ROLE = "operator"
# May import legacy run records through CreateRun's legacy_migration path (`custody runs migrate`), which records
# rules the legacy schema did not have as warnings instead of refusing the record. `custody init` gives it to the
# operator; no service holds it.
MIGRATOR_ROLE = "migrator"


class PrincipalKind(StrEnum):
    SERVICE = "service"
    HUMAN = "human"
    SYSTEM = "system"


@dataclass(frozen=True)
class Principal:
    id: str
    kind: PrincipalKind
    roles: frozenset[str] = frozenset()

    @staticmethod
    def service(name: str) -> Principal:
        return Principal(id=f"service:{name}", kind=PrincipalKind.SERVICE)

    @property
    def service_name(self) -> str | None:
        """The Custody service behind a service principal ("service:runs" -> "runs")."""
        if self.kind is not PrincipalKind.SERVICE:
            return None
        return self.id.removeprefix("service:")


SYSTEM = Principal(id="system:custody", kind=PrincipalKind.SYSTEM)


def new_token() -> str:
    """A fresh bearer token: 256 bits from the OS CSPRNG."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return sha256_text(token)


@dataclass(frozen=True)
class CredentialEntry:
    principal: Principal
    token_sha256: str


class CredentialsError(Exception):
    """The credentials file is missing or malformed; the process cannot authenticate anyone."""


class Credentials:
    """The set of known principals, loaded from the hashed credentials file."""

    def __init__(self, entries: Iterable[CredentialEntry]) -> None:
        self._entries = tuple(entries)

    @property
    def entries(self) -> tuple[CredentialEntry, ...]:
        return self._entries

    @classmethod
    def load(cls, path: Path) -> Credentials:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise CredentialsError(f"credentials file {path} does not exist; run `custody init`") from exc
        except (OSError, ValueError) as exc:
            raise CredentialsError(f"credentials file {path} is unreadable: {exc}") from exc
        if not isinstance(document, dict) or document.get("version") != CREDENTIALS_FORMAT_VERSION:
            raise CredentialsError(f"credentials file {path} is not format version {CREDENTIALS_FORMAT_VERSION}")
        entries = []
        for index, raw in enumerate(document.get("principals", [])):
            try:
                principal = Principal(
                    id=str(raw["id"]), kind=PrincipalKind(raw["kind"]), roles=frozenset(raw.get("roles", []))
                )
                entries.append(CredentialEntry(principal, str(raw["token_sha256"])))
            except (KeyError, ValueError, TypeError) as exc:
                raise CredentialsError(f"credentials file {path}: principal #{index} is malformed ({exc})") from exc
        return cls(entries)

    def to_document(self) -> dict[str, object]:
        return {
            "version": CREDENTIALS_FORMAT_VERSION,
            "principals": [
                {
                    "id": e.principal.id,
                    "kind": e.principal.kind.value,
                    "roles": sorted(e.principal.roles),
                    "token_sha256": e.token_sha256,
                }
                for e in self._entries
            ],
        }

    def save(self, path: Path) -> None:
        """Writes atomically with mode 0600 (hashes only, but still nobody else's business)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private_file(path, json.dumps(self.to_document(), indent=2) + "\n")

    def authenticate(self, authorization: str | None) -> Principal:
        """Resolves an `authorization` metadata value ("Bearer <token>") to a principal."""
        if not authorization:
            raise Unauthenticated("TOKEN_MISSING", "no bearer token: send metadata 'authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("TOKEN_MISSING", "authorization metadata must be 'Bearer <token>'")
        presented = token_digest(token.strip()).encode()
        found: Principal | None = None
        for entry in self._entries:  # no early exit: every entry is compared
            if hmac.compare_digest(presented, entry.token_sha256.encode()):
                found = entry.principal
        if found is None:
            raise Unauthenticated("TOKEN_INVALID", "the bearer token is not in this deployment's credentials file")
        return found


def write_private_file(path: Path, text: str) -> None:
    """Atomically replaces `path` with `text`, readable by the owner only."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class AccessRule:
    """Who may call one RPC. Anything not listed is denied."""

    services: frozenset[str] = frozenset()
    human_roles: frozenset[str] = frozenset()
    system: bool = False

    def allows(self, principal: Principal) -> bool:
        if principal.kind is PrincipalKind.SERVICE:
            return principal.service_name in self.services
        if principal.kind is PrincipalKind.HUMAN:
            return bool(principal.roles & self.human_roles)
        return self.system


def allow(*, services: Iterable[str] = (), human_roles: Iterable[str] = (), system: bool = False) -> AccessRule:
    return AccessRule(frozenset(services), frozenset(human_roles), system)


@dataclass(frozen=True)
class AccessTable:
    """RPC method name (e.g. "GetRun") -> rule, for one service. Default deny."""

    service: str
    rules: Mapping[str, AccessRule] = field(default_factory=dict)

    def authorize(self, method: str, principal: Principal) -> None:
        rule = self.rules.get(method)
        if rule is None or not rule.allows(principal):
            raise PermissionDenied(
                "PRINCIPAL_NOT_ALLOWED",
                f"{principal.id} ({principal.kind.value}) may not call {self.service}.{method}",
                metadata={"principal": principal.id, "method": method},
            )
