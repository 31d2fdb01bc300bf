"""The evidence key: P-256 only, the private half owner-readable only, a keyid anyone can recompute."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from services.common.evidence.keys import (
    EvidenceKeyError,
    EvidencePublicKey,
    EvidenceSigner,
    create_key_files,
    load_public_key,
    load_signer,
)


def test_key_files_round_trip_and_the_private_key_is_mode_0600(tmp_path: Path) -> None:
    signer = create_key_files(tmp_path / "keys" / "evidence.key", tmp_path / "keys" / "evidence.pub")
    assert stat.S_IMODE((tmp_path / "keys" / "evidence.key").stat().st_mode) == 0o600
    assert (tmp_path / "keys" / "evidence.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert load_signer(tmp_path / "keys" / "evidence.key").public_key == signer.public_key
    assert load_public_key(tmp_path / "keys" / "evidence.pub") == signer.public_key
    assert b"PRIVATE KEY" in (tmp_path / "keys" / "evidence.key").read_bytes()


def test_the_keyid_is_the_sha256_of_the_der_subject_public_key_info() -> None:
    key = EvidenceSigner.generate().public_key
    der = key.key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.keyid == hashlib.sha256(der).hexdigest()


def test_signatures_verify_only_for_their_message() -> None:
    signer = EvidenceSigner.generate()
    signature = signer.sign(b"message")
    assert signer.public_key.verify(signature, b"message")
    assert not signer.public_key.verify(signature, b"messagE")
    assert not signer.public_key.verify(b"not DER", b"message")


@pytest.mark.parametrize(
    "private",
    [
        pytest.param(ec.generate_private_key(ec.SECP384R1()), id="p384"),
        pytest.param(ed25519.Ed25519PrivateKey.generate(), id="ed25519"),
    ],
)
def test_keys_other_than_p256_are_refused(private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> None:
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(EvidenceKeyError, match="P-256"):
        EvidenceSigner.from_pem(pem)
    with pytest.raises(EvidenceKeyError, match="P-256"):
        EvidencePublicKey.from_pem(public_pem)


def test_a_file_that_is_not_a_key_is_refused() -> None:
    with pytest.raises(EvidenceKeyError):
        EvidencePublicKey.from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
