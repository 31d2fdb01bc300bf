"""The bookkeeping of one call in progress: every step writes here, and the audit record is built from it
whatever the outcome."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from services.ai_gateway.domain.model import CALL_NAME_PREFIX, GeneratedImage, PreparedImage, PreparedRequest
from services.ai_gateway.policy import Verdict
from services.ai_gateway.transport.base import ProviderResponse, StreamFinished, Usage
from services.common.identity import Principal

# What the call was asked for: a text request (GenerateText, StreamText) or an image request (GenerateImage).
P = TypeVar("P", bound=PreparedRequest | PreparedImage)


@dataclass
class CallState(Generic[P]):
    prepared: P
    caller: Principal
    rpc: str
    request_sha256: str
    call_id: str
    created_at: datetime
    started: float
    deadline: float  # time.monotonic() by which the call must have its answer (the margin to record it is kept)
    provider: str
    model: str
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    usage_unknown: str = ""
    answer_model: str = ""
    finish_reason: str = ""
    response: str | None = None
    verdict: Verdict | None = None
    recorded: bool = False
    # GenerateImage: the images the provider returned (None until it did) and its revised prompt, if any.
    images: tuple[GeneratedImage, ...] | None = None
    revised_prompt: str | None = None

    @property
    def name(self) -> str:
        return CALL_NAME_PREFIX + self.call_id

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def answered(self, response: ProviderResponse | StreamFinished, content: str) -> None:
        self.answer_model = response.model or self.model
        self.finish_reason = response.finish_reason
        self.response = content
        if response.usage is None:
            self.usage_unknown = "the provider reported no usage"
        else:
            self.usage = self.usage + response.usage
