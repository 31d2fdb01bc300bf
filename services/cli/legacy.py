"""Reading the legacy JSON run stores (seeds 001/002) into run content, for `custody runs migrate`.

Two layouts are understood, alone or together: a single JSON map `{run_id: artifact}` (a file, or `runs.json` in
the directory given), and date partitions `YYYY-MM-DD/run_*.json` with `run_*_advisory_*.json` and
`run_*_explanation.json` side files. Every file that cannot be read or understood becomes a `LegacyProblem`
naming its path: nothing is skipped silently.

What a record becomes depends on its content only, never on where it was read from: the idempotency key comes
from its legacy id and everything compared on a retry (the run, its advisories and explanation, the digest of the
legacy artifact) from its content, so the same records migrated again from a copy of the store are found as
already migrated, while a legacy id seen again with other content is a conflict. The source path is reported,
not recorded in the run.

Records are checked against the legacy RunArtifact schema, not against rules Custody added later (see
services.runs.model.validate_legacy_content): such a record is imported as it was, with a warning.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.common.call_context import is_valid_request_id
from services.common.errors import InvalidArgument
from services.common.hashing import sha256_canonical, sha256_text
from services.runs.model import (
    AdvisoryKind,
    Decision,
    Explanation,
    ExplanationStatus,
    Hashes,
    RiskLevel,
    RunContent,
    RunStatus,
    validate_legacy_content,
)

PARTITION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAP_FILE = "runs.json"
CORE_FILE = re.compile(r"^(?P<run>run_[A-Za-z0-9]+)\.json$")
ADVISORY_FILE = re.compile(r"^(?P<run>run_[A-Za-z0-9]+)_advisory_(?P<advisory>[A-Za-z0-9._:\-]+)\.json$")
EXPLANATION_FILE = re.compile(r"^(?P<run>run_[A-Za-z0-9]+)_explanation\.json$")
LEGACY_RISK = {
    "GREEN": RiskLevel.GREEN,
    "LOW": RiskLevel.GREEN,
    "YELLOW": RiskLevel.YELLOW,
    "MEDIUM": RiskLevel.YELLOW,
    "RED": RiskLevel.RED,
    "HIGH": RiskLevel.RED,
    "ERROR": RiskLevel.ERROR,
}


@dataclass(frozen=True)
class LegacyAdvisory:
    advisory_id: str
    kind: AdvisoryKind
    engine_id: str
    engine_version: str
    request_id: str
    created_at: datetime | None


@dataclass(frozen=True)
class LegacyRun:
    legacy_id: str
    source: str
    content: RunContent
    advisories: list[LegacyAdvisory] = field(default_factory=list)
    explanation: Explanation | None = None
    # Rules Custody added after the legacy schema that this record breaks ("field: rule"); the server records its
    # own list in meta.legacy.migration_warnings.
    warnings: tuple[str, ...] = ()

    @property
    def artifact_sha256(self) -> str:
        """sha256 of the legacy artifact's canonical JSON: what identifies this record's content."""
        return str(self.content.meta["legacy"]["artifact_sha256"])

    @property
    def idempotency_key(self) -> str:
        """From the legacy id alone, so a second migration of the same record (from wherever it was copied) finds
        the run the first one minted, and the same id with other content is REQUEST_ID_REUSED, a conflict. An id
        that is not a valid request id, or too long to be one, is keyed by its sha256 (never truncated: two long
        ids with a common prefix must not share a key)."""
        key = f"legacy-{self.legacy_id}"
        return key if is_valid_request_id(key) else f"legacy-sha256-{sha256_text(self.legacy_id)}"


@dataclass(frozen=True)
class LegacyProblem:
    source: str
    legacy_id: str
    error: str
    # The same legacy id with different content: not a damaged file, a decision for a person.
    conflict: bool = False


@dataclass
class LegacyScan:
    runs: list[LegacyRun] = field(default_factory=list)
    problems: list[LegacyProblem] = field(default_factory=list)
    # (copy, the record migrated in its place): the same legacy id with the same content, found again.
    duplicates: list[tuple[LegacyRun, LegacyRun]] = field(default_factory=list)


def scan(path: Path) -> LegacyScan:
    """Reads a legacy store: a JSON map file, or a directory holding `runs.json`, date partitions, or both. A
    legacy id found twice with the same content is migrated once (the copy is reported as a duplicate); with
    different content, every copy is a conflict and none is migrated."""
    result = LegacyScan()
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
    return (a.content, a.advisories, a.explanation) == (b.content, b.advisories, b.explanation)


def _load(path: Path, result: LegacyScan, legacy_id: str = "") -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        result.problems.append(LegacyProblem(str(path), legacy_id, f"unreadable JSON: {exc}"))
        return None


def _scan_map(path: Path, result: LegacyScan) -> None:
    document = _load(path, result)
    if document is None:
        return
    if not isinstance(document, dict):
        result.problems.append(LegacyProblem(str(path), "", "expected a JSON object {run_id: artifact}"))
        return
    for legacy_id, raw in sorted(document.items()):
        _convert(str(legacy_id), f"{path}#{legacy_id}", raw, [], None, result)


def _scan_partitions(root: Path, result: LegacyScan) -> None:
    for partition in sorted(p for p in root.iterdir() if p.is_dir()):
        if not PARTITION.fullmatch(partition.name):
            result.problems.append(LegacyProblem(str(partition), "", "not a YYYY-MM-DD partition directory"))
            continue
        side_advisories: dict[str, list[tuple[Path, Any]]] = {}
        side_explanations: dict[str, tuple[Path, Any]] = {}
        cores: list[tuple[str, Path]] = []
        for file in sorted(partition.iterdir()):
            if file.name.endswith((".tmp", ".lock")):
                result.problems.append(LegacyProblem(str(file), "", "leftover temporary or lock file (not imported)"))
            elif match := ADVISORY_FILE.fullmatch(file.name):
                side_advisories.setdefault(match["run"], []).append((file, _load(file, result, match["run"])))
            elif match := EXPLANATION_FILE.fullmatch(file.name):
                side_explanations[match["run"]] = (file, _load(file, result, match["run"]))
            elif match := CORE_FILE.fullmatch(file.name):
                cores.append((match["run"], file))
            else:
                result.problems.append(LegacyProblem(str(file), "", "unrecognised file name"))
        for legacy_id, file in cores:
            raw = _load(file, result, legacy_id)
            if raw is None:
                continue
            advisories = [doc for _, doc in side_advisories.pop(legacy_id, []) if doc is not None]
            explanation_doc = side_explanations.pop(legacy_id, (None, None))[1]
            _convert(legacy_id, str(file), raw, advisories, explanation_doc, result)
        for legacy_id, files in sorted(side_advisories.items()):
            for file, _ in files:
                result.problems.append(LegacyProblem(str(file), legacy_id, "advisory side file without its run"))
        for legacy_id, (file, _) in sorted(side_explanations.items()):
            result.problems.append(LegacyProblem(str(file), legacy_id, "explanation side file without its run"))


def _convert(
    legacy_id: str,
    source: str,
    raw: Any,
    side_advisories: list[Any],
    side_explanation: Any,
    result: LegacyScan,
) -> None:
    try:
        result.runs.append(_to_legacy_run(legacy_id, source, raw, side_advisories, side_explanation))
    except InvalidArgument as exc:
        details = "; ".join(f"{v.field}: {v.description}" for v in exc.violations) or exc.message
        result.problems.append(LegacyProblem(source, legacy_id, details))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        result.problems.append(
            LegacyProblem(source, legacy_id, f"not a legacy run artifact: {type(exc).__name__}: {exc}")
        )


def _to_legacy_run(
    legacy_id: str, source: str, raw: Any, side_advisories: list[Any], side_explanation: Any
) -> LegacyRun:
    if not isinstance(raw, dict):
        raise TypeError("the artifact is not a JSON object")
    if raw.get("run_id", legacy_id) != legacy_id:
        raise ValueError(f"run_id {raw.get('run_id')!r} does not match its key or file name {legacy_id!r}")
    decision = raw.get("decision") or {}
    risk = LEGACY_RISK.get(str(decision.get("risk_level", "")).upper())
    if risk is None:
        raise ValueError(f"unknown risk_level {decision.get('risk_level')!r}")
    hashes = raw.get("hashes") or {}
    feasibility = raw.get("feasibility") or {}
    content = RunContent(
        mode=str(raw["mode"]),
        tool_id=str(raw["tool_id"]),
        status=RunStatus(str(raw["status"]).upper()),
        decision=Decision(
            risk_level=risk,
            score=float(decision.get("score") or 0.0),
            block_reason=str(decision.get("block_reason") or ""),
            warnings=tuple(str(w) for w in decision.get("warnings") or ()),
        ),
        hashes=Hashes(
            feasibility_sha256=str(hashes.get("feasibility_sha256") or ""),
            toolpaths_sha256=str(hashes.get("toolpaths_sha256") or ""),
            gcode_sha256=str(hashes.get("gcode_sha256") or ""),
        ),
        request_summary=dict(raw.get("request_summary") or {}),
        feasibility=dict(feasibility),
        outputs={str(k): str(v) for k, v in (raw.get("outputs") or {}).items() if v is not None},
        meta={
            **dict(raw.get("meta") or {}),
            # Content only: where the record was read from is in the migration report, not in the run.
            "legacy": {
                "run_id": legacy_id,
                "created_at_utc": str(raw.get("created_at_utc", "")),
                "artifact_sha256": sha256_canonical(raw),
            },
        },
    )
    warnings = validate_legacy_content(content)
    advisories = [_advisory(a) for a in [*(raw.get("advisory_inputs") or []), *side_advisories]]
    unique = {a.advisory_id: a for a in advisories}
    explanation = _explanation(raw, side_explanation)
    return LegacyRun(legacy_id, source, content, list(unique.values()), explanation, warnings)


def _advisory(raw: Any) -> LegacyAdvisory:
    kind = str(raw.get("kind", "unknown")).lower()
    created = raw.get("created_at_utc")
    return LegacyAdvisory(
        advisory_id=str(raw["advisory_id"]),
        kind=AdvisoryKind(kind) if kind in set(AdvisoryKind) else AdvisoryKind.UNKNOWN,
        engine_id=str(raw.get("engine_id") or ""),
        engine_version=str(raw.get("engine_version") or ""),
        request_id=str(raw.get("request_id") or ""),
        created_at=_parse_time(created) if created else None,
    )


def _explanation(raw: dict[str, Any], side: Any) -> Explanation | None:
    source = side if isinstance(side, dict) else raw
    status = str(source.get("explanation_status") or source.get("status") or "NONE").upper()
    if status not in set(ExplanationStatus):
        raise ValueError(f"unknown explanation status {status!r}")
    summary = str(source.get("explanation_summary") or source.get("summary") or "")
    if status == ExplanationStatus.PENDING:  # nothing can still be in flight for a migrated run
        status = ExplanationStatus.NONE
    if status == ExplanationStatus.NONE and not summary:
        return None
    return Explanation(ExplanationStatus(status), summary=summary, error=str(source.get("error") or ""))


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
