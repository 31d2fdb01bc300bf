"""Which Custody service a verified client certificate names, and whether a bearer token may come with it.

gRPC has verified the chain against the deployment's CA during the handshake: the peer port requires and verifies
client certificates, and the public port never asks for one (a TLS client cannot send a certificate unasked), so a
certificate in a call's auth context is a verified one. What is left is the name. Like an X.509-SVID, the
certificate must carry exactly one URI SAN, the SPIFFE ID spiffe://<trust domain>/service/<name>, of this
deployment's trust domain and naming a Custody service.

The rules for a call that arrives over TLS (TransportIdentity):
- a certificate alone authenticates the service it names;
- a service's bearer token is accepted only together with that same service's certificate: without one it is
  SERVICE_CERTIFICATE_REQUIRED (a stolen token alone is refused), with another service's CERTIFICATE_MISMATCH;
- a person's token is that person, whichever connection carries it; the certificate's service, if any, is
  recorded as the service the call came through.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Mapping
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.common.catalog import SERVICE_NAMES
from services.common.errors import Unauthenticated
from services.common.identity import Principal, PrincipalKind

# The auth context property gRPC fills with the peer's verified leaf certificate.
PEER_CERTIFICATE_PROPERTY = "x509_pem_cert"
SERVICE_PATH_PREFIX = "/service/"


class PeerIdentityError(ValueError):
    """The certificate names no Custody service of this trust domain; the message says what it names instead."""


def service_of(certificate_pem: bytes, trust_domain: str, services: Collection[str] = SERVICE_NAMES) -> str:
    """The service a (verified) certificate names, or PeerIdentityError."""
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError as exc:
        raise PeerIdentityError(f"the certificate does not parse: {exc}") from None
    try:
        if certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise PeerIdentityError("the certificate is a CA certificate, not a service's")
    except x509.ExtensionNotFound:
        pass
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise PeerIdentityError("the certificate's extended key usage does not include clientAuth")
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise PeerIdentityError("the certificate has no subject alternative names (no SPIFFE ID)") from None
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise PeerIdentityError(f"the certificate must carry exactly one URI SAN, a SPIFFE ID (it has {len(uris)})")
    return _service_of_spiffe_id(uris[0], trust_domain, services)


def _service_of_spiffe_id(uri: str, trust_domain: str, services: Collection[str]) -> str:
    parts = urlsplit(uri)
    if parts.scheme != "spiffe" or parts.query or parts.fragment:
        raise PeerIdentityError(f"{uri!r} is not a SPIFFE ID (spiffe://<trust domain>/service/<name>)")
    if parts.netloc != trust_domain:  # exact: a port or user info makes it another authority
        raise PeerIdentityError(f"{uri!r} is of trust domain {parts.netloc!r}, not this deployment's {trust_domain!r}")
    name = parts.path.removeprefix(SERVICE_PATH_PREFIX)
    if not parts.path.startswith(SERVICE_PATH_PREFIX) or name not in services:
        raise PeerIdentityError(f"{uri!r} names no Custody service (known: {', '.join(sorted(services))})")
    return name


@functools.lru_cache(maxsize=256)
def _cached_service_of(certificate_pem: bytes, trust_domain: str, services: frozenset[str]) -> str | PeerIdentityError:
    """Parsed once per certificate: every call on a connection presents the same one."""
    try:
        return service_of(certificate_pem, trust_domain, services)
    except PeerIdentityError as exc:
        return exc


class TransportIdentity:
    """The TLS rules above, for one server (its trust domain and the services it knows)."""

    def __init__(self, trust_domain: str, services: Collection[str] = SERVICE_NAMES) -> None:
        self._trust_domain = trust_domain
        self._services = frozenset(services)

    def certified_service(self, auth_context: Mapping[str, Iterable[bytes]]) -> str | None:
        """The service the connection's verified client certificate names; None without a certificate."""
        certificate = next(iter(auth_context.get(PEER_CERTIFICATE_PROPERTY, ())), None)
        if not certificate:
            return None
        found = _cached_service_of(certificate, self._trust_domain, self._services)
        if isinstance(found, PeerIdentityError):
            raise Unauthenticated(
                "CERTIFICATE_IDENTITY_INVALID",
                f"the client certificate was issued by this deployment's CA but names no Custody service: {found}",
            )
        return found

    def check(self, caller: Principal, certified: str | None) -> None:
        """Refuses a service's bearer token that does not come with that service's own certificate."""
        if caller.kind is not PrincipalKind.SERVICE:
            return
        if certified is None:
            raise Unauthenticated(
                "SERVICE_CERTIFICATE_REQUIRED",
                f"{caller.id}'s bearer token is accepted only together with its own client certificate (a stolen "
                "token alone is refused): services call each other's peer port with mutual TLS",
            )
        if caller.service_name != certified:
            raise Unauthenticated(
                "CERTIFICATE_MISMATCH",
                f"the bearer token is {caller.id}'s but the client certificate is service:{certified}'s",
            )
