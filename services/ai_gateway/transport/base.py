"""What every provider speaks: requests, responses, stream events and classified errors.

The domain drives retries, fallbacks and deadlines from `ProviderError.kind`; providers only translate their
SDK's behaviour into these types. Provider errors never carry upstream text: an SDK message can echo the prompt
or part of a key, so only the kind, the HTTP status and Retry-After cross this boundary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user" or "assistant"
    content: str


@dataclass(frozen=True)
class ProviderRequest:
    operation: str
    model: str
    messages: tuple[Message, ...]
    temperature: float
    max_tokens: int
    variant_seed: str = ""
    # JSON Schema the answer must satisfy; providers that can constrain output use it.
    response_schema: dict[str, Any] | None = None

    @property
    def prompt(self) -> str:
        """The caller's prompt: the first user message (later ones are repair instructions)."""
        return next((m.content for m in self.messages if m.role == "user"), "")


@dataclass(frozen=True)
class Usage:
    """Token counts as the provider reported them."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.output_tokens + other.output_tokens,
        )


@dataclass(frozen=True)
class ProviderResponse:
    content: str
    # The model that answered, as the provider named it.
    model: str
    # None when the provider did not report usage (its cost is then unknown, never 0).
    usage: Usage | None
    finish_reason: str = ""


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class StreamFinished:
    model: str
    usage: Usage | None
    finish_reason: str


StreamEvent = TextDelta | StreamFinished


@dataclass(frozen=True)
class ImagePrompt:
    """What an image provider is asked for: `count` PNG images of `width` x `height` pixels from `prompt`."""

    model: str
    prompt: str
    width: int
    height: int
    count: int
    variant_seed: str = ""

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class ProviderImages:
    """PNG images as the provider returned them (checked to be PNGs of the size asked for)."""

    images: tuple[bytes, ...]
    model: str
    # The prompt the provider says it drew from, when it rewrote the caller's; None when it did not say.
    revised_prompt: str | None = None


class ErrorKind(StrEnum):
    RATE_LIMITED = "rate_limited"  # 429
    SERVER_ERROR = "server_error"  # 5xx
    TIMEOUT = "timeout"  # no answer in time (connect, read) or 408
    CONNECTION = "connection"  # refused, reset, DNS
    REJECTED = "rejected"  # any other 4xx: bad model, refused key, ...
    BAD_RESPONSE = "bad_response"  # a body that is not a usable completion
    INTERRUPTED = "interrupted"  # a stream that ended before it finished


RETRYABLE = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.SERVER_ERROR, ErrorKind.TIMEOUT, ErrorKind.CONNECTION})


class ProviderError(Exception):
    def __init__(self, kind: ErrorKind, *, status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(f"provider error: {kind}" + (f" (HTTP {status})" if status else ""))
        self.kind = kind
        self.status = status
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


class Provider(Protocol):
    """One AI provider. Implementations must not retry on their own: the gateway retries within the caller's
    deadline and must count every attempt."""

    name: str
    default_model: str

    async def complete(self, request: ProviderRequest, timeout_s: float) -> ProviderResponse: ...

    def stream(self, request: ProviderRequest, timeout_s: float) -> AsyncIterator[StreamEvent]:
        """Deltas, then exactly one StreamFinished; raises ProviderError(INTERRUPTED) if the stream is cut."""
        ...

    async def close(self) -> None: ...


class ImageProvider(Protocol):
    """A provider that makes images; the same rules as Provider (no retries of its own, errors classified)."""

    name: str

    async def generate_images(self, request: ImagePrompt, timeout_s: float) -> ProviderImages:
        """Exactly `request.count` PNGs of the size asked for; ProviderError(BAD_RESPONSE) for anything else."""
        ...
