"""The safety policy: a versioned YAML document of categories and rules, validated at start, enforced fail-closed.

Each category has input rules (prompt and system prompt) and output rules (the response, streamed or not):
length limits, blocked patterns (RE2 syntax, refused at load when RE2 cannot run them) and the built-in detectors
of services/ai_gateway/detectors.py. A verdict names the rule that decided it but never quotes the offending text,
so verdicts can go into errors, logs and audit rows. A detector that raises, or a check that overruns its time
budget, blocks the call: a guardrail that cannot decide does not let the call through.

Every pattern runs in time linear in the text (RE2), and texts longer than INLINE_CHECK_CHARS are scanned in a
worker thread (RE2 releases the GIL), so no text can stall the event loop. The time budget is enforced while the
scan runs: the caller gets the timeout verdict when the budget is spent, and the worker stops at its next rule.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import re2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.ai_gateway.detectors import BUILTIN_DETECTORS, Detector, Encoded, compile_linear, rejection
from services.common.hashing import sha256_canonical

# Texts up to this size are checked on the event loop, longer ones in a worker thread (a hop of 35-120 µs). The
# slowest adversarial text of this size holds the loop about 0.5 ms (card-number candidates packed back to back;
# ordinary text a few µs), see bench/gateway/bench_detectors.py; at 8 KiB it was 2-3 ms.
INLINE_CHECK_CHARS = 2048
CATEGORY_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
RULE_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class PolicyError(Exception):
    """The policy file is missing or invalid; the message says where and what."""


class Direction(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


# --- the document -------------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BlockedPattern(_Strict):
    id: str
    description: str = ""
    pattern: str

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not RULE_ID.match(value):
            raise ValueError(f"pattern id {value!r} must be lower_snake_case")
        return value

    @model_validator(mode="after")
    def _compiles(self) -> BlockedPattern:
        problem = rejection(self.pattern)
        if problem is not None:
            raise ValueError(
                f"blocked pattern {self.id!r} is not a regular expression RE2 can run ({problem}); RE2 has no "
                "lookaround or backreferences, so that every scan takes time linear in the text"
            )
        return self


class Rules(_Strict):
    max_chars: Annotated[int, Field(ge=1, le=10_000_000)]
    # Input only: the limit for the system prompt (the prompt uses max_chars).
    max_system_chars: Annotated[int, Field(ge=0, le=10_000_000)] = 16_000
    detectors: list[str] = Field(default_factory=list)
    blocked_patterns: list[BlockedPattern] = Field(default_factory=list)

    @field_validator("detectors")
    @classmethod
    def _known_detectors(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(BUILTIN_DETECTORS))
        if unknown:
            raise ValueError(f"unknown detectors {unknown}; known: {sorted(BUILTIN_DETECTORS)}")
        if len(set(value)) != len(value):
            raise ValueError("a detector is listed twice")
        return value

    @model_validator(mode="after")
    def _unique_pattern_ids(self) -> Rules:
        ids = [p.id for p in self.blocked_patterns]
        if len(set(ids)) != len(ids):
            raise ValueError("blocked pattern ids must be unique within a rule set")
        return self


class Category(_Strict):
    description: str = ""
    input: Rules
    output: Rules


class PolicyDocument(_Strict):
    version: Annotated[str, Field(min_length=1, max_length=64)]
    description: str = ""
    # Time budget for all checks of one text; overrunning it blocks the call.
    detector_timeout_ms: Annotated[int, Field(ge=1, le=60_000)] = 250
    # Streams hold back this many characters so a detector sees a whole match before any of it is sent.
    stream_holdback_chars: Annotated[int, Field(ge=16, le=65_536)] = 256
    categories: Annotated[dict[str, Category], Field(min_length=1)]

    @field_validator("categories")
    @classmethod
    def _names(cls, value: dict[str, Category]) -> dict[str, Category]:
        bad = [name for name in value if not CATEGORY_NAME.match(name)]
        if bad:
            raise ValueError(f"category names must be UPPER_SNAKE_CASE: {bad}")
        return value


# --- verdicts and enforcement -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Allowed, or blocked by `rule_id` (e.g. "input.detector.secrets") with a description safe to show."""

    allowed: bool
    rule_id: str = ""
    description: str = ""
    # The blocked text is kept out of the audit even redacted: it holds a secret (whose extent may exceed what
    # was found), or the checks could not tell what it holds.
    withhold: bool = False

    @property
    def reason(self) -> str:
        return "" if self.allowed else f"SAFETY_BLOCKED: {self.rule_id}"


ALLOWED = Verdict(True)


@dataclass(frozen=True)
class _CompiledRules:
    direction: Direction
    rules: Rules
    patterns: tuple[tuple[BlockedPattern, re2._Regexp], ...]


class SafetyPolicy:
    """A validated policy, ready to check texts. `detectors` can be replaced (tests plant failing ones)."""

    def __init__(self, document: PolicyDocument, detectors: Mapping[str, Detector] | None = None) -> None:
        self.document = document
        self.detectors = dict(detectors or BUILTIN_DETECTORS)
        self.sha256 = sha256_canonical(document.model_dump(mode="json"))
        self._compiled: dict[tuple[str, Direction], _CompiledRules] = {}
        for name, category in document.categories.items():
            for direction, rules in ((Direction.INPUT, category.input), (Direction.OUTPUT, category.output)):
                patterns = tuple((p, compile_linear(p.pattern)) for p in rules.blocked_patterns)
                self._compiled[(name, direction)] = _CompiledRules(direction, rules, patterns)

    @property
    def version(self) -> str:
        return self.document.version

    @property
    def timeout_s(self) -> float:
        return self.document.detector_timeout_ms / 1000

    @property
    def holdback_chars(self) -> int:
        return self.document.stream_holdback_chars

    def has_category(self, name: str) -> bool:
        return name in self.document.categories

    def rules(self, category: str, direction: Direction) -> Rules:
        return self._compiled[(category, direction)].rules

    def check(
        self, category: str, direction: Direction, texts: Mapping[str, str], deadline: float | None = None
    ) -> Verdict:
        """Checks each named text ("prompt", "system_prompt" or "response"); the first broken rule decides.
        `deadline` (time.monotonic) defaults to the policy's time budget from now."""
        compiled = self._compiled[(category, direction)]
        deadline = self._deadline() if deadline is None else deadline
        for field, text in texts.items():
            limit = compiled.rules.max_system_chars if field == "system_prompt" else compiled.rules.max_chars
            if len(text) > limit:
                suffix = "max_system_chars" if field == "system_prompt" else "max_chars"
                return Verdict(False, f"{direction}.{suffix}", f"the {field} is longer than {limit} characters")
            verdict = self.scan(category, direction, text, field, deadline)
            if not verdict.allowed:
                return verdict
        return ALLOWED

    def scan(
        self, category: str, direction: Direction, text: str, field: str = "response", deadline: float | None = None
    ) -> Verdict:
        """Detectors and blocked patterns only (no length limit): what a stream runs on each window. The deadline
        is looked at after every rule, so a scan that overran its budget stops there."""
        compiled = self._compiled[(category, direction)]
        deadline = self._deadline() if deadline is None else deadline
        for name in compiled.rules.detectors:
            detector = self.detectors[name]
            rule_id = f"{direction}.detector.{name}"
            try:
                found = detector.found(text)
            except Exception:  # fail closed: a detector that cannot decide blocks
                return Verdict(False, rule_id, f"the {name} detector failed; the policy fails closed", withhold=True)
            if found:
                return Verdict(
                    False, rule_id, f"the {field} contains {detector.description}", withhold=detector.withhold
                )
            if time.monotonic() > deadline:
                return self._timed_out(direction)
        encoded = Encoded(text) if compiled.patterns else None
        for pattern, regex in compiled.patterns:
            if regex.search(encoded.data):  # type: ignore[union-attr]
                description = pattern.description or "a blocked pattern"
                return Verdict(False, f"{direction}.pattern.{pattern.id}", f"the {field} matches {description}")
            if time.monotonic() > deadline:
                return self._timed_out(direction)
        return ALLOWED

    async def check_async(self, category: str, direction: Direction, texts: Mapping[str, str]) -> Verdict:
        """`check` under the policy's time budget, never stalling the event loop."""
        size = sum(len(t) for t in texts.values())
        return await self._bounded(direction, size, lambda deadline: self.check(category, direction, texts, deadline))

    async def scan_async(self, category: str, direction: Direction, text: str, field: str = "response") -> Verdict:
        """`scan` under the policy's time budget, never stalling the event loop (a stream's window can be large:
        a provider may send one big chunk)."""
        return await self._bounded(
            direction, len(text), lambda deadline: self.scan(category, direction, text, field, deadline)
        )

    async def _bounded(self, direction: Direction, size: int, run: Callable[[float], Verdict]) -> Verdict:
        """Short texts are checked inline (well under a millisecond, and the rules look at the deadline); longer
        ones in a worker thread, whose verdict is awaited only until the budget is spent: overrunning it blocks,
        and the worker gives up at its next rule."""
        deadline = self._deadline()
        try:
            if size <= INLINE_CHECK_CHARS:
                return run(deadline)
            return await asyncio.wait_for(asyncio.to_thread(run, deadline), self.timeout_s)
        except TimeoutError:
            return self._timed_out(direction)
        except Exception:
            return Verdict(
                False, f"{direction}.check_failed", "the safety check failed; the policy fails closed", withhold=True
            )

    def _deadline(self) -> float:
        return time.monotonic() + self.timeout_s

    def _timed_out(self, direction: Direction) -> Verdict:
        return Verdict(
            False,
            f"{direction}.detector_timeout",
            f"the safety checks took longer than {self.document.detector_timeout_ms} ms; the policy fails closed",
            withhold=True,
        )

    def redact(self, text: str) -> str:
        """Replaces what the redacting detectors find (secrets, e-mails, card numbers) with [REDACTED:<name>]."""
        spans: list[tuple[int, int, str]] = []
        for detector in self.detectors.values():
            if detector.redact:
                try:
                    spans.extend((start, end, detector.name) for start, end in detector.find(text))
                except Exception:
                    return "[REDACTED:unavailable]"  # cannot tell what is secret: keep nothing
        out, position = [], 0
        for start, end, name in sorted(spans):
            if start < position:
                continue
            out.append(text[position:start])
            out.append(f"[REDACTED:{name}]")
            position = end
        out.append(text[position:])
        return "".join(out)

    async def redact_async(self, text: str) -> str:
        """`redact` off the event loop for long texts, under the time budget; nothing is kept when it overruns."""
        if len(text) <= INLINE_CHECK_CHARS:
            return self.redact(text)
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.redact, text), self.timeout_s)
        except TimeoutError:
            return "[REDACTED:unavailable]"


def load_policy(path: Path) -> SafetyPolicy:
    """Reads and validates a policy file; PolicyError names the file and every problem."""
    document = read_yaml(path, "safety policy")
    if isinstance(document, dict):  # "x-" keys hold YAML anchors shared by categories, as in compose files
        document = {k: v for k, v in document.items() if not str(k).startswith("x-")}
    try:
        return SafetyPolicy(PolicyDocument.model_validate(document))
    except ValidationError as exc:
        raise PolicyError(f"safety policy {path} is invalid: {describe_validation(exc)}") from None


def read_yaml(path: Path, what: str) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"{what} {path} is unreadable: {exc}") from None


def describe_validation(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(document)'}: {error['msg']}" for error in exc.errors()
    )
