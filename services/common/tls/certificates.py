"""Issues a deployment's certificates: a local certificate authority and one certificate per service, and the
content-credentials chain (a root, an intermediate under it, and one C2PA signer per signing service).

Every key is ECDSA P-256. A service certificate serves both ends of mutual TLS (extended key usage serverAuth and
clientAuth); its one URI SAN is the service's SPIFFE ID (spiffe://<trust domain>/service/<name>), which is what
servers derive the calling service from, and its DNS and IP SANs are every name clients dial: localhost and the
loopback addresses, the compose service name and the Kubernetes Service names. cert-manager issues the same shape
(deploy/k8s/components/cert-manager/).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_TRUST_DOMAIN = "custody"
# The namespace deploy/k8s/base deploys into; its Service names are on every certificate.
KUBERNETES_NAMESPACE = "custody"
CA_VALIDITY = timedelta(days=3650)
SERVICE_VALIDITY = timedelta(days=365)
# The C2PA claim-signing extended key usage (c2pa-kp-claimSigning).
C2PA_CLAIM_SIGNING = x509.ObjectIdentifier("1.3.6.1.4.1.62558.2.1")
# `custody init` reissues a service certificate that expires sooner than this.
RENEW_BEFORE = timedelta(days=30)
# Tolerates clocks a little behind the issuer's.
BACKDATE = timedelta(minutes=5)
LOOPBACK_NAMES = ("localhost",)
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")


class CertificateError(ValueError):
    """A certificate or key that is not what this deployment's issuing produces (wrong type, not a CA, no match)."""


def spiffe_id(trust_domain: str, service: str) -> str:
    return f"spiffe://{trust_domain}/service/{service}"


def host_name(service: str) -> str:
    """The service's host name in compose and Kubernetes, where names cannot hold underscores."""
    return service.replace("_", "-")


def service_dns_names(service: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Every DNS name a client may dial the service by: localhost, the compose service, the Kubernetes Service in
    each of its forms, then any extra names (a load balancer's, an ingress')."""
    host, namespace = host_name(service), KUBERNETES_NAMESPACE
    names = [*LOOPBACK_NAMES, host, f"{host}.{namespace}", f"{host}.{namespace}.svc"]
    names += [f"{host}.{namespace}.svc.cluster.local", *extra]
    return tuple(dict.fromkeys(names))


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class IssuedCertificate:
    certificate_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class CertificateAuthority:
    """The deployment's own CA: it signs service certificates and nothing else (path length 0)."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(
        cls, common_name: str = "Custody local CA", now: datetime | None = None, *, path_length: int = 0
    ) -> CertificateAuthority:
        """A self-signed root; path_length 1 lets it certify one intermediate (the content-credentials chain)."""
        key, issued = _new_key(), _now(now)
        name = _name(common_name)
        public = key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(issued - BACKDATE)
            .not_valid_after(issued + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    def issue_intermediate(self, common_name: str, now: datetime | None = None) -> CertificateAuthority:
        """A CA under this one that certifies end entities only (path length 0), valid no longer than this one."""
        key, issued = _new_key(), _now(now)
        certificate = (
            self._builder(_name(common_name), key, issued, CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return CertificateAuthority(certificate, key)

    def issue_content_signer(self, service: str, now: datetime | None = None) -> IssuedCertificate:
        """A C2PA claim signer: digitalSignature only, an organization in its subject, and two extended key
        usages: c2pa-kp-claimSigning, the purpose C2PA defines, and emailProtection, because c2pa-python 0.38 with
        default settings refuses a signer holding only claimSigning (or documentSigning) as "missing required
        EKU"; stock verifiers accept emailProtection."""
        key, issued = _new_key(), _now(now)
        certificate = (
            # As long as the intermediate: with no timestamp authority (offline), c2pa checks a manifest's signer
            # against the current time, so an asset stops verifying when its signer certificate expires.
            self._builder(_name(f"Custody {service} content credentials"), key, issued, CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([C2PA_CLAIM_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        return IssuedCertificate(certificate_pem(certificate), private_key_pem(key))

    def _builder(
        self, subject: x509.Name, key: ec.EllipticCurvePrivateKey, issued: datetime, validity: timedelta
    ) -> x509.CertificateBuilder:
        authority = self.certificate.public_key()
        assert isinstance(authority, ec.EllipticCurvePublicKey)
        public = key.public_key()
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(issued - BACKDATE)
            .not_valid_after(min(issued + validity, self.certificate.not_valid_after_utc))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority), critical=False)
        )

    @classmethod
    def from_pem(cls, certificate: bytes, key: bytes) -> CertificateAuthority:
        try:
            loaded_certificate = x509.load_pem_x509_certificate(certificate)
            loaded_key = serialization.load_pem_private_key(key, password=None)
        except ValueError as exc:
            raise CertificateError(f"not a PEM certificate and private key: {exc}") from None
        if not isinstance(loaded_key, ec.EllipticCurvePrivateKey):
            raise CertificateError("the CA key is not an ECDSA key")
        if loaded_key.public_key() != loaded_certificate.public_key():
            raise CertificateError("the CA key does not belong to the CA certificate")
        try:
            constraints = loaded_certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise CertificateError("the CA certificate is not a CA (basicConstraints CA:TRUE)")
        return cls(loaded_certificate, loaded_key)

    @property
    def certificate_pem(self) -> bytes:
        return certificate_pem(self.certificate)

    @property
    def key_pem(self) -> bytes:
        return private_key_pem(self.key)

    def issue(
        self,
        service: str,
        *,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str] = LOOPBACK_ADDRESSES,
        validity: timedelta = SERVICE_VALIDITY,
        now: datetime | None = None,
    ) -> IssuedCertificate:
        """A service certificate: serverAuth + clientAuth, one SPIFFE URI SAN, the given DNS and IP SANs."""
        key, issued = _new_key(), _now(now)
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
        names.append(x509.UniformResourceIdentifier(spiffe_id(trust_domain, service)))
        public = key.public_key()
        authority = self.certificate.public_key()
        assert isinstance(authority, ec.EllipticCurvePublicKey)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, service)]))
            .issuer_name(self.certificate.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(issued - BACKDATE)
            .not_valid_after(min(issued + validity, self.certificate.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return IssuedCertificate(certificate_pem(certificate), private_key_pem(key))

    def issued(self, certificate: x509.Certificate) -> bool:
        """Whether this CA signed `certificate` (its signature verifies under this CA's key)."""
        if certificate.issuer != self.certificate.subject:
            return False
        try:
            certificate.verify_directly_issued_by(self.certificate)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def needs_renewal(
    certificate: bytes,
    authority: CertificateAuthority,
    dns_names: Iterable[str],
    *,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    service: str,
    now: datetime | None = None,
) -> str | None:
    """Why a service certificate on disk must be reissued (unreadable, another CA's, expiring, a name or its SPIFFE
    ID missing), or None when it can stay."""
    try:
        loaded = x509.load_pem_x509_certificate(certificate)
    except ValueError:
        return "unreadable"
    lapsed = _lapsed(loaded, authority, now)
    if lapsed is not None:
        return lapsed
    try:
        sans = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "no subject alternative names"
    missing = set(dns_names) - set(sans.get_values_for_type(x509.DNSName))
    if missing:
        return f"lacks {', '.join(sorted(missing))}"
    if sans.get_values_for_type(x509.UniformResourceIdentifier) != [spiffe_id(trust_domain, service)]:
        return f"does not name {spiffe_id(trust_domain, service)}"
    return None


def signer_chain_problem(chain: bytes, key: bytes) -> str | None:
    """Why a content-credentials signer's chain and key are not one C2PA wants, or None: an end entity (not a CA,
    not self-signed) holding the key's public half, issued by the intermediate that follows it. c2pa itself
    accepts a signer directly under a trust anchor; Custody's signers are always under an intermediate."""
    try:
        certificates = x509.load_pem_x509_certificates(chain)
        private = serialization.load_pem_private_key(key, password=None)
    except ValueError as exc:
        return f"not a PEM chain and private key: {exc}"
    if len(certificates) < 2:
        return f"the chain holds {len(certificates)} certificate(s); C2PA needs the signer's, then its intermediate's"
    signer, intermediate = certificates[0], certificates[1]
    constraints = signer.extensions.get_extension_for_class(x509.BasicConstraints).value
    if constraints.ca or signer.issuer == signer.subject:
        return "the chain starts with a CA or self-signed certificate, not a signer under an intermediate"
    if private.public_key() != signer.public_key():
        return "the key is not the signer certificate's"
    try:
        signer.verify_directly_issued_by(intermediate)
    except (ValueError, TypeError, InvalidSignature):
        return "the signer certificate is not issued by the intermediate that follows it"
    return None


def signer_needs_renewal(chain: bytes, authority: CertificateAuthority, now: datetime | None = None) -> str | None:
    """Why a content-credentials signer's chain on disk (end entity first) must be reissued, or None."""
    try:
        certificate = x509.load_pem_x509_certificates(chain)[0]
    except (ValueError, IndexError):
        return "unreadable"
    return _lapsed(certificate, authority, now)


def _lapsed(certificate: x509.Certificate, authority: CertificateAuthority, now: datetime | None) -> str | None:
    """What every issued certificate is reissued for: another CA signed it, or it expires within RENEW_BEFORE."""
    if not authority.issued(certificate):
        return "issued by another CA"
    if certificate.not_valid_after_utc - _now(now) < RENEW_BEFORE:
        return f"expires {certificate.not_valid_after_utc:%Y-%m-%d}"
    return None


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Custody"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
