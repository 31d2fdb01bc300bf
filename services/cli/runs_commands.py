"""`custody runs ...`: operate the runs service (list, show, diff, verify, attach, explain, review explanations, bind,
export, import; migrate is services/cli/migration_commands.py). Everything goes through the runs service's API: the
CLI never touches its database or blobs."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
import yaml
from google.protobuf import json_format
from rich.progress import Progress

from custody.runs.v1 import runs_pb2
from services.cli.calls import as_dict, call, print_json, print_record, print_rows
from services.cli.options import IdempotencyKey, JsonFlag, StateDir, json_object_argument
from services.cli.output import console, err, fail
from services.cli.state import DEFAULT_STATE_DIR
from services.common import status
from services.common.errors import CustodyError
from services.common.hashing import sha256_canonical
from services.common.limits import CHUNK_LIMIT_BYTES
from services.common.protomap import dict_to_struct
from services.common.run_labels import explanation_state

app = typer.Typer(help="Run artifacts: list, inspect, verify, attach, bind, migrate.", no_args_is_help=True)

EXPORT_FORMAT = "custody-runs-export/1"
STATUS = {"OK": runs_pb2.RUN_STATUS_OK, "BLOCKED": runs_pb2.RUN_STATUS_BLOCKED, "ERROR": runs_pb2.RUN_STATUS_ERROR}
RISK = {"GREEN": 1, "YELLOW": 2, "RED": 3, "ERROR": 4}
EXPLANATION = {"NONE": 1, "PENDING": 2, "READY": 3, "ERROR": 4}


def _choice(value: str | None, choices: dict[str, int], option: str) -> int:
    if not value:
        return 0
    if value.upper() not in choices:
        raise typer.BadParameter(f"{option} must be one of {', '.join(choices)}")
    return choices[value.upper()]


def _summary(run: runs_pb2.Run) -> dict[str, Any]:
    return {
        "name": run.name,
        "created": run.create_time.ToJsonString(),
        "mode": run.mode,
        "tool_id": run.tool_id,
        "status": runs_pb2.RunStatus.Name(run.status).removeprefix("RUN_STATUS_"),
        "risk": runs_pb2.RiskLevel.Name(run.decision.risk_level).removeprefix("RISK_LEVEL_"),
        "score": round(run.decision.score, 3),
        "explanation": explanation_state(run.explanation),
        "created_by": run.created_by.id,
    }


@app.command("list")
def list_runs(
    status: Annotated[str | None, typer.Option(help="OK, BLOCKED or ERROR.")] = None,
    risk: Annotated[str | None, typer.Option(help="GREEN, YELLOW, RED or ERROR.")] = None,
    mode: Annotated[str, typer.Option()] = "",
    tool: Annotated[str, typer.Option(help="tool_id")] = "",
    created_by: Annotated[str, typer.Option(help="Principal id, e.g. human:operator.")] = "",
    explanation: Annotated[str | None, typer.Option(help="NONE, PENDING, READY or ERROR.")] = None,
    include_withdrawn: Annotated[bool, typer.Option(help="Withdrawn runs too (left out otherwise).")] = False,
    limit: Annotated[int, typer.Option(help="At most this many runs (0: all).")] = 50,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Runs newest first, filtered."""
    request = runs_pb2.ListRunsRequest(
        status=_choice(status, STATUS, "--status"),  # type: ignore[arg-type]
        risk_level=_choice(risk, RISK, "--risk"),  # type: ignore[arg-type]
        explanation_status=_choice(explanation, EXPLANATION, "--explanation"),  # type: ignore[arg-type]
        mode=mode,
        tool_id=tool,
        created_by=created_by,
        include_withdrawn=include_withdrawn,
    )

    async def fetch(stub: Any) -> list[runs_pb2.Run]:
        found: list[runs_pb2.Run] = []
        async for run in list_all_runs(stub, request):
            found.append(run)
            if limit and len(found) >= limit:
                break
        return found

    found = call(state_dir, "runs", fetch)
    rows = [as_dict(r) for r in found] if as_json else [_summary(r) for r in found]
    print_rows(rows, list(_summary(runs_pb2.Run())), as_json, title=f"{len(found)} run(s)")


async def list_all_runs(stub: Any, request: runs_pb2.ListRunsRequest) -> AsyncIterator[runs_pb2.Run]:
    request.page_size = 200
    while True:
        page = await stub.ListRuns(request)
        for run in page.runs:
            yield run
        if not page.next_page_token:
            return
        request.page_token = page.next_page_token


@app.command()
def show(name: str, state_dir: StateDir = DEFAULT_STATE_DIR, as_json: JsonFlag = False) -> None:
    """One run, with its decision, hashes, advisories, explanation and attachments."""

    async def fetch(stub: Any) -> tuple[runs_pb2.Run, list[runs_pb2.Attachment]]:
        run = await stub.GetRun(runs_pb2.GetRunRequest(name=name))
        return run, await all_attachments(stub, run.name)

    run, attachments = call(state_dir, "runs", fetch)
    if as_json:
        print_json({**as_dict(run), "attachments": [as_dict(a) for a in attachments]})
        return
    print_record(run, False)
    print_rows([_attachment_row(a) for a in attachments], ATTACHMENT_COLUMNS, False, title="attachments")


ATTACHMENT_COLUMNS = ["name", "kind", "filename", "size", "sha256", "created_by", "created"]


def _attachment_row(attachment: runs_pb2.Attachment) -> dict[str, Any]:
    return {
        "name": attachment.name,
        "kind": attachment.kind,
        "filename": attachment.filename,
        "size": attachment.digest.size_bytes,
        "sha256": attachment.digest.sha256,
        "created_by": attachment.created_by.id,
        "created": attachment.create_time.ToJsonString(),
    }


@app.command()
def diff(
    left: str,
    right: str,
    threshold: Annotated[float, typer.Option(help="Score drift that counts as a WARNING.")] = 0.1,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Field-by-field differences between two runs, with severities."""
    answer = call(
        state_dir,
        "runs",
        lambda stub: stub.DiffRuns(runs_pb2.DiffRunsRequest(left=left, right=right, score_drift_threshold=threshold)),
    )
    rows = [
        {
            "severity": runs_pb2.Severity.Name(d.severity).removeprefix("SEVERITY_"),
            "path": d.path,
            "left": d.left,
            "right": d.right,
        }
        for d in answer.differences
    ]
    print_rows(rows, ["severity", "path", "left", "right"], as_json, title=f"{len(rows)} difference(s)")


@app.command()
def verify(
    name: Annotated[str | None, typer.Argument(help="runs/{run}; omit with --all.")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Verify every run.")] = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Recompute artifact hashes and attachment digests; exit 1 if anything does not match."""
    if bool(name) == all_runs:
        raise typer.BadParameter("give a run name or --all")

    async def check(stub: Any) -> list[runs_pb2.VerifyRunResponse]:
        if name:
            return [await stub.VerifyRun(runs_pb2.VerifyRunRequest(name=name))]
        every = runs_pb2.ListRunsRequest(include_withdrawn=True)  # withdrawn runs stay verifiable
        names = [run.name async for run in list_all_runs(stub, every)]
        reports = []
        with Progress(console=err, transient=True, disable=as_json) as progress:
            task = progress.add_task("verifying runs", total=len(names))
            for run_name in names:
                reports.append(await stub.VerifyRun(runs_pb2.VerifyRunRequest(name=run_name)))
                progress.advance(task)
        return reports

    reports = call(state_dir, "runs", check)
    failed = [r for r in reports if not r.ok]
    if as_json:
        print_json({"verified": len(reports), "failed": len(failed), "reports": [as_dict(r) for r in reports]})
    else:
        problems = [
            {"run": r.run, "subject": p.subject, "problem": p.problem, "expected": p.expected, "actual": p.actual}
            for r in failed
            for p in r.problems
        ]
        if problems:
            print_rows(problems, ["run", "subject", "problem", "expected", "actual"], False, title="problems")
        checked = sum(r.attachments_checked for r in reports)
        console.print(f"verified {len(reports)} run(s), {checked} attachment(s): {len(failed)} with problems")
    if failed:
        raise typer.Exit(1)


async def upload_chunks(
    header: runs_pb2.AttachmentHeader, path: Path
) -> AsyncIterator[runs_pb2.UploadAttachmentRequest]:
    yield runs_pb2.UploadAttachmentRequest(header=header)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_LIMIT_BYTES):
            yield runs_pb2.UploadAttachmentRequest(chunk=chunk)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK_LIMIT_BYTES):
            digest.update(block)
    return digest.hexdigest()


@app.command()
def attach(
    run: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    kind: Annotated[str, typer.Option(help="geometry_svg, geometry_spec_json, ai_provenance_json, gcode, ...")],
    content_type: Annotated[str, typer.Option()] = "",
    request_id: IdempotencyKey = "",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Upload a file as an attachment of a run (streamed; its sha256 is checked by the server)."""
    header = runs_pb2.AttachmentHeader(
        run=run,
        kind=kind,
        filename=file.name,
        content_type=content_type,
        sha256=_file_sha256(file),
        request_id=request_id,
    )
    print_record(call(state_dir, "runs", lambda stub: stub.UploadAttachment(upload_chunks(header, file))), as_json)


@app.command()
def explain(name: str, state_dir: StateDir = DEFAULT_STATE_DIR, as_json: JsonFlag = False) -> None:
    """Ask ai_gateway to explain a run's decision; prints the run with its explanation status."""
    run = call(state_dir, "runs", lambda stub: stub.SuggestExplanation(runs_pb2.SuggestExplanationRequest(name=name)))
    if as_json:
        print_json(as_dict(run))
        return
    console.print(f"{run.name}: explanation {explanation_state(run.explanation)}", markup=False)
    console.print(run.explanation.summary or run.explanation.error, markup=False)
    if run.explanation.review_status == runs_pb2.REVIEW_STATUS_PENDING_REVIEW:
        console.print(
            f"a reviewer decides on it: custody runs review-explanation {run.name} --approve|--reject --rationale TEXT",
            markup=False,
        )


# ---- explanation reviews ---------------------------------------------------------------------------------------

REVIEW_COLUMNS = ["name", "created", "risk", "status", "version", "explained", "summary"]


def _review_row(run: runs_pb2.Run) -> dict[str, Any]:
    return {
        "name": run.name,
        "created": run.create_time.ToJsonString(),
        "risk": runs_pb2.RiskLevel.Name(run.decision.risk_level).removeprefix("RISK_LEVEL_"),
        "status": runs_pb2.RunStatus.Name(run.status).removeprefix("RUN_STATUS_"),
        "version": run.explanation.version,
        "explained": run.explanation.updated_at.ToJsonString(),
        "summary": run.explanation.summary,
    }


@app.command()
def reviews(
    limit: Annotated[int, typer.Option(help="At most this many runs (0: all).")] = 50,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Explanations awaiting a reviewer (those of YELLOW and RED runs), newest run first, with the version to decide on.

    Decide one with `custody runs review-explanation RUN --approve|--reject --rationale TEXT`."""
    request = runs_pb2.ListRunsRequest(explanation_review_status=runs_pb2.REVIEW_STATUS_PENDING_REVIEW)

    async def fetch(stub: Any) -> list[runs_pb2.Run]:
        found: list[runs_pb2.Run] = []
        async for run in list_all_runs(stub, request):
            found.append(run)
            if limit and len(found) >= limit:
                break
        return found

    found = call(state_dir, "runs", fetch)
    rows = [as_dict(r) for r in found] if as_json else [_review_row(r) for r in found]
    print_rows(rows, REVIEW_COLUMNS, as_json, title=f"{len(found)} explanation(s) awaiting review")


@app.command("review-explanation")
def review_explanation(
    run: Annotated[str, typer.Argument(help="runs/{run}")],
    rationale: Annotated[str, typer.Option(help="Why you decide so (required; recorded with the decision).")],
    approve: Annotated[bool, typer.Option("--approve", help="Approve the explanation.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject it: it is not to be relied on.")] = False,
    expected_version: Annotated[
        int | None,
        typer.Option(
            help="The explanation version you read (`custody runs reviews` shows it); default: the current one. "
            "Refused (ABORTED EXPLANATION_CHANGED) if the explanation is at another version."
        ),
    ] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Approve or reject an explanation awaiting review, with a rationale (reviewers only; four eyes: not one you
    asked for, nor of a run you created). The decision is final and recorded in the explanation's history."""
    if approve == reject:
        raise typer.BadParameter("give exactly one of --approve and --reject", param_hint="--approve/--reject")
    decision = runs_pb2.REVIEW_DECISION_APPROVE if approve else runs_pb2.REVIEW_DECISION_REJECT

    async def decide(stub: Any) -> runs_pb2.Run:
        version = expected_version
        if version is None:
            version = (await stub.GetRun(runs_pb2.GetRunRequest(name=run))).explanation.version
        request = runs_pb2.ReviewExplanationRequest(
            run=run, decision=decision, rationale=rationale, expected_version=version
        )
        answer: runs_pb2.Run = await stub.ReviewExplanation(request)
        return answer

    reviewed = call(state_dir, "runs", decide)
    if as_json:
        print_json(as_dict(reviewed))
        return
    review = reviewed.explanation.review
    console.print(
        f"{reviewed.name}: explanation {explanation_state(reviewed.explanation)} by {review.reviewed_by.id} "
        f"(version {review.version})",
        markup=False,
    )
    console.print(reviewed.explanation.summary, markup=False)


@app.command()
def bind(
    run: str,
    attachment: Annotated[
        list[str] | None, typer.Option("--attachment", help="Repeat; default: latest of each kind.")
    ] = None,
    notes: Annotated[str, typer.Option(help="Operator notes recorded on the minted run.")] = "",
    lenient: Annotated[
        bool, typer.Option(help="Mint a BLOCKED run instead of failing when SVG or spec is missing.")
    ] = False,
    lineage_candidate: Annotated[str, typer.Option(help="Lineage version of the candidate.")] = "",
    request_id: IdempotencyKey = "",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Check a candidate's SVG + spec for feasibility and mint a run with decision ALLOW or BLOCK."""
    request = runs_pb2.BindCandidateRequest(
        run=run,
        attachments=attachment or [],
        operator_notes=notes,
        strict=not lenient,
        request_id=request_id,
        lineage_candidate=lineage_candidate,
    )
    answer = call(state_dir, "runs", lambda stub: stub.BindCandidate(request))
    if as_json:
        print_json(as_dict(answer))
        return
    decision = runs_pb2.FeasibilityDecision.Name(answer.decision).removeprefix("FEASIBILITY_DECISION_")
    risk = runs_pb2.RiskLevel.Name(answer.risk_level).removeprefix("RISK_LEVEL_")
    console.print(f"{answer.run.name}: {decision} (risk {risk}, score {answer.score:.2f})")
    console.print(f"feasibility_sha256 {answer.feasibility_sha256}  engine {answer.engine_version}")
    for line in [*answer.reasons, *answer.warnings]:
        console.print(f"  - {line}")


def migration_warnings(run: runs_pb2.Run) -> list[str]:
    legacy_meta = json_format.MessageToDict(run.meta).get("legacy") or {}
    return [str(w) for w in legacy_meta.get("migration_warnings") or []]


def describe_failure(exc: Exception) -> str:
    if isinstance(exc, grpc.RpcError):
        decoded = status.decode(exc)
        fields = "; ".join(f"{v.field}: {v.description}" for v in decoded.violations)
        return f"{decoded.code.name} {decoded.reason}: {decoded.message}" + (f" ({fields})" if fields else "")
    if isinstance(exc, CustodyError):
        return f"{exc.reason}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


@app.command("export")
def export_runs(
    directory: Annotated[Path, typer.Argument(file_okay=False)],
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Write every run, its attachment records and the blobs they name into DIRECTORY."""
    (directory / "runs").mkdir(parents=True, exist_ok=True)
    (directory / "blobs").mkdir(exist_ok=True)

    async def dump(stub: Any) -> tuple[int, int]:
        runs = [run async for run in list_all_runs(stub, runs_pb2.ListRunsRequest())]
        blobs = 0
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("exporting", total=len(runs))
            for run in runs:
                run_id = run.name.removeprefix("runs/")
                attachments = await all_attachments(stub, run.name)
                _write_json(directory / "runs" / f"{run_id}.json", as_dict(run))
                _write_json(directory / "runs" / f"{run_id}.attachments.json", [as_dict(a) for a in attachments])
                for attachment in attachments:
                    target = directory / "blobs" / attachment.digest.sha256
                    if not target.exists():
                        await _download(stub, attachment.name, target)
                        blobs += 1
                progress.advance(task)
        return len(runs), blobs

    count, blobs = call(state_dir, "runs", dump)
    _write_json(directory / "manifest.json", {"format": EXPORT_FORMAT, "runs": count})
    console.print(f"exported {count} run(s) and {blobs} blob(s) to {directory}")


async def all_attachments(stub: Any, run_name: str) -> list[runs_pb2.Attachment]:
    found: list[runs_pb2.Attachment] = []
    token = ""
    while True:
        page = await stub.ListAttachments(
            runs_pb2.ListAttachmentsRequest(run=run_name, page_size=500, page_token=token)
        )
        found.extend(page.attachments)
        token = page.next_page_token
        if not token:
            return list(reversed(found))  # oldest first, the order they were attached in


@app.command()
def download(
    attachment: Annotated[str, typer.Argument(help="runs/{run}/attachments/{attachment}")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Default: the attachment's file name; - for stdout (once verified)."),
    ] = None,
    signed: Annotated[
        bool, typer.Option(help="The credentialed asset (with its C2PA manifest) instead of the unsigned bytes.")
    ] = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Download an attachment, checking its sha256 on the way; on a mismatch no file is left and the exit is 1."""

    async def fetch(stub: Any) -> tuple[Path, runs_pb2.Attachment] | str:
        answers = stub.ReadAttachment(runs_pb2.ReadAttachmentRequest(name=attachment, signed=signed))
        record: runs_pb2.Attachment | None = None
        digest = hashlib.sha256()
        target: Path | None = None
        partial: Path | None = None
        size = 0
        try:
            async for message in answers:
                if record is None:
                    record = message.attachment
                    name = Path(record.filename).name
                    if output is None and name in ("", ".", ".."):
                        return f"the attachment's file name {record.filename!r} is not one to write; pass -o FILE"
                    target = output or Path(name)
                    partial = target.with_name(f".{target.name}.part")
                    handle = partial.open("wb")
                digest.update(message.chunk)
                size += len(message.chunk)
                handle.write(message.chunk)
            if record is None or target is None or partial is None:
                return "the service sent no attachment record"
            handle.close()
            expected = record.signed_digest if signed else record.digest
            if (digest.hexdigest(), size) != (expected.sha256, expected.size_bytes):
                partial.unlink()
                return f"the bytes received hash to {digest.hexdigest()} ({size} bytes), not {expected.sha256}"
            partial.replace(target)
            return target, record
        except BaseException:
            if partial is not None and partial.exists():
                handle.close()
                partial.unlink()
            raise

    to_stdout = output == Path("-")
    if to_stdout:  # spooled to a private temporary file, so stdout only ever gets bytes that verified
        spool = tempfile.TemporaryDirectory(prefix="custody-download-")
        output = Path(spool.name) / "attachment"
    result = call(state_dir, "runs", fetch)
    if isinstance(result, str):
        fail(err, f"{result}; nothing was written", code="DIGEST_MISMATCH")
    target, record = result
    if to_stdout:
        with target.open("rb") as verified:
            shutil.copyfileobj(verified, sys.stdout.buffer)
        sys.stdout.flush()
        spool.cleanup()
        return
    digest = record.signed_digest if signed else record.digest
    console.print(f"{target} ({digest.size_bytes} bytes, sha256 {digest.sha256})", markup=False)


async def _download(stub: Any, name: str, target: Path) -> None:
    partial = target.with_suffix(".part")
    with partial.open("wb") as handle:
        async for message in stub.ReadAttachment(runs_pb2.ReadAttachmentRequest(name=name)):
            handle.write(message.chunk)
    partial.replace(target)


def _write_json(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@app.command("import")
def import_runs(
    directory: Annotated[Path, typer.Argument(exists=True, file_okay=False)],
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Recreate the runs and attachments of an export (new names; the originals are kept in meta.imported)."""
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("format") != EXPORT_FORMAT:
        raise typer.BadParameter(f"{directory} is not a {EXPORT_FORMAT} export")
    files = sorted(p for p in (directory / "runs").glob("run_*.json") if not p.name.endswith(".attachments.json"))

    async def load(stub: Any) -> list[dict[str, str]]:
        lines = []
        with Progress(console=err, transient=True, disable=as_json) as progress:
            task = progress.add_task("importing", total=len(files))
            for path in files:
                lines.append(await _import_one(stub, directory, path))
                progress.advance(task)
        return lines

    report = call(state_dir, "runs", load)
    print_rows(report, ["original", "run", "attachments"], as_json, title="imported")


async def _import_one(stub: Any, directory: Path, path: Path) -> dict[str, str]:
    original = json_format.ParseDict(json.loads(path.read_text(encoding="utf-8")), runs_pb2.Run())
    run_input = _input_from_run(original)
    original_id = original.name.removeprefix("runs/")
    # A migrated run that breaks Custody's later rules (its warnings say which) comes back the way it came in.
    migrated_with_warnings = bool(migration_warnings(original))
    created = await stub.CreateRun(
        runs_pb2.CreateRunRequest(
            run=run_input, request_id=f"import-{original_id}", legacy_migration=migrated_with_warnings
        )
    )
    attachments = json.loads((directory / "runs" / f"{original_id}.attachments.json").read_text(encoding="utf-8"))
    for raw in attachments:
        attachment = json_format.ParseDict(raw, runs_pb2.Attachment())
        blob = directory / "blobs" / attachment.digest.sha256
        header = runs_pb2.AttachmentHeader(
            run=created.name,
            kind=attachment.kind,
            filename=attachment.filename,
            content_type=attachment.content_type,
            sha256=attachment.digest.sha256,
            metadata={**attachment.metadata, "imported_from": attachment.name},
            request_id=f"import-{attachment.name.rsplit('/', 1)[-1]}",
        )
        await stub.UploadAttachment(upload_chunks(header, blob))
    return {"original": original.name, "run": created.name, "attachments": str(len(attachments))}


def run_as_input(run: runs_pb2.Run) -> runs_pb2.RunInput:
    """The RunInput a run was minted from, as the run reports it (what import re-mints and migrate verify compares)."""
    return runs_pb2.RunInput(
        mode=run.mode,
        tool_id=run.tool_id,
        status=run.status,
        request_summary=run.request_summary,
        feasibility=run.feasibility,
        decision=run.decision,
        hashes=run.hashes,
        outputs=run.outputs,
        meta=run.meta,
        engine_version=run.engine_version,
        advisory_inputs=run.advisory_inputs,
        explanation=run.explanation,
    )


def _input_from_run(run: runs_pb2.Run) -> runs_pb2.RunInput:
    """run_as_input with meta.imported saying where the run came from."""
    meta = json_format.MessageToDict(run.meta)
    meta["imported"] = {
        "from": run.name,
        "artifact_sha256": run.artifact_sha256,
        "created_by": run.created_by.id,
        "create_time": run.create_time.ToJsonString(),
        "source_run": run.source_run,
        "bound_attachments": [as_dict(b) for b in run.bound_attachments],
    }
    found = run_as_input(run)
    found.meta.CopyFrom(dict_to_struct(meta))
    return found


# ---- a run of your own, and what it holds --------------------------------------------------------------------


def _run_document(path: Path) -> dict[str, Any]:
    """A RunInput as JSON or YAML (the proto's JSON mapping: mode, tool_id, status, decision, ...)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="--file") from None
    if not isinstance(document, dict):
        raise typer.BadParameter(f"{path} must hold one object (a RunInput)", param_hint="--file")
    return document


@app.command()
def create(
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", exists=True, dir_okay=False, help="A RunInput as JSON or YAML; flags override."),
    ] = None,
    mode: Annotated[str, typer.Option(help="What kind of run, e.g. design_session or cnc_rosette.")] = "",
    tool: Annotated[str, typer.Option(help="tool_id, e.g. router-0.5mm.")] = "",
    status_: Annotated[str | None, typer.Option("--status", help="OK, BLOCKED or ERROR (default OK).")] = None,
    risk: Annotated[str | None, typer.Option(help="GREEN, YELLOW, RED or ERROR (default GREEN).")] = None,
    score: Annotated[float | None, typer.Option(help="0..1, higher is safer (default 1).")] = None,
    block_reason: Annotated[str, typer.Option(help="Why the run is blocked (BLOCKED runs only).")] = "",
    warning: Annotated[list[str] | None, typer.Option(help="A decision warning (repeatable).")] = None,
    feasibility: Annotated[
        str | None, typer.Option(help="The feasibility evaluation: a JSON object, or @file.json.")
    ] = None,
    request_summary: Annotated[str | None, typer.Option(help="What was asked: a JSON object, or @file.json.")] = None,
    meta: Annotated[str | None, typer.Option(help="Free metadata: a JSON object, or @file.json.")] = None,
    output_: Annotated[list[str] | None, typer.Option("--output", help="An output as KEY=VALUE (repeatable).")] = None,
    request_id: IdempotencyKey = "",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Mint a run of your own (from flags, or a JSON/YAML file): immutable and hash-stamped from then on.

    The feasibility hash is computed from --feasibility unless the file gives one."""
    document = _run_document(file) if file is not None else {}
    run = runs_pb2.RunInput()
    try:
        json_format.ParseDict(document, run)
    except json_format.ParseError as exc:
        raise typer.BadParameter(f"{file}: {exc}", param_hint="--file") from None
    run.mode = mode or run.mode
    run.tool_id = tool or run.tool_id
    if status_ is not None or not run.status:
        run.status = _choice(status_ or "OK", STATUS, "--status")  # type: ignore[arg-type,assignment]
    if risk is not None or not run.decision.risk_level:
        run.decision.risk_level = _choice(risk or "GREEN", RISK, "--risk")  # type: ignore[assignment]
    decision = document.get("decision")
    if score is not None:
        run.decision.score = score
    elif not isinstance(decision, dict) or "score" not in decision:
        run.decision.score = 1.0
    run.decision.block_reason = block_reason or run.decision.block_reason
    run.decision.warnings.extend(warning or [])
    for value, target in ((feasibility, run.feasibility), (request_summary, run.request_summary), (meta, run.meta)):
        if value is not None:
            target.Clear()
            target.update(json_object_argument(value))
    for item in output_ or []:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--output")
        run.outputs[key] = value
    if not run.hashes.feasibility_sha256:
        run.hashes.feasibility_sha256 = sha256_canonical(json_format.MessageToDict(run.feasibility))
    request = runs_pb2.CreateRunRequest(run=run, request_id=request_id)
    created = call(state_dir, "runs", lambda stub: stub.CreateRun(request))
    if as_json:
        print_json(as_dict(created))
        return
    console.print(f"{created.name}  artifact_sha256 {created.artifact_sha256}", markup=False)


@app.command()
def attachments(
    run: Annotated[str, typer.Argument(help="runs/{run}")],
    kind: Annotated[str, typer.Option(help="Only this kind, e.g. geometry_svg.")] = "",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """A run's attachments, oldest first: kind, file name, size, sha256 and who attached each.

    `custody runs download NAME` fetches one, checking its sha256."""
    found = [a for a in call(state_dir, "runs", lambda stub: all_attachments(stub, run)) if not kind or a.kind == kind]
    if as_json:
        print_json([as_dict(a) for a in found])
        return
    print_rows([_attachment_row(a) for a in found], ATTACHMENT_COLUMNS, False, title=f"{len(found)} attachment(s)")
