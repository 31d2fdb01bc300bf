"""DSSE envelopes: the spec's PAE vector, and signatures checked by securesystemslib, an independent
implementation, in both directions."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from services.common.evidence import dsse
from services.common.evidence.keys import EvidenceSigner

PAYLOAD = b'{"_type":"https://in-toto.io/Statement/v1"}'


@pytest.fixture(scope="module")
def signer() -> EvidenceSigner:
    return EvidenceSigner.generate()


def _sslib_key(signer: EvidenceSigner) -> SSlibKey:
    """The public key as securesystemslib reads it from PEM, under the keyid our envelopes carry."""
    return SSlibKey.from_crypto(load_pem_public_key(signer.public_key.pem.encode()), keyid=signer.public_key.keyid)


def test_pae_matches_the_specification_vector() -> None:
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert dsse.pae("t\u00e9", "\u00e9".encode()) == b"DSSEv1 3 t\xc3\xa9 2 \xc3\xa9"


def test_an_envelope_we_sign_verifies_with_securesystemslib(signer: EvidenceSigner) -> None:
    envelope = dsse.sign(dsse.IN_TOTO_PAYLOAD_TYPE, PAYLOAD, signer)
    theirs = SslibEnvelope.from_dict(json.loads(envelope.dumps()))
    assert theirs.payload == PAYLOAD and theirs.payload_type == dsse.IN_TOTO_PAYLOAD_TYPE
    assert set(theirs.verify([_sslib_key(signer)], 1)) == {signer.public_key.keyid}


def test_securesystemslib_rejects_our_envelope_with_a_flipped_payload_byte(signer: EvidenceSigner) -> None:
    envelope = dsse.sign(dsse.IN_TOTO_PAYLOAD_TYPE, PAYLOAD, signer)
    flipped = bytearray(PAYLOAD)
    flipped[5] ^= 0x01
    data = envelope.to_json() | {"payload": base64.b64encode(bytes(flipped)).decode()}
    with pytest.raises(VerificationError):
        SslibEnvelope.from_dict(data).verify([_sslib_key(signer)], 1)


def test_an_envelope_securesystemslib_signs_verifies_with_ours(signer: EvidenceSigner) -> None:
    theirs = SslibEnvelope(PAYLOAD, dsse.IN_TOTO_PAYLOAD_TYPE, {})
    theirs.sign(CryptoSigner(signer.key, _sslib_key(signer)))
    envelope = dsse.parse(json.dumps(theirs.to_dict()))
    assert dsse.verify(envelope, [signer.public_key]) == signer.public_key


def test_the_envelope_has_cosigns_shape(signer: EvidenceSigner) -> None:
    data = json.loads(dsse.sign(dsse.IN_TOTO_PAYLOAD_TYPE, PAYLOAD, signer).dumps())
    assert set(data) == {"payloadType", "payload", "signatures"}
    assert base64.b64decode(data["payload"], validate=True) == PAYLOAD  # standard base64, padded
    (signature,) = data["signatures"]
    assert signature["keyid"] == signer.public_key.keyid
    der = base64.b64decode(signature["sig"], validate=True)
    assert der[0] == 0x30  # an ASN.1 DER SEQUENCE (r, s), not raw r||s


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda e: dsse.Envelope(e.payload_type, e.payload + b" ", e.signatures), id="payload"),
        pytest.param(lambda e: dsse.Envelope("application/json", e.payload, e.signatures), id="payload-type"),
        pytest.param(
            lambda e: dsse.Envelope(
                e.payload_type, e.payload, (dsse.Signature("", e.signatures[0].sig[:-1] + b"\x00"),)
            ),
            id="signature",
        ),
        pytest.param(lambda e: dsse.Envelope(e.payload_type, e.payload, ()), id="no-signature"),
    ],
)
def test_verification_fails_when_anything_signed_changes(
    signer: EvidenceSigner, change: Callable[[dsse.Envelope], dsse.Envelope]
) -> None:
    envelope = change(dsse.sign(dsse.IN_TOTO_PAYLOAD_TYPE, PAYLOAD, signer))
    with pytest.raises(dsse.EnvelopeError):
        dsse.verify(envelope, [signer.public_key])


def test_verification_fails_under_another_key(signer: EvidenceSigner) -> None:
    envelope = dsse.sign(dsse.IN_TOTO_PAYLOAD_TYPE, PAYLOAD, signer)
    with pytest.raises(dsse.EnvelopeError, match="none of the envelope's 1 signature"):
        dsse.verify(envelope, [EvidenceSigner.generate().public_key])


def test_the_keyid_is_only_a_hint(signer: EvidenceSigner) -> None:
    """DSSE does not authenticate keyid: a wrong one neither breaks a good signature nor excludes a trusted key."""
    envelope = dsse.sign(dsse.IN_TOTO_PAYLOAD_TYPE, PAYLOAD, signer)
    relabelled = dsse.Envelope(
        envelope.payload_type, envelope.payload, (dsse.Signature("other", envelope.signatures[0].sig),)
    )
    assert dsse.verify(relabelled, [EvidenceSigner.generate().public_key, signer.public_key]) == signer.public_key


def test_url_safe_base64_and_an_absent_keyid_are_accepted(signer: EvidenceSigner) -> None:
    envelope = dsse.sign(dsse.IN_TOTO_PAYLOAD_TYPE, PAYLOAD, signer)
    data = {
        "payloadType": envelope.payload_type,
        "payload": base64.urlsafe_b64encode(envelope.payload).decode(),
        "signatures": [{"sig": base64.urlsafe_b64encode(envelope.signatures[0].sig).decode()}],
    }
    assert dsse.verify(dsse.parse(json.dumps(data)), [signer.public_key]) == signer.public_key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "not a JSON object"),
        ('{"payload": "", "signatures": []}', "payloadType"),
        ('{"payloadType": "t", "payload": "not base64!", "signatures": []}', "payload is not"),
        ('{"payloadType": "t", "payload": "", "signatures": [{"sig": 1}]}', r"signatures\[0\].sig"),
        ('{"payloadType": "t", "payload": ""}', "signatures is missing"),
    ],
)
def test_a_malformed_envelope_is_refused_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(dsse.EnvelopeError, match=message):
        dsse.parse(text)
