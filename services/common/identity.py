"""Who is calling, and may they? Principals, the hashed credentials file and per-service access tables.

Tokens are random bearer secrets; only their sha256 is ever written to the shared credentials file. A token is
matched against every active entry with a constant-time comparison, so timing reveals neither which entry matched
nor how much of a wrong token was right. Revoked entries stay in the file, without a hash, as the record of who
existed (`custody users`, services/cli/people.py); running services re-read the file (credentials_watch.py).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from services.common.clock import parse_rfc3339, rfc3339
from services.common.errors import PermissionDenied, Unauthenticated
from services.common.hashing import is_sha256_hex, sha256_text

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


def principal_key(principal_id: str) -> str:
    """The form two principal ids are compared in when the question is "is this the same person?" (four eyes):
    NFKC-normalised, case-folded, surrounding space dropped, so `human:Alice`, `HUMAN:alice` and `human:alice` in
    full-width letters are one person even if a credentials file ever held them apart."""
    return unicodedata.normalize("NFKC", principal_id).casefold().strip()


def same_principal(a: Principal, b: Principal) -> bool:
    return principal_key(a.id) == principal_key(b.id)


def new_token() -> str:
    """A fresh bearer token: 256 bits from the OS CSPRNG."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return sha256_text(token)


@dataclass(frozen=True)
class CredentialEntry:
    """One principal of the credentials file. A revoked entry stays as history (who existed, and until when) and
    keeps no token hash, so nothing authenticates as it; the timestamps are None in files written before they
    existed."""

    principal: Principal
    token_sha256: str | None
    created_at: datetime | None = None
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None and self.token_sha256 is not None


class CredentialsError(Exception):
    """The credentials file is missing or malformed; the process cannot authenticate anyone."""


class Authenticator(Protocol):
    """Resolves an `authorization` metadata value to a principal (Credentials, or the file a service watches)."""

    def authenticate(self, authorization: str | None) -> Principal: ...


class Credentials:
    """The set of known principals, loaded from the hashed credentials file.

    Format version 1: {"version": 1, "principals": [{"id", "kind", "roles", "token_sha256"}, ...]}, and optionally
    per principal "created_at", "rotated_at" and "revoked_at" (RFC 3339). A revoked principal's token_sha256 is
    null: releases that predate revocation read it as a hash nothing matches, so they refuse it too.
    """

    def __init__(self, entries: Iterable[CredentialEntry]) -> None:
        self._entries = tuple(entries)
        self._active = tuple(
            (e.token_sha256.encode(), e.principal) for e in self._entries if e.active and e.token_sha256 is not None
        )

    @property
    def entries(self) -> tuple[CredentialEntry, ...]:
        return self._entries

    @classmethod
    def load(cls, path: Path) -> Credentials:
        return read_credentials(path)[1]

    @classmethod
    def parse(cls, text: str, source: Path) -> Credentials:
        """The credentials in `text` (the file at `source`); CredentialsError names the first problem."""
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise CredentialsError(f"credentials file {source} is not JSON: {exc}") from exc
        if not isinstance(document, dict) or document.get("version") != CREDENTIALS_FORMAT_VERSION:
            raise CredentialsError(f"credentials file {source} is not format version {CREDENTIALS_FORMAT_VERSION}")
        principals = document.get("principals", [])
        if not isinstance(principals, list):
            raise CredentialsError(f"credentials file {source}: principals is not a list")
        entries: list[CredentialEntry] = []
        seen: set[str] = set()
        for index, raw in enumerate(principals):
            try:
                entry = _entry(raw)
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                raise CredentialsError(f"credentials file {source}: principal #{index} is malformed ({exc})") from exc
            if entry.principal.id in seen:
                raise CredentialsError(f"credentials file {source}: principal #{index} repeats {entry.principal.id}")
            seen.add(entry.principal.id)
            entries.append(entry)
        return cls(entries)

    def to_document(self) -> dict[str, object]:
        return {"version": CREDENTIALS_FORMAT_VERSION, "principals": [_raw(e) for e in self._entries]}

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
        for digest, principal in self._active:  # no early exit: every active entry is compared
            if hmac.compare_digest(presented, digest):
                found = principal
        if found is None:
            raise Unauthenticated("TOKEN_INVALID", "the bearer token is not in this deployment's credentials file")
        return found


def read_credentials(path: Path) -> tuple[os.stat_result, Credentials]:
    """The file's credentials and the status of the very inode they were read from (through any symlinks), taken
    before reading: a change after it shows as a different status."""
    try:
        with path.open("rb") as handle:
            status = os.fstat(handle.fileno())
            text = handle.read().decode("utf-8")
    except FileNotFoundError as exc:
        raise CredentialsError(f"credentials file {path} does not exist; run `custody init`") from exc
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"credentials file {path} is unreadable: {exc}") from exc
    return status, Credentials.parse(text, path)


def _entry(raw: dict[str, Any]) -> CredentialEntry:
    kind = PrincipalKind(raw["kind"])
    principal_id, prefix = raw["id"], f"{kind.value}:"
    if not isinstance(principal_id, str) or not principal_id.startswith(prefix) or principal_id == prefix:
        raise ValueError(f"id {principal_id!r} is not {kind.value}:<name>")
    roles = raw.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise ValueError("roles is not a list of strings")
    digest = raw["token_sha256"]
    if digest is not None and not (isinstance(digest, str) and is_sha256_hex(digest)):
        raise ValueError("token_sha256 is not 64 lower-case hex digits")
    entry = CredentialEntry(
        Principal(principal_id, kind, frozenset(roles)),
        digest,
        created_at=_moment(raw, "created_at"),
        rotated_at=_moment(raw, "rotated_at"),
        revoked_at=_moment(raw, "revoked_at"),
    )
    if entry.revoked_at is not None and digest is not None:
        raise ValueError("a revoked principal keeps no token_sha256")
    if entry.revoked_at is None and digest is None:
        raise ValueError("token_sha256 is null but the principal is not revoked")
    return entry


def _moment(raw: dict[str, Any], key: str) -> datetime | None:
    value = raw.get(key)
    if value is None:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def _raw(entry: CredentialEntry) -> dict[str, object]:
    raw: dict[str, object] = {
        "id": entry.principal.id,
        "kind": entry.principal.kind.value,
        "roles": sorted(entry.principal.roles),
        "token_sha256": entry.token_sha256,
    }
    for key, moment in (
        ("created_at", entry.created_at),
        ("rotated_at", entry.rotated_at),
        ("revoked_at", entry.revoked_at),
    ):
        if moment is not None:
            raw[key] = rfc3339(moment)
    return raw


def exposed_key_file(path: Path) -> bool:
    """Whether a private key file may be read by others or written by its group. Group read is tolerated: a
    Kubernetes Secret mounted with an fsGroup is root:<group> 0440."""
    return bool(path.stat().st_mode & 0o027)


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
