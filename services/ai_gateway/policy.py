"""The safety policy: a versioned YAML document of categories and rules, validated at start, enforced fail-closed.

Each category has input rules (prompt and system prompt) and output rules (the response, streamed or not):
length limits, blocked patterns and built-in detectors (API-key shapes, e-mail addresses, card numbers,
prompt-injection markers). A verdict names the rule that decided it but never quotes the offending text, so
verdicts can go into errors, logs and audit rows. A detector that raises, or a check that overruns its time
budget, blocks the call: a guardrail that cannot decide does not let the call through.
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

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.common.hashing import sha256_canonical

# Texts up to this size are checked on the event loop: the thread hop would cost more than the scan.
INLINE_CHECK_CHARS = 8192
CATEGORY_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
RULE_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class PolicyError(Exception):
    """The policy file is missing or invalid; the message says where and what."""


class Direction(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


# --- detectors ----------------------------------------------------------------------------------------------------

# Each detector returns True when the text contains what it looks for. Patterns avoid nested quantifiers so they
# run in linear time on the bounded texts they see (length limits are checked first).
_SECRET = re.compile(
    r"\bsk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_\-]{16,}"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}"
    r"|\bgithub_pat_[A-Za-z0-9_]{30,}"
    r"|\bxox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|\bAIza[0-9A-Za-z_\-]{35}"
    r"|-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----"
    r"|\bcst_[A-Za-z0-9_\-]{20,}"
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
    r"|(?i:\b(?:api[_-]?key|secret[_-]?key|client[_-]?secret|password|passwd|access[_-]?token|auth[_-]?token)"
    r"\s{0,3}[:=]\s{0,3}['\"]?[^\s'\"]{8,})"
    r"|(?i:\bbearer\s{1,3}[A-Za-z0-9._~+/\-]{20,})"
)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,8}\.[A-Za-z]{2,24}\b")
_CARD_CANDIDATE = re.compile(r"(?<![\d])(?:\d[ \-]?){12,18}\d(?![\d])")
_INJECTION = re.compile(
    r"(?i)\bignore\s{1,3}(?:all\s{1,3}|any\s{1,3})?(?:the\s{1,3})?(?:previous|prior|above|earlier|preceding)\s{1,3}"
    r"(?:instructions|prompts?|rules|messages|directions)"
    r"|(?i:\bdisregard\s{1,3}(?:all\s{1,3}|the\s{1,3}|your\s{1,3})?(?:previous|prior|above|system)\s{1,3}"
    r"(?:instructions|prompts?|rules))"
    r"|(?i:\b(?:reveal|print|show|repeat|output)\s{1,3}(?:me\s{1,3})?(?:your|the)\s{1,3}"
    r"(?:system\s{1,3}prompt|hidden\s{1,3}instructions|initial\s{1,3}instructions))"
    r"|(?i:\byou\s{1,3}are\s{1,3}now\s{1,3}(?:DAN|in\s{1,3}developer\s{1,3}mode|jailbroken))"
    r"|(?i:<\|?(?:im_start|im_end|system)\|?>)"
    r"|(?i:\bnew\s{1,3}system\s{1,3}prompt\s{0,3}:)"
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for match in _CARD_CANDIDATE.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and _luhn_ok(digits):
            spans.append(match.span())
    return spans


def _regex_spans(pattern: re.Pattern[str]) -> Callable[[str], list[tuple[int, int]]]:
    return lambda text: [m.span() for m in pattern.finditer(text)]


@dataclass(frozen=True)
class Detector:
    name: str
    description: str
    # Spans of everything found; empty when clean. Used both to decide and to redact.
    find: Callable[[str], list[tuple[int, int]]]
    # Whether verbose audit redacts what it finds (prompt-injection markers are not secrets).
    redact: bool = True


BUILTIN_DETECTORS: dict[str, Detector] = {
    d.name: d
    for d in (
        Detector("secrets", "API keys, tokens, private keys and credential assignments", _regex_spans(_SECRET)),
        Detector("email", "e-mail addresses", _regex_spans(_EMAIL)),
        Detector("card_number", "payment card numbers (13-19 digits passing the Luhn check)", _card_spans),
        Detector(
            "prompt_injection",
            "markers of prompt injection (ignore previous instructions, fake system tags, ...)",
            _regex_spans(_INJECTION),
            redact=False,
        ),
    )
}


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

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


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

    @property
    def reason(self) -> str:
        return "" if self.allowed else f"SAFETY_BLOCKED: {self.rule_id}"


ALLOWED = Verdict(True)


@dataclass(frozen=True)
class _CompiledRules:
    direction: Direction
    rules: Rules
    patterns: tuple[tuple[BlockedPattern, re.Pattern[str]], ...]


class SafetyPolicy:
    """A validated policy, ready to check texts. `detectors` can be replaced (tests plant failing ones)."""

    def __init__(self, document: PolicyDocument, detectors: Mapping[str, Detector] | None = None) -> None:
        self.document = document
        self.detectors = dict(detectors or BUILTIN_DETECTORS)
        self.sha256 = sha256_canonical(document.model_dump(mode="json"))
        self._compiled: dict[tuple[str, Direction], _CompiledRules] = {}
        for name, category in document.categories.items():
            for direction, rules in ((Direction.INPUT, category.input), (Direction.OUTPUT, category.output)):
                patterns = tuple((p, re.compile(p.pattern)) for p in rules.blocked_patterns)
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

    def check(self, category: str, direction: Direction, texts: Mapping[str, str]) -> Verdict:
        """Checks each named text ("prompt", "system_prompt" or "response"); the first broken rule decides."""
        compiled = self._compiled[(category, direction)]
        started = time.monotonic()
        for field, text in texts.items():
            limit = compiled.rules.max_system_chars if field == "system_prompt" else compiled.rules.max_chars
            if len(text) > limit:
                suffix = "max_system_chars" if field == "system_prompt" else "max_chars"
                return Verdict(False, f"{direction}.{suffix}", f"the {field} is longer than {limit} characters")
            verdict = self.scan(category, direction, text, field)
            if not verdict.allowed:
                return verdict
            if time.monotonic() - started > self.timeout_s:
                return self._timed_out(direction)
        return ALLOWED

    def scan(self, category: str, direction: Direction, text: str, field: str = "response") -> Verdict:
        """Detectors and blocked patterns only (no length limit): what a stream runs on each window."""
        compiled = self._compiled[(category, direction)]
        for name in compiled.rules.detectors:
            rule_id = f"{direction}.detector.{name}"
            try:
                found = self.detectors[name].find(text)
            except Exception:  # fail closed: a detector that cannot decide blocks
                return Verdict(False, rule_id, f"the {name} detector failed; the policy fails closed")
            if found:
                return Verdict(False, rule_id, f"the {field} contains {self.detectors[name].description}")
        for pattern, regex in compiled.patterns:
            if regex.search(text):
                description = pattern.description or "a blocked pattern"
                return Verdict(False, f"{direction}.pattern.{pattern.id}", f"the {field} matches {description}")
        return ALLOWED

    async def check_async(self, category: str, direction: Direction, texts: Mapping[str, str]) -> Verdict:
        """`check` under the policy's time budget. Short texts are checked inline (microseconds, and `check`
        itself blocks when it overran the budget); longer ones in a worker thread, so a slow rule can neither
        stall the event loop nor let a call through: overrunning the budget blocks."""
        if sum(len(t) for t in texts.values()) <= INLINE_CHECK_CHARS:
            try:
                return self.check(category, direction, texts)
            except Exception:
                return Verdict(False, f"{direction}.check_failed", "the safety check failed; the policy fails closed")
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.check, category, direction, texts), self.timeout_s)
        except TimeoutError:
            return self._timed_out(direction)
        except Exception:
            return Verdict(False, f"{direction}.check_failed", "the safety check failed; the policy fails closed")

    def _timed_out(self, direction: Direction) -> Verdict:
        return Verdict(
            False,
            f"{direction}.detector_timeout",
            f"the safety checks took longer than {self.document.detector_timeout_ms} ms; the policy fails closed",
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
