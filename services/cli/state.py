"""The local state directory (`./var` by default): credentials, per-service configuration, operator token,
and the endpoints of the running stack, which operator commands use as kubectl uses its kubeconfig.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from services.common.catalog import SERVICE_NAMES, SERVICES
from services.common.identity import (
    OPERATOR_ROLE,
    REVIEWER_ROLE,
    CredentialEntry,
    Credentials,
    Principal,
    PrincipalKind,
    new_token,
    token_digest,
    write_private_file,
)

DEFAULT_STATE_DIR = Path("var")
OPERATOR_ID = "human:operator"
TOKEN_ENV = "CUSTODY_TOKEN"


@dataclass(frozen=True)
class StateLayout:
    root: Path

    @property
    def credentials(self) -> Path:
        return self.root / "credentials"

    @property
    def operator_token(self) -> Path:
        return self.root / "operator.token"

    @property
    def endpoints(self) -> Path:
        return self.root / "endpoints.json"

    def service_config(self, service: str) -> Path:
        return self.root / "config" / f"{service}.yaml"

    def is_initialized(self) -> bool:
        return self.credentials.exists() and all(self.service_config(s).exists() for s in SERVICE_NAMES)


def initialize(layout: StateLayout, *, force: bool = False) -> bool:
    """Creates credentials (hashes only), one token per service in that service's own config file, and the
    operator token. Returns False when already initialized and not forced (existing tokens are kept)."""
    if layout.is_initialized() and not force:
        return False
    entries: list[CredentialEntry] = []
    (layout.root / "config").mkdir(parents=True, exist_ok=True)
    for service in SERVICE_NAMES:
        token = new_token()
        entries.append(CredentialEntry(Principal.service(service), token_digest(token)))
        write_private_file(
            layout.service_config(service),
            f"# Configuration of the {service} service, written by `custody init`.\n"
            f"# It holds the service's own bearer token: give this file to {service} only.\n"
            f"token: {token}\n",
        )
    operator_token = new_token()
    operator = Principal(OPERATOR_ID, PrincipalKind.HUMAN, frozenset({OPERATOR_ROLE, REVIEWER_ROLE}))
    entries.append(CredentialEntry(operator, token_digest(operator_token)))
    Credentials(entries).save(layout.credentials)
    write_private_file(layout.operator_token, operator_token + "\n")
    return True


def operator_token(layout: StateLayout) -> str | None:
    """CUSTODY_TOKEN if set, else the token `custody init` saved for the operator."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    try:
        return layout.operator_token.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def save_endpoints(layout: StateLayout, addresses: dict[str, str]) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    write_private_file(layout.endpoints, json.dumps(addresses, indent=2) + "\n")


def endpoints(layout: StateLayout) -> dict[str, str]:
    """Addresses of the running stack (written by `custody up`), else the default local ports."""
    addresses = {name: f"127.0.0.1:{spec.default_port}" for name, spec in SERVICES.items()}
    try:
        saved = json.loads(layout.endpoints.read_text(encoding="utf-8"))
        addresses.update({k: str(v) for k, v in saved.items() if k in addresses})
    except (FileNotFoundError, ValueError):
        pass
    return addresses
