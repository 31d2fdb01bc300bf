"""The content-credentials chain `custody init` writes under c2pa/: a root of its own, an intermediate, a signer per
signing service; idempotent, renewed when due, and never replaced behind the operator's back."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.cli.content_ca import ensure_content_credentials
from services.cli.local_ca import LocalCaError
from services.common.content_credentials.layout import (
    SIGNER_CHAIN,
    SIGNER_KEY,
    anchors_file,
    credentials_root,
    intermediate_directory,
    signer_directory,
)
from services.common.tls.certificates import C2PA_CLAIM_SIGNING


def chain(state: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates((signer_directory(state, "runs") / SIGNER_CHAIN).read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_a_signer_under_an_intermediate_under_its_own_root(tmp_path: Path) -> None:
    done = ensure_content_credentials(tmp_path)
    assert len(done) == 3
    signer, intermediate = chain(tmp_path)
    root = x509.load_pem_x509_certificate(anchors_file(tmp_path).read_bytes())
    signer.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)
    assert not signer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1
    usages = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [C2PA_CLAIM_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION]


def test_private_keys_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    ensure_content_credentials(tmp_path)
    for directory in (
        credentials_root(tmp_path) / "root",
        intermediate_directory(tmp_path),
        signer_directory(tmp_path, "runs"),
    ):
        assert mode(directory) == 0o700
    assert mode(signer_directory(tmp_path, "runs") / SIGNER_KEY) == 0o600
    assert mode(intermediate_directory(tmp_path) / "ca.key") == 0o600
    assert mode(anchors_file(tmp_path)) == 0o644


def test_a_second_init_changes_nothing(tmp_path: Path) -> None:
    ensure_content_credentials(tmp_path)
    before = (signer_directory(tmp_path, "runs") / SIGNER_CHAIN).read_bytes()
    assert ensure_content_credentials(tmp_path) == []
    assert (signer_directory(tmp_path, "runs") / SIGNER_CHAIN).read_bytes() == before


def test_renewal_reissues_the_signer_and_keeps_both_cas(tmp_path: Path) -> None:
    ensure_content_credentials(tmp_path)
    anchors, old = anchors_file(tmp_path).read_bytes(), chain(tmp_path)
    assert ensure_content_credentials(tmp_path, renew=True) == [
        f"runs: content-credentials signer issued (renewal asked) in {signer_directory(tmp_path, 'runs')}"
    ]
    new = chain(tmp_path)
    assert new[0].serial_number != old[0].serial_number and new[1] == old[1]
    assert anchors_file(tmp_path).read_bytes() == anchors


def test_a_signer_about_to_expire_is_reissued(tmp_path: Path) -> None:
    ensure_content_credentials(tmp_path)
    later = datetime.now(UTC) + timedelta(days=3640)
    (line,) = ensure_content_credentials(tmp_path, now=later)
    assert "expires" in line


def test_a_signer_from_another_intermediate_is_reissued(tmp_path: Path) -> None:
    ensure_content_credentials(tmp_path / "a")
    ensure_content_credentials(tmp_path / "b")
    other = signer_directory(tmp_path / "b", "runs")
    mine = signer_directory(tmp_path / "a", "runs")
    (mine / SIGNER_CHAIN).write_bytes((other / SIGNER_CHAIN).read_bytes())
    (line,) = ensure_content_credentials(tmp_path / "a")
    assert "issued by another CA" in line


def test_an_intermediate_with_a_missing_half_is_never_replaced(tmp_path: Path) -> None:
    ensure_content_credentials(tmp_path)
    (intermediate_directory(tmp_path) / "ca.key").unlink()
    with pytest.raises(LocalCaError, match="never replaced"):
        ensure_content_credentials(tmp_path)


def test_a_signer_lasts_as_long_as_its_intermediate(tmp_path: Path) -> None:
    """No timestamp authority offline: an asset verifies only while its signer certificate is valid."""
    ensure_content_credentials(tmp_path)
    signer, intermediate = chain(tmp_path)
    assert signer.not_valid_after_utc - signer.not_valid_before_utc > timedelta(days=9 * 365)
    assert signer.not_valid_after_utc <= intermediate.not_valid_after_utc
