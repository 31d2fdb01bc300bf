"""`custody runs migrate ...`: a legacy JSON run store migrated as custody, never by deletion.

- `migrate --from PATH` imports every record (services/cli/legacy.py reads them) and keeps the bytes each was read
  from with its run (attachments of kind legacy_source; `--no-keep-source` opts out). The migration itself is a run,
  the batch (mode legacy_migration): its content names the source, the tool version and the digest of the file
  list; the file list (`files.json`), the JSON map files read and the report (`report.json`) are its attachments.
  The batch is minted first, so a migration cut short still has its batch; every run the migration mints carries
  the batch's request id, which is how the server knows the runs a batch created.
- `migrate status`, `migrate verify` and `migrate withdraw` (below) read what a migration left and take it back:
  a withdrawal is recorded on the batch and the runs it created (nothing is deleted), and a later migration of the
  same records mints fresh runs naming the withdrawn ones in meta.legacy.replaces.

Everything goes through the runs service's API, as the operator (who needs the migrator role).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from google.protobuf import json_format
from rich.progress import Progress

from custody.runs.v1 import runs_pb2
from services.cli import legacy
from services.cli.calls import as_dict, call, print_json, print_rows
from services.cli.options import JsonFlag, StateDir
from services.cli.output import console, err
from services.cli.runs_commands import describe_failure, list_all_runs, migration_warnings, run_as_input
from services.cli.state import DEFAULT_STATE_DIR
from services.common import call_context, run_diff, status
from services.common.hashing import canonical_json, sha256_bytes, sha256_canonical
from services.common.limits import CHUNK_LIMIT_BYTES
from services.common.protomap import dict_to_struct
from services.common.run_rules import LEGACY_SOURCE_KIND, MIGRATION_BATCH_MODE
from services.common.version import CUSTODY_VERSION

app = typer.Typer(
    help="Migrate a legacy JSON run store, keeping its bytes; status, verify and withdraw a migration.",
    invoke_without_command=True,
)

TOOL_ID = "custody-migrate"
TOOL_VERSION = f"{TOOL_ID}/{CUSTODY_VERSION}"
REPORT_FORMAT = "custody-legacy-migration-report/1"
JSON = "application/json"

OUTCOMES = ("created", "existing", "duplicate", "valid", "conflict", "error", "unverified")
FAILED_OUTCOMES = ("conflict", "error", "unverified")


@app.callback()
def migrate(
    context: typer.Context,
    source: Annotated[
        Path | None,
        typer.Option("--from", help="Legacy store: a JSON map file, or a directory (runs.json, partitions)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Read and validate everything; write nothing.")] = False,
    keep_source: Annotated[
        bool,
        typer.Option(
            "--keep-source/--no-keep-source",
            help="Keep each record's legacy bytes with its run (the default; the backup of the migration).",
        ),
    ] = True,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Import a legacy JSON run store: a report line per record, corrupt files named, safe to re-run, then verified.

    A record already migrated (from this directory or a copy of it) is reported `existing`; the same legacy id with
    other content is a `conflict`. A record that breaks only rules Custody added after the legacy schema is
    imported as it was, with its warnings on the report line and in the run's meta.legacy.migration_warnings.
    Every migration that reads a file is recorded as a batch run (mode legacy_migration) holding the file list,
    the map files and the report; each run keeps the bytes it was read from (kind legacy_source)."""
    if context.invoked_subcommand is not None:
        if source is not None:
            raise typer.BadParameter(f"give --from after `{context.invoked_subcommand}`")
        return
    if source is None:
        raise typer.BadParameter("--from PATH is required (or a command: status, verify, withdraw)")
    scanned = legacy.scan(source)
    report: list[dict[str, Any]] = [
        _line(p.legacy_id, p.source, "conflict" if p.conflict else "error", detail=p.error) for p in scanned.problems
    ]
    duplicates = [
        _line(copy.legacy_id, copy.source, "duplicate", detail=f"the same record as {first.source}, migrated once")
        for copy, first in scanned.duplicates
    ]
    batch = ""
    if not dry_run and scanned.files:

        async def load(stub: Any) -> tuple[str, list[dict[str, Any]]]:
            withdrawn = await legacy_index(stub, only_withdrawn=True)
            batch_run = await _open_batch(stub, scanned, source, keep_source)
            lines = []
            with Progress(console=err, transient=True, disable=as_json) as progress:
                task = progress.add_task("migrating", total=len(scanned.runs))
                for legacy_run in scanned.runs:
                    replaced = [r.name for r in withdrawn.withdrawn_of(legacy_run.legacy_id)]
                    if replaced:  # a fresh run, naming the withdrawn ones it replaces
                        legacy_run = legacy_run.replacing(replaced)
                    lines.append(await _migrate_one(stub, legacy_run, keep_source))
                    progress.advance(task)
            everything = [*report, *lines, *duplicates]
            await _close_batch(stub, batch_run, scanned, source, keep_source, everything)
            return batch_run.name, lines

        batch, lines = call(state_dir, "runs", load)
        report.extend(lines)
    elif dry_run:
        report.extend(_line(r.legacy_id, r.source, "valid", warnings=r.warnings) for r in scanned.runs)
    report.extend(duplicates)
    counts = _counts(report)
    if as_json:
        print_json({"dry_run": dry_run, "batch": batch, "counts": counts, "records": report})
    else:
        rows = [{**line, "detail": "; ".join(filter(None, [line["detail"], *line["warnings"]]))} for line in report]
        print_rows(rows, ["outcome", "legacy_id", "run", "source", "detail"], False, title="migration report")
        console.print(", ".join(f"{count} {outcome}" for outcome, count in counts.items() if count) or "nothing found")
        if batch:
            console.print(f"batch {batch}")
    if any(counts[outcome] for outcome in FAILED_OUTCOMES):
        raise typer.Exit(1)


def _counts(report: Sequence[dict[str, Any]]) -> dict[str, int]:
    return {outcome: sum(1 for line in report if line["outcome"] == outcome) for outcome in OUTCOMES}


def _line(
    legacy_id: str, source: str, outcome: str, run: str = "", detail: str = "", warnings: Sequence[str] = ()
) -> dict[str, Any]:
    return {
        "legacy_id": legacy_id,
        "source": source,
        "outcome": outcome,
        "run": run,
        "detail": detail,
        "warnings": list(warnings),
    }


# ---- the batch ------------------------------------------------------------------------------------------------------


def files_document(scanned: legacy.LegacyScan) -> list[dict[str, Any]]:
    """The file list the batch pins (its canonical JSON is the batch's files.json, of digest files_sha256)."""
    return [f.to_document() for f in scanned.files]


def batch_input(scanned: legacy.LegacyScan, source: Path, keep_source: bool) -> runs_pb2.RunInput:
    location = str(source.resolve())
    files_sha256 = sha256_canonical(files_document(scanned))
    summary = {
        "files": len(scanned.files),
        "files_sha256": files_sha256,
        "records": len(scanned.runs),
        "problems": len(scanned.problems),
        "duplicates": len(scanned.duplicates),
        "maps": sorted(scanned.maps),
    }
    return runs_pb2.RunInput(
        mode=MIGRATION_BATCH_MODE,
        tool_id=TOOL_ID,
        status=runs_pb2.RUN_STATUS_OK,
        decision=runs_pb2.Decision(risk_level=runs_pb2.RISK_LEVEL_GREEN, score=1.0),
        hashes=runs_pb2.Hashes(feasibility_sha256=sha256_canonical(summary)),
        request_summary=dict_to_struct({"source": location, "keep_source": keep_source}),
        feasibility=dict_to_struct(summary),
        meta=dict_to_struct(
            {
                "migration": {
                    "source": location,
                    "tool_version": TOOL_VERSION,
                    "keep_source": keep_source,
                    "files_sha256": files_sha256,
                }
            }
        ),
        engine_version=TOOL_VERSION,
    )


async def _open_batch(stub: Any, scanned: legacy.LegacyScan, source: Path, keep_source: bool) -> runs_pb2.Run:
    """Mints the batch with its file list (and the map files, when sources are kept) before any record."""
    batch: runs_pb2.Run = await stub.CreateRun(runs_pb2.CreateRunRequest(run=batch_input(scanned, source, keep_source)))
    files = canonical_json(files_document(scanned))
    await _attach_blob(stub, batch.name, "report_json", "files.json", files, {"legacy_role": "files"}, "batch-files")
    if keep_source:
        for index, (path, data) in enumerate(sorted(scanned.maps.items())):
            kept = legacy.KeptSource("map", path, data)
            await _attach_blob(stub, batch.name, LEGACY_SOURCE_KIND, kept.filename, data, kept.metadata, f"map-{index}")
    return batch


async def _close_batch(
    stub: Any,
    batch: runs_pb2.Run,
    scanned: legacy.LegacyScan,
    source: Path,
    keep_source: bool,
    report: Sequence[dict[str, Any]],
) -> None:
    document = {
        "format": REPORT_FORMAT,
        "batch": batch.name,
        "source": str(source.resolve()),
        "tool_version": TOOL_VERSION,
        "keep_source": keep_source,
        "files_sha256": sha256_canonical(files_document(scanned)),
        "counts": _counts(report),
        "records": list(report),
    }
    await _attach_blob(stub, batch.name, "report_json", "report.json", canonical_json(document), {}, "batch-report")


async def _attach_blob(
    stub: Any, run: str, kind: str, filename: str, data: bytes, metadata: dict[str, str], key: str
) -> runs_pb2.Attachment:
    header = runs_pb2.AttachmentHeader(
        run=run,
        kind=kind,
        filename=filename,
        content_type=JSON,
        sha256=sha256_bytes(data),
        metadata=metadata,
        request_id=key,
    )
    attachment: runs_pb2.Attachment = await stub.UploadAttachment(_chunks(header, data))
    return attachment


async def _chunks(header: runs_pb2.AttachmentHeader, data: bytes) -> AsyncIterator[runs_pb2.UploadAttachmentRequest]:
    yield runs_pb2.UploadAttachmentRequest(header=header)
    for start in range(0, len(data), CHUNK_LIMIT_BYTES):
        yield runs_pb2.UploadAttachmentRequest(chunk=data[start : start + CHUNK_LIMIT_BYTES])


# ---- one record -----------------------------------------------------------------------------------------------------


async def _migrate_one(stub: Any, legacy_run: legacy.LegacyRun, keep_source: bool) -> dict[str, Any]:
    request = runs_pb2.CreateRunRequest(
        run=legacy_run.run, request_id=legacy_run.idempotency_key, legacy_migration=True
    )
    try:
        created = await stub.CreateRun(request)
    except Exception as exc:  # a refused record is reported and the migration goes on
        if isinstance(exc, grpc.RpcError) and status.decode(exc).reason == "REQUEST_ID_REUSED":
            detail = (
                f"conflict: legacy id {legacy_run.legacy_id} was already migrated from a record with different "
                f"content (this one's artifact sha256 is {legacy_run.artifact_sha256}); the run migrated first "
                "was kept, nothing was changed"
            )
            return _line(legacy_run.legacy_id, legacy_run.source, "conflict", detail=detail)
        return _line(legacy_run.legacy_id, legacy_run.source, "error", detail=describe_failure(exc))
    warnings = migration_warnings(created)
    if legacy_run.replaces:
        warnings = [*warnings, f"replaces withdrawn {', '.join(legacy_run.replaces)}"]
    # Each command sends one correlation request id (services/cli/calls.py), stamped on what it mints: a run with
    # another request id was minted by an earlier migration and returned for the same idempotency key.
    outcome = "created" if created.request_id == call_context.request_id() else "existing"
    if keep_source and legacy_run.sources:
        try:
            await keep_sources(stub, created.name, legacy_run.sources)
        except Exception as exc:
            detail = f"{created.name} was minted but its legacy source was not kept: {describe_failure(exc)}"
            return _line(legacy_run.legacy_id, legacy_run.source, "error", created.name, detail, warnings)
    verification = await stub.VerifyRun(runs_pb2.VerifyRunRequest(name=created.name))
    if not verification.ok:
        detail = str(list(verification.problems))
        return _line(legacy_run.legacy_id, legacy_run.source, "unverified", created.name, detail, warnings)
    return _line(legacy_run.legacy_id, legacy_run.source, outcome, created.name, warnings=warnings)


def sources_key(sources: Sequence[legacy.KeptSource]) -> str:
    """The idempotency key of a record's kept sources: from what they are, so the same bytes found again (from a
    copy of the store) are kept once, and other bytes read for the same run are kept beside them."""
    return f"legacy-source-{sha256_canonical([list(s.key()) for s in sources])}"


async def keep_sources(stub: Any, run: str, sources: Sequence[legacy.KeptSource]) -> list[runs_pb2.Attachment]:
    """The record's bytes as legacy_source attachments of its run, all or none (one batch)."""
    items = [
        runs_pb2.NewAttachment(
            kind=LEGACY_SOURCE_KIND,
            filename=kept.filename,
            content_type=JSON,
            data=kept.data,
            sha256=kept.sha256,
            metadata=kept.metadata,
        )
        for kept in sources
    ]
    answer = await stub.BatchCreateAttachments(
        runs_pb2.BatchCreateAttachmentsRequest(run=run, attachments=items, request_id=sources_key(sources))
    )
    return list(answer.attachments)


# ---- status ---------------------------------------------------------------------------------------------------------

STATES = ("migrated", "not_migrated", "changed", "withdrawn", "refused", "duplicate")


@dataclass
class LegacyIndex:
    """The runs migrated from legacy records, by legacy id, as the runs service holds them (oldest first)."""

    by_legacy_id: dict[str, list[runs_pb2.Run]] = field(default_factory=dict)

    def runs_of(self, legacy_id: str) -> list[runs_pb2.Run]:
        """Its runs that are not withdrawn."""
        return [r for r in self.by_legacy_id.get(legacy_id, []) if not r.HasField("withdrawal")]

    def withdrawn_of(self, legacy_id: str) -> list[runs_pb2.Run]:
        return [r for r in self.by_legacy_id.get(legacy_id, []) if r.HasField("withdrawal")]


def legacy_of(run: runs_pb2.Run) -> dict[str, Any]:
    """meta.legacy of a migrated run ({} for any other run)."""
    if run.mode == MIGRATION_BATCH_MODE or "legacy" not in run.meta.fields:
        return {}
    value = json_format.MessageToDict(run.meta).get("legacy")
    return value if isinstance(value, dict) else {}


async def legacy_index(stub: Any, only_withdrawn: bool = False) -> LegacyIndex:
    """Reads every run once (ListRuns pages, withdrawn ones included) and keeps those that name a legacy record;
    with only_withdrawn, the withdrawn ones alone (what a migration needs to know to replace them)."""
    index = LegacyIndex()
    request = runs_pb2.ListRunsRequest(include_withdrawn=True, only_withdrawn=only_withdrawn)
    async for run in list_all_runs(stub, request):
        legacy_id = legacy_of(run).get("run_id")
        if isinstance(legacy_id, str) and legacy_id:
            index.by_legacy_id.setdefault(legacy_id, []).append(run)
    for found in index.by_legacy_id.values():
        found.sort(key=lambda r: (r.create_time.seconds, r.create_time.nanos, r.name))
    return index


def record_state(record: legacy.LegacyRun, index: LegacyIndex) -> dict[str, Any]:
    """What became of one legacy record: migrated (its run), changed (migrated from other content), withdrawn (its
    runs were, and it was not migrated again since), or not yet."""
    found = index.runs_of(record.legacy_id)
    same = [r for r in found if legacy_of(r).get("artifact_sha256") == record.artifact_sha256]
    if same:
        return _state(record.legacy_id, record.source, "migrated", ", ".join(r.name for r in same))
    if found:
        others = ", ".join(f"{r.name} (sha256 {str(legacy_of(r).get('artifact_sha256', ''))[:12]})" for r in found)
        detail = (
            f"migrated from other content as {others}; this record's artifact sha256 is "
            f"{record.artifact_sha256[:12]}: it was edited since, or the run is of another record"
        )
        return _state(record.legacy_id, record.source, "changed", found[-1].name, detail)
    withdrawn = index.withdrawn_of(record.legacy_id)
    if withdrawn:
        latest = withdrawn[-1]
        detail = (
            f"withdrawn with {latest.withdrawal.batch} by {latest.withdrawal.withdrawn_by.id} "
            f"({latest.withdrawal.reason}); migrate again to replace it"
        )
        return _state(record.legacy_id, record.source, "withdrawn", ", ".join(r.name for r in withdrawn), detail)
    return _state(record.legacy_id, record.source, "not_migrated")


def _state(legacy_id: str, source: str, state: str, run: str = "", detail: str = "") -> dict[str, Any]:
    return {"legacy_id": legacy_id, "source": source, "state": state, "run": run, "detail": detail}


@app.command("status")
def migration_status(
    source: Annotated[Path, typer.Option("--from", help="The legacy store, as given to migrate.")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """For every legacy record: migrated (with its run), not yet, changed since, withdrawn, or refused (why).

    Reads the store and the runs service; writes nothing. Refused records are the ones `migrate` would refuse
    (unreadable or invalid files, the same legacy id with other content in the store)."""
    scanned = legacy.scan(source)
    index = call(state_dir, "runs", legacy_index)
    lines = [
        _state(p.legacy_id, p.source, "refused", detail=("conflict: " if p.conflict else "") + p.error)
        for p in scanned.problems
    ]
    lines.extend(record_state(record, index) for record in scanned.runs)
    lines.extend(
        _state(copy.legacy_id, copy.source, "duplicate", detail=f"the same record as {first.source}")
        for copy, first in scanned.duplicates
    )
    counts = {state: sum(1 for line in lines if line["state"] == state) for state in STATES}
    if as_json:
        print_json({"counts": counts, "records": lines})
        return
    print_rows(lines, ["state", "legacy_id", "run", "source", "detail"], False, title="migration status")
    console.print(", ".join(f"{count} {state}" for state, count in counts.items() if count) or "nothing found")


# ---- verify ---------------------------------------------------------------------------------------------------------

# What the migration adds to a record's meta.legacy beyond the mapping (legacy.read_record): not differences.
ADDED_BY_MIGRATION = ("migration_warnings", "replaces")
ADVISORY_FIELDS = ("advisory_id", "kind", "engine_id", "engine_version", "request_id", "created_at")


def comparable(run: runs_pb2.RunInput) -> dict[str, Any]:
    """A run as the mapping defines it, as one JSON document: its fields, advisories by id and explanation."""
    document = json_format.MessageToDict(run, preserving_proto_field_name=True)
    advisories = document.pop("advisory_inputs", [])
    document["advisories"] = {
        a["advisory_id"]: {k: v for k, v in a.items() if k in ADVISORY_FIELDS} for a in advisories
    }
    explanation = document.pop("explanation", {})
    explanation = {k: explanation[k] for k in ("status", "summary", "error") if k in explanation}
    # No explanation and an explanation of status NONE with nothing in it are the same state.
    document["explanation"] = {} if explanation in ({}, {"status": "EXPLANATION_STATUS_NONE"}) else explanation
    legacy_meta = document.get("meta", {}).get("legacy")
    if isinstance(legacy_meta, dict):
        for key in ADDED_BY_MIGRATION:
            legacy_meta.pop(key, None)
    return document


def field_differences(record: legacy.LegacyRun, run: runs_pb2.Run, threshold: float) -> list[dict[str, Any]]:
    """Every path where the record (mapped) and the run differ. An advisory the record names is compared on the
    fields it gives (a time the legacy record left out is the migration's)."""
    expected, actual = comparable(record.run), comparable(run_as_input(run))
    for advisory_id, advisory in expected["advisories"].items():
        if advisory_id in actual["advisories"]:
            actual["advisories"][advisory_id] = {
                k: v for k, v in actual["advisories"][advisory_id].items() if k in advisory
            }
    left, right = run_diff.flatten(expected), run_diff.flatten(actual)
    return [
        _difference(record.legacy_id, run.name, path, left.get(path), right.get(path), threshold)
        for path in sorted(left.keys() | right.keys())
        if left.get(path) != right.get(path)
    ]


def _difference(
    legacy_id: str, run: str, path: str, legacy_value: Any, run_value: Any, threshold: float = 0.1, level: str = ""
) -> dict[str, Any]:
    return {
        "legacy_id": legacy_id,
        "run": run,
        "severity": level or run_diff.severity(path, legacy_value, run_value, threshold),
        "path": path,
        "legacy": json.dumps(legacy_value),
        "run_value": json.dumps(run_value),
    }


def source_differences(
    record: legacy.LegacyRun, run: runs_pb2.Run, kept: Sequence[runs_pb2.Attachment], batch: runs_pb2.Run | None
) -> list[dict[str, Any]]:
    """The record's files now against the bytes its run kept (same path and role, same sha256)."""
    differences = []
    by_path: dict[tuple[str, str], set[str]] = {}
    for attachment in kept:
        key = (attachment.metadata.get("legacy_role", ""), attachment.metadata.get("legacy_path", ""))
        by_path.setdefault(key, set()).add(attachment.digest.sha256)
    if not kept:
        opted_out = batch is not None and not _batch_keeps_source(batch)
        level = "INFO" if opted_out else ("CRITICAL" if batch is not None else "WARNING")
        why = "migrated with --no-keep-source" if opted_out else "no legacy_source attachment"
        if batch is None:
            why += " (migrated before batches were recorded)"
        differences.append(_difference(record.legacy_id, run.name, "legacy_source", why, None, level=level))
        return differences
    for source in record.sources:
        digests = by_path.pop((source.role, source.path), set())
        if source.sha256 not in digests:
            path = f"legacy_source[{source.path}].sha256"
            differences.append(
                _difference(record.legacy_id, run.name, path, source.sha256, sorted(digests) or None, level="CRITICAL")
            )
    for (role, path), digests in sorted(by_path.items()):
        differences.append(
            _difference(record.legacy_id, run.name, f"legacy_source[{path}]", None, sorted(digests), level="WARNING")
            | {"detail": f"the run keeps a {role} file the store no longer has"}
        )
    return differences


def _batch_keeps_source(batch: runs_pb2.Run) -> bool:
    migration = json_format.MessageToDict(batch.meta).get("migration") or {}
    return bool(migration.get("keep_source", True))


async def _kept_sources(stub: Any, run: str) -> list[runs_pb2.Attachment]:
    found: list[runs_pb2.Attachment] = []
    token = ""
    while True:
        page = await stub.ListAttachments(
            runs_pb2.ListAttachmentsRequest(run=run, kind=LEGACY_SOURCE_KIND, page_size=500, page_token=token)
        )
        found.extend(page.attachments)
        token = page.next_page_token
        if not token:
            return found


async def _batches_by_request_id(stub: Any) -> dict[str, runs_pb2.Run]:
    request = runs_pb2.ListRunsRequest(mode=MIGRATION_BATCH_MODE)
    return {batch.request_id: batch async for batch in list_all_runs(stub, request)}


@app.command("verify")
def migration_verify(
    source: Annotated[Path, typer.Option("--from", help="The legacy store, as given to migrate.")],
    threshold: Annotated[float, typer.Option(help="Score drift that counts as a WARNING.")] = 0.1,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Compare each legacy record with its migrated run, field by field after the mapping, and its files with the
    bytes the run kept; every difference with a severity as `custody runs diff` ranks it. Exit 1 on any CRITICAL.

    Also re-verifies each run (VerifyRun: its artifact hash and its attachments' bytes). A record not migrated yet
    is a WARNING; one that can no longer be read while a run was migrated from it is CRITICAL."""
    scanned = legacy.scan(source)

    async def check(stub: Any) -> tuple[int, list[dict[str, Any]]]:
        index = await legacy_index(stub)
        batches = await _batches_by_request_id(stub)
        differences: list[dict[str, Any]] = []
        verified = 0
        for problem in scanned.problems:
            found = index.runs_of(problem.legacy_id) if problem.legacy_id else []
            level = "CRITICAL" if found else "WARNING"
            run = found[-1].name if found else ""
            differences.append(_difference(problem.legacy_id, run, "record", problem.error, None, level=level))
        with Progress(console=err, transient=True, disable=as_json) as progress:
            task = progress.add_task("verifying", total=len(scanned.runs))
            for record in scanned.runs:
                differences.extend(await _verify_one(stub, record, index, batches, threshold))
                verified += 1
                progress.advance(task)
        return verified, differences

    verified, differences = call(state_dir, "runs", check)
    counts = {level: sum(1 for d in differences if d["severity"] == level) for level in run_diff.SEVERITIES}
    if as_json:
        print_json({"verified": verified, "counts": counts, "differences": differences})
    else:
        columns = ["severity", "legacy_id", "run", "path", "legacy", "run_value"]
        print_rows(differences, columns, False, title=f"{len(differences)} difference(s)")
        summary = ", ".join(f"{count} {level}" for level, count in counts.items() if count) or "no differences"
        console.print(f"verified {verified} record(s): {summary}")
    if counts["CRITICAL"]:
        raise typer.Exit(1)


async def _verify_one(
    stub: Any, record: legacy.LegacyRun, index: LegacyIndex, batches: dict[str, runs_pb2.Run], threshold: float
) -> list[dict[str, Any]]:
    found = index.runs_of(record.legacy_id)
    withdrawn = index.withdrawn_of(record.legacy_id)
    if not found and not withdrawn:
        return [_difference(record.legacy_id, "", "run", "not migrated", None, level="WARNING")]
    same = [r for r in found if legacy_of(r).get("artifact_sha256") == record.artifact_sha256]
    run = (same or found or withdrawn)[-1]
    differences = field_differences(record, run, threshold)
    if not found:  # a withdrawn run is still verified, and said to be withdrawn
        why = f"withdrawn with {run.withdrawal.batch}: {run.withdrawal.reason}; not migrated again"
        differences.append(_difference(record.legacy_id, run.name, "withdrawal", why, None, level="WARNING"))
    kept = await _kept_sources(stub, run.name)
    differences.extend(source_differences(record, run, kept, batches.get(run.request_id)))
    verification = await stub.VerifyRun(runs_pb2.VerifyRunRequest(name=run.name))
    differences.extend(
        _difference(record.legacy_id, run.name, f"integrity.{p.subject}", p.expected, p.actual, level="CRITICAL")
        | {"detail": p.problem}
        for p in verification.problems
    )
    return differences


# ---- withdraw -------------------------------------------------------------------------------------------------------


@app.command("withdraw")
def migration_withdraw(
    batch: Annotated[str, typer.Argument(help="runs/{run}: the batch `migrate` reported.")],
    reason: Annotated[str, typer.Option(help="Why (required): recorded on the batch and every run it created.")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Withdraw a migration: an append-only withdrawal (who, why, when) on the batch and every run it created.

    Nothing is deleted: withdrawn runs stay readable and verifiable, are left out of `custody runs list`, can never
    be bound, and migrating the same records again mints fresh runs that name them. Repeating it with the same
    reason shows the recorded withdrawal; another reason is refused (ALREADY_WITHDRAWN)."""
    answer = call(
        state_dir,
        "runs",
        lambda stub: stub.WithdrawMigrationBatch(runs_pb2.WithdrawMigrationBatchRequest(batch=batch, reason=reason)),
    )
    if as_json:
        print_json(as_dict(answer))
        return
    withdrawal = answer.withdrawal
    console.print(
        f"{withdrawal.batch} withdrawn with {len(answer.runs)} run(s) by {withdrawal.withdrawn_by.id} at "
        f"{withdrawal.withdraw_time.ToJsonString()}: {withdrawal.reason}",
        markup=False,
    )
    for name in answer.runs:
        console.print(f"  {name}", markup=False)
