"""Every fuzz target by name: the document targets (targets.py) and one request-decoding target per service
(requests.py)."""

from __future__ import annotations

from collections.abc import Callable

from bench.fuzz.requests import service_targets
from bench.fuzz.targets import TARGETS

SERVICE_TARGETS = ("requests_runs", "requests_lineage", "requests_ai_gateway", "requests_art_studio")
NAMES: tuple[str, ...] = (*TARGETS, *SERVICE_TARGETS)


def target(name: str) -> Callable[[bytes], None]:
    if name in TARGETS:
        return TARGETS[name]
    return service_targets()[name]
