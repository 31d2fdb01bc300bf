"""Reading the legacy JSON run stores into run content, for `custody runs migrate`.

Two layouts are understood, alone or together: a single JSON map `{run_id: artifact}` (a file, or `runs.json` in
the directory given), and date partitions `YYYY-MM-DD/run_*.json` with `run_*_advisory_*.json` and
`run_*_explanation.json` side files. Every file that cannot be read or understood becomes a `LegacyProblem`
naming its path: nothing is skipped silently.

What a record becomes depends on its content only, never on where it was read from: the idempotency key comes
from its legacy id and everything compared on a retry (the run, its advisories and explanation, the digest of the
legacy artifact) from its content, so the same records migrated again from a copy of the store are found as
already migrated, while a legacy id seen again with other content is a conflict. The source path is reported,
not recorded in the run.

What each record was read from is kept too (`LegacyRun.sources`): the bytes of its core file and side files, or, for
a record of a JSON map file, exactly that record's bytes of the file (the map file itself is kept once, with the
migration batch). Every file read is listed with its digest (`LegacyScan.files`), damaged ones included.

A record is read straight into the runs contract (a `RunInput`, advisories and explanation included) and checked
with the rules the server applies to a legacy migration (services.common.run_rules.validate_legacy_run): against
the legacy RunArtifact schema, not against rules Custody added later, so such a record is imported as it was, with
a warning.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from google.protobuf import timestamp_pb2

from custody.runs.v1 import runs_pb2
from services.common.call_context import is_valid_request_id
from services.common.errors import InvalidArgument
from services.common.hashing import sha256_canonical, sha256_text
from services.common.protomap import dict_to_struct
from services.common.run_rules import RunFields, validate_legacy_run

PARTITION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAP_FILE = "runs.json"
CORE_FILE = re.compile(r"^(?P<run>run_[A-Za-z0-9]+)\.json$")
ADVISORY_FILE = re.compile(r"^(?P<run>run_[A-Za-z0-9]+)_advisory_(?P<advisory>[A-Za-z0-9._:\-]+)\.json$")
EXPLANATION_FILE = re.compile(r"^(?P<run>run_[A-Za-z0-9]+)_explanation\.json$")
LEGACY_RISK = {
    "GREEN": "GREEN",
    "LOW": "GREEN",
    "YELLOW": "YELLOW",
    "MEDIUM": "YELLOW",
    "RED": "RED",
    "HIGH": "RED",
    "ERROR": "ERROR",
}
RUN_STATUSES = ("OK", "BLOCKED", "ERROR")
EXPLANATION_STATUSES = ("NONE", "PENDING", "READY", "ERROR")
ADVISORY_KINDS = ("explanation", "advisory", "note", "unknown")


# Attachment filenames are conservative (no path, a safe character set): anything else becomes "_".
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._\- ]")


@dataclass(frozen=True)
class SourceFile:
    """A file of the legacy store as it was read: its path relative to the store, its digest and size."""

    path: str
    sha256: str
    size_bytes: int

    def to_document(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size_bytes": self.size_bytes}


@dataclass(frozen=True)
class KeptSource:
    """Bytes a record was read from, kept with its run as an attachment of kind legacy_source."""

    # record (the core file, or the record's bytes of a map file), advisory or explanation (side files).
    role: str
    # The file, relative to the store.
    path: str
    data: bytes
    # For a record of a JSON map file: the map file's digest and the byte range [start, end) of the record in it.
    container_sha256: str = ""
    span: tuple[int, int] | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def filename(self) -> str:
        name = _UNSAFE_FILENAME.sub("_", PurePosixPath(self.path).name)[:160] or "source"
        name = name if name[0].isalnum() else f"f{name}"
        return f"{name}.record" if self.span is not None else name

    @property
    def metadata(self) -> dict[str, str]:
        metadata = {"legacy_role": self.role, "legacy_path": self.path[:1024]}
        if self.span is not None:
            metadata.update(
                legacy_container_sha256=self.container_sha256,
                legacy_byte_start=str(self.span[0]),
                legacy_byte_end=str(self.span[1]),
            )
        return metadata

    def key(self) -> tuple[str, str, str]:
        return (self.role, self.path, self.sha256)


@dataclass(frozen=True)
class LegacyRun:
    legacy_id: str
    source: str
    # The run as CreateRun(legacy_migration) will mint it, advisories and explanation included.
    run: runs_pb2.RunInput
    # Rules Custody added after the legacy schema that this record breaks ("field: rule"); the server records its
    # own list in meta.legacy.migration_warnings.
    warnings: tuple[str, ...] = ()
    # The bytes it was read from, in the order read (core record first).
    sources: tuple[KeptSource, ...] = ()
    # The withdrawn runs of this record it is migrated to replace (see replacing).
    replaces: tuple[str, ...] = ()

    @property
    def artifact_sha256(self) -> str:
        """sha256 of the legacy artifact's canonical JSON: what identifies this record's content."""
        return self.run.meta.fields["legacy"].struct_value.fields["artifact_sha256"].string_value

    @property
    def idempotency_key(self) -> str:
        """From the legacy id alone, so a second migration of the same record (from wherever it was copied) finds
        the run the first one minted, and the same id with other content is REQUEST_ID_REUSED, a conflict. An id
        that is not a valid request id, or too long to be one, is keyed by its sha256 (never truncated: two long
        ids with a common prefix must not share a key). A record migrated again after its runs were withdrawn is
        keyed by those runs too: a fresh run, found again by every later migration until it is withdrawn itself."""
        suffix = f"-replaces-{sha256_text(' '.join(self.replaces))[:32]}" if self.replaces else ""
        key = f"legacy-{self.legacy_id}{suffix}"
        return key if is_valid_request_id(key) else f"legacy-sha256-{sha256_text(self.legacy_id)}{suffix}"

    def replacing(self, withdrawn: Sequence[str]) -> LegacyRun:
        """This record migrated as a fresh run that names the withdrawn runs it replaces (meta.legacy.replaces)."""
        run = runs_pb2.RunInput()
        run.CopyFrom(self.run)
        run.meta.fields["legacy"].struct_value.update({"replaces": list(withdrawn)})
        return replace(self, run=run, replaces=tuple(withdrawn))


@dataclass(frozen=True)
class LegacyProblem:
    source: str
    legacy_id: str
    error: str
    # The same legacy id with different content: not a damaged file, a decision for a person.
    conflict: bool = False


@dataclass
class LegacyScan:
    # What paths are relative to: the directory given, or the directory of the map file given.
    root: Path = field(default_factory=Path)
    runs: list[LegacyRun] = field(default_factory=list)
    problems: list[LegacyProblem] = field(default_factory=list)
    # (copy, the record migrated in its place): the same legacy id with the same content, found again.
    duplicates: list[tuple[LegacyRun, LegacyRun]] = field(default_factory=list)
    # Every file read, in the order read, with its digest (damaged ones too).
    files: list[SourceFile] = field(default_factory=list)
    # The bytes of each JSON map file read (relative path -> bytes): what the migration batch keeps.
    maps: dict[str, bytes] = field(default_factory=dict)

    def relative(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()


def scan(path: Path) -> LegacyScan:
    """Reads a legacy store: a JSON map file, or a directory holding `runs.json`, date partitions, or both. A
    legacy id found twice with the same content is migrated once (the copy is reported as a duplicate); with
    different content, every copy is a conflict and none is migrated."""
    result = LegacyScan(root=path if path.is_dir() else path.parent)
    if path.is_file():
        _scan_map(path, result)
    elif path.is_dir():
        for entry in sorted(p for p in path.iterdir() if not p.is_dir()):
            if entry.name == MAP_FILE:
                _scan_map(entry, result)
            else:
                result.problems.append(LegacyProblem(str(entry), "", f"neither {MAP_FILE} nor a partition directory"))
        _scan_partitions(path, result)
    else:
        result.problems.append(LegacyProblem(str(path), "", "no such file or directory"))
    _set_aside_repeats(result)
    return result


def _set_aside_repeats(result: LegacyScan) -> None:
    by_id: dict[str, list[LegacyRun]] = {}
    for run in result.runs:
        by_id.setdefault(run.legacy_id, []).append(run)
    result.runs = []
    for legacy_id, copies in by_id.items():
        first = copies[0]
        if all(_same_record(first, other) for other in copies[1:]):
            result.runs.append(first)
            result.duplicates.extend((other, first) for other in copies[1:])
            continue
        sources = ", ".join(f"{c.source} (sha256 {c.artifact_sha256[:12]})" for c in copies)
        for copy in copies:
            result.problems.append(
                LegacyProblem(
                    copy.source,
                    legacy_id,
                    f"conflict: legacy id {legacy_id} appears with different content in {sources}; none of them "
                    "was migrated, keep the right one",
                    conflict=True,
                )
            )


def _same_record(a: LegacyRun, b: LegacyRun) -> bool:
    return a.run == b.run


def _read(path: Path, result: LegacyScan, legacy_id: str = "") -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        result.problems.append(LegacyProblem(str(path), legacy_id, f"unreadable file: {exc}"))
        return None
    result.files.append(SourceFile(result.relative(path), hashlib.sha256(data).hexdigest(), len(data)))
    return data


def _load(path: Path, result: LegacyScan, legacy_id: str = "") -> tuple[Any, bytes | None]:
    """(document, bytes read); the document is None when the file cannot be read or parsed (a problem names it)."""
    data = _read(path, result, legacy_id)
    if data is None:
        return None, None
    try:
        return json.loads(data.decode("utf-8")), data
    except (UnicodeDecodeError, ValueError) as exc:
        result.problems.append(LegacyProblem(str(path), legacy_id, f"unreadable JSON: {exc}"))
        return None, data


def _scan_map(path: Path, result: LegacyScan) -> None:
    document, data = _load(path, result)
    if document is None or data is None:
        return
    if not isinstance(document, dict):
        result.problems.append(LegacyProblem(str(path), "", "expected a JSON object {run_id: artifact}"))
        return
    relative = result.relative(path)
    result.maps[relative] = data
    container = hashlib.sha256(data).hexdigest()
    spans = map_spans(data)
    for legacy_id, raw in sorted(document.items()):
        start, end = spans[legacy_id]
        kept = KeptSource("record", relative, data[start:end], container, (start, end))
        _convert(str(legacy_id), f"{path}#{legacy_id}", raw, [], None, result, (kept,))


_WHITESPACE = re.compile(r"[ \t\n\r]*")


def map_spans(data: bytes) -> dict[str, tuple[int, int]]:
    """Where each value of a JSON object sits in its UTF-8 bytes: key -> [start, end) byte offsets (the last one
    for a key given twice, as json.loads keeps). For a document json.loads has already parsed."""
    text = data.decode("utf-8")
    decoder = json.JSONDecoder()
    spans: dict[str, tuple[int, int]] = {}
    at = _WHITESPACE.match(text, 0).end() + 1  # type: ignore[union-attr]  # past "{"
    byte_at, char_at = 0, 0

    def byte_offset(char: int) -> int:
        nonlocal byte_at, char_at  # offsets only grow: encode each stretch of text once
        byte_at += len(text[char_at:char].encode("utf-8"))
        char_at = char
        return byte_at

    while True:
        at = _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]
        if text[at] == "}":
            return spans
        key, at = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
        at = _WHITESPACE.match(text, at).end() + 1  # type: ignore[union-attr]  # past ":"
        at = _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]
        _, end = decoder.raw_decode(text, at)
        spans[key] = (byte_offset(at), byte_offset(end))
        at = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]
        if text[at] == "}":
            return spans
        at += 1  # past ","


def _scan_partitions(root: Path, result: LegacyScan) -> None:
    for partition in sorted(p for p in root.iterdir() if p.is_dir()):
        if not PARTITION.fullmatch(partition.name):
            result.problems.append(LegacyProblem(str(partition), "", "not a YYYY-MM-DD partition directory"))
            continue
        side_advisories: dict[str, list[tuple[Path, Any, bytes | None]]] = {}
        side_explanations: dict[str, tuple[Path, Any, bytes | None]] = {}
        cores: list[tuple[str, Path]] = []
        for file in sorted(partition.iterdir()):
            if file.name.endswith((".tmp", ".lock")):
                result.problems.append(LegacyProblem(str(file), "", "leftover temporary or lock file (not imported)"))
            elif match := ADVISORY_FILE.fullmatch(file.name):
                side_advisories.setdefault(match["run"], []).append((file, *_load(file, result, match["run"])))
            elif match := EXPLANATION_FILE.fullmatch(file.name):
                side_explanations[match["run"]] = (file, *_load(file, result, match["run"]))
            elif match := CORE_FILE.fullmatch(file.name):
                cores.append((match["run"], file))
            else:
                result.problems.append(LegacyProblem(str(file), "", "unrecognised file name"))
        for legacy_id, file in cores:
            raw, data = _load(file, result, legacy_id)
            if raw is None or data is None:
                continue
            kept = [KeptSource("record", result.relative(file), data)]
            advisories = []
            for side, doc, side_data in side_advisories.pop(legacy_id, []):
                if doc is not None and side_data is not None:
                    advisories.append(doc)
                    kept.append(KeptSource("advisory", result.relative(side), side_data))
            explanation_file, explanation_doc, explanation_data = side_explanations.pop(legacy_id, (None, None, None))
            if explanation_file is not None and explanation_doc is not None and explanation_data is not None:
                kept.append(KeptSource("explanation", result.relative(explanation_file), explanation_data))
            _convert(legacy_id, str(file), raw, advisories, explanation_doc, result, tuple(kept))
        for legacy_id, files in sorted(side_advisories.items()):
            for file, _, _ in files:
                result.problems.append(LegacyProblem(str(file), legacy_id, "advisory side file without its run"))
        for legacy_id, (file, _, _) in sorted(side_explanations.items()):
            result.problems.append(LegacyProblem(str(file), legacy_id, "explanation side file without its run"))


def _convert(
    legacy_id: str,
    source: str,
    raw: Any,
    side_advisories: list[Any],
    side_explanation: Any,
    result: LegacyScan,
    kept: tuple[KeptSource, ...] = (),
) -> None:
    try:
        result.runs.append(
            replace(_to_legacy_run(legacy_id, source, raw, side_advisories, side_explanation), sources=kept)
        )
    except InvalidArgument as exc:
        details = "; ".join(f"{v.field}: {v.description}" for v in exc.violations) or exc.message
        result.problems.append(LegacyProblem(source, legacy_id, details))
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        result.problems.append(
            LegacyProblem(source, legacy_id, f"not a legacy run artifact: {type(exc).__name__}: {exc}")
        )


def _to_legacy_run(
    legacy_id: str, source: str, raw: Any, side_advisories: list[Any], side_explanation: Any
) -> LegacyRun:
    run = read_record(legacy_id, raw)
    warnings = migration_warnings(run)
    advisories = [_advisory(a) for a in [*(raw.get("advisory_inputs") or []), *side_advisories]]
    run.advisory_inputs.extend({a.advisory_id: a for a in advisories}.values())
    explanation = _explanation(raw, side_explanation)
    if explanation is not None:
        run.explanation.CopyFrom(explanation)
    return LegacyRun(legacy_id, source, run, warnings)


def read_record(legacy_id: str, raw: Any) -> runs_pb2.RunInput:
    """A legacy artifact as the run it is migrated as, before its advisories and explanation are added and before
    any rule is checked (TypeError, KeyError or ValueError: not a legacy run artifact)."""
    if not isinstance(raw, dict):
        raise TypeError("the artifact is not a JSON object")
    if raw.get("run_id", legacy_id) != legacy_id:
        raise ValueError(f"run_id {raw.get('run_id')!r} does not match its key or file name {legacy_id!r}")
    decision = raw.get("decision") or {}
    risk = LEGACY_RISK.get(str(decision.get("risk_level", "")).upper())
    if risk is None:
        raise ValueError(f"unknown risk_level {decision.get('risk_level')!r}")
    status = str(raw["status"]).upper()
    if status not in RUN_STATUSES:
        raise ValueError(f"{status!r} is not a valid RunStatus")
    hashes = raw.get("hashes") or {}
    feasibility = raw.get("feasibility") or {}
    return runs_pb2.RunInput(
        mode=str(raw["mode"]),
        tool_id=str(raw["tool_id"]),
        status=runs_pb2.RunStatus.Value(f"RUN_STATUS_{status}"),
        decision=runs_pb2.Decision(
            risk_level=runs_pb2.RiskLevel.Value(f"RISK_LEVEL_{risk}"),
            score=float(decision.get("score") or 0.0),
            block_reason=str(decision.get("block_reason") or ""),
            warnings=[str(w) for w in decision.get("warnings") or ()],
        ),
        hashes=runs_pb2.Hashes(
            feasibility_sha256=str(hashes.get("feasibility_sha256") or ""),
            toolpaths_sha256=str(hashes.get("toolpaths_sha256") or ""),
            gcode_sha256=str(hashes.get("gcode_sha256") or ""),
        ),
        request_summary=dict_to_struct(dict(raw.get("request_summary") or {})),
        feasibility=dict_to_struct(dict(feasibility)),
        outputs={str(k): str(v) for k, v in (raw.get("outputs") or {}).items() if v is not None},
        meta=dict_to_struct(
            {
                **dict(raw.get("meta") or {}),
                # Content only: where the record was read from is in the migration report, not in the run.
                "legacy": {
                    "run_id": legacy_id,
                    "created_at_utc": str(raw.get("created_at_utc", "")),
                    "artifact_sha256": sha256_canonical(raw),
                },
            }
        ),
    )


def migration_warnings(run: runs_pb2.RunInput) -> tuple[str, ...]:
    """What the runs service will say of this run sent with legacy_migration, by the same rules: the later rules
    it breaks, as warnings ("field: rule"), or InvalidArgument (RUN_INVALID) for a rule that refuses it."""
    return validate_legacy_run(
        RunFields(
            mode=run.mode,
            tool_id=run.tool_id,
            status=runs_pb2.RunStatus.Name(run.status).removeprefix("RUN_STATUS_"),
            risk_level=runs_pb2.RiskLevel.Name(run.decision.risk_level).removeprefix("RISK_LEVEL_"),
            score=run.decision.score,
            block_reason=run.decision.block_reason,
            feasibility_sha256=run.hashes.feasibility_sha256,
            toolpaths_sha256=run.hashes.toolpaths_sha256,
            gcode_sha256=run.hashes.gcode_sha256,
            engine_version=run.engine_version,
            output_names=tuple(run.outputs),
        )
    )


def _advisory(raw: Any) -> runs_pb2.AdvisoryInput:
    kind = str(raw.get("kind", "unknown")).lower()
    created = raw.get("created_at_utc")
    advisory = runs_pb2.AdvisoryInput(
        advisory_id=str(raw["advisory_id"]),
        kind=runs_pb2.AdvisoryKind.Value(f"ADVISORY_KIND_{(kind if kind in ADVISORY_KINDS else 'unknown').upper()}"),
        engine_id=str(raw.get("engine_id") or ""),
        engine_version=str(raw.get("engine_version") or ""),
        request_id=str(raw.get("request_id") or ""),
    )
    if created:
        advisory.created_at.CopyFrom(_timestamp(_parse_time(created)))
    return advisory


def _explanation(raw: dict[str, Any], side: Any) -> runs_pb2.Explanation | None:
    source = side if isinstance(side, dict) else raw
    status = str(source.get("explanation_status") or source.get("status") or "NONE").upper()
    if status not in EXPLANATION_STATUSES:
        raise ValueError(f"unknown explanation status {status!r}")
    summary = str(source.get("explanation_summary") or source.get("summary") or "")
    if status == "PENDING":  # nothing can still be in flight for a migrated run
        status = "NONE"
    if status == "NONE" and not summary:
        return None
    return runs_pb2.Explanation(
        status=runs_pb2.ExplanationStatus.Value(f"EXPLANATION_STATUS_{status}"),
        summary=summary,
        error=str(source.get("error") or ""),
    )


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp
