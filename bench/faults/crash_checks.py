"""What a crash harness checks once the killing stops: every acknowledged write read back through the services and
compared with the digest the server returned for it, duplicates counted (a retry after a kill must replay, never
mint again), the runs database and blob directory searched for orphans and partial blobs, and the operator's own
checks run as an operator runs them (`custody runs verify --all`, `custody ledger audit`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa

from bench.faults.crash_clients import PROJECT, Acked, approval_digest, bearer, channel
from bench.faults.crash_stack import KILLABLE, CrashStack
from custody.lineage.v1 import lineage_pb2, lineage_pb2_grpc
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.common.db import create_engine
from services.runs import tables
from services.runs.config import RunsSettings

PAGE = 500
CLI_TIMEOUT_S = 300


@dataclass
class ReadBack:
    checked: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    # Writes the services committed whose answer no client received (allowed): found, never acknowledged.
    unacknowledged_committed: Counter[str] = field(default_factory=Counter)


def read_back(addresses: Mapping[str, str], operator_token: str, acked: list[Acked]) -> ReadBack:
    """Reads every acknowledged write back through runs and lineage (`addresses`) as the operator."""
    result = ReadBack()
    token = bearer(operator_token)
    with channel(addresses["runs"]) as runs_channel, channel(addresses["lineage"]) as lineage_channel:
        runs = runs_pb2_grpc.RunsServiceStub(runs_channel)
        lineage = lineage_pb2_grpc.LineageServiceStub(lineage_channel)
        gone = set()  # names that no longer resolve: nothing of theirs to count
        for record in acked:
            result.checked[record.kind] += 1
            try:
                actual = _current_digest(runs, lineage, token, record)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                result.lost.append(f"{record.kind} {record.name} ({record.op}): NOT_FOUND")
                gone.add(record.name)
                continue
            if actual is None:
                result.lost.append(f"{record.kind} {record.name} ({record.op}): no longer approved")
            elif actual != record.sha256 or (record.sent_sha256 and actual != record.sent_sha256):
                result.mismatches.append(f"{record.kind} {record.name}: acknowledged {record.sha256}, now {actual}")
        _count_duplicates(runs, lineage, token, [a for a in acked if a.name not in gone], result)
    return result


def _current_digest(
    runs: runs_pb2_grpc.RunsServiceStub, lineage: lineage_pb2_grpc.LineageServiceStub, token: Any, record: Acked
) -> str | None:
    if record.kind == "run":
        return str(runs.GetRun(runs_pb2.GetRunRequest(name=record.name), metadata=token).artifact_sha256)
    if record.kind == "attachment":
        digest = hashlib.sha256()
        served = ""
        for message in runs.ReadAttachment(runs_pb2.ReadAttachmentRequest(name=record.name), metadata=token):
            served = served or message.attachment.digest.sha256
            digest.update(message.chunk)
        # The bytes served must be the ones recorded, and the record the one acknowledged.
        return digest.hexdigest() if served == digest.hexdigest() else f"record {served}, bytes {digest.hexdigest()}"
    version = lineage.GetVersion(lineage_pb2.GetVersionRequest(name=record.name), metadata=token)
    if record.kind == "version":
        return str(version.snapshot_sha256)
    if version.status.status != lineage_pb2.STATUS_APPROVED:
        return None
    return approval_digest(version.status)


def _count_duplicates(
    runs: runs_pb2_grpc.RunsServiceStub,
    lineage: lineage_pb2_grpc.LineageServiceStub,
    token: Any,
    acked: list[Acked],
    result: ReadBack,
) -> None:
    """One record per operation, whatever the retries: runs by the op in their meta, attachments per run, versions
    per entity (each operation has its own), approvals per version's history."""
    acked_ops = {kind: {a.op for a in acked if a.kind == kind} for kind in ("run", "attachment", "version")}
    minted = Counter(str(run.meta["crash_op"]) for run in _all_runs(runs, token))
    for op, count in minted.items():
        if count > 1:
            result.duplicates.append(f"{count} runs for {op}")
        if op not in acked_ops["run"]:
            result.unacknowledged_committed["run"] += 1
    for run in {a.name: a.op for a in acked if a.kind == "run"}.items():
        attachments = runs.ListAttachments(runs_pb2.ListAttachmentsRequest(run=run[0], page_size=10), metadata=token)
        if len(attachments.attachments) > 1:
            result.duplicates.append(f"{len(attachments.attachments)} attachments on {run[0]} ({run[1]})")
        if attachments.attachments and run[1] not in acked_ops["attachment"]:
            result.unacknowledged_committed["attachment"] += 1
    per_entity = Counter(v.entity for v in _all_versions(lineage, token))
    for entity, count in per_entity.items():
        if count > 1:
            result.duplicates.append(f"{count} versions of {entity}")
        if entity not in acked_ops["version"]:
            result.unacknowledged_committed["version"] += 1
    for record in acked:
        if record.kind != "approval":
            continue
        history = lineage.GetVersion(lineage_pb2.GetVersionRequest(name=record.name), metadata=token).status_history
        approvals = sum(1 for s in history if s.status == lineage_pb2.STATUS_APPROVED)
        if approvals > 1:
            result.duplicates.append(f"{approvals} approvals of {record.name}")


def _all_runs(runs: runs_pb2_grpc.RunsServiceStub, token: Any) -> Iterator[runs_pb2.Run]:
    token_page = ""
    while True:
        page = runs.ListRuns(runs_pb2.ListRunsRequest(page_size=PAGE, page_token=token_page), metadata=token)
        yield from page.runs
        if not page.next_page_token:
            return
        token_page = page.next_page_token


def _all_versions(lineage: lineage_pb2_grpc.LineageServiceStub, token: Any) -> Iterator[lineage_pb2.Version]:
    token_page = ""
    while True:
        page = lineage.ListVersions(
            lineage_pb2.ListVersionsRequest(parent=f"projects/{PROJECT}", page_size=PAGE, page_token=token_page),
            metadata=token,
        )
        yield from page.versions
        if not page.next_page_token:
            return
        token_page = page.next_page_token


@dataclass
class Storage:
    """The runs database and blob directory, looked at directly."""

    orphan_rows: list[str]
    partial_blobs: list[str]  # a file under a digest that is not that digest's bytes: visible, and wrong
    unreferenced_blob_files: int  # complete blobs a kill left between publishing and recording: never served
    staging_leftovers: int  # temporary upload files of killed processes: never served, swept after an hour


def storage(settings: RunsSettings) -> Storage:
    """The runs database and blob directory of these settings, read directly."""
    engine = create_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            orphan_rows = _orphan_rows(connection)
            recorded = {row.sha256 for row in connection.execute(sa.select(tables.blobs.c.sha256))}
    finally:
        engine.dispose()
    blob_dir = Path(settings.resolved_blob_dir)
    partial, unreferenced = [], 0
    for path in sorted((blob_dir / "sha256").rglob("*")):
        if not path.is_file():
            continue
        if hashlib.sha256(path.read_bytes()).hexdigest() != path.name:
            partial.append(str(path.relative_to(blob_dir)))
        elif path.name not in recorded:
            unreferenced += 1
    leftovers = sum(1 for _ in (blob_dir / "tmp").glob("upload-*"))
    return Storage(orphan_rows, partial, unreferenced, leftovers)


def _orphan_rows(connection: sa.Connection) -> list[str]:
    attachments, blobs, runs = tables.attachments, tables.blobs, tables.runs
    found = []
    referenced = sa.union(
        sa.select(attachments.c.sha256),
        sa.select(attachments.c.signed_sha256).where(attachments.c.signed_sha256.is_not(None)),
    ).subquery()
    for (sha256,) in connection.execute(sa.select(blobs.c.sha256).where(blobs.c.sha256.not_in(sa.select(referenced)))):
        found.append(f"blob row {sha256} that no attachment names")
    for row in connection.execute(
        sa.select(attachments.c.id, attachments.c.sha256).where(attachments.c.sha256.not_in(sa.select(blobs.c.sha256)))
    ):
        found.append(f"attachment {row.id} naming an unrecorded blob {row.sha256}")
    for row in connection.execute(sa.select(attachments.c.id).where(attachments.c.run_id.not_in(sa.select(runs.c.id)))):
        found.append(f"attachment {row.id} of no run")
    return found


def operator_checks(stack: CrashStack, *, in_process: bool = False) -> dict[str, dict[str, Any]]:
    """`custody runs verify --all` and `custody ledger audit <service>` for each killed authority, as an operator
    runs them; each with its exit code and what it said. `in_process` runs the same commands through the CLI's own
    app in this interpreter (what the tests do: a fresh interpreter spends seconds importing the CLI)."""
    state = ["--state-dir", str(stack.layout.root), "--json"]
    commands = {"runs verify --all": ["runs", "verify", "--all", *state]}
    commands.update({f"ledger audit {s}": ["ledger", "audit", s, *state] for s in KILLABLE})
    results = {}
    for label, args in commands.items():
        code, stdout, stderr = _custody_in_process(stack, args) if in_process else _custody(stack, args)
        results[label] = {"exit": code, "ok": code == 0, **_summary(label, stdout, stderr)}
    return results


def _custody(stack: CrashStack, args: list[str]) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=stack.cli_environment(),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def _custody_in_process(stack: CrashStack, args: list[str]) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from services.cli.main import app

    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CUSTODY_")}
    env.update({k: v for k, v in stack.cli_environment().items() if k.startswith("CUSTODY_")})
    done = CliRunner().invoke(app, args, env=env)
    return done.exit_code, done.stdout, done.stderr if done.stderr_bytes is not None else ""


def _summary(label: str, stdout: str, stderr: str) -> dict[str, Any]:
    try:
        document = json.loads(stdout)
    except ValueError:
        return {"output": (stdout + stderr)[-2000:]}
    if label.startswith("runs verify"):
        return {"verified": document["verified"], "failed": document["failed"]}
    (report,) = document
    return {"leaves": report["leaves"], "checkpoints": report["checkpoints"], "findings": report["findings"][:20]}
