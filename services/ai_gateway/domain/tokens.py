"""Token estimates for text no provider has counted: budget reservations and the local provider's usage."""

from __future__ import annotations

import math


def approx_tokens(text: str) -> int:
    """What a tokenizer would roughly count: about four characters per token, at least one for any text."""
    return max(1, math.ceil(len(text) / 4)) if text else 0
