"""Certificates the deployment's issuing would never produce, for tests that try to get one past a server: any SANs,
any extended key usage, a CA certificate as a leaf, another CA altogether. Built with `cryptography` directly,
never with services/common/tls/certificates.py, so a bug there cannot hide in the attacker's certificate too."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common.tls.certificates import CertificateAuthority
from services.common.tls.credentials import TlsDirectory

LOOPBACK_SANS: tuple[x509.GeneralName, ...] = (
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
)
BOTH_USAGES = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


def uri(value: str) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(value)


def issue(
    authority: CertificateAuthority,
    sans: Sequence[x509.GeneralName] | None,
    *,
    usages: Sequence[x509.ObjectIdentifier] | None = BOTH_USAGES,
    ca: bool = False,
    expires_in: timedelta = timedelta(days=1),
) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) signed by `authority`; `sans=None` leaves the SAN extension out entirely."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + expires_in)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    certificate = builder.sign(authority.key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def write_tls_directory(root: Path, certificate: bytes, key: bytes, ca: bytes) -> TlsDirectory:
    """A certificate directory in the cert-manager layout, key mode 0600."""
    root.mkdir(parents=True, exist_ok=True)
    directory = TlsDirectory(root)
    directory.key.write_bytes(key)
    directory.key.chmod(0o600)
    directory.certificate.write_bytes(certificate)
    directory.ca.write_bytes(ca)
    return directory
