"""The deployment's local certificate authority and service certificates under `<state_dir>/tls/`, written by
`custody init` (compose and deploy/k8s/secrets.sh take them from there; cert-manager can issue them instead):

  tls/ca/ca.key        the CA's private key (0600, in a 0700 directory of its own): only `custody init` reads it
  tls/ca/ca.crt        the CA certificate
  tls/ca.crt           the same certificate, for clients: `grpcurl -cacert var/tls/ca.crt`, the custody CLI
  tls/<service>/       tls.crt, tls.key (0600) and ca.crt, the layout cert-manager writes: <SERVICE>_TLS_DIR

The CA is created once and never replaced: a CA with one of its two files missing is an error, not a reason to
make a new one. Service certificates are (re)issued when missing, issued by another CA, expiring within 30 days,
lacking a name clients dial, or when asked (`custody init --renew-certs`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from services.common.catalog import PROCESS_NAMES
from services.common.identity import write_private_file
from services.common.tls.certificates import (
    DEFAULT_TRUST_DOMAIN,
    CertificateAuthority,
    CertificateError,
    needs_renewal,
    service_dns_names,
)
from services.common.tls.credentials import TlsDirectory


class LocalCaError(Exception):
    """The local CA cannot be used and will not be replaced silently; the message says what to do."""


@dataclass(frozen=True)
class TlsLayout:
    root: Path

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def ca_key(self) -> Path:
        return self.ca_dir / "ca.key"

    @property
    def ca_certificate(self) -> Path:
        return self.ca_dir / "ca.crt"

    @property
    def client_ca(self) -> Path:
        """What clients trust (grpcurl -cacert, the custody CLI)."""
        return self.root / "ca.crt"

    def service(self, service: str) -> TlsDirectory:
        return TlsDirectory(self.root / service)


def ensure_certificates(
    layout: TlsLayout, *, renew: bool = False, dns_names: Iterable[str] = (), now: datetime | None = None
) -> list[str]:
    """Creates the CA if there is none and (re)issues the service certificates that need it; returns one line per
    thing done."""
    done: list[str] = []
    authority = _authority(layout, done)
    extra = tuple(dns_names)
    for service in PROCESS_NAMES:  # the console too: it serves HTTPS with its own certificate
        directory = layout.service(service)
        names = service_dns_names(service, extra)
        if renew:
            reason: str | None = "renewal asked"
        elif not directory.certificate.exists() or not directory.key.exists():
            reason = "none yet"
        else:
            reason = needs_renewal(
                directory.certificate.read_bytes(),
                authority,
                names,
                service=service,
                trust_domain=DEFAULT_TRUST_DOMAIN,
                now=now,
            )
        if reason is not None:
            issued = authority.issue(service, trust_domain=DEFAULT_TRUST_DOMAIN, dns_names=names)
            directory.root.mkdir(parents=True, exist_ok=True)
            write_private_file(directory.key, issued.key_pem.decode("ascii"))
            write_public(directory.certificate, issued.certificate_pem)
            done.append(f"{service}: certificate issued ({reason}) in {directory.root}")
        write_public(directory.ca, authority.certificate_pem)
    write_public(layout.client_ca, authority.certificate_pem)
    return done


def _authority(layout: TlsLayout, done: list[str]) -> CertificateAuthority:
    return load_or_create_authority(
        layout.ca_dir, layout.ca_key, layout.ca_certificate, CertificateAuthority.create, done
    )


def load_or_create_authority(
    directory: Path, key: Path, certificate: Path, create: Callable[[], CertificateAuthority], done: list[str]
) -> CertificateAuthority:
    """The CA in `directory`, created (key 0600 in a 0700 directory) when neither of its files exists. One file
    without the other is an error: a CA is never replaced silently, or every certificate it issued stops being
    trusted."""
    have_key, have_certificate = key.exists(), certificate.exists()
    if not have_key and not have_certificate:
        authority = create()
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        write_private_file(key, authority.key_pem.decode("ascii"))
        write_public(certificate, authority.certificate_pem)
        done.append(f"created the CA {certificate}")
        return authority
    if not (have_key and have_certificate):
        missing = certificate if have_key else key
        raise LocalCaError(
            f"{missing} is missing, so the CA in {directory} cannot issue certificates; it is never replaced "
            f"silently (every certificate it issued would stop being trusted): restore the file, or remove "
            f"{directory} yourself to start a new CA"
        )
    try:
        return CertificateAuthority.from_pem(certificate.read_bytes(), key.read_bytes())
    except CertificateError as exc:
        raise LocalCaError(f"the CA in {directory} is unusable: {exc}") from None


def write_public(path: Path, data: bytes) -> None:
    """Atomically replaces `path` (mode 0644) when its content differs, so readers see the old or the new file."""
    if path.exists() and path.read_bytes() == data:
        return
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)
