"""gRPC credentials from a certificate directory in the layout cert-manager writes: tls.crt (the certificate and
any intermediates), tls.key (its private key) and ca.crt (the CA certificates to trust).

Servers reload without a restart: gRPC asks a fetcher before every new handshake, which re-reads the three files
and hands gRPC a new configuration only when they changed and belong together (the key is the certificate's), so
a rotation caught half-written keeps the previous certificate until it is complete. Clients (services calling
their peers) notice changed files when they next open a channel (ServiceClients) and build new credentials.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from services.common.file_signature import FileSignature, file_signature
from services.common.identity import exposed_key_file

log = logging.getLogger("custody.tls")

CERTIFICATE_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"


class TlsFilesError(ValueError):
    """The certificate directory cannot be used (a file missing or unreadable, a key others may read, a key that is
    not the certificate's); the message names the file."""


@dataclass(frozen=True)
class TlsMaterial:
    certificate_chain: bytes
    private_key: bytes
    ca_certificates: bytes


@dataclass(frozen=True)
class TlsDirectory:
    root: Path

    @property
    def certificate(self) -> Path:
        return self.root / CERTIFICATE_FILE

    @property
    def key(self) -> Path:
        return self.root / KEY_FILE

    @property
    def ca(self) -> Path:
        return self.root / CA_FILE

    def read_raw(self) -> TlsMaterial:
        """The three files as they are, unchecked except for the key's mode (cheap: runs before every handshake)."""
        try:
            if exposed_key_file(self.key):
                raise TlsFilesError(
                    f"private key {self.key} is readable by others or writable by its group: chmod 600 {self.key}"
                )
            return TlsMaterial(self.certificate.read_bytes(), self.key.read_bytes(), self.ca.read_bytes())
        except OSError as exc:
            raise TlsFilesError(
                f"{exc.filename}: {exc.strerror} (a TLS directory holds tls.crt, tls.key, ca.crt)"
            ) from None

    def read(self) -> TlsMaterial:
        material = self.read_raw()
        check(material, self.root)
        return material

    def signature(self) -> FilesSignature:
        return files_signature(self.certificate, self.key, self.ca)


FilesSignature = tuple[FileSignature | None, ...]


def files_signature(*paths: Path) -> FilesSignature:
    """Changes whenever one of the files is replaced or rewritten (services/common/file_signature.py)."""
    return tuple(file_signature(path) for path in paths)


def check(material: TlsMaterial, where: Path) -> None:
    """The certificate, its key and the CA certificates parse, and the key is the certificate's."""
    try:
        certificate = x509.load_pem_x509_certificates(material.certificate_chain)[0]
    except ValueError as exc:
        raise TlsFilesError(f"{where / CERTIFICATE_FILE}: not a PEM certificate ({exc})") from None
    try:
        key = serialization.load_pem_private_key(material.private_key, password=None)
    except (ValueError, TypeError) as exc:
        raise TlsFilesError(f"{where / KEY_FILE}: not an unencrypted PEM private key ({exc})") from None
    try:
        x509.load_pem_x509_certificates(material.ca_certificates)
    except ValueError as exc:
        raise TlsFilesError(f"{where / CA_FILE}: not PEM CA certificates ({exc})") from None
    if key.public_key() != certificate.public_key():
        raise TlsFilesError(f"{where / KEY_FILE} is not the private key of {where / CERTIFICATE_FILE}")


def certificate_configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.private_key, material.certificate_chain)], root_certificates=material.ca_certificates
    )


class CertificateFetcher:
    """gRPC's per-handshake question "is there a new certificate?": None (keep the current one) unless the files
    changed into a usable whole. Each listener has its own, as each must learn of a change itself."""

    def __init__(self, directory: TlsDirectory, current: TlsMaterial, listener: str) -> None:
        self._directory = directory
        self._current = current
        self._listener = listener
        self._problem: str | None = None

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            material = self._directory.read_raw()
            if material == self._current:
                self._problem = None
                return None
            check(material, self._directory.root)
        except TlsFilesError as exc:
            if str(exc) != self._problem:  # once per distinct problem, not once per handshake
                log.warning("%s: keeping the current certificate: %s", self._listener, exc)
            self._problem = str(exc)
            return None
        self._current, self._problem = material, None
        log.info("%s: serving the new certificate from %s", self._listener, self._directory.root)
        return certificate_configuration(material)


def server_credentials(
    directory: TlsDirectory, material: TlsMaterial, *, require_client_certificate: bool, listener: str
) -> grpc.ServerCredentials:
    """TLS that reloads `directory` on change; with require_client_certificate, mutual TLS against its ca.crt."""
    return grpc.dynamic_ssl_server_credentials(
        certificate_configuration(material),
        # The stubs say the fetcher returns a configuration; gRPC documents None as "keep the current one".
        CertificateFetcher(directory, material, listener),  # type: ignore[arg-type]
        require_client_authentication=require_client_certificate,
    )


@dataclass(frozen=True)
class ChannelSecurity:
    """How a client's channels are secured: the CA it trusts and, for a service, its own certificate."""

    ca_file: Path
    directory: TlsDirectory | None = None

    @classmethod
    def for_service(cls, directory: TlsDirectory) -> ChannelSecurity:
        """Mutual TLS: the service's certificate from `directory`, trusting its ca.crt."""
        return cls(directory.ca, directory)

    @classmethod
    def for_operator(cls, ca_file: Path) -> ChannelSecurity:
        """Server-authenticated TLS: people authenticate with their bearer token."""
        return cls(ca_file)

    def credentials(self) -> grpc.ChannelCredentials:
        if self.directory is not None:
            material = self.directory.read()
            return grpc.ssl_channel_credentials(
                material.ca_certificates, material.private_key, material.certificate_chain
            )
        try:
            return grpc.ssl_channel_credentials(self.ca_file.read_bytes())
        except OSError as exc:
            raise TlsFilesError(f"{self.ca_file}: {exc.strerror} (the CA certificate to trust)") from None

    def signature(self) -> FilesSignature:
        """Changes when the files `credentials` reads change: then new channels need new credentials."""
        return self.directory.signature() if self.directory is not None else files_signature(self.ca_file)
