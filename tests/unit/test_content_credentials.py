"""Content credentials, the library: what runs signs into a PNG or SVG is trusted under the deployment's anchors
(by Custody's reader and by c2pa-python's own), and every way to break it is not: a changed pixel, a changed
assertion, another deployment's chain, no manifest, a manifest without the Custody assertion."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from dataclasses import replace
from pathlib import Path

import c2pa
import pytest

from services.cli.content_ca import ensure_content_credentials
from services.common.content_credentials import (
    Credentials,
    CredentialsError,
    CredentialSigner,
    CredentialsUnavailable,
    CustodyAssertion,
    Generator,
    SourceType,
    media_type_of,
    read_credentials,
)
from services.common.content_credentials.layout import SIGNER_KEY, anchors_file, signer_directory
from services.common.content_credentials.manifest import ACTIONS_LABEL, CREATED
from tests.runs.test_content_credentials import png

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="-50 -50 100 100"><circle r="40"/></svg>'
ASSERTION = CustodyAssertion(
    run="runs/run_" + "1" * 32,
    attachment="runs/run_" + "1" * 32 + "/attachments/att_" + "2" * 32,
    kind="concept_image",
    unsigned_sha256="3" * 64,
    unsigned_size_bytes=1234,
    ai_call="calls/call_" + "4" * 32,
    ai_request_id="req-9",
    ai_ledger_leaf_index=42,
    signed_by="service:runs",
)
CREDENTIALS = Credentials(
    source_type=SourceType.TRAINED_ALGORITHMIC_MEDIA,
    generator=Generator(provider="local", model="local-image-1", custody_version="1.2.3"),
    assertion=ASSERTION,
    title="concept-0.png",
)


PNG = png()


def credentials_for(data: bytes) -> Credentials:
    """CREDENTIALS naming `data` as the unsigned bytes (signing refuses an assertion about other bytes)."""
    assertion = replace(ASSERTION, unsigned_sha256=hashlib.sha256(data).hexdigest(), unsigned_size_bytes=len(data))
    return replace(CREDENTIALS, assertion=assertion)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("state")
    ensure_content_credentials(root)
    return root


@pytest.fixture(scope="module")
def signer(state: Path) -> CredentialSigner:
    return CredentialSigner.from_directory(signer_directory(state, "runs"))


@pytest.fixture(scope="module")
def anchors(state: Path) -> bytes:
    return anchors_file(state).read_bytes()


@pytest.mark.parametrize(("data", "media_type"), [(png(), "image/png"), (SVG, "image/svg+xml")])
def test_a_signed_asset_is_trusted_and_names_what_was_signed_into_it(
    signer: CredentialSigner, anchors: bytes, data: bytes, media_type: str
) -> None:
    report = read_credentials(signer.sign(data, media_type, credentials_for(data)), media_type, anchors)
    assert report.trusted and report.state == "Trusted" and report.problems == ()
    assert report.assertion == credentials_for(data).assertion
    assert report.generator == CREDENTIALS.generator
    assert report.source_type == SourceType.TRAINED_ALGORITHMIC_MEDIA.value
    assert report.actions == (CREATED,)
    assert report.signer == "Custody runs content credentials"


def test_c2pa_python_itself_trusts_the_signed_asset_under_the_anchors(signer: CredentialSigner, anchors: bytes) -> None:
    signed = signer.sign(PNG, "image/png", credentials_for(PNG))
    settings = {"verify": {"verify_trust": True}, "trust": {"trust_anchors": anchors.decode()}}
    reader = c2pa.Reader("image/png", io.BytesIO(signed), context=c2pa.Context.from_dict(settings))
    assert reader.get_validation_state() == "Trusted"


def test_a_changed_pixel_is_not_trusted(signer: CredentialSigner, anchors: bytes) -> None:
    signed = bytearray(signer.sign(PNG, "image/png", credentials_for(PNG)))
    idat = signed.index(b"IDAT")
    signed[idat + 8] ^= 0x01
    report = read_credentials(bytes(signed), "image/png", anchors)
    assert not report.trusted and report.state == "Invalid"


def test_a_changed_custody_assertion_is_not_trusted(signer: CredentialSigner, anchors: bytes) -> None:
    """The manifest rides in the SVG as base64: decoded, one claim changed, encoded back."""
    signed = signer.sign(SVG, "image/svg+xml", credentials_for(SVG))
    start = signed.index(b"<c2pa:manifest>") + len(b"<c2pa:manifest>")
    end = signed.index(b"</c2pa:manifest>")
    manifest = base64.b64decode(signed[start:end])
    assert b"req-9" in manifest
    edited = signed[:start] + base64.b64encode(manifest.replace(b"req-9", b"req-8")) + signed[end:]
    report = read_credentials(edited, "image/svg+xml", anchors)
    assert not report.trusted


def test_another_deployments_chain_is_not_trusted_under_these_anchors(
    tmp_path: Path, anchors: bytes, signer: CredentialSigner
) -> None:
    ensure_content_credentials(tmp_path)
    stranger = CredentialSigner.from_directory(signer_directory(tmp_path, "runs"))
    report = read_credentials(stranger.sign(SVG, "image/svg+xml", credentials_for(SVG)), "image/svg+xml", anchors)
    assert not report.trusted and report.state == "Valid"
    assert any("not Trusted" in problem for problem in report.problems)


def test_an_asset_without_a_manifest_is_missing(anchors: bytes) -> None:
    report = read_credentials(png(), "image/png", anchors)
    assert (report.state, report.trusted, report.assertion) == ("Missing", False, None)


def test_a_manifest_without_the_custody_assertion_is_not_a_custody_credential(state: Path, anchors: bytes) -> None:
    directory = signer_directory(state, "runs")
    info = c2pa.C2paSignerInfo(
        alg=c2pa.C2paSigningAlg.ES256,
        sign_cert=(directory / "chain.pem").read_bytes(),
        private_key=(directory / SIGNER_KEY).read_bytes(),
        ta_url=None,
    )
    manifest = {
        "claim_generator_info": [{"name": "someone else"}],
        "title": "x.svg",
        "assertions": [
            {
                "label": ACTIONS_LABEL,
                "data": {"actions": [{"action": CREATED, "digitalSourceType": SourceType.ALGORITHMIC_MEDIA.value}]},
            }
        ],
    }
    output = io.BytesIO()
    c2pa.Builder(manifest).sign(c2pa.Signer.from_info(info), "image/svg+xml", io.BytesIO(SVG), output)
    report = read_credentials(output.getvalue(), "image/svg+xml", anchors)
    assert report.state == "Trusted" and not report.trusted
    assert any("dev.custody.provenance" in problem for problem in report.problems)


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    ensure_content_credentials(tmp_path)
    directory = signer_directory(tmp_path, "runs")
    (directory / SIGNER_KEY).chmod(0o644)
    with pytest.raises(CredentialsUnavailable, match="chmod 600"):
        CredentialSigner.from_directory(directory)


def test_a_missing_signer_names_the_file_and_custody_init(tmp_path: Path) -> None:
    with pytest.raises(CredentialsUnavailable, match="custody init"):
        CredentialSigner.from_directory(tmp_path / "nothing")


def test_a_key_that_is_not_the_certificates_is_refused_at_load(tmp_path: Path, state: Path) -> None:
    ensure_content_credentials(tmp_path)
    directory = signer_directory(tmp_path, "runs")
    (directory / SIGNER_KEY).write_bytes((signer_directory(state, "runs") / SIGNER_KEY).read_bytes())
    with pytest.raises(CredentialsUnavailable, match="unusable"):
        CredentialSigner.from_directory(directory)


def test_only_png_and_svg_are_signed_or_read(signer: CredentialSigner, anchors: bytes) -> None:
    with pytest.raises(CredentialsError):
        signer.sign(b"%PDF-1.7", "application/pdf", CREDENTIALS)
    with pytest.raises(CredentialsError):
        read_credentials(b"GIF89a", "image/gif", anchors)


def test_malformed_image_bytes_are_a_credentials_error(signer: CredentialSigner) -> None:
    with pytest.raises(CredentialsError):
        broken = b"\x89PNG\r\n\x1a\n" + b"\x00" * 10
        signer.sign(broken, "image/png", credentials_for(broken))


def test_the_custody_assertion_round_trips_and_is_read_strictly() -> None:
    assert CustodyAssertion.from_dict(ASSERTION.to_dict()) == ASSERTION
    assert (
        CustodyAssertion.from_dict(replace(ASSERTION, ai_ledger_leaf_index=None).to_dict()).ai_ledger_leaf_index is None
    )
    for broken in (
        {**ASSERTION.to_dict(), "extra": 1},
        {k: v for k, v in ASSERTION.to_dict().items() if k != "run"},
        {**ASSERTION.to_dict(), "unsigned_size_bytes": True},
        {**ASSERTION.to_dict(), "ai_ledger_leaf_index": -1},
        {**ASSERTION.to_dict(), "schema": "custody.provenance/0"},
        {**ASSERTION.to_dict(), "run": 7},
    ):
        with pytest.raises(CredentialsError):
            CustodyAssertion.from_dict(broken)


def test_signing_from_two_threads_at_once_gives_two_trusted_assets(signer: CredentialSigner, anchors: bytes) -> None:
    results: list[bytes] = []
    barrier = threading.Barrier(2)

    def sign() -> None:
        barrier.wait()
        results.append(signer.sign(PNG, "image/png", credentials_for(PNG)))

    threads = [threading.Thread(target=sign) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2
    assert all(read_credentials(r, "image/png", anchors).trusted for r in results)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (png(), "image/png"),
        (SVG, "image/svg+xml"),
        (b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- made by Custody -->\n<svg\nxmlns="x"></svg>', "image/svg+xml"),
    ],
)
def test_media_types_are_recognised_by_their_bytes(data: bytes, expected: str) -> None:
    assert media_type_of(data) == expected


@pytest.mark.parametrize(
    "data", [b"", b"GIF89a", b"<svgx/>", b"<?xml version='1.0'", b"<!-- never closed <svg>", b"<!--" * 5000]
)
def test_other_bytes_are_not_an_image_custody_signs(data: bytes) -> None:
    with pytest.raises(CredentialsError):
        media_type_of(data)


def test_an_assertion_about_other_bytes_is_not_signed(signer: CredentialSigner) -> None:
    with pytest.raises(CredentialsError, match="other bytes"):
        signer.sign(SVG, "image/svg+xml", credentials_for(PNG))


def test_a_signer_directly_under_the_root_is_refused(tmp_path: Path) -> None:
    """c2pa would trust it; Custody's signers are always under an intermediate."""
    ensure_content_credentials(tmp_path)
    directory = signer_directory(tmp_path, "runs")
    chain = directory / "chain.pem"
    chain.write_bytes(chain.read_bytes().split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n")
    with pytest.raises(CredentialsUnavailable, match="intermediate"):
        CredentialSigner.from_directory(directory)
