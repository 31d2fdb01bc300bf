"""Signing content credentials into an asset with the service's certificate (c2pa-python, the C2PA reference
implementation's bindings): ES256 with the end-entity key, the chain (end entity, then the intermediate under the
local root) embedded so any verifier holding the root can check it.

Nothing here reaches the network: no timestamp authority is configured (the claim carries no trusted time; the
ledger leaf of the attachment is Custody's record of when), and no thumbnail is generated (it would grow a small
asset by tens of kilobytes and add nothing a reviewer needs).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import c2pa

from services.common.content_credentials.errors import CredentialsError, CredentialsUnavailable
from services.common.content_credentials.layout import SIGNER_CHAIN, SIGNER_KEY
from services.common.content_credentials.manifest import ACTIONS_LABEL, CREATED, Credentials, SourceType
from services.common.content_credentials.media import SUPPORTED_MEDIA_TYPES, ambiguity
from services.common.hashing import sha256_bytes
from services.common.identity import exposed_key_file
from services.common.tls.certificates import signer_chain_problem

# Offline: no OCSP and no remote manifests, while signing (c2pa verifies what it signed) as when reading.
NO_NETWORK: dict[str, Any] = {"ocsp_fetch": False, "remote_manifest_fetch": False}
_BUILDER_SETTINGS = {"builder": {"thumbnail": {"enabled": False}}, "verify": NO_NETWORK}


class CredentialSigner:
    def __init__(self, key_pem: bytes, chain_pem: bytes) -> None:
        self._key_pem = key_pem
        self._chain_pem = chain_pem

    @classmethod
    def from_directory(cls, directory: Path) -> CredentialSigner:
        """The signer `custody init` wrote: signer.key (mode 0600; 0440 from a Kubernetes Secret) and chain.pem."""
        key, chain = directory / SIGNER_KEY, directory / SIGNER_CHAIN
        for path in (key, chain):
            if not path.is_file():
                raise CredentialsUnavailable(f"{path} is missing; run `custody init` to issue the signer")
        if exposed_key_file(key):
            raise CredentialsUnavailable(
                f"{key} is readable by others or writable by its group; it must be 0600: chmod 600 {key}"
            )
        key_pem, chain_pem = key.read_bytes(), chain.read_bytes()
        problem = signer_chain_problem(chain_pem, key_pem)
        if problem is not None:
            raise CredentialsUnavailable(f"the content-credentials signer in {directory} is unusable: {problem}")
        signer = cls(key_pem, chain_pem)
        signer._check()
        return signer

    def _check(self) -> None:
        """Signs a tiny SVG once, so a broken key or chain (or a key that is not the certificate's) stops the
        service at start rather than failing an upload later."""
        try:
            self._embed(_SELF_CHECK_SVG, "image/svg+xml", _SELF_CHECK_MANIFEST)
        except CredentialsError as exc:
            raise CredentialsUnavailable(f"the content-credentials signer is unusable: {exc}") from None

    def _signer(self) -> c2pa.Signer:
        info = c2pa.C2paSignerInfo(
            alg=c2pa.C2paSigningAlg.ES256, sign_cert=self._chain_pem, private_key=self._key_pem, ta_url=None
        )
        return c2pa.Signer.from_info(info)

    def sign(self, data: bytes, media_type: str, credentials: Credentials) -> bytes:
        """The asset with the manifest embedded. Safe from several threads: each call has its own builder and
        signer (the native objects are not shared)."""
        if media_type not in SUPPORTED_MEDIA_TYPES:
            raise CredentialsError(f"Custody signs {', '.join(sorted(SUPPORTED_MEDIA_TYPES))}, not {media_type}")
        problem = ambiguity(data, media_type)
        if problem is not None:
            raise CredentialsError(problem)
        claim = credentials.assertion
        if (claim.unsigned_sha256, claim.unsigned_size_bytes) != (sha256_bytes(data), len(data)):
            raise CredentialsError("the Custody assertion names other bytes than the ones being signed")
        return self._embed(data, media_type, credentials.manifest_definition())

    def _embed(self, data: bytes, media_type: str, definition: dict[str, Any]) -> bytes:
        output = io.BytesIO()
        try:
            signer = self._signer()
            try:
                builder = c2pa.Builder(definition, context=c2pa.Context.from_dict(_BUILDER_SETTINGS))
                try:
                    builder.sign(signer, media_type, io.BytesIO(data), output)
                finally:
                    builder.close()
            finally:
                signer.close()
        except c2pa.C2paError as exc:
            raise CredentialsError(f"c2pa could not sign the {media_type}: {exc}") from None
        return output.getvalue()


_SELF_CHECK_SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"><rect width="1" height="1"/></svg>'
_SELF_CHECK_MANIFEST: dict[str, Any] = {
    "claim_generator_info": [{"name": "Custody"}],
    "title": "signer self-check",
    "assertions": [
        {
            "label": ACTIONS_LABEL,
            "data": {"actions": [{"action": CREATED, "digitalSourceType": SourceType.ALGORITHMIC_MEDIA.value}]},
        }
    ],
}
