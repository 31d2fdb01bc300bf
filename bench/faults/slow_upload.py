"""The client the upload-kill check kills: streams a file to UploadAttachment 1 MiB at a time, printing `sent N`
after each chunk, so the harness can SIGKILL it mid-stream at a chunk of its choosing.

    python -m bench.faults.slow_upload ADDRESS RUN FILE REQUEST_ID    (token in CRASH_UPLOAD_TOKEN)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from custody.runs.v1 import runs_pb2, runs_pb2_grpc

CHUNK_BYTES = 1024 * 1024
TOKEN_ENV = "CRASH_UPLOAD_TOKEN"
PAUSE_S = 0.1


def messages(run: str, path: Path, request_id: str) -> Iterator[runs_pb2.UploadAttachmentRequest]:
    header = runs_pb2.AttachmentHeader(run=run, kind="other", filename=path.name, request_id=request_id)
    yield runs_pb2.UploadAttachmentRequest(header=header)
    with path.open("rb") as handle:
        sent = 0
        while chunk := handle.read(CHUNK_BYTES):
            yield runs_pb2.UploadAttachmentRequest(chunk=chunk)
            sent += 1
            print(f"sent {sent}", flush=True)
            time.sleep(PAUSE_S)  # the harness kills the process during one of these


def main() -> None:
    address, run, file, request_id = sys.argv[1:5]
    metadata = (("authorization", f"Bearer {os.environ[TOKEN_ENV]}"),)
    with grpc.insecure_channel(address) as channel:
        runs_pb2_grpc.RunsServiceStub(channel).UploadAttachment(
            messages(run, Path(file), request_id), metadata=metadata, timeout=120
        )
    print("done", flush=True)


if __name__ == "__main__":
    main()
