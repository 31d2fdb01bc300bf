"""The S3 blob backend: blobs as objects in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO, Ceph RGW), for runs
replicas that share neither a filesystem nor want blob bytes in their database.

The same guarantees as the other backends, kept by S3 itself where it can:
- Content-addressed: a blob is the object `<prefix>/sha256/<hex>`; an upload whose key exists (HEAD) stores nothing.
- Verified on write: the staged bytes are re-hashed as they are sent and must give the digest they were received
  under; every request carries the SHA-256 of its body (ChecksumSHA256), which S3 checks before it keeps anything.
- Nothing partial is visible: blobs up to one part are one PutObject; larger ones a multipart upload, whose object
  appears only when CompleteMultipartUpload succeeds, all at once. Any failure before that aborts the upload, so
  its parts go too (a process killed mid-upload leaves parts only, never an object; a bucket lifecycle rule
  `AbortIncompleteMultipartUpload` reclaims them).
- Verified on read (BlobStore.read_verified): one GET, hashed as it is held in memory or spooled to staging, and
  only those verified bytes are served (a second GET could return other bytes than the ones checked).

Multipart uploads are written here rather than with boto3's transfer manager (upload_fileobj), which completes
the upload itself: the whole blob's digest must be checked between the last part and CompleteMultipartUpload.

The client is boto3's, which blocks: every call here runs on the worker threads the domain is already called on
(asyncio.to_thread in the servicer), never on the event loop.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from services.common.errors import DataLoss
from services.runs.blobs.base import READ_CHUNK_BYTES, BlobStore, checked_digest
from services.runs.blobs.staging import PendingBlob

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from types_boto3_s3 import S3Client
    from types_boto3_s3.type_defs import CompletedPartTypeDef

# S3's smallest part is 5 MiB (all but the last); 8 MiB parts keep a 4 GiB blob within S3's 10,000 parts.
PART_BYTES = 8 * 1024 * 1024
# Parts sent at once by one upload (bench/runs/bench_runs.py measures the effect; s3_part_uploads sets it).
PART_UPLOADS = 4
AddressingStyle = Literal["path", "virtual", "auto"]
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def s3_client(
    endpoint_url: str | None,
    region: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    addressing_style: AddressingStyle = "path",
) -> S3Client:
    """A client for the configured endpoint. Without keys, boto3's standard chain (AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY, a profile, a workload identity). Enough pooled connections for the blocking threads;
    boto3's standard retries for throttling and 5xx before an error reaches the caller."""
    config = Config(
        s3={"addressing_style": addressing_style},
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=32,
        # Checksums only where asked for (ChecksumSHA256 below): botocore's default CRC32 on every request is
        # redundant with them and not understood by every S3-compatible server.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=config,
    )


class S3BlobStore(BlobStore):
    """Blobs as objects `<prefix>/sha256/<hex>` in one bucket; uploads staged locally first (staging.py)."""

    backend = "s3"

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str,
        staging_dir: Path,
        max_blob_bytes: int,
        part_bytes: int = PART_BYTES,
        part_uploads: int = PART_UPLOADS,
    ) -> None:
        super().__init__(staging_dir, max_blob_bytes)
        self._s3 = client
        self.bucket = bucket
        self._prefix = prefix.strip("/")
        self._part_bytes = part_bytes
        self._part_uploads = part_uploads

    def key_for(self, sha256: str) -> str:
        key = f"sha256/{checked_digest(sha256)}"
        return f"{self._prefix}/{key}" if self._prefix else key

    def exists(self, sha256: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self.key_for(sha256))
        except ClientError as exc:
            if _is_missing(exc):
                return False
            raise
        return True

    def _publish(self, pending: PendingBlob) -> bool:
        key = self.key_for(pending.sha256)
        if self.exists(pending.sha256):
            pending.discard()
            return False
        with pending.path.open("rb") as staged:
            if pending.size_bytes <= self._part_bytes:
                self._put(key, staged, pending)
            else:
                self._put_in_parts(key, staged, pending)
        pending.discard()
        return True

    def _put(self, key: str, staged: BinaryIO, pending: PendingBlob) -> None:
        """One PutObject. Its checksum is the blob's digest itself: S3 keeps the object only if the bytes it
        received hash to it, and the bytes sent are checked against it first."""
        body = staged.read()
        _require_staged(hashlib.sha256(body).hexdigest(), pending)
        self._s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ChecksumSHA256=base64.b64encode(bytes.fromhex(pending.sha256)).decode("ascii"),
        )

    def _put_in_parts(self, key: str, staged: BinaryIO, pending: PendingBlob) -> None:
        """A multipart upload, each part checked by S3 against its own SHA-256, the whole against the digest here
        before the upload is completed; aborted on any failure (then no object and no parts remain).

        Up to `part_uploads` parts are in flight at once (one PUT leaves the link idle while the server hashes and
        stores it); parts are read and hashed in order on this thread, so at most that many parts are in memory."""
        upload_id = self._s3.create_multipart_upload(Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256")[
            "UploadId"
        ]
        try:
            with ThreadPoolExecutor(self._part_uploads, thread_name_prefix="s3-part") as pool:
                whole = hashlib.sha256()
                in_flight: deque[Future[CompletedPartTypeDef]] = deque()
                parts: list[CompletedPartTypeDef] = []
                try:
                    number = 0
                    while part := staged.read(self._part_bytes):
                        whole.update(part)
                        number += 1
                        if len(in_flight) == self._part_uploads:
                            parts.append(in_flight.popleft().result())
                        in_flight.append(pool.submit(self._upload_part, key, upload_id, number, part))
                    parts.extend(future.result() for future in in_flight)
                finally:
                    for future in in_flight:  # after a failure: parts not yet sent are not sent
                        future.cancel()
            _require_staged(whole.hexdigest(), pending)
            self._s3.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(Exception):  # the original failure is the one to report
                self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def _upload_part(self, key: str, upload_id: str, number: int, part: bytes) -> CompletedPartTypeDef:
        checksum = base64.b64encode(hashlib.sha256(part).digest()).decode("ascii")
        answer = self._s3.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part, ChecksumSHA256=checksum
        )
        return {"ETag": answer["ETag"], "PartNumber": number, "ChecksumSHA256": checksum}

    def _chunks_of(self, sha256: str) -> Iterator[bytes] | None:
        try:
            answer = self._s3.get_object(Bucket=self.bucket, Key=self.key_for(sha256))
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        return _closing_chunks(answer["Body"])


def _require_staged(digest: str, pending: PendingBlob) -> None:
    """The bytes about to be sent are the ones received: staging kept them intact."""
    if digest != pending.sha256:
        raise DataLoss(
            "BLOB_CORRUPTED",
            f"the staged bytes of blob {pending.sha256} changed before they reached S3; nothing was stored",
            metadata={"sha256": pending.sha256},
        )


def _is_missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in _MISSING_CODES


def _closing_chunks(body: StreamingBody) -> Iterator[bytes]:
    """The response body in chunks; its connection goes back to the pool however the reading ends."""
    try:
        yield from body.iter_chunks(READ_CHUNK_BYTES)
    finally:
        body.close()
