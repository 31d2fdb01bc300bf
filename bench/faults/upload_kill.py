"""A client killed mid-upload leaves nothing visible: a client process streaming a large multi-chunk attachment is
SIGKILLed part-way, then the harness checks that no blob of those bytes exists (no file under the digest,
FindMissingBlobs says missing), no attachment is listed or recorded (ListAttachments, the database's rows), the
upload's temporary file is gone from staging, and that the same content then uploads in full under the same
request_id."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from bench.faults.crash_clients import bearer, channel, run_input
from bench.faults.crash_stack import CrashStack
from bench.faults.slow_upload import CHUNK_BYTES, TOKEN_ENV
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.common.db import create_engine
from services.runs import tables

CHUNKS = 8
STAGING_DRAIN_S = 15.0


@dataclass
class UploadKills:
    killed: int = 0
    # Kills made while the server held the upload's partial temporary file (what must not survive or show).
    killed_with_partial_file: int = 0
    reuploaded: int = 0
    problems: list[str] = field(default_factory=list)


def kill_mid_upload(stack: CrashStack, repeats: int, rng: random.Random, workdir: Path) -> UploadKills:
    result = UploadKills()
    settings = stack.runs_settings
    staging = Path(settings.resolved_blob_dir) / "tmp"
    engine = create_engine(settings.resolved_database_url)
    token = bearer(stack.operator_token)
    try:
        with channel(stack.address("runs")) as runs_channel:
            runs = runs_pb2_grpc.RunsServiceStub(runs_channel)
            for repeat in range(repeats):
                op = f"upload-kill-{repeat}"
                run = runs.CreateRun(runs_pb2.CreateRunRequest(run=run_input(op), request_id=op), metadata=token)
                data = rng.randbytes(CHUNKS * CHUNK_BYTES)
                digest = hashlib.sha256(data).hexdigest()
                path = workdir / f"{op}.bin"
                path.write_bytes(data)
                before = set(staging.glob("upload-*"))
                chunks = rng.randint(1, CHUNKS - 2)
                killed = _kill_client_after(stack, run.name, path, f"{op}-att", chunks, staging, before)
                if killed is None:
                    result.problems.append(f"{op}: the client finished before it could be killed")
                    continue
                result.killed += 1
                result.killed_with_partial_file += killed
                problems = _visible_after_kill(runs, token, engine, staging, before, run.name, digest)
                result.problems.extend(f"{op}: {p}" for p in problems)
                uploaded = runs.UploadAttachment(
                    iter(_messages(run.name, data, f"{op}-att")), metadata=token, timeout=60
                )
                listed = runs.ListAttachments(runs_pb2.ListAttachmentsRequest(run=run.name), metadata=token)
                if uploaded.digest.sha256 == digest and [a.name for a in listed.attachments] == [uploaded.name]:
                    result.reuploaded += 1
                else:
                    result.problems.append(f"{op}: the full upload afterwards did not record exactly these bytes")
    finally:
        engine.dispose()
    return result


def _kill_client_after(
    stack: CrashStack, run: str, path: Path, request_id: str, chunks: int, staging: Path, before: set[Path]
) -> bool | None:
    """Starts the streaming client and SIGKILLs it once it has sent `chunks` chunks and the server is writing the
    upload's temporary file (so there is a partial blob to leave behind); returns whether that file was there,
    or None if the client finished first."""
    env = {**stack.cli_environment(), TOKEN_ENV: stack.operator_token}
    command = [sys.executable, "-m", "bench.faults.slow_upload", stack.address("runs"), run, str(path), request_id]
    client = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    assert client.stdout is not None
    try:
        for line in client.stdout:
            if line.strip() == f"sent {chunks}":
                deadline = time.monotonic() + STAGING_DRAIN_S
                while not (partial := set(staging.glob("upload-*")) - before) and time.monotonic() < deadline:
                    time.sleep(0.005)  # the client pauses between chunks; the server is receiving meanwhile
                if client.poll() is not None:
                    return None
                os.kill(client.pid, signal.SIGKILL)
                return bool(partial)
        return None
    finally:
        client.stdout.close()
        client.wait()


def _visible_after_kill(
    runs: runs_pb2_grpc.RunsServiceStub,
    token: tuple[tuple[str, str], ...],
    engine: sa.Engine,
    staging: Path,
    before: set[Path],
    run: str,
    digest: str,
) -> list[str]:
    problems = []
    # The server learns of the dead client when its stream breaks; its temporary file goes then.
    deadline = time.monotonic() + STAGING_DRAIN_S
    while (left := set(staging.glob("upload-*")) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        problems.append(f"{len(left)} temporary upload file(s) still in staging after {STAGING_DRAIN_S:.0f} s")
    missing = runs.FindMissingBlobs(runs_pb2.FindMissingBlobsRequest(sha256=[digest]), metadata=token)
    if list(missing.missing_sha256) != [digest]:
        problems.append("FindMissingBlobs reports the blob as present")
    if (staging.parent / "sha256" / digest[:2] / digest[2:4] / digest).exists():
        problems.append("a blob file exists under the full content's digest")
    listed = runs.ListAttachments(runs_pb2.ListAttachmentsRequest(run=run), metadata=token)
    if listed.attachments:
        problems.append(f"ListAttachments shows {len(listed.attachments)} attachment(s)")
    run_id = run.removeprefix("runs/")
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(sa.func.count()).select_from(tables.attachments).where(tables.attachments.c.run_id == run_id)
        ).scalar_one()
        blob_rows = connection.execute(
            sa.select(sa.func.count()).select_from(tables.blobs).where(tables.blobs.c.sha256 == digest)
        ).scalar_one()
    if rows or blob_rows:
        problems.append(f"the database holds {rows} attachment row(s) and {blob_rows} blob row(s)")
    return problems


def _messages(run: str, data: bytes, request_id: str) -> list[runs_pb2.UploadAttachmentRequest]:
    header = runs_pb2.AttachmentHeader(run=run, kind="other", filename="full.bin", request_id=request_id)
    chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
    return [
        runs_pb2.UploadAttachmentRequest(header=header),
        *(runs_pb2.UploadAttachmentRequest(chunk=c) for c in chunks),
    ]
