"""The certificates `custody init` issues, read back with `cryptography` as a TLS peer would see them, and the local
CA under var/tls/: its layout and file modes, and that it is never replaced behind the operator's back."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.cli.local_ca import LocalCaError, TlsLayout, ensure_certificates
from services.common.catalog import PROCESS_NAMES, SERVICE_NAMES
from services.common.tls.certificates import (
    CA_VALIDITY,
    RENEW_BEFORE,
    CertificateAuthority,
    CertificateError,
    service_dns_names,
)
from services.common.tls.credentials import TlsDirectory, TlsFilesError


@pytest.fixture(scope="module")
def authority() -> CertificateAuthority:
    return CertificateAuthority.create()


def _certificate(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _sans(certificate: x509.Certificate) -> x509.SubjectAlternativeName:
    return certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_a_service_certificate_names_its_service_by_one_spiffe_id(authority: CertificateAuthority) -> None:
    issued = _certificate(authority.issue("art_studio", dns_names=service_dns_names("art_studio")).certificate_pem)
    assert _sans(issued).get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://custody/service/art_studio"]


def test_a_service_certificate_carries_every_name_its_clients_dial(authority: CertificateAuthority) -> None:
    issued = _certificate(authority.issue("ai_gateway", dns_names=service_dns_names("ai_gateway")).certificate_pem)
    dns = set(_sans(issued).get_values_for_type(x509.DNSName))
    assert {
        "localhost",
        "ai-gateway",
        "ai-gateway.custody",
        "ai-gateway.custody.svc",
        "ai-gateway.custody.svc.cluster.local",
    } <= dns
    assert set(_sans(issued).get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }


def test_a_service_certificate_authenticates_servers_and_clients_and_signs_nothing(
    authority: CertificateAuthority,
) -> None:
    issued = _certificate(authority.issue("runs").certificate_pem)
    usages = issued.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    constraints = issued.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    key_usage = issued.extensions.get_extension_for_class(x509.KeyUsage).value
    assert key_usage.digital_signature and not key_usage.key_cert_sign and not key_usage.crl_sign


def test_a_service_certificate_is_signed_by_the_ca_with_a_p256_key(authority: CertificateAuthority) -> None:
    issued = authority.issue("lineage")
    certificate = _certificate(issued.certificate_pem)
    certificate.verify_directly_issued_by(authority.certificate)
    public = certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1)


def test_the_ca_signs_certificates_but_no_further_ca(authority: CertificateAuthority) -> None:
    constraints = authority.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    key_usage = authority.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert key_usage.key_cert_sign and key_usage.crl_sign and not key_usage.digital_signature
    lifetime = authority.certificate.not_valid_after_utc - authority.certificate.not_valid_before_utc
    assert lifetime >= CA_VALIDITY


def test_a_service_certificate_never_outlives_its_ca() -> None:
    old = CertificateAuthority.create(now=datetime.now(UTC) - CA_VALIDITY + timedelta(days=10))
    issued = _certificate(old.issue("runs").certificate_pem)
    assert issued.not_valid_after_utc <= old.certificate.not_valid_after_utc


def test_a_ca_key_that_is_not_the_ca_certificates_is_refused(authority: CertificateAuthority) -> None:
    other = CertificateAuthority.create()
    with pytest.raises(CertificateError, match="does not belong"):
        CertificateAuthority.from_pem(authority.certificate_pem, other.key_pem)


def test_a_service_certificate_cannot_be_loaded_as_a_ca(authority: CertificateAuthority) -> None:
    issued = authority.issue("runs")
    with pytest.raises(CertificateError, match="not a CA"):
        CertificateAuthority.from_pem(issued.certificate_pem, issued.key_pem)


# --- the local CA under var/tls ----------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_a_cert_manager_directory_per_service(tmp_path: Path) -> None:
    layout = TlsLayout(tmp_path / "tls")
    ensure_certificates(layout)
    ca = layout.ca_certificate.read_bytes()
    for service in SERVICE_NAMES:
        directory = layout.service(service)
        material = directory.read()  # the key is the certificate's, everything parses
        assert material.ca_certificates == ca
        _certificate(material.certificate_chain).verify_directly_issued_by(_certificate(ca))
    assert layout.client_ca.read_bytes() == ca


def test_private_keys_are_the_owners_alone(tmp_path: Path) -> None:
    layout = TlsLayout(tmp_path / "tls")
    ensure_certificates(layout)
    assert _mode(layout.ca_dir) == 0o700
    assert _mode(layout.ca_key) == 0o600
    for service in SERVICE_NAMES:
        assert _mode(layout.service(service).key) == 0o600
        assert _mode(layout.service(service).certificate) == 0o644


def test_a_second_init_keeps_the_ca_and_every_certificate(tmp_path: Path) -> None:
    layout = TlsLayout(tmp_path / "tls")
    ensure_certificates(layout)
    before = {p: p.read_bytes() for p in layout.root.rglob("*") if p.is_file()}
    assert ensure_certificates(layout) == []
    assert {p: p.read_bytes() for p in layout.root.rglob("*") if p.is_file()} == before


def test_renewal_reissues_every_certificate_from_the_same_ca(tmp_path: Path) -> None:
    layout = TlsLayout(tmp_path / "tls")
    ensure_certificates(layout)
    ca, keys = layout.ca_key.read_bytes(), {s: layout.service(s).key.read_bytes() for s in PROCESS_NAMES}
    done = ensure_certificates(layout, renew=True)
    assert len(done) == len(PROCESS_NAMES)  # the four services and the console
    assert layout.ca_key.read_bytes() == ca
    for service in PROCESS_NAMES:
        assert layout.service(service).key.read_bytes() != keys[service]
        _certificate(layout.service(service).certificate.read_bytes()).verify_directly_issued_by(
            _certificate(layout.ca_certificate.read_bytes())
        )


@pytest.mark.parametrize("lost", ["ca_key", "ca_certificate"])
def test_a_ca_missing_one_of_its_files_is_never_replaced(tmp_path: Path, lost: str) -> None:
    layout = TlsLayout(tmp_path / "tls")
    ensure_certificates(layout)
    kept = layout.ca_certificate if lost == "ca_key" else layout.ca_key
    before = kept.read_bytes()
    getattr(layout, lost).unlink()
    with pytest.raises(LocalCaError, match="never replaced"):
        ensure_certificates(layout)
    assert kept.read_bytes() == before
    assert not getattr(layout, lost).exists()


def test_a_certificate_expiring_within_the_renewal_window_is_reissued(tmp_path: Path) -> None:
    layout = TlsLayout(tmp_path / "tls")
    ensure_certificates(layout)
    certificate = _certificate(layout.service("runs").certificate.read_bytes())
    almost_expired = certificate.not_valid_after_utc - RENEW_BEFORE + timedelta(hours=1)
    done = ensure_certificates(layout, now=almost_expired)
    assert any(line.startswith("runs: certificate issued (expires") for line in done)


def test_a_certificate_of_another_ca_is_reissued_by_this_one(tmp_path: Path) -> None:
    layout = TlsLayout(tmp_path / "tls")
    ensure_certificates(layout)
    foreign = CertificateAuthority.create().issue("lineage", dns_names=service_dns_names("lineage"))
    layout.service("lineage").certificate.write_bytes(foreign.certificate_pem)
    done = ensure_certificates(layout)
    assert done == [f"lineage: certificate issued (issued by another CA) in {layout.service('lineage').root}"]
    assert layout.service("lineage").read()


def test_extra_dns_names_survive_a_later_init_without_them(tmp_path: Path) -> None:
    layout = TlsLayout(tmp_path / "tls")
    ensure_certificates(layout, dns_names=["custody.example.com"])
    assert ensure_certificates(layout) == []
    names = _sans(_certificate(layout.service("runs").certificate.read_bytes())).get_values_for_type(x509.DNSName)
    assert "custody.example.com" in names


# --- reading a certificate directory ------------------------------------------------------------------------------


def test_a_private_key_others_can_read_is_refused(tmp_path: Path) -> None:
    layout = TlsLayout(tmp_path / "tls")
    ensure_certificates(layout)
    layout.service("runs").key.chmod(0o644)
    with pytest.raises(TlsFilesError, match="readable by others"):
        layout.service("runs").read()


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path: Path) -> None:
    layout = TlsLayout(tmp_path / "tls")
    ensure_certificates(layout)
    layout.service("runs").key.write_bytes(layout.service("lineage").key.read_bytes())
    with pytest.raises(TlsFilesError, match="is not the private key of"):
        layout.service("runs").read()


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    directory = TlsDirectory(tmp_path / "empty")
    directory.root.mkdir()
    with pytest.raises(TlsFilesError, match=r"tls\.key"):
        directory.read()
