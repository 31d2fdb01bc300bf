"""Every fuzz target by name: the document targets (targets.py), one request-decoding target per service
(requests.py), and any other function of bytes named `package.module:function` (tests plant crashes that way)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

# Nothing here imports the targets at module level: the child imports them under instrumentation.
DOCUMENT_TARGETS = (
    "svg_validator",
    "css_fast_path",
    "spec_parser",
    "spec_compiler",
    "canonical_hasher",
    "legacy_reader",
)
SERVICE_TARGETS = ("requests_runs", "requests_lineage", "requests_ai_gateway", "requests_art_studio")
NAMES: tuple[str, ...] = (*DOCUMENT_TARGETS, *SERVICE_TARGETS)

# What atheris instruments for each target, besides Custody's own packages (services, bench). atheris matches
# top-level packages, so each target imports only what it runs: one servicer, not four.
LIBRARIES: dict[str, tuple[str, ...]] = {
    "svg_validator": ("tinycss2", "defusedxml"),
    "css_fast_path": ("tinycss2",),
    "spec_compiler": ("tinycss2", "defusedxml", "rfc8785"),
    "canonical_hasher": ("rfc8785",),
    "legacy_reader": ("rfc8785",),
    "requests_art_studio": ("tinycss2", "defusedxml", "rfc8785"),
}


# Modules a request target imports but never runs (the domain behind the stand-in, stores, the ledger), imported
# before instrumentation starts: instrumenting them costs seconds of start-up for no coverage. The shared decoding
# modules they pull in on the way are then imported again under instrumentation (REDECODED).
_LEDGER = "services.common.ledger.ledger"
UNINSTRUMENTED: dict[str, tuple[str, ...]] = {
    "requests_runs": ("services.runs.domain.service", "services.runs.store", _LEDGER),
    "requests_lineage": ("services.lineage.domain.service", "services.lineage.domain.witness", _LEDGER),
    "requests_ai_gateway": ("services.ai_gateway.domain.gateway", _LEDGER),
}
REDECODED = ("services.common.json_limits", "services.common.protomap", "services.common.ledger.rpc")


def target(name: str) -> Callable[[bytes], None]:
    if name in DOCUMENT_TARGETS:
        from bench.fuzz.targets import TARGETS

        return TARGETS[name]
    if name in SERVICE_TARGETS:
        from bench.fuzz.requests import service_target

        return service_target(name.removeprefix("requests_"))
    module, _, function = name.partition(":")
    found: Callable[[bytes], None] = getattr(importlib.import_module(module), function)
    return found


def instrumented(name: str) -> tuple[str, ...]:
    """The packages atheris instruments for `name` (a target named by module: that module's package too)."""
    return ("services", "bench", name.partition(":")[0], *LIBRARIES.get(name, ()))
