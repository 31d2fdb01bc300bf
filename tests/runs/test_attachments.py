"""Attachments: content-addressed, hashed while streaming, verified on read, atomic in batches, findable by kind."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from custody.runs.v1 import runs_pb2
from services.common import status
from tests.runs.conftest import RunsClient, error_of, run_input

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="-50 -50 100 100"><circle r="40"/></svg>'


@pytest.fixture
def run(runs: RunsClient) -> runs_pb2.Run:
    return runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))


def upload(
    runs: RunsClient, header: runs_pb2.AttachmentHeader | None, *chunks: bytes, header_first: bool = True
) -> runs_pb2.Attachment:
    def messages() -> Iterator[runs_pb2.UploadAttachmentRequest]:
        if header is not None and header_first:
            yield runs_pb2.UploadAttachmentRequest(header=header)
        for chunk in chunks:
            yield runs_pb2.UploadAttachmentRequest(chunk=chunk)
        if header is not None and not header_first:
            yield runs_pb2.UploadAttachmentRequest(header=header)

    return runs.UploadAttachment(messages())


def header(target: runs_pb2.Run, **overrides: object) -> runs_pb2.AttachmentHeader:
    fields: dict[str, object] = {"run": target.name, "kind": "geometry_svg", "filename": "candidate-1.svg"}
    fields.update(overrides)
    return runs_pb2.AttachmentHeader(**fields)  # type: ignore[arg-type]


def blob_files(runs: RunsClient) -> list[Path]:
    root = Path(runs.harness.settings.resolved_blob_dir)  # type: ignore[attr-defined]
    return [p for p in (root / "sha256").rglob("*") if p.is_file()] if (root / "sha256").exists() else []


def attachments(runs: RunsClient, run: runs_pb2.Run, **filters: object) -> list[runs_pb2.Attachment]:
    return list(runs.ListAttachments(runs_pb2.ListAttachmentsRequest(run=run.name, **filters)).attachments)


def read(runs: RunsClient, name: str) -> tuple[runs_pb2.Attachment, bytes]:
    answers = list(runs.ReadAttachment(runs_pb2.ReadAttachmentRequest(name=name)))
    return answers[0].attachment, b"".join(a.chunk for a in answers)


def test_uploaded_bytes_are_stored_under_their_sha256(runs: RunsClient, run: runs_pb2.Run) -> None:
    attachment = upload(runs, header(run, sha256=hashlib.sha256(SVG).hexdigest()), SVG[:20], SVG[20:])
    assert attachment.digest.sha256 == hashlib.sha256(SVG).hexdigest()
    assert attachment.digest.size_bytes == len(SVG)
    assert [p.name for p in blob_files(runs)] == [attachment.digest.sha256]
    assert attachment.created_by.id == "human:operator" and attachment.request_id


def test_read_returns_the_exact_bytes(runs: RunsClient, run: runs_pb2.Run) -> None:
    data = bytes(range(256)) * 9000  # spans several 1 MiB read chunks
    chunks = [data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
    attachment = upload(runs, header(run, kind="other", filename="big.bin"), *chunks)
    record, body = read(runs, attachment.name)
    assert body == data and record.name == attachment.name


def test_declared_digest_that_does_not_match_stores_nothing(runs: RunsClient, run: runs_pb2.Run) -> None:
    error = status.decode(error_of(lambda: upload(runs, header(run, sha256="0" * 64), SVG)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "DIGEST_MISMATCH")
    assert blob_files(runs) == [] and attachments(runs, run) == []
    missing = runs.FindMissingBlobs(runs_pb2.FindMissingBlobsRequest(sha256=[hashlib.sha256(SVG).hexdigest()]))
    assert list(missing.missing_sha256) == [hashlib.sha256(SVG).hexdigest()]


def test_upload_above_the_limit_is_resource_exhausted_and_stores_nothing(runs: RunsClient, run: runs_pb2.Run) -> None:
    chunk = b"x" * (1 << 20)
    error = status.decode(error_of(lambda: upload(runs, header(run, kind="other", filename="huge.bin"), *[chunk] * 3)))
    assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "ATTACHMENT_TOO_LARGE")
    assert blob_files(runs) == [] and attachments(runs, run) == []


def test_chunk_above_1_mib_is_refused(runs: RunsClient, run: runs_pb2.Run) -> None:
    error = status.decode(
        error_of(lambda: upload(runs, header(run, kind="other", filename="x.bin"), b"x" * ((1 << 20) + 1)))
    )
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ATTACHMENT_INVALID")


def test_stream_must_start_with_the_header(runs: RunsClient, run: runs_pb2.Run) -> None:
    error = status.decode(error_of(lambda: upload(runs, header(run), SVG, header_first=False)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ATTACHMENT_INVALID")
    assert attachments(runs, run) == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"kind": "confnote"}, "header.kind"),
        ({"filename": "../../etc/passwd"}, "header.filename"),
        ({"filename": ""}, "header.filename"),
        ({"sha256": "XYZ"}, "header.sha256"),
    ],
)
def test_bad_header_is_refused_naming_the_field(
    runs: RunsClient, run: runs_pb2.Run, overrides: dict[str, object], field: str
) -> None:
    error = status.decode(error_of(lambda: upload(runs, header(run, **overrides), SVG)))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ATTACHMENT_INVALID")
    assert field in {v.field for v in error.violations}
    assert blob_files(runs) == []


def test_upload_to_an_unknown_run_is_not_found(runs: RunsClient, run: runs_pb2.Run) -> None:
    error = status.decode(error_of(lambda: upload(runs, header(run, run="runs/run_" + "f" * 32), SVG)))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "RUN_NOT_FOUND")


def test_a_bad_header_is_the_answer_even_when_a_chunk_is_bad_too(runs: RunsClient, run: runs_pb2.Run) -> None:
    # The header is checked while chunks arrive; its verdict wins whatever the chunks did, so the answer does not
    # depend on which check finished first.
    unknown = header(run, run="runs/run_" + "f" * 32, kind="other", filename="x.bin")
    error = status.decode(error_of(lambda: upload(runs, unknown, b"x" * ((1 << 20) + 1))))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "RUN_NOT_FOUND")


def test_repeated_upload_with_the_same_key_returns_the_original(runs: RunsClient, run: runs_pb2.Run) -> None:
    first = upload(runs, header(run, request_id="up-1"), SVG)
    assert upload(runs, header(run, request_id="up-1"), SVG) == first
    error = status.decode(error_of(lambda: upload(runs, header(run, request_id="up-1"), SVG + b" ")))
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    assert len(attachments(runs, run)) == 1


def test_batch_stores_every_item(runs: RunsClient, run: runs_pb2.Run) -> None:
    items = [
        runs_pb2.NewAttachment(kind="geometry_svg", filename="c.svg", data=SVG),
        runs_pb2.NewAttachment(kind="geometry_spec_json", filename="c.json", data=b"{}"),
        runs_pb2.NewAttachment(kind="ai_provenance_json", filename="e.json", data=b'{"a":1}'),
    ]
    created = runs.BatchCreateAttachments(runs_pb2.BatchCreateAttachmentsRequest(run=run.name, attachments=items))
    assert [a.kind for a in created.attachments] == ["geometry_svg", "geometry_spec_json", "ai_provenance_json"]
    assert {read(runs, a.name)[1] for a in created.attachments} == {SVG, b"{}", b'{"a":1}'}


def test_batch_with_one_bad_digest_stores_none(runs: RunsClient, run: runs_pb2.Run) -> None:
    items = [
        runs_pb2.NewAttachment(kind="geometry_svg", filename="c.svg", data=SVG),
        runs_pb2.NewAttachment(kind="geometry_spec_json", filename="c.json", data=b"{}", sha256="1" * 64),
    ]
    error = status.decode(
        error_of(
            lambda: runs.BatchCreateAttachments(runs_pb2.BatchCreateAttachmentsRequest(run=run.name, attachments=items))
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "DIGEST_MISMATCH")
    assert {v.field for v in error.violations} == {"attachments[1].sha256"}
    assert attachments(runs, run) == [] and blob_files(runs) == []


def test_batch_with_one_bad_kind_stores_none(runs: RunsClient, run: runs_pb2.Run) -> None:
    items = [
        runs_pb2.NewAttachment(kind="geometry_svg", filename="c.svg", data=SVG),
        runs_pb2.NewAttachment(kind="unknown-kind", filename="c.json", data=b"{}"),
    ]
    error = status.decode(
        error_of(
            lambda: runs.BatchCreateAttachments(runs_pb2.BatchCreateAttachmentsRequest(run=run.name, attachments=items))
        )
    )
    assert {v.field for v in error.violations} == {"attachments[1].kind"}
    assert attachments(runs, run) == []


def test_batch_retry_with_the_same_key_is_idempotent(runs: RunsClient, run: runs_pb2.Run) -> None:
    request = runs_pb2.BatchCreateAttachmentsRequest(
        run=run.name,
        attachments=[runs_pb2.NewAttachment(kind="geometry_svg", filename="c.svg", data=SVG)],
        request_id="b-1",
    )
    assert runs.BatchCreateAttachments(request) == runs.BatchCreateAttachments(request)
    assert len(attachments(runs, run)) == 1


def test_find_missing_blobs_lists_only_unknown_digests(runs: RunsClient, run: runs_pb2.Run) -> None:
    stored = upload(runs, header(run), SVG).digest.sha256
    unknown = hashlib.sha256(b"never uploaded").hexdigest()
    answer = runs.FindMissingBlobs(runs_pb2.FindMissingBlobsRequest(sha256=[stored, unknown]))
    assert list(answer.missing_sha256) == [unknown]
    error = status.decode(error_of(lambda: runs.FindMissingBlobs(runs_pb2.FindMissingBlobsRequest(sha256=["../x"]))))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "DIGEST_INVALID")


def test_corrupted_blob_is_data_loss_and_never_served(runs: RunsClient, run: runs_pb2.Run) -> None:
    attachment = upload(runs, header(run), SVG)
    (path,) = blob_files(runs)
    path.write_bytes(SVG.replace(b"40", b"41"))
    stream = runs.ReadAttachment(runs_pb2.ReadAttachmentRequest(name=attachment.name))
    with pytest.raises(grpc.RpcError) as raised:
        received = list(stream)
        assert received == []  # pragma: no cover - reaching here means bytes were served
    error = status.decode(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.DATA_LOSS, "BLOB_CORRUPTED")


def test_latest_attachment_of_a_kind_is_a_query(runs: RunsClient, run: runs_pb2.Run) -> None:
    upload(runs, header(run, filename="one.svg"), SVG)
    upload(runs, header(run, kind="geometry_spec_json", filename="spec.json"), b"{}")
    newest = upload(runs, header(run, filename="two.svg"), SVG + b"\n")
    latest = attachments(runs, run, kind="geometry_svg", latest_only=True)
    assert [a.name for a in latest] == [newest.name]
    assert [a.filename for a in attachments(runs, run, kind="geometry_svg")] == ["two.svg", "one.svg"]


def test_listing_an_unknown_kind_is_refused(runs: RunsClient, run: runs_pb2.Run) -> None:
    error = status.decode(error_of(lambda: attachments(runs, run, kind="confnote")))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "KIND_INVALID")


def test_attachment_names_are_validated(runs: RunsClient, run: runs_pb2.Run) -> None:
    error = status.decode(error_of(lambda: read(runs, f"{run.name}/attachments/../../x")))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "NAME_INVALID")
    error = status.decode(error_of(lambda: read(runs, f"{run.name}/attachments/att_{'0' * 32}")))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "ATTACHMENT_NOT_FOUND")


def test_a_stream_announces_its_request_id_before_the_first_message(runs: RunsClient, run: runs_pb2.Run) -> None:
    attachment = upload(runs, header(run), SVG)
    stream = runs.ReadAttachment(
        runs_pb2.ReadAttachmentRequest(name=attachment.name),
        metadata=(*runs.operator, ("x-request-id", "req-stream-1")),
    )
    assert dict(stream.initial_metadata())["x-request-id"] == "req-stream-1"
    assert b"".join(m.chunk for m in stream) == SVG


def test_concurrent_uploads_of_the_same_bytes_all_succeed(runs: RunsClient, run: runs_pb2.Run) -> None:
    from concurrent.futures import ThreadPoolExecutor

    request = runs_pb2.BatchCreateAttachmentsRequest(
        run=run.name, attachments=[runs_pb2.NewAttachment(kind="other", filename="same.bin", data=b"identical bytes")]
    )
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda _: runs.BatchCreateAttachments(request), range(32)))
    assert len({a.attachments[0].name for a in answers}) == 32
    assert len({a.attachments[0].digest.sha256 for a in answers}) == 1
    assert len(blob_files(runs)) == 1
