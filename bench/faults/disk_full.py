"""The blob directory full: runs serves from a private mount namespace in which its blob directory is a small
tmpfs (the machine's own mounts are untouched; needs root, `unshare` and `mount`). Attachments are uploaded until
the disk is full. Each upload that does not fit must be RESOURCE_EXHAUSTED STORAGE_FULL (with a RetryInfo), leave no
partial blob and no staged file, and the service must keep serving: reads, mints and a small upload that fits still
succeed. The blob directory is inspected through /proc/<pid>/root, which resolves paths in the process's namespace.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.faults.calls import CALL_TIMEOUT_S, Outcome, Tally, attempt
from bench.faults.stack import Stack, run_input, wait_until
from custody.runs.v1 import runs_pb2

CHUNK = 1024 * 1024
MOUNT = 'mount -t tmpfs -o size="$1",mode=0700 tmpfs "$0" && shift && exec "$@"'


class NamespaceUnavailable(RuntimeError):
    """Not root, or no unshare/mount: the scenario cannot make a private small disk."""


def namespace_wrap(blob_dir: Path, size: str) -> list[str]:
    """The command prefix that runs a command with `blob_dir` a tmpfs of `size` in a private mount namespace."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("mount"):
        raise NamespaceUnavailable("the disk-full scenario needs root, unshare and mount (a private mount namespace)")
    blob_dir.mkdir(parents=True, exist_ok=True)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", MOUNT, str(blob_dir), size]


def run(root: Path, *, size: str = "2m", blob_bytes: int = 192 * 1024, max_uploads: int = 60) -> dict[str, Any]:
    blob_dir = root / "blobs"
    settings = {"runs": {"blob_dir": str(blob_dir)}}
    with Stack(root, ["runs"], settings, {"runs": namespace_wrap(blob_dir, size)}) as stack:
        return scenario(stack, blob_dir, blob_bytes, max_uploads)


def scenario(stack: Stack, blob_dir: Path, blob_bytes: int, max_uploads: int) -> dict[str, Any]:
    process = stack.processes["runs"]
    seen = Path(f"/proc/{process.pid}/root") / blob_dir.relative_to("/")
    run = stack.runs().CreateRun(runs_pb2.CreateRunRequest(run=run_input(0)), metadata=stack.auth).name
    accepted: set[str] = set()
    refused = Tally()
    for index in range(max_uploads):
        outcome, digest = _upload(stack, run, f"fill-{index}.bin", secrets.token_bytes(blob_bytes))
        if digest is not None:
            accepted.add(digest)
            continue
        refused.add(outcome)
        if refused.total >= 3:  # full, and still full on the next tries
            break
    items = [
        runs_pb2.NewAttachment(kind="other", filename=f"batch-{i}.bin", data=secrets.token_bytes(blob_bytes))
        for i in range(2)
    ]
    batch, _ = attempt(
        lambda: stack.runs().BatchCreateAttachments(
            runs_pb2.BatchCreateAttachmentsRequest(run=run, attachments=items), metadata=stack.auth
        )
    )
    refused.add(batch)
    staging_empty = wait_until(lambda: not list((seen / "tmp").glob("upload-*")), 10)
    after = {
        "get_service_info": attempt(
            lambda: stack.runs().GetServiceInfo(runs_pb2.GetServiceInfoRequest(), metadata=stack.auth)
        )[0].label,
        "create_run": attempt(
            lambda: stack.runs().CreateRun(runs_pb2.CreateRunRequest(run=run_input(1)), metadata=stack.auth)
        )[0].label,
    }
    small_outcome, small = _upload(stack, run, "small.bin", secrets.token_bytes(1024))
    after["small_upload"] = small_outcome.label
    if small is not None:
        accepted.add(small)
    stored = _stored_blobs(seen)
    listed = stack.runs().ListAttachments(
        runs_pb2.ListAttachmentsRequest(run=run, page_size=100), metadata=stack.auth, timeout=CALL_TIMEOUT_S
    )
    usage = os.statvfs(seen)
    return {
        "scenario": "disk-full",
        "blob_filesystem_bytes": usage.f_blocks * usage.f_frsize,
        "upload_bytes": blob_bytes,
        "uploads_accepted_before_full": len(accepted) - (1 if small is not None else 0),
        "uploads_refused": refused.by_label(),
        "resource_exhausted_storage_full_with_retry_info": refused.count(
            lambda o: o.code == "RESOURCE_EXHAUSTED" and o.reason == "STORAGE_FULL" and o.retry_info
        ),
        "internal_or_unknown": refused.broken(),
        "partial_blobs": sum(1 for name, digest in stored.items() if name != digest),
        "staged_files_left": len(list((seen / "tmp").glob("upload-*"))) if not staging_empty else 0,
        "blob_files": len(stored),
        "blob_files_not_acknowledged": len(set(stored) - accepted),
        "acknowledged_blobs_missing": len(accepted - set(stored)),
        "attachments_listed": len(listed.attachments),
        "calls_after_full": after,
        "service_stayed_up": process.alive(),
    }


def _upload(stack: Stack, run: str, filename: str, data: bytes) -> tuple[Outcome, str | None]:
    def messages() -> Iterator[runs_pb2.UploadAttachmentRequest]:
        yield runs_pb2.UploadAttachmentRequest(
            header=runs_pb2.AttachmentHeader(run=run, kind="other", filename=filename)
        )
        for start in range(0, len(data), CHUNK):
            yield runs_pb2.UploadAttachmentRequest(chunk=data[start : start + CHUNK])

    outcome, answer = attempt(
        lambda: stack.runs().UploadAttachment(messages(), metadata=stack.auth, timeout=CALL_TIMEOUT_S)
    )
    return outcome, None if answer is None else str(answer.digest.sha256)


def _stored_blobs(root: Path) -> dict[str, str]:
    """File name -> sha256 of its bytes, for every published blob."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in (root / "sha256").rglob("*")
        if path.is_file()
    }
