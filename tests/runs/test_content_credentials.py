"""Content credentials on attachments: runs signs a C2PA manifest into a generated PNG or SVG as it is attached,
keeps both digests (the unsigned bytes binding checks, the signed asset that leaves the system), and refuses,
storing nothing, a request for credentials it cannot honour."""

from __future__ import annotations

import hashlib
import io
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import c2pa
import grpc
import pytest

from custody.runs.v1 import runs_pb2
from services.cli.state import StateLayout
from services.common import status
from services.common.content_credentials import SourceType, read_credentials
from services.common.content_credentials.layout import anchors_file
from services.common.db import create_engine
from services.runs import tables
from services.runs.ledger_records import ATTACHMENTS
from tests.runs.conftest import RunsClient, error_of, run_input
from tests.runs.test_attachments import SVG, attachments, blob_files, header, read, upload
from tests.support import tamper
from tests.support.harness import ServiceHarness

CALL = "calls/call_" + "a" * 32


def png(width: int = 8, height: int = 8) -> bytes:
    """A small valid RGB PNG."""
    rows = b"".join(
        b"\x00" + b"".join(bytes([x * 30 % 256, y * 30 % 256, 90]) for x in range(width)) for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def credentials(**overrides: object) -> runs_pb2.ContentCredentialsRequest:
    fields: dict[str, object] = {
        "source": runs_pb2.ASSET_SOURCE_COMPILED_FROM_MODEL_OUTPUT,
        "provider": "local",
        "model": "local-rosette-1",
        "ai_call": CALL,
        "ai_request_id": "req-1",
        "ai_ledger_leaf_index": 7,
    }
    fields.update(overrides)
    return runs_pb2.ContentCredentialsRequest(**fields)  # type: ignore[arg-type]


def signed_header(run: runs_pb2.Run, **overrides: object) -> runs_pb2.AttachmentHeader:
    fields: dict[str, object] = {"content_type": "image/svg+xml", "content_credentials": credentials()}
    fields.update(overrides)
    return header(run, **fields)


def read_signed(runs: RunsClient, name: str) -> bytes:
    answers = list(runs.ReadAttachment(runs_pb2.ReadAttachmentRequest(name=name, signed=True)))
    return b"".join(a.chunk for a in answers)


@pytest.fixture
def run(runs: RunsClient) -> runs_pb2.Run:
    return runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))


@pytest.fixture
def anchors(layout: StateLayout) -> bytes:
    return anchors_file(layout.root).read_bytes()


def test_a_signed_svg_keeps_the_unsigned_digest_and_names_the_signed_asset(runs: RunsClient, run: runs_pb2.Run) -> None:
    attachment = upload(runs, signed_header(run), SVG)
    assert attachment.digest.sha256 == hashlib.sha256(SVG).hexdigest()
    signed = read_signed(runs, attachment.name)
    assert attachment.signed_digest.sha256 == hashlib.sha256(signed).hexdigest() != attachment.digest.sha256
    assert attachment.signed_digest.size_bytes == len(signed) > len(SVG)
    assert read(runs, attachment.name)[1] == SVG  # the unsigned bytes are still what a plain read serves


def test_the_manifest_names_the_run_the_attachment_the_unsigned_bytes_and_the_call(
    runs: RunsClient, run: runs_pb2.Run, anchors: bytes
) -> None:
    attachment = upload(runs, signed_header(run), SVG)
    report = read_credentials(read_signed(runs, attachment.name), "image/svg+xml", anchors)
    assert report.trusted, report.problems
    assert report.assertion is not None
    assert (report.assertion.run, report.assertion.attachment, report.assertion.kind) == (
        run.name,
        attachment.name,
        "geometry_svg",
    )
    assert report.assertion.unsigned_sha256 == attachment.digest.sha256
    assert report.assertion.unsigned_size_bytes == len(SVG)
    assert (report.assertion.ai_call, report.assertion.ai_request_id, report.assertion.ai_ledger_leaf_index) == (
        CALL,
        "req-1",
        7,
    )
    assert report.assertion.signed_by == "service:runs"
    assert report.source_type == SourceType.ALGORITHMIC_MEDIA.value
    assert report.generator is not None and (report.generator.provider, report.generator.model) == (
        "local",
        "local-rosette-1",
    )


def test_a_model_generated_png_is_declared_trained_algorithmic_media_and_c2pa_itself_trusts_it(
    runs: RunsClient, run: runs_pb2.Run, anchors: bytes
) -> None:
    image = png()
    batch = runs.BatchCreateAttachments(
        runs_pb2.BatchCreateAttachmentsRequest(
            run=run.name,
            attachments=[
                runs_pb2.NewAttachment(
                    kind="concept_image",
                    filename="concept-0.png",
                    content_type="image/png",
                    data=image,
                    content_credentials=credentials(source=runs_pb2.ASSET_SOURCE_MODEL_OUTPUT),
                )
            ],
        )
    )
    (attachment,) = batch.attachments
    signed = read_signed(runs, attachment.name)
    report = read_credentials(signed, "image/png", anchors)
    assert report.trusted and report.source_type == SourceType.TRAINED_ALGORITHMIC_MEDIA.value
    context = c2pa.Context.from_dict({"verify": {"verify_trust": True}, "trust": {"trust_anchors": anchors.decode()}})
    independent = c2pa.Reader("image/png", io.BytesIO(signed), context=context)
    assert independent.get_validation_state() == "Trusted"


def test_a_modified_signed_asset_is_not_trusted(runs: RunsClient, run: runs_pb2.Run, anchors: bytes) -> None:
    attachment = upload(runs, signed_header(run), SVG)
    signed = bytearray(read_signed(runs, attachment.name))
    at = signed.index(b"circle")
    signed[at : at + 6] = b"CIRCLE"
    assert not read_credentials(bytes(signed), "image/svg+xml", anchors).trusted


def test_an_unsigned_attachment_has_no_signed_asset_to_read(runs: RunsClient, run: runs_pb2.Run) -> None:
    attachment = upload(runs, header(run), SVG)
    assert not attachment.HasField("signed_digest")
    error = status.decode(error_of(lambda: read_signed(runs, attachment.name)))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ATTACHMENT_NOT_SIGNED")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"content_credentials": credentials(source=runs_pb2.ASSET_SOURCE_UNSPECIFIED)}, "source"),
        ({"content_credentials": credentials(source=99)}, "source"),
        ({"content_type": "text/plain"}, "header.content_type"),
        ({"content_type": ""}, "header.content_type"),
        ({"content_credentials": credentials(provider="")}, "provider"),
        ({"content_credentials": credentials(model="m" * 129)}, "provider"),
        ({"content_credentials": credentials(ai_call="calls/../x")}, "ai_call"),
        ({"content_credentials": credentials(ai_request_id="r" * 129)}, "ai_request_id"),
        ({"content_credentials": credentials(ai_ledger_leaf_index=-1)}, "ai_ledger_leaf_index"),
    ],
)
def test_bad_credentials_fields_are_named_and_store_nothing(
    runs: RunsClient, run: runs_pb2.Run, overrides: dict[str, object], field: str
) -> None:
    error = status.decode(error_of(lambda: upload(runs, signed_header(run, **overrides), SVG)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CONTENT_CREDENTIALS_INVALID")
    assert any(v.field.endswith(field) for v in error.violations), error.violations
    assert blob_files(runs) == [] and attachments(runs, run) == []


def test_bytes_that_are_not_the_declared_image_type_are_refused_and_store_nothing(
    runs: RunsClient, run: runs_pb2.Run
) -> None:
    error = status.decode(error_of(lambda: upload(runs, signed_header(run, content_type="image/png"), SVG)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CONTENT_CREDENTIALS_INVALID")
    assert blob_files(runs) == [] and attachments(runs, run) == []


def test_a_batch_with_one_bad_credentials_item_stores_none(runs: RunsClient, run: runs_pb2.Run) -> None:
    good = runs_pb2.NewAttachment(
        kind="geometry_svg", filename="a.svg", content_type="image/svg+xml", data=SVG, content_credentials=credentials()
    )
    bad = runs_pb2.NewAttachment(
        kind="concept_image", filename="b.png", content_type="image/png", data=SVG, content_credentials=credentials()
    )
    request = runs_pb2.BatchCreateAttachmentsRequest(run=run.name, attachments=[good, bad])
    error = status.decode(error_of(lambda: runs.BatchCreateAttachments(request)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CONTENT_CREDENTIALS_INVALID")
    assert any(v.field.startswith("attachments[1]") for v in error.violations), error.violations
    assert blob_files(runs) == [] and attachments(runs, run) == []


def test_a_repeated_signed_upload_returns_the_original_signed_asset(runs: RunsClient, run: runs_pb2.Run) -> None:
    first = upload(runs, signed_header(run, request_id="sign-once"), SVG)
    again = upload(runs, signed_header(run, request_id="sign-once"), SVG)
    assert again.name == first.name and again.signed_digest == first.signed_digest
    assert len(blob_files(runs)) == 2  # the unsigned bytes and one signed asset


def test_the_same_key_with_other_credentials_is_another_request(runs: RunsClient, run: runs_pb2.Run) -> None:
    upload(runs, signed_header(run, request_id="k"), SVG)
    other = signed_header(run, request_id="k", content_credentials=credentials(model="another-model"))
    error = status.decode(error_of(lambda: upload(runs, other, SVG)))
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")


def test_verify_run_checks_the_signed_asset(runs: RunsClient, run: runs_pb2.Run) -> None:
    upload(runs, signed_header(run), SVG)
    verified = runs.VerifyRun(runs_pb2.VerifyRunRequest(name=run.name))
    assert verified.ok and verified.attachments_checked == 1


def test_a_corrupted_signed_asset_fails_verification(runs: RunsClient, run: runs_pb2.Run) -> None:
    attachment = upload(runs, signed_header(run), SVG)
    (path,) = [p for p in blob_files(runs) if p.name == attachment.signed_digest.sha256]
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b"circle", b"CIRCLE"))
    verified = runs.VerifyRun(runs_pb2.VerifyRunRequest(name=run.name))
    assert not verified.ok
    assert [(p.subject, p.problem) for p in verified.problems] == [(f"{attachment.name}#signed", "BLOB_CORRUPTED")]


def test_a_signed_asset_swapped_in_the_database_for_another_attachments_is_named(
    runs: RunsClient, run: runs_pb2.Run, database_url: str
) -> None:
    """Someone with write access points one attachment at another's (valid, trusted) signed asset."""
    first = upload(runs, signed_header(run, filename="a.svg"), SVG)
    second = upload(runs, signed_header(run, filename="b.svg"), SVG.replace(b"40", b"30"))
    engine = create_engine(database_url)
    try:
        with tamper.triggers_dropped(engine, "attachments") as connection:
            connection.execute(
                tables.attachments.update()
                .where(tables.attachments.c.id == first.name.rsplit("/", 1)[1])
                .values(signed_sha256=second.signed_digest.sha256, signed_size_bytes=second.signed_digest.size_bytes)
            )
    finally:
        engine.dispose()
    verified = runs.VerifyRun(runs_pb2.VerifyRunRequest(name=run.name))
    assert [(p.subject, p.problem) for p in verified.problems] == [(f"{first.name}#signed", "CREDENTIALS_INVALID")]


@pytest.fixture
def unsigned_runs(layout: StateLayout, database_url: str, tmp_path: Path) -> Iterator[RunsClient]:
    settings = {
        "database_url": database_url,
        "blob_dir": str(tmp_path / "blobs"),
        "content_credentials_dir": str(tmp_path / "no-signer"),
    }
    with ServiceHarness("runs", layout, settings=settings) as harness:
        yield RunsClient(harness, layout)


def test_without_a_signer_credentials_are_refused_and_nothing_is_stored(unsigned_runs: RunsClient) -> None:
    run = unsigned_runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    error = status.decode(error_of(lambda: upload(unsigned_runs, signed_header(run), SVG)))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CONTENT_CREDENTIALS_UNAVAILABLE")
    assert "custody init" in error.message
    assert blob_files(unsigned_runs) == [] and attachments(unsigned_runs, run) == []
    assert upload(unsigned_runs, header(run), SVG).name  # attachments without credentials still work


def test_attachments_recorded_before_credentials_existed_keep_their_leaves() -> None:
    """The two new columns are left out of an attachment's leaf while NULL (services/runs/ledger_records.py), and
    covered like any other column once set."""
    old_row = {
        "id": "att_" + "1" * 32,
        "run_id": "run_" + "2" * 32,
        "sha256": "3" * 64,
        "created_at_us": 1,
        "created_by": "service:art_studio",
        "request_id": "r",
    }
    recorded_before = ATTACHMENTS.leaf(old_row)
    assert ATTACHMENTS.leaf({**old_row, "signed_sha256": None, "signed_size_bytes": None}) == recorded_before
    signed = ATTACHMENTS.leaf({**old_row, "signed_sha256": "4" * 64, "signed_size_bytes": 10})
    assert signed != recorded_before and signed.digests["signed_sha256"] == "4" * 64


def staged_files(runs: RunsClient) -> list[Path]:
    """Files left in the blob store's staging area, once its background removals have run (a refused upload's
    files are removed off the request path)."""
    root = Path(runs.harness.settings.resolved_blob_dir)  # type: ignore[attr-defined]
    for _ in range(100):
        left = [p for p in root.rglob("upload-*") if p.is_file()]
        if not left:
            return []
        time.sleep(0.05)
    return left


def test_a_batch_refused_at_its_second_item_leaves_no_signed_asset_of_its_first_staged(
    runs: RunsClient, run: runs_pb2.Run
) -> None:
    good = runs_pb2.NewAttachment(
        kind="geometry_svg", filename="a.svg", content_type="image/svg+xml", data=SVG, content_credentials=credentials()
    )
    planted = runs_pb2.NewAttachment(
        kind="concept_image",
        filename="b.png",
        content_type="image/png",
        data=png() + b"hidden after IEND",
        content_credentials=credentials(),
    )
    request = runs_pb2.BatchCreateAttachmentsRequest(run=run.name, attachments=[good, planted])
    error = status.decode(error_of(lambda: runs.BatchCreateAttachments(request)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CONTENT_CREDENTIALS_INVALID")
    assert blob_files(runs) == [] and attachments(runs, run) == [] and staged_files(runs) == []


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (
            SVG.replace(
                b"<circle",
                b'<metadata><c2pa:manifest xmlns:c2pa="http://c2pa.org/manifest">AAAA'
                b"</c2pa:manifest></metadata><circle",
            ),
            "image/svg+xml",
        ),
        (png() + b"\x00trailing", "image/png"),
    ],
)
def test_an_asset_already_carrying_manifest_material_or_hidden_bytes_is_not_signed(
    runs: RunsClient, run: runs_pb2.Run, data: bytes, content_type: str
) -> None:
    kind = "geometry_svg" if content_type == "image/svg+xml" else "concept_image"
    error = status.decode(
        error_of(lambda: upload(runs, signed_header(run, kind=kind, content_type=content_type), data))
    )
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CONTENT_CREDENTIALS_INVALID")
    assert blob_files(runs) == [] and attachments(runs, run) == []
