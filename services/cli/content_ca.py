"""The content-credentials chain under `<state_dir>/c2pa/` (layout: services/common/content_credentials/layout.py),
written by `custody init`: a root of its own (path length 1: it certifies one intermediate), the intermediate
that issues signers (C2PA wants the end entity under an intermediate), and one signer per service that signs
assets. It is a separate root from the TLS CA on purpose: trusting a deployment's assets is not trusting its
network endpoints, and the TLS CA (path length 0) can certify no intermediate.

Like the TLS CA, the two CAs are created once and never replaced silently; a signer is (re)issued when missing,
issued by another intermediate, expiring within 30 days, or when asked (`custody init --renew-certs`).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from pathlib import Path

from services.cli.local_ca import load_or_create_authority, write_public
from services.common.content_credentials.layout import (
    SIGNER_CHAIN,
    SIGNER_KEY,
    anchors_file,
    credentials_root,
    intermediate_directory,
    signer_directory,
)
from services.common.identity import write_private_file
from services.common.tls.certificates import CertificateAuthority, signer_needs_renewal

# The services that sign content credentials into what they attach.
SIGNING_SERVICES = ("runs",)
ROOT_NAME = "Custody content credentials root"
INTERMEDIATE_NAME = "Custody content credentials CA"


def ensure_content_credentials(state_dir: Path, *, renew: bool = False, now: datetime | None = None) -> list[str]:
    """Creates the two CAs if there are none and (re)issues the signers that need it; one line per thing done."""
    done: list[str] = []
    root_dir = credentials_root(state_dir) / "root"
    root = load_or_create_authority(
        root_dir,
        root_dir / "ca.key",
        root_dir / "ca.crt",
        partial(CertificateAuthority.create, ROOT_NAME, path_length=1),
        done,
    )
    ca_dir = intermediate_directory(state_dir)
    intermediate = load_or_create_authority(
        ca_dir, ca_dir / "ca.key", ca_dir / "ca.crt", partial(root.issue_intermediate, INTERMEDIATE_NAME), done
    )
    for service in SIGNING_SERVICES:
        directory = signer_directory(state_dir, service)
        reason = "renewal asked" if renew else _signer_problem(directory, intermediate, now)
        if reason is not None:
            issued = intermediate.issue_content_signer(service, now)
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o700)
            write_private_file(directory / SIGNER_KEY, issued.key_pem.decode("ascii"))
            write_public(directory / SIGNER_CHAIN, issued.certificate_pem + intermediate.certificate_pem)
            done.append(f"{service}: content-credentials signer issued ({reason}) in {directory}")
    write_public(anchors_file(state_dir), root.certificate_pem)
    return done


def _signer_problem(directory: Path, intermediate: CertificateAuthority, now: datetime | None) -> str | None:
    key, chain = directory / SIGNER_KEY, directory / SIGNER_CHAIN
    if not key.exists() or not chain.exists():
        return "none yet"
    return signer_needs_renewal(chain.read_bytes(), intermediate, now)
