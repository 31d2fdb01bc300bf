"""The health a new version starts with: stale at birth when it is built on a stale or superseded input.

The store reads each input's state inside the creating transaction (so no revision can slip in between) and asks
this rule; the first input, in upstream order, that is superseded or stale decides, and the new version inherits
its cause: the superseding version, or whatever made the input stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.lineage.domain.model import Health


@dataclass(frozen=True)
class InputState:
    """One upstream version as the creating transaction sees it; causes are the store's version ids."""

    name: str
    health: Health
    cause: int | None
    superseded_by: int | None


@dataclass(frozen=True)
class BirthHealth:
    health: Health
    cause: int | None
    rationale: str


BORN_VALID = BirthHealth(Health.VALID, None, "")


def health_at_birth(inputs: Sequence[InputState]) -> BirthHealth:
    for state in inputs:
        if state.superseded_by is not None:
            return BirthHealth(Health.STALE, state.superseded_by, f"built on {state.name}, which is superseded")
        if state.health is Health.STALE:
            return BirthHealth(Health.STALE, state.cause, f"built on {state.name}, which is stale")
    return BORN_VALID
