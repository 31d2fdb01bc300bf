"""Finds each service's settings class and factory by name (imported lazily: `custody health` needs none)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # for the annotations only: importing them would load the server and database stack
    from services.common.config import ServiceSettings
    from services.common.ledger.audit import AuditReport
    from services.common.server import ServiceFactory

LedgerAudit = Callable[[Any, str | None], "AuditReport"]


def settings_class(service: str) -> type[ServiceSettings]:
    return cast("type[ServiceSettings]", importlib.import_module(f"services.{service}.main").SETTINGS)


def factory(service: str) -> ServiceFactory:
    return cast("ServiceFactory", importlib.import_module(f"services.{service}.main").build)


def ledger_audit(service: str) -> LedgerAudit:
    """An authority's `audit(settings, verifier_key)` (services/<service>/ledger_audit.py)."""
    return cast("LedgerAudit", importlib.import_module(f"services.{service}.ledger_audit").audit)
