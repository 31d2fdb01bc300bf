"""The `s3` blob backend against a real S3-compatible server (SeaweedFS, started by the test): the guarantees of the
other backends (content-addressed, verified on write and on every read, complete or absent), with S3's multipart
upload for large blobs, and the runs service serving attachments from it."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from types_boto3_s3 import S3Client

from custody.runs.v1 import runs_pb2
from services.cli.state import StateLayout
from services.common import status
from services.common.errors import DataLoss
from services.runs.blobs import S3BlobStore
from tests.runs.conftest import RunsClient, error_of, run_input
from tests.support.harness import ServiceHarness
from tests.support.processes import free_port
from tests.support.seaweedfs import SeaweedFS, seaweedfs

MIB = 1024 * 1024
PART = 5 * MIB  # S3's smallest part: large blobs in these tests take several


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as running:
        yield running


@pytest.fixture
def s3(server: SeaweedFS) -> S3Client:
    return server.client()


@pytest.fixture
def store(server: SeaweedFS, s3: S3Client, tmp_path: Path) -> S3BlobStore:
    """A store under a prefix of its own: each test sees only its own objects in the shared bucket."""
    return S3BlobStore(s3, server.bucket, f"test-{secrets.token_hex(4)}", tmp_path / "staging", 64 * MIB, PART)


def keys(s3: S3Client, store: S3BlobStore) -> list[str]:
    listed = s3.list_objects_v2(Bucket=store.bucket, Prefix=store.key_for("0" * 64).split("/sha256/")[0] + "/")
    return [item["Key"] for item in listed.get("Contents", [])]


def open_uploads(s3: S3Client, store: S3BlobStore, sha256: str) -> list[str]:
    listed = s3.list_multipart_uploads(Bucket=store.bucket, Prefix=store.key_for(sha256))
    return [upload["UploadId"] for upload in listed.get("Uploads", [])]


def stored(store: S3BlobStore, data: bytes) -> str:
    return store.publish(store.write([data])).sha256


def test_a_blob_is_stored_under_its_digest_and_read_back_verified(store: S3BlobStore, s3: S3Client) -> None:
    data = os.urandom(100_000)
    sha256 = stored(store, data)
    assert sha256 == hashlib.sha256(data).hexdigest()
    assert keys(s3, store) == [store.key_for(sha256)]
    assert store.key_for(sha256).endswith(f"/sha256/{sha256}")
    assert store.read_all_verified(sha256, len(data)) == data
    assert store.verify(sha256, len(data)) is None


def test_the_same_bytes_are_uploaded_once(store: S3BlobStore, s3: S3Client) -> None:
    stored(store, b"same bytes")
    again = store.write([b"same bytes"])
    assert store._publish(again) is False  # HEAD found the object: nothing was sent
    assert len(keys(s3, store)) == 1


def test_an_empty_blob_is_stored_and_read(store: S3BlobStore) -> None:
    sha256 = stored(store, b"")
    assert store.read_all_verified(sha256, 0) == b""


def test_a_large_blob_is_uploaded_in_parts_and_reads_back_whole(store: S3BlobStore, s3: S3Client) -> None:
    data = os.urandom(20 * MIB + 123)
    sha256 = stored(store, data)
    head = s3.head_object(Bucket=store.bucket, Key=store.key_for(sha256), PartNumber=1)
    assert head["PartsCount"] == 5
    assert store.read_all_verified(sha256, len(data)) == data
    assert open_uploads(s3, store, sha256) == []


def test_parts_sent_one_at_a_time_give_the_same_object(server: SeaweedFS, s3: S3Client, tmp_path: Path) -> None:
    serial = S3BlobStore(s3, server.bucket, f"test-{secrets.token_hex(4)}", tmp_path / "staging", 64 * MIB, PART, 1)
    data = os.urandom(3 * PART + 7)
    sha256 = stored(serial, data)
    assert s3.head_object(Bucket=serial.bucket, Key=serial.key_for(sha256), PartNumber=1)["PartsCount"] == 4
    assert serial.read_all_verified(sha256, len(data)) == data


class _PartRecorder:
    """The real client, watched: how many upload_part calls overlap, and optionally one part refused."""

    def __init__(self, client: S3Client, refuse_part: int | None = None) -> None:
        self._client = client
        self._refuse_part = refuse_part
        self._lock = threading.Lock()
        self._now = 0
        self.most_at_once = 0
        self.sent: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)

    def upload_part(self, **request: Any) -> Any:
        with self._lock:
            self._now += 1
            self.most_at_once = max(self.most_at_once, self._now)
        try:
            time.sleep(0.05)  # long enough for the next parts to be submitted meanwhile
            if request["PartNumber"] == self._refuse_part:
                raise ConnectionError("the link dropped during this part")
            answer = self._client.upload_part(**request)
            with self._lock:
                self.sent.append(request["PartNumber"])
            return answer
        finally:
            with self._lock:
                self._now -= 1


def test_at_most_part_uploads_parts_are_in_flight_at_once(server: SeaweedFS, s3: S3Client, tmp_path: Path) -> None:
    watched = _PartRecorder(s3)
    store = S3BlobStore(watched, server.bucket, f"test-{secrets.token_hex(4)}", tmp_path / "s", 64 * MIB, PART, 2)  # type: ignore[arg-type]
    data = os.urandom(6 * PART)
    sha256 = stored(store, data)
    assert watched.most_at_once == 2
    assert sorted(watched.sent) == [1, 2, 3, 4, 5, 6]
    assert store.read_all_verified(sha256, len(data)) == data


def test_a_part_that_fails_while_others_are_in_flight_aborts_the_whole_upload(
    server: SeaweedFS, s3: S3Client, tmp_path: Path
) -> None:
    watched = _PartRecorder(s3, refuse_part=2)
    store = S3BlobStore(watched, server.bucket, f"test-{secrets.token_hex(4)}", tmp_path / "s", 64 * MIB, PART, 3)  # type: ignore[arg-type]
    data = os.urandom(8 * PART)
    pending = store.write([data])
    with pytest.raises(ConnectionError):
        store.publish(pending)
    assert keys(s3, store) == []
    assert open_uploads(s3, store, pending.sha256) == []  # aborted after the parts in flight finished
    assert len(watched.sent) < 7  # parts queued behind the failure were never sent


def test_an_object_changed_in_the_bucket_is_data_loss_and_never_served(store: S3BlobStore, s3: S3Client) -> None:
    sha256 = stored(store, b"precious bytes")
    s3.put_object(Bucket=store.bucket, Key=store.key_for(sha256), Body=b"tampered bytes")  # someone with bucket access
    with pytest.raises(DataLoss) as raised:
        store.read_all_verified(sha256)
    assert raised.value.reason == "BLOB_CORRUPTED"
    assert store.verify(sha256) == "BLOB_CORRUPTED"


def test_a_deleted_object_is_data_loss(store: S3BlobStore, s3: S3Client) -> None:
    sha256 = stored(store, b"soon gone")
    s3.delete_object(Bucket=store.bucket, Key=store.key_for(sha256))
    with pytest.raises(DataLoss) as raised:
        store.read_all_verified(sha256)
    assert raised.value.reason == "BLOB_MISSING"
    assert store.verify(sha256) == "BLOB_MISSING"


def test_staged_bytes_that_changed_before_upload_abort_it_and_leave_nothing(store: S3BlobStore, s3: S3Client) -> None:
    data = os.urandom(3 * PART)
    pending = store.write([data])
    with pending.path.open("r+b") as staged:  # the staging disk flips a byte in the last part
        staged.seek(len(data) - 1)
        staged.write(bytes([data[-1] ^ 1]))
    with pytest.raises(DataLoss) as raised:
        store.publish(pending)
    assert raised.value.reason == "BLOB_CORRUPTED"
    assert keys(s3, store) == []
    assert open_uploads(s3, store, pending.sha256) == []  # aborted: its parts are gone too


def test_a_small_blob_whose_staged_bytes_changed_is_not_stored(store: S3BlobStore, s3: S3Client) -> None:
    pending = store.write([b"original"])
    pending.path.write_bytes(b"Original")
    with pytest.raises(DataLoss):
        store.publish(pending)
    assert keys(s3, store) == []


_KILLED_CLIENT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from services.runs.blobs import PendingBlob, S3BlobStore, s3_client
    endpoint, key, secret, bucket, prefix, fifo, sha256, size, staging = sys.argv[1:]
    store = S3BlobStore(s3_client(endpoint, "us-east-1", key, secret), bucket, prefix, Path(staging), 1 << 30, 5 << 20)
    store.publish(PendingBlob(Path(fifo), sha256, int(size)))
    """
)


def test_a_client_killed_mid_upload_leaves_no_object(store: S3BlobStore, server: SeaweedFS, tmp_path: Path) -> None:
    """The uploader reads its staged bytes from a pipe the test feeds: it is killed once S3 holds its first part,
    with the rest never sent."""
    s3 = server.client()
    data = os.urandom(3 * PART)
    sha256 = hashlib.sha256(data).hexdigest()
    fifo = tmp_path / "staged"
    os.mkfifo(fifo)
    prefix = store.key_for(sha256).split("/sha256/")[0]
    arguments = [server.endpoint_url, server.access_key_id, server.secret_access_key, server.bucket, prefix]
    arguments += [str(fifo), sha256, str(len(data)), str(tmp_path / "client-staging")]
    client = subprocess.Popen([sys.executable, "-c", _KILLED_CLIENT, *arguments])
    try:
        with fifo.open("wb") as pipe:
            pipe.write(data[:PART])
            pipe.flush()
            deadline = time.monotonic() + 30
            while not _parts_uploaded(s3, store, sha256):
                assert client.poll() is None and time.monotonic() < deadline, "the client never sent a part"
                time.sleep(0.05)
            client.send_signal(signal.SIGKILL)
            client.wait()
    except BrokenPipeError:  # the killed reader closed the pipe under the writer
        pass
    finally:
        client.kill()
        client.wait()
    assert keys(s3, store) == []
    assert not store.exists(sha256)


def _parts_uploaded(s3: S3Client, store: S3BlobStore, sha256: str) -> bool:
    for upload_id in open_uploads(s3, store, sha256):
        if s3.list_parts(Bucket=store.bucket, Key=store.key_for(sha256), UploadId=upload_id).get("Parts"):
            return True
    return False


# The runs service with blob_backend=s3.


@pytest.fixture
def runs(layout: StateLayout, tmp_path: Path, server: SeaweedFS) -> Iterator[RunsClient]:
    settings = {
        "blob_dir": str(tmp_path / "staging"),
        **server.runs_settings(f"runs-{secrets.token_hex(4)}"),
    }
    with ServiceHarness("runs", layout, settings=settings) as harness:
        yield RunsClient(harness, layout)


def upload(runs: RunsClient, run: runs_pb2.Run, data: bytes) -> runs_pb2.Attachment:
    def messages() -> Iterator[runs_pb2.UploadAttachmentRequest]:
        header = runs_pb2.AttachmentHeader(
            run=run.name, kind="other", filename="data.bin", sha256=hashlib.sha256(data).hexdigest()
        )
        yield runs_pb2.UploadAttachmentRequest(header=header)
        for offset in range(0, len(data), MIB):
            yield runs_pb2.UploadAttachmentRequest(chunk=data[offset : offset + MIB])

    return runs.UploadAttachment(messages())


def test_runs_serves_attachments_from_s3_and_verifies_them(runs: RunsClient, server: SeaweedFS) -> None:
    run = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
    data = os.urandom(3 * MIB + 5)
    attachment = upload(runs, run, data)
    answers = list(runs.ReadAttachment(runs_pb2.ReadAttachmentRequest(name=attachment.name)))
    assert b"".join(m.chunk for m in answers) == data
    assert list(runs.VerifyRun(runs_pb2.VerifyRunRequest(name=run.name)).problems) == []
    settings = runs.harness.settings
    key = f"{settings.s3_prefix}/sha256/{attachment.digest.sha256}"  # type: ignore[attr-defined]
    server.client().put_object(Bucket=server.bucket, Key=key, Body=bytes([data[0] ^ 1]) + data[1:])
    error = status.decode(
        error_of(lambda: list(runs.ReadAttachment(runs_pb2.ReadAttachmentRequest(name=attachment.name))))
    )
    assert (error.code, error.reason) == (grpc.StatusCode.DATA_LOSS, "BLOB_CORRUPTED")
    report = runs.VerifyRun(runs_pb2.VerifyRunRequest(name=run.name))
    assert [p.problem for p in report.problems] == ["BLOB_CORRUPTED"]


def test_an_unreachable_blob_store_is_unavailable_with_retry_info(
    layout: StateLayout, tmp_path: Path, server: SeaweedFS
) -> None:
    settings = {
        "blob_dir": str(tmp_path / "staging"),
        **server.runs_settings(),
        "s3_endpoint_url": f"http://127.0.0.1:{free_port()}",  # nothing listens there
    }
    with ServiceHarness("runs", layout, settings=settings) as harness:
        runs = RunsClient(harness, layout)
        run = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input()))
        error = status.decode(error_of(lambda: upload(runs, run, b"bytes for a store that is down")))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "BLOB_STORE_UNAVAILABLE")
    assert error.retry_after_s is not None and error.retry_after_s > 0
