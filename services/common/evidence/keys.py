"""The evidence signing key: ECDSA P-256, the key type cosign generates and verifies with `--key`.

Files: the private key is unencrypted PKCS#8 PEM written with mode 0600 (like every other secret `custody init`
writes); the public key is SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY"), which is what `cosign
verify-blob-attestation --key` and securesystemslib read.

keyid: the lowercase hex SHA-256 of the DER SubjectPublicKeyInfo. It is only a hint in the envelope (DSSE does
not authenticate it, and our verifier ignores it), but a stable one: anyone holding the public key can
recompute it with `openssl pkey -pubin -outform DER | sha256sum`. cosign's own verifier does not filter on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.common.identity import write_private_file

_ALGORITHM = ec.ECDSA(hashes.SHA256())


class EvidenceKeyError(ValueError):
    """A key file that is not an ECDSA P-256 key in the expected PEM form."""


@dataclass(frozen=True)
class EvidencePublicKey:
    key: ec.EllipticCurvePublicKey

    @classmethod
    def from_pem(cls, pem: str | bytes) -> EvidencePublicKey:
        data = pem.encode("ascii") if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise EvidenceKeyError(f"not a PEM public key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise EvidenceKeyError("the evidence key must be an ECDSA P-256 public key")
        return cls(key)

    @property
    def pem(self) -> str:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    @property
    def keyid(self) -> str:
        der = self.key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(der).hexdigest()

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Whether `signature` (DER) is a valid ECDSA P-256 / SHA-256 signature of `message` by this key."""
        try:
            self.key.verify(signature, message, _ALGORITHM)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class EvidenceSigner:
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> EvidenceSigner:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: str | bytes) -> EvidenceSigner:
        data = pem.encode("ascii") if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise EvidenceKeyError(f"not an unencrypted PEM private key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise EvidenceKeyError("the evidence key must be an ECDSA P-256 private key")
        return cls(key)

    @property
    def pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")

    @property
    def public_key(self) -> EvidencePublicKey:
        return EvidencePublicKey(self.key.public_key())

    def sign(self, message: bytes) -> bytes:
        """DER-encoded ECDSA P-256 / SHA-256 signature of `message`."""
        return self.key.sign(message, _ALGORITHM)


def create_key_files(private_path: Path, public_path: Path) -> EvidenceSigner:
    """A new key: the private PEM at `private_path` (mode 0600), the public PEM at `public_path`."""
    signer = EvidenceSigner.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(private_path, signer.pem)
    public_path.write_text(signer.public_key.pem, encoding="ascii")
    return signer


def load_signer(path: Path) -> EvidenceSigner:
    return EvidenceSigner.from_pem(path.read_bytes())


def load_public_key(path: Path) -> EvidencePublicKey:
    return EvidencePublicKey.from_pem(path.read_bytes())
