"""The `database` blob backend: the same guarantees as the filesystem one, with bytes in the runs database."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from custody.runs.v1 import runs_pb2
from services.cli.state import StateLayout
from services.common import status
from services.common.db import create_engine
from tests.runs.conftest import RunsClient, error_of, run_input
from tests.support.harness import ServiceHarness

CHUNK = 1 << 20


@pytest.fixture
def runs(layout: StateLayout, database_url: str, tmp_path: Path) -> Iterator[RunsClient]:
    settings = {"database_url": database_url, "blob_backend": "database", "blob_dir": str(tmp_path / "staging")}
    with ServiceHarness("runs", layout, settings=settings) as harness:
        yield RunsClient(harness, layout)


def upload(runs: RunsClient, run: runs_pb2.Run, data: bytes, sha256: str = "") -> runs_pb2.Attachment:
    def messages() -> Iterator[runs_pb2.UploadAttachmentRequest]:
        header = runs_pb2.AttachmentHeader(run=run.name, kind="other", filename="data.bin", sha256=sha256)
        yield runs_pb2.UploadAttachmentRequest(header=header)
        for offset in range(0, len(data), CHUNK):
            yield runs_pb2.UploadAttachmentRequest(chunk=data[offset : offset + CHUNK])

    return runs.UploadAttachment(messages())


def chunk_rows(runs: RunsClient) -> int:
    engine = create_engine(runs.harness.settings.resolved_database_url)  # type: ignore[attr-defined]
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT count(*) FROM blob_chunks")).scalar_one())
    finally:
        engine.dispose()


def test_a_multi_chunk_blob_round_trips_through_the_database(runs: RunsClient) -> None:
    run = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    data = os.urandom(2 * CHUNK + 123)
    attachment = upload(runs, run, data, hashlib.sha256(data).hexdigest())
    body = b"".join(m.chunk for m in runs.ReadAttachment(runs_pb2.ReadAttachmentRequest(name=attachment.name)))
    assert body == data
    assert chunk_rows(runs) == 3


def test_the_same_bytes_are_stored_once(runs: RunsClient) -> None:
    run = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    upload(runs, run, b"same bytes")
    upload(runs, run, b"same bytes")
    assert chunk_rows(runs) == 1


def test_an_empty_blob_is_stored_and_read(runs: RunsClient) -> None:
    run = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    attachment = upload(runs, run, b"")
    assert attachment.digest.sha256 == hashlib.sha256(b"").hexdigest()
    answers = list(runs.ReadAttachment(runs_pb2.ReadAttachmentRequest(name=attachment.name)))
    assert b"".join(m.chunk for m in answers) == b""


def test_a_digest_mismatch_stores_no_chunk(runs: RunsClient) -> None:
    run = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    error = status.decode(error_of(lambda: upload(runs, run, b"payload", "0" * 64)))
    assert error.reason == "DIGEST_MISMATCH"
    assert chunk_rows(runs) == 0


def test_a_corrupted_chunk_is_data_loss(runs: RunsClient) -> None:
    run = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    attachment = upload(runs, run, b"precious bytes")
    engine = create_engine(runs.harness.settings.resolved_database_url)  # type: ignore[attr-defined]
    try:
        with engine.begin() as connection:  # someone with database access defeats the immutability trigger
            if connection.dialect.name == "sqlite":
                connection.execute(sa.text("DROP TRIGGER blob_chunks_no_update"))
            else:
                connection.execute(sa.text("DROP TRIGGER blob_chunks_immutable ON blob_chunks"))
            connection.execute(sa.text("UPDATE blob_chunks SET data = :data"), {"data": b"tampered bytes"})
    finally:
        engine.dispose()
    error = status.decode(
        error_of(lambda: list(runs.ReadAttachment(runs_pb2.ReadAttachmentRequest(name=attachment.name))))
    )
    assert (error.code, error.reason) == (grpc.StatusCode.DATA_LOSS, "BLOB_CORRUPTED")
    report = runs.VerifyRun(runs_pb2.VerifyRunRequest(name=run.name))
    assert [p.problem for p in report.problems] == ["BLOB_CORRUPTED"]


def test_blob_chunks_are_immutable(runs: RunsClient) -> None:
    run = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    upload(runs, run, b"keep me")
    engine = create_engine(runs.harness.settings.resolved_database_url)  # type: ignore[attr-defined]
    try:
        with pytest.raises(sa.exc.DBAPIError, match="immutable"), engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM blob_chunks"))
    finally:
        engine.dispose()
