"""The field rules a run record must meet, split the way the legacy migration path needs them.

runs applies them to every run it mints (services.runs.model.content_problems), and `custody runs migrate` applies
the same rules to legacy records before sending them, so its dry run and report lines say what the server will
say. One copy, over plain values, so that the server's domain content and the CLI's RunInput can both be checked
without either importing the other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from services.common.errors import FieldViolation, InvalidArgument
from services.common.hashing import is_sha256_hex

# Mode, tool id and output names: filterable tokens.
TOKEN = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
ENGINE_VERSION_MAX_CHARS = 128

# A legacy migration as custody (`custody runs migrate`): every migration is recorded as a run of this mode (the
# batch), which only a human with the migrator role may mint, and every migrated run keeps the bytes it was read
# from as attachments of this kind.
MIGRATION_BATCH_MODE = "legacy_migration"
LEGACY_SOURCE_KIND = "legacy_source"


@dataclass(frozen=True)
class RunFields:
    """What the rules read from a run; status and risk level by name (`OK`, `BLOCKED`, `ERROR`; `GREEN` ...)."""

    mode: str
    tool_id: str
    status: str
    risk_level: str
    score: float
    block_reason: str
    feasibility_sha256: str
    toolpaths_sha256: str
    gcode_sha256: str
    engine_version: str
    output_names: Iterable[str] = field(default=())


def run_problems(run: RunFields, prefix: str = "run") -> tuple[list[FieldViolation], list[FieldViolation]]:
    """(problems, later_rules): violations of rules the legacy RunArtifact schema had too, or that Custody's
    identifiers and digests need (mode and tool_id are filterable tokens, hashes are sha256 hex, the score a finite
    number); and violations of the consistency rules Custody added later, which the legacy schema allowed: a block
    reason exactly on BLOCKED runs, risk level ERROR exactly on ERROR runs, a score from 0 to 1."""
    problems: list[FieldViolation] = []
    later: list[FieldViolation] = []

    def bad(path: str, description: str, into: list[FieldViolation] = problems) -> None:
        into.append(FieldViolation(f"{prefix}.{path}", description))

    for path, value in (("mode", run.mode), ("tool_id", run.tool_id)):
        if not TOKEN.fullmatch(value):
            bad(path, "required: 1..128 letters, digits or ._:-")
    if not run.feasibility_sha256:
        bad("hashes.feasibility_sha256", "required and non-empty")
    elif not is_sha256_hex(run.feasibility_sha256):
        bad("hashes.feasibility_sha256", "must be 64 lower-case hex characters")
    for path, value in (
        ("hashes.toolpaths_sha256", run.toolpaths_sha256),
        ("hashes.gcode_sha256", run.gcode_sha256),
    ):
        if value and not is_sha256_hex(value):
            bad(path, "must be empty or 64 lower-case hex characters")
    if not math.isfinite(run.score):
        bad("decision.score", "must be a number from 0 to 1")
    elif not 0.0 <= run.score <= 1.0:
        bad("decision.score", "must be a number from 0 to 1", later)
    if run.status == "BLOCKED" and not run.block_reason:
        bad("decision.block_reason", "required when status is BLOCKED", later)
    if run.status != "BLOCKED" and run.block_reason:
        bad("decision.block_reason", "only a BLOCKED run has a block reason", later)
    if (run.status == "ERROR") != (run.risk_level == "ERROR"):
        bad("decision.risk_level", "is ERROR exactly when status is ERROR", later)
    if len(run.engine_version) > ENGINE_VERSION_MAX_CHARS:
        bad("engine_version", f"at most {ENGINE_VERSION_MAX_CHARS} characters")
    for key in run.output_names:
        if not TOKEN.fullmatch(key):
            bad(f"outputs[{key[:40]}]", "output names are 1..128 letters, digits or ._:-")
    return problems, later


def validate_run(run: RunFields, prefix: str = "run") -> None:
    """Every rule, as one INVALID_ARGUMENT (RUN_INVALID) with a violation per field."""
    problems, later = run_problems(run, prefix)
    raise_if_invalid([*problems, *later])


def validate_legacy_run(run: RunFields, prefix: str = "run") -> tuple[str, ...]:
    """The legacy-migration path (CreateRun with legacy_migration, `custody runs migrate`): a record the legacy
    RunArtifact schema allowed is imported as it was, and each rule Custody added after that schema which it
    breaks comes back as a warning ("field: rule") to record with the run. Every other rule still refuses the
    record (RUN_INVALID). Nothing but that path may call this."""
    problems, later = run_problems(run, prefix)
    raise_if_invalid(problems)
    return tuple(f"{v.field}: {v.description}" for v in later)


def raise_if_invalid(problems: list[FieldViolation]) -> None:
    if problems:
        raise InvalidArgument("RUN_INVALID", f"the run has {len(problems)} invalid field(s)", violations=problems)
