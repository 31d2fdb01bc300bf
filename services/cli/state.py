"""The local state directory (`./var` by default): credentials, per-service configuration, operator token, the
local CA and service certificates (local_ca.py), and the endpoints of the running stack (with TLS, the CA to
trust), which operator commands use as kubectl uses its kubeconfig.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from services.cli.content_ca import ensure_content_credentials
from services.cli.local_ca import TlsLayout, ensure_certificates
from services.cli.people import reset_credentials
from services.common.catalog import CONSOLE, SERVICE_NAMES, SERVICES
from services.common.clock import utc_now
from services.common.config import ledger_key_path
from services.common.evidence.keys import create_key_files
from services.common.identity import CredentialEntry, Principal, new_token, token_digest, write_private_file
from services.common.ledger.note import generate_note_key
from services.common.tls.credentials import ChannelSecurity

DEFAULT_STATE_DIR = Path("var")
# The first part of every ledger origin ("<deployment>/custody/<service>"): names this deployment to verifiers.
DEFAULT_DEPLOYMENT = "localhost"
DEPLOYMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,127}")
TOKEN_ENV = "CUSTODY_TOKEN"
# The CA certificate the CLI trusts, over what endpoints.json says (e.g. var/compose/tls/ca.crt for compose).
CACERT_ENV = "CUSTODY_CACERT"
TLS_ENDPOINTS_KEY = "tls"
PAGE_TOKEN_KEY_LINE = re.compile(r"^page_token_key:", re.M)


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

    @property
    def tls(self) -> TlsLayout:
        return TlsLayout(self.root / "tls")

    def service_config(self, service: str) -> Path:
        return self.root / "config" / f"{service}.yaml"

    def ledger_key(self, service: str) -> Path:
        return ledger_key_path(self.root, service)

    def ledger_verifier_key(self, service: str) -> Path:
        return self.ledger_key(service).with_suffix(".vkey")

    @property
    def evidence_public_key(self) -> Path:
        """The public half of the key evidence bundles are signed with: what `custody evidence verify` trusts."""
        return self.root / "keys" / "evidence.pub"

    @property
    def evidence_key(self) -> Path:
        """The private half (mode 0600): `custody evidence export` signs bundles with it."""
        return self.root / "keys" / "evidence.key"

    def is_initialized(self) -> bool:
        return self.credentials.exists() and all(self.service_config(s).exists() for s in SERVICE_NAMES)


def initialize(
    layout: StateLayout,
    *,
    force: bool = False,
    deployment: str = DEFAULT_DEPLOYMENT,
    renew_certificates: bool = False,
    dns_names: Iterable[str] = (),
) -> bool:
    """Creates credentials (hashes only), one token per service in that service's own config file (with a
    page-token key for each stateful service), the bootstrap operator's token (kept revoked once revoked; other
    people's entries are kept as they are), each authority's ledger signing key, the evidence signing key, and the
    local CA with a certificate per service (local_ca.py; `renew_certificates` reissues them all, `dns_names` adds
    names to them), and the content-credentials chain with a signer per signing service (content_ca.py).
    Returns False when already initialized and not forced: existing tokens and keys are kept, and what a state
    directory written by an older version lacks (a page-token key, a ledger key) is added. Ledger keys are never
    replaced, not even when forced: the checkpoints signed with them must stay verifiable."""
    _add_ledger_keys(layout, deployment)
    ensure_certificates(layout.tls, renew=renew_certificates, dns_names=dns_names)
    ensure_content_credentials(layout.root, renew=renew_certificates)
    if not layout.evidence_key.exists():
        create_key_files(layout.evidence_key, layout.evidence_public_key)
    if layout.is_initialized() and not force:
        for service in SERVICE_NAMES:
            _add_page_token_key(layout.service_config(service), service)
        return False
    entries: list[CredentialEntry] = []
    (layout.root / "config").mkdir(parents=True, exist_ok=True)
    for service in SERVICE_NAMES:
        token = new_token()
        entries.append(CredentialEntry(Principal.service(service), token_digest(token), created_at=utc_now()))
        write_private_file(
            layout.service_config(service),
            f"# Configuration of the {service} service, written by `custody init`.\n"
            f"# It holds the service's own bearer token: give this file to {service} only.\n"
            f"token: {token}\n" + _page_token_key_line(service),
        )
    reset_credentials(layout, entries)  # people added with `custody users` keep their tokens
    return True


def ledger_origin(deployment: str, service: str) -> str:
    return f"{deployment}/custody/{service}"


def _add_ledger_keys(layout: StateLayout, deployment: str) -> None:
    """An Ed25519 note key per stateful service (the authorities), named by its ledger origin; the private key
    is mode 0600 and the verifier key beside it is for anyone who checks checkpoints."""
    for service, spec in SERVICES.items():
        if not spec.stateful or layout.ledger_key(service).exists():
            continue
        private, public = generate_note_key(ledger_origin(deployment, service))
        layout.ledger_key(service).parent.mkdir(parents=True, exist_ok=True)
        write_private_file(layout.ledger_key(service), private + "\n")
        layout.ledger_verifier_key(service).write_text(public + "\n", encoding="utf-8")


def _page_token_key_line(service: str) -> str:
    """The key that signs a stateful service's page tokens (services/common/pagination.py), shared by its
    replicas because they read the same config."""
    if not SERVICES[service].stateful:
        return ""
    return f"page_token_key: {secrets.token_urlsafe(32)}\n"


def _add_page_token_key(path: Path, service: str) -> None:
    text = path.read_text(encoding="utf-8")
    line = _page_token_key_line(service)
    if line and not PAGE_TOKEN_KEY_LINE.search(text):
        write_private_file(path, text + ("" if text.endswith("\n") else "\n") + line)


def operator_token(layout: StateLayout) -> str | None:
    """CUSTODY_TOKEN if set, else the token `custody init` saved for the operator."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    try:
        return layout.operator_token.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def save_endpoints(
    layout: StateLayout,
    addresses: Mapping[str, str],
    *,
    ca_file: Path | None = None,
    peer_addresses: Mapping[str, str] | None = None,
    console_url: str | None = None,
) -> None:
    """The running stack's addresses (and the console's URL); with TLS also the CA to trust and the services'
    mutual-TLS addresses."""
    document: dict[str, object] = dict(addresses)
    if console_url is not None:
        document[CONSOLE] = console_url
    if ca_file is not None:
        document[TLS_ENDPOINTS_KEY] = {"ca_file": str(ca_file.resolve()), "peer_addresses": dict(peer_addresses or {})}
    layout.root.mkdir(parents=True, exist_ok=True)
    write_private_file(layout.endpoints, json.dumps(document, indent=2) + "\n")


def _saved_tls(layout: StateLayout) -> dict[str, object]:
    try:
        saved = json.loads(layout.endpoints.read_text(encoding="utf-8")).get(TLS_ENDPOINTS_KEY)
    except (FileNotFoundError, ValueError, AttributeError):
        return {}
    return saved if isinstance(saved, dict) else {}


def channel_security(layout: StateLayout, ca_file: Path | None = None) -> ChannelSecurity | None:
    """How operator commands secure their channels: TLS trusting `ca_file`, else CUSTODY_CACERT, else the CA the
    running stack recorded; None (plaintext) when there is none."""
    chosen = ca_file or (Path(os.environ[CACERT_ENV]) if os.environ.get(CACERT_ENV) else None)
    if chosen is None and _saved_tls(layout).get("ca_file"):
        chosen = Path(str(_saved_tls(layout)["ca_file"]))
    return None if chosen is None else ChannelSecurity.for_operator(chosen)


def peer_endpoints(layout: StateLayout) -> dict[str, str]:
    """The services' mutual-TLS addresses of the running stack (empty without TLS)."""
    saved = _saved_tls(layout).get("peer_addresses")
    return {str(k): str(v) for k, v in saved.items()} if isinstance(saved, dict) else {}


def endpoints(layout: StateLayout) -> dict[str, str]:
    """Addresses of the running stack (written by `custody up`, or by hand: a service's replicas as a list, see
    config.address_list), else the default local ports."""
    addresses = {name: f"127.0.0.1:{spec.default_port}" for name, spec in SERVICES.items()}
    try:
        saved = json.loads(layout.endpoints.read_text(encoding="utf-8"))
        # A service's replicas: one comma-separated string, or a JSON list of addresses.
        addresses.update(
            {k: ",".join(v) if isinstance(v, list) else str(v) for k, v in saved.items() if k in addresses}
        )
    except (FileNotFoundError, ValueError):
        pass
    return addresses
