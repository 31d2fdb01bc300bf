"""The built-in safety detectors (API keys and other credentials, e-mail addresses, card numbers, prompt-injection
markers) and the one way this service compiles a regular expression: RE2.

RE2 matches in time linear in the text whatever the pattern (no backtracking), and releases the GIL while it runs,
so a scan in a worker thread never holds the event loop. The price is its syntax: no lookaround and no
backreferences, and its \\s, \\d and \\b are ASCII-only. The detectors below spell out Python's Unicode
whitespace (`_S`) and digits (\\p{Nd}) where it matters, so that a no-break space cannot slip a marker past them.

Each detector answers two questions: is there anything (`found`, used to decide) and where is all of it (`find`,
used to redact verbose audit texts). A text is encoded to UTF-8 once per detector and every pattern runs over the
bytes; offsets are mapped back to characters only when something was found.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import re2

Spans = list[tuple[int, int]]

# Python's \s for str: ASCII whitespace plus \x1c-\x1f, NEL and the Unicode separators (Zs, Zl, Zp).
_S = r"[\t-\r\x{1c}-\x{1f}\x{85}\p{Z}]"


def compile_linear(pattern: str) -> re2._Regexp:
    """The pattern compiled by RE2; re2.error (with a readable message) when RE2 cannot run it."""
    options = re2.Options()
    options.log_errors = False  # the caller reports the error; RE2 would also print it to stderr
    return re2.compile(pattern, options)


def rejection(pattern: str) -> str | None:
    """Why RE2 refuses `pattern` (e.g. a lookbehind), or None when it compiles."""
    try:
        compile_linear(pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    return None


class Encoded:
    """A text encoded once for RE2 (which matches UTF-8 bytes), with byte offsets mapped back to characters.
    Lone surrogates, which JSON can carry, pass through instead of failing the scan."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.data = text.encode("utf-8", "surrogatepass")
        self._ascii = len(self.data) == len(text)

    def chars(self, spans: Spans) -> Spans:
        if self._ascii or not spans:
            return spans
        mapping, byte, char = {}, 0, 0
        for offset in sorted({o for span in spans for o in span}):  # one pass over the bytes, however many spans
            char += len(self.data[byte:offset].decode("utf-8", "surrogatepass"))
            mapping[offset], byte = char, offset
        return [(mapping[start], mapping[end]) for start, end in spans]


@dataclass(frozen=True)
class Shape:
    """One pattern of a detector. With a `secret` group, only that group is the finding (a URL's user:password,
    not its scheme and host)."""

    pattern: str
    regex: re2._Regexp = field(init=False, repr=False, compare=False)
    group: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = compile_linear(self.pattern)
        object.__setattr__(self, "regex", regex)
        object.__setattr__(self, "group", regex.groupindex.get("secret", 0))

    def spans(self, encoded: Encoded) -> Spans:
        return [m.span(self.group) for m in self.regex.finditer(encoded.data)]


def _shapes_finder(shapes: tuple[Shape, ...]) -> Callable[[str], Spans]:
    def find(text: str) -> Spans:
        encoded = Encoded(text)
        return encoded.chars(_merge(span for shape in shapes for span in shape.spans(encoded)))

    return find


def _shapes_search(shapes: tuple[Shape, ...]) -> Callable[[str], bool]:
    # One alternation of every shape: one pass over the text instead of one per shape (several times faster), and
    # it matches somewhere exactly when one of the shapes does.
    anyone = compile_linear("|".join(f"(?:{shape.pattern.replace('(?P<secret>', '(?:')})" for shape in shapes))

    def found(text: str) -> bool:
        return anyone.search(Encoded(text).data) is not None

    return found


def _merge(spans: Iterable[tuple[int, int]]) -> Spans:
    """Sorted, with overlapping spans joined: what several shapes found in one place is one finding."""
    merged: Spans = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


# --- secrets ------------------------------------------------------------------------------------------------------

_PEM_LABEL = r"[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
_CREDENTIAL_WORDS = (
    r"api[_-]?key|secret[_-]?key|client[_-]?secret|password|passwd|access[_-]?token|auth[_-]?token"
    r"|(?:aws[_-]?)?secret[_-]?access[_-]?key"
)

SECRET_SHAPES: tuple[Shape, ...] = (
    # Provider and platform keys, by their published prefixes.
    Shape(r"\bsk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_\-]{16,}"),
    Shape(r"\bAKIA[0-9A-Z]{16}\b"),
    Shape(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
    Shape(r"\bgithub_pat_[A-Za-z0-9_]{30,}"),
    Shape(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),
    Shape(r"\bcst_[A-Za-z0-9_\-]{20,}"),
    # Google Cloud: API keys, OAuth client secrets, OAuth access tokens.
    Shape(r"\bAIza[0-9A-Za-z_\-]{35}"),
    Shape(r"\bGOCSPX-[A-Za-z0-9_\-]{20,}"),
    Shape(r"\bya29\.[A-Za-z0-9_\-]{20,}"),
    # Azure: storage and Service Bus keys in connection strings, and the signature of a SAS URL.
    Shape(r"(?i:\b(?:AccountKey|SharedAccessKey)\s{0,3}=\s{0,3}[A-Za-z0-9+/]{20,}={0,2})"),
    Shape(r"(?i:[?&]sig=[A-Za-z0-9%+/=_\-]{16,})"),
    # A private key: the whole PEM block, its body too (to the END line, or to the end of an unterminated one).
    # The body may hold literal "\n" escapes, as in a cloud service-account JSON file.
    Shape(rf"-----BEGIN {_PEM_LABEL}(?s:.*?)(?:-----END {_PEM_LABEL}|\z)"),
    # JWTs: header and payload are base64url JSON objects (so they start with eyJ); the signature may be empty.
    Shape(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),
    # Credential assignments (password = ..., "api_key": "...", AWS_SECRET_ACCESS_KEY=...).
    Shape(
        rf"(?i:\b(?:{_CREDENTIAL_WORDS})['\"]?{_S}{{0,3}}[:=]{_S}{{0,3}}['\"]?[^\s'\"]{{8,}})",
    ),
    # HTTP authorization: the header's value whatever its scheme, and a bare long bearer token.
    Shape(
        rf"(?i:\b(?:proxy-)?authorization['\"]?{_S}{{0,3}}[:=]{_S}{{0,3}}['\"]?"
        rf"(?:basic|bearer|token|digest){_S}{{1,3}}(?P<secret>[A-Za-z0-9._~+/=\-]{{8,}}))"
    ),
    Shape(rf"(?i:\bbearer{_S}{{1,3}}[A-Za-z0-9._~+/\-]{{20,}})"),
    # Credentials inside a URL (postgresql://user:password@host): the user:password, not the scheme or host.
    Shape(r"\b[A-Za-z][A-Za-z0-9+.\-]{1,31}://(?P<secret>[^\s/?#@:'\"<>]*:[^\s/?#'\"<>]+)@[A-Za-z0-9.\-\[\]]"),
)

# --- e-mail addresses, card numbers, prompt injection -------------------------------------------------------------

_EMAIL = Shape(r"\b[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,8}\.[A-Za-z]{2,24}\b")

# 13-19 digits, single spaces or dashes between them, not inside a longer run of digits. RE2 has no lookbehind:
# the leading non-digit (or the start) is matched and left out of the `card` group, and the trailing one is
# matched too, so each search resumes at the end of the group, where that trailing character can lead the next.
_CARD_CANDIDATE = compile_linear(r"(?:^|\P{Nd})(?P<card>(?:\p{Nd}[ \-]?){12,18}\p{Nd})(?:\P{Nd}|\z)")
_NON_DIGITS = re.compile(r"\D")

_INJECTION = Shape(
    rf"(?i)\bignore{_S}{{1,3}}(?:all{_S}{{1,3}}|any{_S}{{1,3}})?(?:the{_S}{{1,3}})?"
    rf"(?:previous|prior|above|earlier|preceding){_S}{{1,3}}(?:instructions|prompts?|rules|messages|directions)"
    rf"|(?i:\bdisregard{_S}{{1,3}}(?:all{_S}{{1,3}}|the{_S}{{1,3}}|your{_S}{{1,3}})?"
    rf"(?:previous|prior|above|system){_S}{{1,3}}(?:instructions|prompts?|rules))"
    rf"|(?i:\b(?:reveal|print|show|repeat|output){_S}{{1,3}}(?:me{_S}{{1,3}})?(?:your|the){_S}{{1,3}}"
    rf"(?:system{_S}{{1,3}}prompt|hidden{_S}{{1,3}}instructions|initial{_S}{{1,3}}instructions))"
    rf"|(?i:\byou{_S}{{1,3}}are{_S}{{1,3}}now{_S}{{1,3}}(?:DAN|in{_S}{{1,3}}developer{_S}{{1,3}}mode|jailbroken))"
    r"|(?i:<\|?(?:im_start|im_end|system)\|?>)"
    rf"|(?i:\bnew{_S}{{1,3}}system{_S}{{1,3}}prompt{_S}{{0,3}}:)"
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


# ASCII digits to their values, and a value to what Luhn adds for it in a doubled position: the common case of
# luhn_ok without leaving C code.
_VALUES = bytes((b - 48) % 256 for b in range(256))
_DOUBLED = bytes((2 * d - 9 if d > 4 else 2 * d) if d < 10 else 0 for d in range(256))


def _candidate_ok(candidate: bytes) -> bool:
    digits = candidate.translate(None, b" -")
    if not digits.isdigit():  # digits of another script: the general path
        digits_text = _NON_DIGITS.sub("", candidate.decode("utf-8"))
        return 13 <= len(digits_text) <= 19 and luhn_ok(digits_text)
    if not 13 <= len(digits) <= 19:
        return False
    values = digits.translate(_VALUES)
    return (sum(values[-1::-2]) + sum(values[-2::-2].translate(_DOUBLED))) % 10 == 0


def _card_byte_spans(encoded: Encoded, first_only: bool = False) -> Spans:
    spans: Spans = []
    position = 0
    while (match := _CARD_CANDIDATE.search(encoded.data, position)) is not None:
        start, end = match.span(1)
        if _candidate_ok(encoded.data[start:end]):
            spans.append((start, end))
            if first_only:
                break
        position = end
    return spans


def _card_spans(text: str) -> Spans:
    encoded = Encoded(text)
    return encoded.chars(_card_byte_spans(encoded))


def _card_found(text: str) -> bool:
    return bool(_card_byte_spans(Encoded(text), first_only=True))


# --- the registry -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detector:
    name: str
    description: str
    # Spans of everything found; empty when clean. Used to redact, and to decide when `search` is not given.
    find: Callable[[str], Spans]
    # Whether verbose audit redacts what it finds (prompt-injection markers are not secrets).
    redact: bool = True
    # Whether a text this detector blocks is kept out of the audit even redacted: a secret's extent can exceed
    # what was found (a key's body, the password next to a user name), so a text known to hold one is not stored.
    withhold: bool = False
    # Whether the text holds anything: stops at the first finding.
    search: Callable[[str], bool] | None = None

    def found(self, text: str) -> bool:
        return self.search(text) if self.search is not None else bool(self.find(text))


def _shapes_detector(name: str, description: str, shapes: tuple[Shape, ...], **options: bool) -> Detector:
    return Detector(name, description, _shapes_finder(shapes), search=_shapes_search(shapes), **options)


BUILTIN_DETECTORS: dict[str, Detector] = {
    d.name: d
    for d in (
        _shapes_detector(
            "secrets",
            "API keys, tokens, private keys and credentials",
            SECRET_SHAPES,
            withhold=True,
        ),
        _shapes_detector("email", "e-mail addresses", (_EMAIL,)),
        Detector(
            "card_number",
            "payment card numbers (13-19 digits passing the Luhn check)",
            _card_spans,
            search=_card_found,
        ),
        _shapes_detector(
            "prompt_injection",
            "markers of prompt injection (ignore previous instructions, fake system tags, ...)",
            (_INJECTION,),
            redact=False,
        ),
    )
}
