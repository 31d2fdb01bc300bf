"""Content-addressed blob storage: a blob is named by its sha256.

Uploads hash while streaming into a local temporary file (fsynced, staging.py); only then is the blob published
under its digest, so a blob is complete or absent, and a digest mismatch or an oversize upload stores nothing.
Reads re-hash before serving (base.py): corrupted bytes are DATA_LOSS and are never returned.

Three backends: the local filesystem (the default, filesystem.py: rename into place, then fsync the directory), the
runs database (database.py: chunks in a table), for several runs replicas that share a database but no
filesystem, and an S3-compatible bucket (s3.py: a checksummed PutObject or multipart upload, complete or absent).
"""

from services.runs.blobs.base import BlobStore
from services.runs.blobs.database import DatabaseBlobStore
from services.runs.blobs.filesystem import FilesystemBlobStore
from services.runs.blobs.s3 import S3BlobStore, s3_client
from services.runs.blobs.staging import STALE_UPLOAD_S, BlobWriter, PendingBlob
from services.runs.blobs.streaming import StreamingUpload

__all__ = [
    "STALE_UPLOAD_S",
    "BlobStore",
    "BlobWriter",
    "DatabaseBlobStore",
    "FilesystemBlobStore",
    "PendingBlob",
    "S3BlobStore",
    "StreamingUpload",
    "s3_client",
]
