"""Which service a verified client certificate names, tried with every certificate that should name none, and the
rule that a service's bearer token counts only together with that service's own certificate."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.common.errors import Unauthenticated
from services.common.identity import Principal, PrincipalKind
from services.common.tls.certificates import CertificateAuthority, service_dns_names
from services.common.tls.peer_identity import (
    PEER_CERTIFICATE_PROPERTY,
    PeerIdentityError,
    TransportIdentity,
    service_of,
)
from tests.support.certificates import LOOPBACK_SANS, issue, uri

TRUST_DOMAIN = "custody"


@pytest.fixture(scope="module")
def authority() -> CertificateAuthority:
    return CertificateAuthority.create()


def test_the_deployments_own_certificate_names_its_service(authority: CertificateAuthority) -> None:
    issued = authority.issue("runs", dns_names=service_dns_names("runs"))
    assert service_of(issued.certificate_pem, TRUST_DOMAIN) == "runs"


@pytest.mark.parametrize(
    ("sans", "problem"),
    [
        (None, "no subject alternative names"),
        ([*LOOPBACK_SANS], "exactly one URI SAN"),
        ([uri("spiffe://custody/service/runs"), uri("spiffe://custody/service/lineage")], "exactly one URI SAN"),
        ([uri("spiffe://custody/service/runs"), uri("https://custody.example/service/runs")], "exactly one URI SAN"),
        ([uri("spiffe://other/service/runs")], "trust domain 'other'"),
        ([uri("spiffe://Custody/service/runs")], "trust domain 'Custody'"),
        ([uri("spiffe://custody:443/service/runs")], "trust domain"),
        ([uri("spiffe://mallory@custody/service/runs")], "trust domain"),
        ([uri("spiffe://custody/service/mallory")], "names no Custody service"),
        ([uri("spiffe://custody/service/runs/")], "names no Custody service"),
        ([uri("spiffe://custody/service/runs/extra")], "names no Custody service"),
        ([uri("spiffe://custody/ns/custody/sa/runs")], "names no Custody service"),
        ([uri("spiffe://custody/service/%72uns")], "names no Custody service"),
        ([uri("spiffe://custody/service/runs?as=lineage")], "not a SPIFFE ID"),
        ([uri("spiffe://custody/service/runs#lineage")], "not a SPIFFE ID"),
        ([uri("https://custody/service/runs")], "not a SPIFFE ID"),
    ],
    ids=lambda value: str(value)[:60],
)
def test_a_certificate_naming_no_service_of_this_trust_domain_is_refused(
    authority: CertificateAuthority, sans: list[x509.GeneralName] | None, problem: str
) -> None:
    certificate, _ = issue(authority, sans)
    with pytest.raises(PeerIdentityError, match=problem):
        service_of(certificate, TRUST_DOMAIN)


def test_a_ca_certificate_is_not_a_service(authority: CertificateAuthority) -> None:
    certificate, _ = issue(authority, [uri("spiffe://custody/service/runs")], ca=True)
    with pytest.raises(PeerIdentityError, match="CA certificate"):
        service_of(certificate, TRUST_DOMAIN)


def test_a_certificate_for_servers_only_cannot_authenticate_a_client(authority: CertificateAuthority) -> None:
    certificate, _ = issue(authority, [uri("spiffe://custody/service/runs")], usages=[ExtendedKeyUsageOID.SERVER_AUTH])
    with pytest.raises(PeerIdentityError, match="clientAuth"):
        service_of(certificate, TRUST_DOMAIN)


def test_a_configured_trust_domain_is_the_only_one_accepted(authority: CertificateAuthority) -> None:
    certificate, _ = issue(authority, [uri("spiffe://prod.example.org/service/lineage")])
    assert service_of(certificate, "prod.example.org") == "lineage"
    with pytest.raises(PeerIdentityError):
        service_of(certificate, TRUST_DOMAIN)


# --- the transport rules ------------------------------------------------------------------------------------------


def _context(certificate: bytes | None) -> dict[str, list[bytes]]:
    return {} if certificate is None else {PEER_CERTIFICATE_PROPERTY: [certificate]}


def test_no_certificate_names_no_service() -> None:
    assert TransportIdentity(TRUST_DOMAIN).certified_service(_context(None)) is None


def test_a_verified_certificate_naming_no_service_is_unauthenticated(authority: CertificateAuthority) -> None:
    certificate, _ = issue(authority, [uri("spiffe://custody/service/mallory")])
    with pytest.raises(Unauthenticated) as raised:
        TransportIdentity(TRUST_DOMAIN).certified_service(_context(certificate))
    assert raised.value.reason == "CERTIFICATE_IDENTITY_INVALID"


def test_a_service_token_without_a_certificate_is_refused() -> None:
    with pytest.raises(Unauthenticated) as raised:
        TransportIdentity(TRUST_DOMAIN).check(Principal.service("runs"), None)
    assert raised.value.reason == "SERVICE_CERTIFICATE_REQUIRED"


def test_a_service_token_with_another_services_certificate_is_refused() -> None:
    with pytest.raises(Unauthenticated) as raised:
        TransportIdentity(TRUST_DOMAIN).check(Principal.service("art_studio"), "runs")
    assert raised.value.reason == "CERTIFICATE_MISMATCH"


def test_a_service_token_with_its_own_certificate_is_accepted() -> None:
    TransportIdentity(TRUST_DOMAIN).check(Principal.service("runs"), "runs")


@pytest.mark.parametrize("certified", [None, "art_studio"])
def test_a_persons_token_is_that_person_with_or_without_a_certificate(certified: str | None) -> None:
    person = Principal("human:ada", PrincipalKind.HUMAN, frozenset({"reviewer"}))
    TransportIdentity(TRUST_DOMAIN).check(person, certified)
