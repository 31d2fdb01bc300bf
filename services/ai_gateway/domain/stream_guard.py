"""The hold-back scanner of StreamText: nothing leaves the gateway before the output rules have seen it.

After every delta the guard checks a window that reaches back `holdback_chars` behind what was already sent,
and releases only what lies `holdback_chars` behind the end: a match shorter than the holdback is seen whole
before any of it is sent. The held-back tail goes out once the whole response passed the full output check.
"""

from __future__ import annotations

from typing import Any

from services.ai_gateway.domain.calls import CallState
from services.ai_gateway.domain.model import TextChunk
from services.ai_gateway.domain.safety import block
from services.ai_gateway.policy import Direction, SafetyPolicy, Verdict


class StreamGuard:
    """The caller keeps the growing text (a local `text += delta` that CPython extends in place) and hands it
    to `scan` after each delta; the guard remembers how much of it was released."""

    def __init__(self, policy: SafetyPolicy, call: CallState[Any]) -> None:
        self._policy = policy
        self._call = call
        self._category = call.prepared.category
        self._max_chars = policy.rules(self._category, Direction.OUTPUT).max_chars
        self._holdback = policy.holdback_chars
        self._released = 0
        self._index = 0

    async def scan(self, text: str) -> TextChunk | None:
        """Blocks (SAFETY_BLOCKED) if `text` breaks an output rule; else the next chunk that may be sent, if any."""
        if len(text) > self._max_chars:
            block(self._call, Verdict(False, "output.max_chars", "the response is too long"), self._policy.version)
        holdback, released = self._holdback, self._released
        verdict = await self._policy.scan_async(self._category, Direction.OUTPUT, text[max(0, released - holdback) :])
        if not verdict.allowed:
            self._call.response = text
            block(self._call, verdict, self._policy.version)
        if len(text) - holdback > released:
            self._released = len(text) - holdback
            return self._chunk(text[released : self._released])
        return None

    def rest(self, text: str) -> TextChunk | None:
        """What is still held back, to send once `text` (the whole response) passed every check."""
        return self._chunk(text[self._released :]) if len(text) > self._released else None

    def _chunk(self, text: str) -> TextChunk:
        chunk = TextChunk(text, self._index)
        self._index += 1
        return chunk
