"""Where content-credential certificates live under a state directory (written by `custody init`, read by the
services and by `custody evidence c2pa`):

  c2pa/root/ca.key, ca.crt the content-credentials root, separate from the TLS CA (services/cli/content_ca.py)
  c2pa/ca/ca.key, ca.crt   the intermediate CA under that root (key 0600 in a 0700 directory): only
                           `custody init` reads it, to issue and renew signers
  c2pa/<service>/          signer.key (0600) and chain.pem (the end-entity certificate, then the intermediate)
  c2pa/anchors.pem         the content-credentials root's certificate: what a verifier trusts
"""

from __future__ import annotations

from pathlib import Path

SIGNER_KEY = "signer.key"
SIGNER_CHAIN = "chain.pem"


def credentials_root(state_dir: Path) -> Path:
    return state_dir / "c2pa"


def intermediate_directory(state_dir: Path) -> Path:
    return credentials_root(state_dir) / "ca"


def signer_directory(state_dir: Path, service: str) -> Path:
    return credentials_root(state_dir) / service


def anchors_file(state_dir: Path) -> Path:
    return credentials_root(state_dir) / "anchors.pem"
