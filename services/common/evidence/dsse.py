"""DSSE v1 envelopes (secure-systems-lab/dsse, protocol and envelope 1.0.2): PAE, signing and verification.

Written by hand rather than taken from securesystemslib on purpose: PAE is one line of the specification, the
envelope is three JSON fields, and the tests verify our envelopes with securesystemslib as an independent
verifier, which only means something if production code does not share its implementation.

The signature is ECDSA P-256 with SHA-256 over PAE(payloadType, payload), DER-encoded, and every binary field is
written in standard base64 with padding, as cosign writes them (`cosign verify-blob-attestation` decodes the
payload with standard base64 only). Reading accepts standard or URL-safe base64, as the envelope spec allows,
but nothing else (no whitespace, no missing padding). `keyid` is an unauthenticated hint: verification tries
every trusted key against every signature and never lets a keyid exclude a key.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.common.evidence.keys import EvidencePublicKey, EvidenceSigner

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


class EnvelopeError(ValueError):
    """An envelope that is malformed or whose signatures do not verify; the message says which."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths in ASCII decimal bytes."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "payloadType": self.payload_type,
            "payload": _b64(self.payload),
            "signatures": [{"keyid": s.keyid, "sig": _b64(s.sig)} for s in self.signatures],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"


def sign(payload_type: str, payload: bytes, signer: EvidenceSigner) -> Envelope:
    signature = Signature(signer.public_key.keyid, signer.sign(pae(payload_type, payload)))
    return Envelope(payload_type, payload, (signature,))


def verify(envelope: Envelope, trusted: Sequence[EvidencePublicKey]) -> EvidencePublicKey:
    """The first trusted key with a valid signature over PAE(payloadType, payload); raises EnvelopeError if none."""
    if not envelope.signatures:
        raise EnvelopeError("the envelope has no signatures")
    if not trusted:
        raise EnvelopeError("no trusted key to verify the envelope with")
    message = pae(envelope.payload_type, envelope.payload)
    for signature in envelope.signatures:
        for key in trusted:
            if key.verify(signature.sig, message):
                return key
    keyids = ", ".join(k.keyid for k in trusted)
    raise EnvelopeError(
        f"none of the envelope's {len(envelope.signatures)} signature(s) verifies under a trusted key "
        f"(trusted keyids: {keyids})"
    )


def parse(text: str | bytes) -> Envelope:
    """The envelope in DSSE JSON form; raises EnvelopeError naming the malformed field. Unknown fields are
    ignored, and an absent keyid is the same as an empty one, as the envelope spec requires."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"the envelope is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EnvelopeError("the envelope is not a JSON object")
    payload_type = data.get("payloadType")
    if not isinstance(payload_type, str):
        raise EnvelopeError("payloadType is missing or not a string")
    payload = _unb64(data.get("payload"), "payload")
    raw_signatures = data.get("signatures")
    if not isinstance(raw_signatures, list):
        raise EnvelopeError("signatures is missing or not a list")
    signatures = []
    for index, item in enumerate(raw_signatures):
        if not isinstance(item, dict):
            raise EnvelopeError(f"signatures[{index}] is not an object")
        keyid = item.get("keyid", "")
        if not isinstance(keyid, str):
            raise EnvelopeError(f"signatures[{index}].keyid is not a string")
        signatures.append(Signature(keyid, _unb64(item.get("sig"), f"signatures[{index}].sig")))
    return Envelope(payload_type, payload, tuple(signatures))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise EnvelopeError(f"{field} is missing or not a string")
    for altchars in (None, b"-_"):
        try:
            return base64.b64decode(value, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    raise EnvelopeError(f"{field} is not standard or URL-safe base64")
